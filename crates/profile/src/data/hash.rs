//! The fast hash of ids read from our own ledger, and string interning.

use super::*;

/// FxHash (Firefox's and rustc's) with a finaliser: a fast multiplicative hash for short,
/// trusted keys (ids read from our own ledger; nothing here is exposed to crafted input).
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl std::hash::Hasher for Fx {
    /// The state goes through murmur3's finaliser: a multiplicative hash carries low input
    /// bits only upwards, and ids that differ only in their last characters (`M0000681`,
    /// `M0000682`: the high bytes of a little-endian word) would otherwise share the low
    /// bits a hash table indexes by, and pile up in a few buckets.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// FxHash of a string.
pub(crate) fn fx(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = Fx::default();
    h.write(text.as_bytes());
    h.finish()
}

pub(crate) type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;

/// Interns strings to dense integers.
#[derive(Default)]
pub(super) struct Interner(FxMap<String, u32>);

impl Interner {
    pub(super) fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.0.get(s) {
            return i;
        }
        let i = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        self.0.insert(s.to_string(), i);
        i
    }
}
