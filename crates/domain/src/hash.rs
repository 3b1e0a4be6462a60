//! A hasher for keys that already are hashes (BLAKE3 digests of ids, mixed row patterns):
//! hashing them again would only cost time, so it keeps their low 64 bits.

use std::hash::Hasher;

/// Keeps the key: `u64` keys as they are, `u128` keys' low half (the low half of a uniform
/// digest is uniform). Other keys are folded eight bytes at a time, for completeness only:
/// it is meant for maps keyed by digests.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        // Truncation intended.
        self.0 = v as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_pass_through() {
        let mut h = PassThrough::default();
        h.write_u64(0xdead_beef);
        assert_eq!(h.finish(), 0xdead_beef);
        let mut h = PassThrough::default();
        h.write_u128((7u128 << 64) | 42);
        assert_eq!(h.finish(), 42);
    }
}
