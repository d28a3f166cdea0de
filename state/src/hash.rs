//! The stable key hash.
//!
//! A key is hashed exactly once per record: the hash picks the key group (and
//! so the core, see [`crate::key_group`]) and is shipped with the record across
//! the exchange, where the keyed operator reuses it for its state lookups.
//!
//! The hash must be identical across processes, runs and machines, because key
//! groups are what checkpoints and savepoints are partitioned by. It is
//! `rustc-hash`'s `FxHasher` (a fixed, seedless algorithm) fed through the key's
//! `Hash` impl, then MurmurHash3's 64-bit finalizer so every bit is mixed
//! (hash tables use the top bits as tags, key groups the low ones). A golden
//! test pins the values: a dependency bump that changed them would break
//! savepoint compatibility and fails that test.

use std::hash::{Hash, Hasher};

/// MurmurHash3's 64-bit finalizer (`fmix64`), a bijective bit mixer.
#[inline]
pub const fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// The stable 64-bit hash of a key (see the module docs).
#[inline]
pub fn key_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    key.hash(&mut hasher);
    fmix64(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: if this fails, key → key group placement changed and
    /// savepoints taken before the change would restore keys on the wrong core.
    #[test]
    fn key_hash_is_stable() {
        assert_eq!(key_hash(&0u64), 0);
        assert_eq!(key_hash(&1u64), 0x5b01_c098_6128_f248);
        assert_eq!(key_hash("user_A"), 0x063b_bc87_8af8_568a);
        assert_eq!(key_hash(&String::from("user_A")), key_hash("user_A"));
    }

    #[test]
    fn fmix64_known_value() {
        // fmix64(1) from the MurmurHash3 reference implementation.
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }
}
