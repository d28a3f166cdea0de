//! Key groups: Flink's unit of state partitioning.
//!
//! A key's hash maps to one of `max_parallelism` key groups; each core owns a
//! contiguous range of them and all state for them. Because the mapping from
//! key to key group does not depend on the number of cores, a snapshot taken
//! at `p` cores can be restored at `q` cores by redistributing whole key
//! groups. The formulas are Flink's (`KeyGroupRangeAssignment`).

use std::fmt;
use std::ops::Range;

/// The number of key groups of a job: fixed for the job's lifetime, because
/// snapshots are partitioned by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaxParallelism(u32);

impl MaxParallelism {
    /// Smallest allowed value (Flink's lower bound is 1; 128 is its default floor).
    pub const MIN: u32 = 1;
    /// Largest allowed value (Flink's upper bound, 2^15).
    pub const MAX: u32 = 32_768;

    /// A checked max parallelism; `None` outside `1..=32768`.
    pub fn new(value: u32) -> Option<Self> {
        (Self::MIN..=Self::MAX).contains(&value).then_some(Self(value))
    }

    /// Flink's default for a given parallelism:
    /// `min(max(next_pow2(p + p/2), 128), 32768)`.
    pub fn default_for(parallelism: usize) -> Self {
        let p = parallelism.max(1);
        let wanted = (p + p / 2).next_power_of_two().max(128).min(Self::MAX as usize);
        Self(wanted as u32)
    }

    /// The raw count of key groups.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The key group of a key hash (see [`crate::key_hash`]).
    #[inline]
    pub fn key_group(self, key_hash: u64) -> u32 {
        // Flink hashes a 32-bit hashCode; fold the 64-bit hash like Java's
        // Long.hashCode, then apply Flink's murmurHash(int).
        let folded = (key_hash ^ (key_hash >> 32)) as u32;
        let m = flink_murmur(folded);
        if self.0.is_power_of_two() { m & (self.0 - 1) } else { m % self.0 }
    }

    /// The core (operator index) owning `key_group` at `parallelism` cores.
    #[inline]
    pub fn owner(self, key_group: u32, parallelism: usize) -> usize {
        debug_assert!(key_group < self.0);
        let product = key_group as u64 * parallelism as u64;
        if self.0.is_power_of_two() {
            // The default (128, ...): a shift instead of a division.
            (product >> self.0.trailing_zeros()) as usize
        } else {
            (product / self.0 as u64) as usize
        }
    }

    /// The core owning a key hash at `parallelism` cores.
    #[inline]
    pub fn owner_of_hash(self, key_hash: u64, parallelism: usize) -> usize {
        self.owner(self.key_group(key_hash), parallelism)
    }

    /// The contiguous key groups owned by core `index` of `parallelism`.
    pub fn range_for(self, index: usize, parallelism: usize) -> KeyGroupRange {
        assert!(index < parallelism, "core {index} out of {parallelism}");
        let max = self.0 as u64;
        let p = parallelism as u64;
        let i = index as u64;
        let start = (i * max).div_ceil(p);
        let end = ((i + 1) * max - 1) / p + 1;
        KeyGroupRange { start: start as u32, end: end as u32 }
    }
}

impl fmt::Display for MaxParallelism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A half-open range of key groups `[start, end)` owned by one core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: u32,
    /// One past the last key group of the range.
    pub end: u32,
}

impl KeyGroupRange {
    /// Every key group (a log written by no particular owner, as in tests).
    pub const ALL: Self = Self { start: 0, end: u32::MAX };

