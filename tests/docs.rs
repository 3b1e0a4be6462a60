//! The documentation generated from code stays in step with the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[test]
fn data_model_doc_contains_the_generated_reference() {
    let generated = common::run_ok(&["schema"]);
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/data-model.md"
    ))
    .unwrap();
    assert!(
        doc.contains(&generated),
        "docs/data-model.md is out of date: regenerate its reference with `yuanxin schema`"
    );
}

#[test]
fn reason_code_catalogue_doc_is_generated_from_code() {
    let generated = common::run_ok(&["reasons"]);
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/decisions.md"
    ))
    .unwrap();
    assert!(
        doc.contains(&generated),
        "docs/decisions.md is out of date: regenerate its reason codes with `yuanxin reasons`"
    );
}

#[test]
fn problem_code_catalogue_doc_is_generated_from_code() {
    let generated = common::run_ok(&["problems"]);
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/service.md"
    ))
    .unwrap();
    assert!(
        doc.contains(&generated),
        "docs/service.md is out of date: regenerate its problem codes with `yuanxin problems`"
    );
}
