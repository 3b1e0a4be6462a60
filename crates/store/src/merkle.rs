//! The Merkle tree of the query log, as Certificate Transparency defines it (RFC 9162 §2.1):
//! SHA-256, leaves hashed as `H(0x00 || entry)`, interior nodes as `H(0x01 || left ||
//! right)`, a tree of `n` leaves split at the largest power of two below `n`.
//!
//! Every *perfect* subtree (2^k leaves starting at a multiple of 2^k) is written once, when
//! it completes, and never changes; any other subtree — only ever on the right edge of a
//! tree — is recomputed from perfect ones. So the root, an inclusion proof and a
//! consistency proof each read O(log n) stored hashes (O(log² n) at worst), whatever the
//! size of the log. Appending keeps the *frontier* (the perfect subtrees the next leaf
//! does not complete) in memory.
//!
//! The verification functions follow RFC 9162 §2.1.3.2 and §2.1.4.2 literally; the tests
//! check generation and verification against a naive recursive tree.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A leaf's hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// An interior node's hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where perfect subtrees are read from: level 0 holds the leaf hashes, level `k` the
/// subtree of leaves `index·2^k .. (index+1)·2^k`.
pub trait Nodes {
    /// The error reading a node.
    type Error;
    /// A perfect subtree's hash.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The hash of the subtree of leaves `start..end` (RFC 9162's MTH of `D[start:end]`).
pub fn subtree<N: Nodes>(nodes: &mut N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let len = end.saturating_sub(start);
    if len == 0 {
        return Ok(empty_root());
    }
    if len.is_power_of_two() && start.is_multiple_of(len) {
        return nodes.node(len.trailing_zeros(), start / len);
    }
    let k = split(len);
    let left = subtree(nodes, start, start + k)?;
    let right = subtree(nodes, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162
/// §2.1.3.1), leaf side first. Empty when `index` is not below `size`.
pub fn inclusion_proof<N: Nodes>(
    nodes: &mut N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, N::Error> {
    let mut out = Vec::new();
    if index < size {
        path(nodes, index, 0, size, &mut out)?;
    }
    Ok(out)
}

fn path<N: Nodes>(
    nodes: &mut N,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let len = end - start;
    if len <= 1 {
        return Ok(());
    }
    let k = split(len);
    if m < start + k {
        path(nodes, m, start, start + k, out)?;
        out.push(subtree(nodes, start + k, end)?);
    } else {
        path(nodes, m, start + k, end, out)?;
        out.push(subtree(nodes, start, start + k)?);
    }
    Ok(())
}

/// The proof that the tree of the first `old` leaves is a prefix of the tree of the first
/// `new` (RFC 9162 §2.1.4.1). Empty when `old` is 0 or not below `new`.
pub fn consistency_proof<N: Nodes>(
    nodes: &mut N,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, N::Error> {
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(nodes, old, 0, new, true, &mut out)?;
    }
    Ok(out)
}

fn subproof<N: Nodes>(
    nodes: &mut N,
    old: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let len = end - start;
    let m = old - start;
    if m == len {
        if !complete {
            out.push(subtree(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(len);
    if m <= k {
        subproof(nodes, old, start, start + k, complete, out)?;
        out.push(subtree(nodes, start + k, end)?);
    } else {
        subproof(nodes, old, start + k, end, false, out)?;
        out.push(subtree(nodes, start, start + k)?);
    }
    Ok(())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Checks a consistency proof between two tree heads (RFC 9162 §2.1.4.2). Equal sizes are
/// consistent when the roots are equal and the proof empty; an empty old tree is
/// consistent with anything.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old == 0 {
        return proof.is_empty();
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old > new {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

/// The perfect subtrees on the right edge of a growing tree: enough to append a leaf and
/// to compute the root, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing: one per set bit of `size`.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, read from its stored perfect subtrees.
    pub fn load<N: Nodes>(nodes: &mut N, size: u64) -> Result<Frontier, N::Error> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            let len = 1u64 << level;
            if size & len != 0 {
                out.push((level, nodes.node(level, start >> level)?));
                start += len;
            }
        }
        Ok(Frontier { size, nodes: out })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; `completed(level, index, hash)` is told of every perfect subtree of
    /// level ≥ 1 that this leaf completes (to be stored).
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut level = 0u32;
        let mut hash = leaf;
        while let Some(&(l, left)) = self.nodes.last() {
            if l != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            completed(level, self.size >> level, &hash);
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// The tree's root (RFC 9162's MTH of all leaves).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use proptest::prelude::*;

    use super::*;

    /// The tree computed by the definition, straight from the leaves.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// Perfect subtrees as a frontier would have stored them.
    #[derive(Default)]
    struct Stored(HashMap<(u32, u64), Hash>);

    impl Nodes for Stored {
        type Error = Infallible;
        fn node(&mut self, level: u32, index: u64) -> Result<Hash, Infallible> {
            Ok(self.0[&(level, index)])
        }
    }

    fn build(n: u64) -> (Vec<Hash>, Stored, Frontier) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut stored = Stored::default();
        let mut f = Frontier::default();
        for (i, l) in leaves.iter().enumerate() {
            stored.0.insert((0, i as u64), *l);
            f.push(*l, |level, index, h| {
                stored.0.insert((level, index), *h);
            });
        }
        (leaves, stored, f)
    }

    #[test]
    fn known_answer_from_rfc_6962_test_vectors() {
        // The CT test vector: the root of the empty tree, and of the 8 standard leaves.
        let hex = |h: Hash| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let mut f = Frontier::default();
        for d in data {
            f.push(leaf_hash(d), |_, _, _| {});
        }
        assert_eq!(
            hex(f.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    proptest! {
        #[test]
        fn frontier_roots_and_proofs_agree_with_the_definition(n in 1u64..300, a in 0u64..300, b in 0u64..300) {
            let (leaves, mut stored, f) = build(n);
            prop_assert_eq!(f.root(), mth(&leaves));
            prop_assert_eq!(Frontier::load(&mut stored, n).unwrap(), f.clone());
            let index = a % n;
            let size = index + 1 + b % (n - index);
            let root = mth(&leaves[..size as usize]);
            let proof = inclusion_proof(&mut stored, index, size).unwrap();
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &root));
            // A wrong leaf, index or root fails.
            prop_assert!(!verify_inclusion(index, size, &leaf_hash(b"x"), &proof, &root));
            if size > 1 {
                prop_assert!(!verify_inclusion((index + 1) % size, size, &leaves[index as usize], &proof, &root));
            }
            let old = 1 + a % size;
            let old_root = mth(&leaves[..old as usize]);
            let c = consistency_proof(&mut stored, old, size).unwrap();
            prop_assert!(verify_consistency(old, size, &old_root, &root, &c));
            if old < size {
                prop_assert!(!verify_consistency(old, size, &leaf_hash(b"x"), &root, &c));
                prop_assert!(!verify_consistency(old, size, &old_root, &leaf_hash(b"y"), &c));
            }
        }
    }
}
