//! Signed tree heads and the checkpoint file.
//!
//! A signed tree head says "the log's first `tree_size` entries have Merkle root
//! `root_hash`", at a time, signed with the log's Ed25519 key. The signed message is four
//! lines of text, so that anyone can rebuild it:
//!
//! ```text
//! yuanxin-query-log-v1
//! <tree size, decimal>
//! <root hash, 64 lowercase hex digits>
//! <timestamp, RFC 3339 +08:00>
//! ```
//!
//! The service signs a head after every commit of log entries (it is the receipt handed
//! back with each served score or decision) and appends one to the checkpoint file, outside
//! the database, at least every N entries, every so often and at shutdown. The file is
//! append-only JSON lines; `audit verify` checks every line against the log.

use std::io::{BufRead, Write};
use std::path::Path;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;
use crate::secrets::{hex, unhex, Secrets};
use crate::{StoreError, Timestamp};

/// The first line of the signed message: names the log and its format.
pub const LOG_ORIGIN: &str = "yuanxin-query-log-v1";

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// Entries covered.
    pub tree_size: u64,
    /// Merkle root of those entries.
    pub root_hash: Hash,
    /// When it was signed.
    pub timestamp: Timestamp,
    /// Ed25519 signature of [`SignedHead::message`].
    pub signature: [u8; 64],
}

/// The JSON form (in the database, the checkpoint file and the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHeadJson {
    /// Entries covered.
    pub tree_size: u64,
    /// Merkle root, hex.
    pub root_hash: String,
    /// RFC 3339.
    pub timestamp: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl SignedHead {
    /// The message signed.
    pub fn message(tree_size: u64, root_hash: &Hash, timestamp: Timestamp) -> String {
        format!(
            "{LOG_ORIGIN}\n{tree_size}\n{}\n{timestamp}\n",
            hex(root_hash)
        )
    }

    /// Signs a head.
    pub fn sign(
        secrets: &Secrets,
        tree_size: u64,
        root_hash: Hash,
        timestamp: Timestamp,
    ) -> SignedHead {
        let signature = secrets.sign(Self::message(tree_size, &root_hash, timestamp).as_bytes());
        SignedHead {
            tree_size,
            root_hash,
            timestamp,
            signature,
        }
    }

    /// Whether the signature is the log key's.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let msg = Self::message(self.tree_size, &self.root_hash, self.timestamp);
        key.verify(msg.as_bytes(), &Signature::from_bytes(&self.signature))
            .is_ok()
    }

    /// The JSON form.
    pub fn to_json(&self) -> SignedHeadJson {
        SignedHeadJson {
            tree_size: self.tree_size,
            root_hash: hex(&self.root_hash),
            timestamp: self.timestamp.to_string(),
            signature: hex(&self.signature),
        }
    }

    /// From the JSON form.
    pub fn from_json(j: &SignedHeadJson) -> Result<SignedHead, StoreError> {
        let bad = |what: &str| StoreError::Damaged(format!("signed tree head: bad {what}"));
        Ok(SignedHead {
            tree_size: j.tree_size,
            root_hash: unhex(&j.root_hash).ok_or_else(|| bad("root_hash"))?,
            timestamp: Timestamp::parse(&j.timestamp)?,
            signature: unhex(&j.signature).ok_or_else(|| bad("signature"))?,
        })
    }
}

/// Appends a head to the checkpoint file (created if missing) and syncs it.
pub fn append(path: &Path, head: &SignedHead) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    let line =
        serde_json::to_string(&head.to_json()).map_err(|e| StoreError::Damaged(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| StoreError::io(path, e))
}

/// Every head in a checkpoint file, in file order; a missing file has none. A line that
/// does not parse is an error naming the line.
pub fn read_all(path: &Path) -> Result<Vec<SignedHead>, StoreError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| StoreError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let j: SignedHeadJson = serde_json::from_str(&line)
            .map_err(|e| StoreError::Damaged(format!("{} line {}: {e}", path.display(), i + 1)))?;
        out.push(
            SignedHead::from_json(&j).map_err(|e| {
                StoreError::Damaged(format!("{} line {}: {e}", path.display(), i + 1))
            })?,
        );
    }
    Ok(out)
}

/// The last head of a checkpoint file, if any.
pub fn last(path: &Path) -> Result<Option<SignedHead>, StoreError> {
    Ok(read_all(path)?.pop())
}
