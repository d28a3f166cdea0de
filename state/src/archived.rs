//! [`Rkyv`]: a state value kept as its `rkyv` archive, read in place.
//!
//! Keyed state normally holds native Rust values and writes them to the
//! log and to checkpoints with postcard, a compact varint encoding. A value
//! of type `Rkyv<T>` is held as the archive of a `T` instead: reads go
//! straight to the archived fields ([`Rkyv::get`]) with nothing decoded,
//! and a value coming back from the log or a checkpoint is copied and
//! validated (`rkyv`'s `bytecheck`), never parsed. Writes archive the whole
//! value again.
//!
//! Which to choose, per state:
//!
//! | value | choose | why |
//! | --- | --- | --- |
//! | small, written on most events (counters, sums, window accumulators) | plain `T` | postcard writes varints: records about a third the size, so the log, compaction and checkpoints move fewer bytes |
//! | large and read far more often than written (feature vectors, profiles, lookup tables) | `Rkyv<T>` | a read back from the log costs a copy and a validation instead of a decode of every element, and a read of one field touches only that field |
//!
//! `bench/benches/row_decode.rs` measures both (bench/RESULTS.md).
//!
//! ```
//! use brisk_state::{CurrentKey, KeyedStateBackend, Rkyv, key_hash};
//! use brisk_state::rkyv;
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
//! #[rkyv(crate = brisk_state::rkyv)]
//! struct Profile {
//!     name: String,
//!     features: Vec<f32>,
//! }
//!
//! let mut backend: KeyedStateBackend<u64> = KeyedStateBackend::new();
//! let profiles = backend.value_state::<Rkyv<Profile>>("profile").unwrap();
//! let key = 7;
//! let at = CurrentKey::new(&key, key_hash(&key));
//! let profile = Profile { name: "user_A".into(), features: vec![0.5; 64] };
//! backend.value(&profiles, at).set(Rkyv::new(&profile));
//!
//! let mut value = backend.value(&profiles, at);
//! let stored = value.get().unwrap().get();
//! assert_eq!(stored.name.as_str(), "user_A");
//! assert_eq!(stored.features[3].to_native(), 0.5);
//! ```

use std::fmt;
use std::marker::PhantomData;

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The alignment an archive is kept at: `rkyv`'s own ([`AlignedVec`]'s
/// default), enough for every archived primitive.
const ALIGN: usize = 16;

/// A type whose archives [`Rkyv`] can hold: it derives `rkyv`'s `Archive`,
/// `Serialize` and `Deserialize` (with `bytecheck`, `rkyv`'s default), as
/// do the standard types `rkyv` supports. Derive them through this crate's
/// `rkyv` so the versions match: `#[rkyv(crate = brisk_state::rkyv)]`, or
/// `#[rkyv(crate = brisk::state::rkyv)]` in a job using the `brisk` crate.
pub trait Archivable:
    rkyv::Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + rkyv::Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> rkyv::Serialize<HighSerializer<AlignedVec<ALIGN>, ArenaHandle<'a>, rancor::Error>>
    + Sized
    + 'static
{
}

impl<T> Archivable for T where
    T: rkyv::Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
        > + for<'a> rkyv::Serialize<HighSerializer<AlignedVec<ALIGN>, ArenaHandle<'a>, rancor::Error>>
        + 'static
{
}

/// An archive that does not validate as the type it is read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveError(String);

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArchiveError {}

/// A state value held as the `rkyv` archive of a `T`: read in place with
/// [`get`](Self::get), validated whenever it comes back from bytes (the
/// log, a checkpoint). See the [module docs](self).
pub struct Rkyv<T> {
    /// The archive; always valid for `T` (made by `rkyv` from a `T`, or
    /// validated).
    bytes: AlignedVec<ALIGN>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Archivable> Rkyv<T> {
    /// Archives `value`.
    ///
    /// # Panics
    /// If `T`'s `rkyv::Serialize` fails, which derived impls and `rkyv`'s
    /// own impls for standard types never do ([`try_new`](Self::try_new)
    /// returns the error instead).
    pub fn new(value: &T) -> Self {
        Self::try_new(value).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Archives `value`, or says why `T`'s `rkyv::Serialize` failed.
    pub fn try_new(value: &T) -> Result<Self, ArchiveError> {
        let bytes = rkyv::to_bytes::<rancor::Error>(value)
            .map_err(|e| ArchiveError(format!("a {} does not archive: {e}", std::any::type_name::<T>())))?;
        Ok(Self { bytes, _value: PhantomData })
    }

    /// Replaces the value with `value`, reusing the buffer.
    ///
    /// # Panics
    /// As [`new`](Self::new).
    pub fn set(&mut self, value: &T) {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        self.bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, bytes)
            .unwrap_or_else(|e| panic!("a {} does not archive: {e}", std::any::type_name::<T>()));
    }

    /// Checks `bytes` as the archive of a `T` (`rkyv`'s validation: every
    /// offset, length and enum tag in bounds) and keeps a copy of them.
    pub fn from_archive(bytes: &[u8]) -> Result<Self, ArchiveError> {
        let mut copy = AlignedVec::<ALIGN>::with_capacity(bytes.len());
        copy.extend_from_slice(bytes);
        // rkyv's validation errors carry no message in release builds: say
        // what was being read.
        rkyv::access::<T::Archived, rancor::Error>(&copy).map_err(|e| {
            ArchiveError(format!(
                "the rkyv archive of a {} ({} bytes) does not validate: {e}",
                std::any::type_name::<T>(),
                bytes.len()
            ))
        })?;
        Ok(Self { bytes: copy, _value: PhantomData })
    }

    /// The archived value, read in place: nothing is decoded.
    #[inline]
    pub fn get(&self) -> &T::Archived {
        // SAFETY: `bytes` is an archive of a `T` that rkyv made (`new`,
        // `set`) or that passed `rkyv::access` (`from_archive`), kept at
        // rkyv's alignment and never changed since.
        unsafe { rkyv::access_unchecked::<T::Archived>(&self.bytes) }
    }

    /// An owned `T`, decoded from the archive.
    ///
    /// # Panics
    /// If `T`'s `rkyv::Deserialize` fails on a valid archive, which derived
    /// impls and `rkyv`'s impls for standard types never do.
    pub fn to_value(&self) -> T {
        rkyv::deserialize::<T, rancor::Error>(self.get())
            .unwrap_or_else(|e| panic!("a {} does not deserialize: {e}", std::any::type_name::<T>()))
    }
}

impl<T> Rkyv<T> {
    /// The archive's bytes, as the log and checkpoints store them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T> Clone for Rkyv<T> {
    fn clone(&self) -> Self {
        let mut bytes = AlignedVec::<ALIGN>::with_capacity(self.bytes.len());
        bytes.extend_from_slice(&self.bytes);
        Self { bytes, _value: PhantomData }
    }
}

/// Archives compare by their bytes: equal values archive alike.
impl<T> PartialEq for Rkyv<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes[..] == other.bytes[..]
    }
}