    /// The key groups in both ranges (empty if they do not overlap).
    pub fn intersect(&self, other: &Self) -> Self {
        let start = self.start.max(other.start);
        Self { start, end: self.end.min(other.end).max(start) }
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Whether `key_group` is in the range.
    pub fn contains(&self, key_group: u32) -> bool {
        (self.start..self.end).contains(&key_group)
    }

    /// The range as a `Range<u32>`.
    pub fn as_range(&self) -> Range<u32> {
        self.start..self.end
    }
}

/// Flink's `MathUtils.murmurHash(int)`: one MurmurHash3 round and finalizer
/// over a 32-bit code, made non-negative.
#[inline]
fn flink_murmur(code: u32) -> u32 {
    let mut h = code.wrapping_mul(0xcc9e_2d51);
    h = h.rotate_left(15);
    h = h.wrapping_mul(0x1b87_3593);
    h = h.rotate_left(13);
    h = h.wrapping_mul(5).wrapping_add(0xe654_6b64);
    h ^= 4;
    // fmix32
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    let signed = h as i32;
    if signed >= 0 {
        signed as u32
    } else if signed != i32::MIN {
        signed.unsigned_abs()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_max_parallelism_matches_flink() {
        assert_eq!(MaxParallelism::default_for(1).get(), 128);
        assert_eq!(MaxParallelism::default_for(2).get(), 128);
        assert_eq!(MaxParallelism::default_for(100).get(), 256);
        assert_eq!(MaxParallelism::default_for(30_000).get(), 32_768);
    }

    /// `(key hash, max parallelism, Flink's key group)`, computed by the real
    /// Flink's `KeyGroupRangeAssignment.assignToKeyGroup(Long, maxp)` with
    /// `tools/flink-key-groups.sh`.
    const FLINK_KEY_GROUPS: &[(u64, u32, u32)] = &[
        (0x0u64, 128, 94),
        (0x0u64, 1000, 54),
        (0x0u64, 32768, 31198),
        (0x1u64, 128, 86),
        (0x1u64, 1000, 478),
        (0x1u64, 32768, 16342),
        (0xffffffffffffffffu64, 128, 94),
        (0xffffffffffffffffu64, 1000, 54),
        (0xffffffffffffffffu64, 32768, 31198),
        (0x2au64, 128, 29),
        (0x2au64, 1000, 565),
        (0x2au64, 32768, 28189),
        (0x75bcd15u64, 128, 81),
        (0x75bcd15u64, 1000, 449),
        (0x75bcd15u64, 32768, 22865),
        (0x44b3cf86e9b93a8cu64, 128, 110),
        (0x44b3cf86e9b93a8cu64, 1000, 798),
        (0x44b3cf86e9b93a8cu64, 32768, 26478),
        (0x8000000000000000u64, 128, 108),
        (0x8000000000000000u64, 1000, 732),
        (0x8000000000000000u64, 32768, 10348),
        (0x7fffffffffffffffu64, 128, 108),
        (0x7fffffffffffffffu64, 1000, 732),
        (0x7fffffffffffffffu64, 32768, 10348),
        (0xdeadbeefcafebabeu64, 128, 67),
        (0xdeadbeefcafebabeu64, 1000, 979),
        (0xdeadbeefcafebabeu64, 32768, 21187),
    ];

    #[test]
    fn key_groups_match_the_real_flink() {
        for &(hash, max, expected) in FLINK_KEY_GROUPS {
            let mp = MaxParallelism::new(max).unwrap();
            assert_eq!(mp.key_group(hash), expected, "hash {hash:#x} maxp {max}");
        }
        // MathUtils.murmurHash reference values from the same run.
        assert_eq!(flink_murmur(0), 593_689_054);
        assert_eq!(flink_murmur(1), 68_075_478);
        assert_eq!(flink_murmur(-1i32 as u32), 1_982_413_648);
        assert_eq!(flink_murmur(42), 1_134_849_565);
    }

    #[test]
    fn ranges_partition_all_key_groups_and_agree_with_owner() {
        for max in [1u32, 7, 128, 1000] {
            let mp = MaxParallelism::new(max).unwrap();
            for p in 1..=9usize.min(max as usize) {
                let mut next = 0;
                for i in 0..p {
                    let r = mp.range_for(i, p);
                    assert_eq!(r.start, next, "max={max} p={p} i={i}");
                    for kg in r.as_range() {
                        assert_eq!(mp.owner(kg, p), i, "max={max} p={p} kg={kg}");
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn new_rejects_out_of_range() {
        assert!(MaxParallelism::new(0).is_none());
        assert!(MaxParallelism::new(32_769).is_none());
        assert!(MaxParallelism::new(128).is_some());
    }
}
