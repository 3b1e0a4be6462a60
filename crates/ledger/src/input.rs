//! Finding input files, telling which table each holds, checking their schema, and reading
//! them as Arrow batches.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::csv::reader::Format;
use arrow::csv::ReaderBuilder;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::convert::compatible;
use crate::error::LedgerError;
use crate::schema::Table;

/// Rows per batch when reading inputs.
const READ_BATCH: usize = 32 * 1024;

/// File formats ingestion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Parquet,
    Csv,
}

impl InputFormat {
    fn name(self) -> &'static str {
        match self {
            InputFormat::Parquet => "Parquet",
            InputFormat::Csv => "CSV",
        }
    }
}

/// One input file, with its table and, once checked, where each contract column sits.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Which table it feeds.
    pub table: Table,
    /// Parquet or CSV.
    pub format: InputFormat,
    /// The file's own schema.
    pub schema: SchemaRef,
    /// For each column of the table's contract, its index in the file (if present).
    pub mapping: Vec<Option<usize>>,
    /// Rows the file holds, when its metadata says (Parquet); 0 otherwise.
    pub rows_hint: u64,
}

fn format_of(path: &Path) -> Option<InputFormat> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "parquet" | "pq" => Some(InputFormat::Parquet),
        "csv" => Some(InputFormat::Csv),
        _ => None,
    }
}

/// Which table a file holds: by its name (`escrow_events.parquet`,
/// `escrow_events-2024-03.csv`, `escrow_events.part1.parquet`) or else its folder's name.
fn table_of(path: &Path) -> Option<Table> {
    let stem = path.file_stem()?.to_str()?;
    let head = stem.split(['-', '.']).next().unwrap_or(stem);
    Table::from_name(head).or_else(|| {
        let parent = path.parent()?.file_name()?.to_str()?;
        Table::from_name(parent)
    })
}

/// Expands paths (files, or folders searched recursively) into checked input files, in
/// table dependency order then path order. Folders whose names start with `_` or `.` (such
/// as the simulator's `_truth`) are skipped. Any problem with any file stops everything
/// before a row is read.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<InputFile>, LedgerError> {
    let mut found: Vec<PathBuf> = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|e| LedgerError::Input {
            path: p.clone(),
            problem: e.to_string(),
        })?;
        if meta.is_dir() {
            let before = found.len();
            walk(p, &mut found)?;
            if found.len() == before {
                return Err(LedgerError::Input {
                    path: p.clone(),
                    problem: "folder holds no .parquet or .csv files".into(),
                });
            }
        } else {
            found.push(p.clone());
        }
    }
    refuse_two_formats(&found)?;
    let mut files = Vec::with_capacity(found.len());
    for path in found {
        let format = format_of(&path)
            .ok_or_else(|| LedgerError::UnsupportedFormat { path: path.clone() })?;
        let table = table_of(&path).ok_or_else(|| LedgerError::UnknownTable {
            path: path.clone(),
            tables: Table::ALL.map(|t| t.name()).join(", "),
        })?;
        let (schema, rows_hint) = read_schema(&path, format)?;
        let mapping = map_columns(&path, table, &schema)?;
        files.push(InputFile {
            path,
            table,
            format,
            schema,
            mapping,
            rows_hint,
        });
    }
    files.sort_by(|a, b| (a.table, &a.path).cmp(&(b.table, &b.path)));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