impl<T> Eq for Rkyv<T> {}

impl<T> fmt::Debug for Rkyv<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rkyv<{}>({} bytes)", std::any::type_name::<T>(), self.bytes.len())
    }
}

/// Written as one byte string: the archive.
impl<T> Serialize for Rkyv<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

/// Read from a byte string, copied and validated.
impl<'de, T: Archivable> Deserialize<'de> for Rkyv<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(ArchiveVisitor(PhantomData))
    }
}

struct ArchiveVisitor<T>(PhantomData<fn() -> T>);

impl<'de, T: Archivable> Visitor<'de> for ArchiveVisitor<T> {
    type Value = Rkyv<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the rkyv archive of a {}", std::any::type_name::<T>())
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Rkyv::from_archive(v).map_err(E::custom)
    }

    /// Formats without byte strings (JSON) write them as sequences.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Rkyv::from_archive(&bytes).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    struct Profile {
        name: String,
        features: Vec<f32>,
        seen: Option<u64>,
    }

    fn profile(n: usize) -> Profile {
        Profile {
            name: format!("user_{n}"),
            features: (0..n).map(|i| i as f32 * 0.5).collect(),
            seen: Some(9),
        }
    }

    #[test]
    fn a_value_reads_in_place_and_round_trips_through_postcard() {
        let p = profile(40);
        let v = Rkyv::new(&p);
        assert_eq!(v.get().name.as_str(), "user_40");
        assert_eq!(v.get().features.len(), 40);
        assert_eq!(v.get().features[39].to_native(), 19.5);
        assert_eq!(v.to_value(), p);

        // In a record as the log writes one: postcard of (key, value).
        let bytes = postcard::to_stdvec(&(7u32, &v)).unwrap();
        let (k, back): (u32, Rkyv<Profile>) = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((k, back.to_value()), (7, p.clone()));
        assert_eq!(back, v);

        // Read from every misalignment of the input: always copied to
        // rkyv's alignment first.
        for shift in 0..ALIGN {
            let mut shifted = vec![0xAA; shift];
            shifted.extend_from_slice(&bytes);
            let (_, back): (u32, Rkyv<Profile>) = postcard::from_bytes(&shifted[shift..]).unwrap();
            assert_eq!(back.to_value(), p, "input shifted by {shift}");
        }
    }

    #[test]
    fn set_replaces_the_value() {
        let mut v = Rkyv::new(&profile(3));
        v.set(&profile(100));
        assert_eq!(v.to_value(), profile(100));
        v.set(&profile(0));
        assert_eq!(v.get().features.len(), 0);
        assert_eq!(v, Rkyv::new(&profile(0)));
    }

    #[test]
    fn a_damaged_archive_is_refused_with_the_type_named() {
        let v = Rkyv::new(&profile(8));
        let good = v.as_bytes().to_vec();
        // The root sits at the archive's end: a String's and a Vec's
        // relative offsets and lengths. Point each far outside the buffer.
        let mut refused = Vec::new();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] = 0x7F;
            // A float, a byte of the name, or padding leaves a valid
            // archive; an offset or a length out of bounds does not.
            if let Err(e) = Rkyv::<Profile>::from_archive(&bad) {
                refused.push(at);
                assert!(e.to_string().contains("Profile"), "{e}");
                assert!(e.to_string().contains("does not validate"), "{e}");
            }
        }
        assert!(!refused.is_empty(), "some damage must be structural");
        let short = &good[..good.len() - 1];
        assert!(Rkyv::<Profile>::from_archive(short).is_err(), "a truncated archive");
        assert!(Rkyv::<Profile>::from_archive(&[]).is_err(), "an empty archive");

        // Through postcard, the refusal is a decoding error, not a panic.
        let bytes = postcard::to_stdvec(&Rkyv::<Profile>::from_archive(&good).unwrap()).unwrap();
        let start = bytes.len() - good.len();
        let mut bad = bytes.clone();
        bad[start + refused[0]] = 0x7F;
        let e = postcard::from_bytes::<Rkyv<Profile>>(&bad).unwrap_err();
        assert!(matches!(e, postcard::Error::SerdeDeCustom), "{e}");
    }

    #[test]
    fn json_writes_the_archive_as_a_sequence_and_reads_it_back() {
        let v = Rkyv::new(&profile(5));
        let text = serde_json::to_string(&v).unwrap();
        let back: Rkyv<Profile> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_value(), profile(5));
    }
}
