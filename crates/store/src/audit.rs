//! `audit verify`: everything about the query log that can be checked with the log's
//! public key alone, read-only.
//!
//! 1. Entries are numbered 0, 1, 2 … without a gap, and each one's stored leaf hash is the
//!    hash of its fields.
//! 2. The tree nodes each entry stores are the ones those leaves give, and no others.
//! 3. Every signed head the database holds (one per commit, on its last entry) is signed by
//!    the key and is the root of the entries up to it; the last covers exactly the log.
//! 4. Every head in the checkpoint file is signed by the key, in order, and is the root of
//!    the log's first `tree_size` entries; successive heads are consistent (RFC 9162
//!    consistency proofs, built from the stored nodes and checked).

use crate::prelude::*;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{self, SignedHead};
use crate::log::{leaf_bytes, parse_head, STORED_FROM_LEVEL};
use crate::merkle::{self, leaf_hash, Frontier, Hash};
use crate::secrets::hex;
use crate::{OpenMode, Store, StoreError};

/// What an intact log showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries.
    pub entries: u64,
    /// The root over all of them.
    pub root: Hash,
    /// The database's latest signed head.
    pub head: SignedHead,
    /// Heads in the checkpoint file, all verified.
    pub checkpoints: usize,
    /// Heads stored with the entries (one per commit), all verified.
    pub signed_heads: u64,
    /// The last of them.
    pub last_checkpoint: Option<SignedHead>,
}

/// Checks the log in `db` against the checkpoint file and the public key. The outer error
/// means the check could not run (no database, an unreadable file); the inner one names
/// the first sign of tampering found.
pub fn verify(
    db: &Path,
    checkpoints: &Path,
    key: &VerifyingKey,
) -> Result<Result<AuditReport, String>, StoreError> {
    let store = Store::open(db, OpenMode::ReadOnly)?;
    verify_store(&store, checkpoints, key)
}

/// [`verify`] on an open store (a PostgreSQL database, or an SQLite file already open).
pub fn verify_store(
    store: &Store,
    checkpoints: &Path,
    key: &VerifyingKey,
) -> Result<Result<AuditReport, String>, StoreError> {
    let heads = match checkpoint::read_all(checkpoints) {
        Ok(h) => h,
        Err(StoreError::Damaged(why)) => return Ok(Err(format!("checkpoint file: {why}"))),
        Err(e) => return Err(e),
    };
    Ok(check(store, &heads, key))
}

fn check(store: &Store, heads: &[SignedHead], key: &VerifyingKey) -> Result<AuditReport, String> {
    let e = |x: StoreError| x.to_string();
    // 4a. The checkpoint file: signatures and order.
    for (i, h) in heads.iter().enumerate() {
        if !h.verify(key) {
            return Err(format!(
                "checkpoint {} (tree size {}) is not signed by the log's key",
                i + 1,
                h.tree_size
            ));
        }
        if let Some(prev) = i.checked_sub(1).and_then(|p| heads.get(p)) {
            if h.tree_size < prev.tree_size || h.timestamp < prev.timestamp {
                return Err(format!(
                    "checkpoint {} (tree size {} at {}) goes back from the one before (tree size {} at {})",
                    i + 1,
                    h.tree_size,
                    h.timestamp,
                    prev.tree_size,
                    prev.timestamp
                ));
            }
        }
    }
    // 3a. The database's head.
    let head = store
        .head()
        .map_err(e)?
        .ok_or("the database holds no signed tree head: it was emptied or replaced")?;
    if !head.verify(key) {
        return Err(format!(
            "the database's tree head (size {}) is not signed by the log's key: it was forged",
            head.tree_size
        ));
    }
    if let Some(last) = heads.last() {
        if head.tree_size < last.tree_size {
            return Err(format!(
                "the database's signed head covers {} entries but the checkpoint file had {} at {}: entries were removed",
                head.tree_size, last.tree_size, last.timestamp
            ));
        }
    }
    // 1, 2, 3 and 4b. Every entry, in order, through a frontier: its leaf, its nodes, the
    // head it carries, and the roots at each checkpoint's size.
    let mut frontier = Frontier::default();
    let mut want = heads.iter().peekable();
    let mut signed_heads = 0u64;
    while let Some(h) = want.next_if(|h| h.tree_size == 0) {
        if h.root_hash != merkle::empty_root() {
            return Err("a checkpoint of the empty log has the wrong root".into());
        }
    }
    loop {
        let batch = store.audit_rows(frontier.size(), 10_000).map_err(e)?;
        if batch.is_empty() {
            break;
        }
        for (entry, nodes, carried) in batch {
            if entry.index != frontier.size() {
                return Err(format!(
                    "entry {} is missing (the next entry is {}): entries were deleted",
                    frontier.size(),
                    entry.index
                ));
            }
            if leaf_hash(&leaf_bytes(&entry)) != entry.leaf_hash {
                return Err(format!(
                    "entry {} was altered (its leaf hash does not match its content)",
                    entry.index
                ));
            }
            let mut computed = Vec::new();
            frontier.push(entry.leaf_hash, |level, _, h| {
                if level >= STORED_FROM_LEVEL {
                    computed.extend_from_slice(h);
                }
            });
            if nodes.unwrap_or_default() != computed {
                return Err(format!(
                    "the tree nodes stored with entry {} do not match the entries below them",
                    entry.index
                ));
            }
            if let Some(text) = carried {
                let h = parse_head(&text).map_err(|x| format!("entry {}: {x}", entry.index))?;
                if !h.verify(key) {
                    return Err(format!(
                        "the head stored with entry {} is not signed by the log's key: it was forged",
                        entry.index
                    ));
                }
                if h.tree_size != frontier.size() || h.root_hash != frontier.root() {
                    return Err(format!(
                        "the log's first {} entries no longer have the root signed at {}: entries were altered or replaced",
                        h.tree_size, h.timestamp
                    ));
                }
                signed_heads += 1;
            }
            while let Some(h) = want.next_if(|h| h.tree_size == frontier.size()) {
                if h.root_hash != frontier.root() {
                    return Err(format!(
                        "the log's first {} entries no longer have the root signed at {}: entries were altered or replaced",
                        h.tree_size, h.timestamp
                    ));
                }
            }
        }
    }
    if let Some(h) = want.next() {
        return Err(format!(
            "the log holds {} entries but a checkpoint signed at {} covered {}: entries were removed",
            frontier.size(),
            h.timestamp,
            h.tree_size
        ));
    }
    // 3b. The latest head covers exactly the log (the last entry carries it).
    if head.tree_size != frontier.size() || head.root_hash != frontier.root() {
        return Err(format!(
            "the database's signed head (size {}, root {}) is not the log's (size {}, root {}): entries were added, removed or altered after it was signed",
            head.tree_size,
            hex(&head.root_hash),
            frontier.size(),
            hex(&frontier.root())
        ));
    }
    // 4c. Consistency between successive heads, and from the last one to the database's.
    let mut chain: Vec<&SignedHead> = heads.iter().collect();
    chain.push(&head);
    for pair in chain.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let proof = store
            .consistency_proof(a.tree_size, b.tree_size)
            .map_err(e)?;
        if !merkle::verify_consistency(a.tree_size, b.tree_size, &a.root_hash, &b.root_hash, &proof)
        {
            return Err(format!(
                "the head of size {} is not consistent with the head of size {}",
                a.tree_size, b.tree_size
            ));
        }
    }
    Ok(AuditReport {
        entries: frontier.size(),
        root: frontier.root(),
        head,
        checkpoints: heads.len(),
        signed_heads,
        last_checkpoint: heads.last().cloned(),
    })
}