/// The same export in both formats (`x.csv` beside `x.parquet`, as `simulate --format
/// both` writes) would be ingested twice, every row a duplicate and every fault
/// quarantined twice: refused, naming both files.
fn refuse_two_formats(found: &[PathBuf]) -> Result<(), LedgerError> {
    let mut seen: BTreeMap<PathBuf, &PathBuf> = BTreeMap::new();
    for path in found {
        let Some(_) = format_of(path) else { continue };
        let same = path.with_extension("");
        if let Some(other) = seen.get(&same) {
            if *other != path {
                return Err(LedgerError::Input {
                    path: path.clone(),
                    problem: format!(
                        "{} holds the same export: give one format, not both",
                        other.display()
                    ),
                });
            }
        }
        seen.insert(same, path);
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LedgerError> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| LedgerError::io(dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| LedgerError::io(dir, e))?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if format_of(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

fn unreadable(path: &Path, format: InputFormat, problem: impl ToString) -> LedgerError {
    LedgerError::Unreadable {
        path: path.to_path_buf(),
        format: format.name(),
        problem: problem.to_string(),
    }
}

fn read_schema(path: &Path, format: InputFormat) -> Result<(SchemaRef, u64), LedgerError> {
    let file = File::open(path).map_err(|e| LedgerError::io(path, e))?;
    match format {
        InputFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| unreadable(path, format, e))?;
            let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            Ok((builder.schema().clone(), rows))
        }
        InputFormat::Csv => {
            let mut reader = BufReader::new(file);
            let (schema, _) = Format::default()
                .with_header(true)
                .infer_schema(&mut reader, Some(0))
                .map_err(|e| unreadable(path, format, e))?;
            if schema.fields().is_empty() {
                return Err(unreadable(path, format, "empty file: no header row"));
            }
            // Every CSV column is read as text and converted by the contract's rules.
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| {
                    Field::new(
                        f.name().trim_start_matches('\u{feff}'),
                        DataType::Utf8,
                        true,
                    )
                })
                .collect();
            Ok((Arc::new(Schema::new(fields)), 0))
        }
    }
}

fn map_columns(
    path: &Path,
    table: Table,
    schema: &Schema,
) -> Result<Vec<Option<usize>>, LedgerError> {
    let wrong = |problem: String| LedgerError::WrongSchema {
        path: path.to_path_buf(),
        table: table.name(),
        problem,
    };
    let mut seen = std::collections::HashSet::new();
    let mut unknown = Vec::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(wrong(format!("column {:?} appears twice", f.name())));
        }
        if table.column(f.name()).is_none() {
            unknown.push(f.name().clone());
        }
    }
    if !unknown.is_empty() {
        return Err(wrong(format!("unknown column(s) {}", unknown.join(", "))));
    }
    let mut mapping = Vec::with_capacity(table.columns().len());
    let mut absent = Vec::new();
    for c in table.columns() {
        let idx = schema.index_of(c.name).ok();
        match idx {
            Some(i) => {
                let dt = schema.field(i).data_type();
                if !compatible(c.ty, dt) {
                    return Err(wrong(format!(
                        "column {} has type {dt}, which cannot hold {:?} values exactly",
                        c.name, c.ty
                    )));
                }
            }
            None if c.required => absent.push(c.name),
            None => {}
        }
        mapping.push(idx);
    }
    if !absent.is_empty() {
        return Err(wrong(format!(
            "missing required column(s) {}",
            absent.join(", ")
        )));
    }
    Ok(mapping)
}

/// Reads a file batch by batch.
pub fn read_batches(
    input: &InputFile,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    read_projected(input, None, sink)
}

/// Reads one column of `input` (its index in the file), as batches of that column alone:
/// a Parquet file decodes that column's pages only.
pub(crate) fn read_column(
    input: &InputFile,
    column: usize,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    read_projected(input, Some(column), sink)
}

fn read_projected(
    input: &InputFile,
    column: Option<usize>,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    let path = &input.path;
    let file = File::open(path).map_err(|e| LedgerError::io(path, e))?;
    match input.format {
        InputFormat::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| {
                    let b = match column {
                        Some(c) => {
                            let mask = ProjectionMask::roots(b.parquet_schema(), [c]);
                            b.with_projection(mask)
                        }
                        None => b,
                    };
                    b.with_batch_size(READ_BATCH).build()
                })
                .map_err(|e| unreadable(path, input.format, e))?;
            for batch in reader {
                sink(batch.map_err(|e| unreadable(path, input.format, e))?)?;
            }
        }
        InputFormat::Csv => {
            let mut file = file;
            file.rewind().map_err(|e| LedgerError::io(path, e))?;
            let mut builder = ReaderBuilder::new(input.schema.clone())
                .with_header(true)
                .with_batch_size(READ_BATCH);
            if let Some(c) = column {
                builder = builder.with_projection(vec![c]);
            }
            let reader = builder
                .build(BufReader::new(file))
                .map_err(|e| unreadable(path, input.format, e))?;
            for batch in reader {
                sink(batch.map_err(|e| unreadable(path, input.format, e))?)?;
            }
        }
    }
    Ok(())
}
