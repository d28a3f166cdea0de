//! The bytes of a checkpoint: framed, checksummed state files, and the
//! key-group-tagged entries inside them.
//!
//! # A state file
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"BRISKCHK"
//! 8       4     format version (little endian), currently 1
//! 12      8     payload length in bytes
//! 20      4     CRC-32C of the payload
//! 24      4     CRC-32C of bytes 0..24 (the header itself)
//! 28      ...   payload
//! ```
//!
//! A file whose magic, version, length or either checksum does not match is
//! rejected before a single entry is decoded: a corrupt file never becomes
//! state.
//!
//! # Entries
//!
//! The payload is a sequence of entries `[kind u8][key group u32][len u32][bytes]`,
//! the bytes being one value encoded with `postcard`. Keyed state is tagged
//! with its key group so that a restore at another core count can keep
//! exactly the key groups a core now owns and skip the rest undecoded;
//! operator (non-keyed) state uses [`NO_KEY_GROUP`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first bytes of every state file.
pub const MAGIC: &[u8; 8] = b"BRISKCHK";
/// The state file format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the payload.
pub const HEADER_BYTES: usize = 28;
/// The key group tag of operator (non-keyed) state.
pub const NO_KEY_GROUP: u32 = u32::MAX;

/// Why a state file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptFile {
    /// Shorter than its header or than the payload it announces.
    #[error("truncated: {got} bytes, expected {want}")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes the header announces (or the header's size).
        want: usize,
    },
    /// Longer than the payload it announces.
    #[error("{extra} unexpected bytes after the payload")]
    Trailing {
        /// Bytes past the end.
        extra: usize,
    },
    /// Not a brisk state file.
    #[error("bad magic (not a brisk checkpoint file)")]
    Magic,
    /// Written by a format this build does not read.
    #[error("format version {0}, this build reads version {FORMAT_VERSION}")]
    Version(u32),
    /// The header's own checksum does not match.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The payload's checksum does not match.
    #[error("payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    PayloadChecksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// Checksums match but an entry cannot be decoded (a bug, or a file of
    /// another job).
    #[error("entry {index} cannot be decoded: {reason}")]
    Entry {
        /// The entry's position in the file.
        index: usize,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Frames `payload` as a state file (see the module docs).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&header(payload));
    out.extend_from_slice(payload);
    out
}

/// The header that precedes `payload` in its state file (written separately
/// from a large payload, so the payload is never copied).
pub fn header(payload: &[u8]) -> [u8; HEADER_BYTES] {
    let mut out = [0; HEADER_BYTES];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    out[20..24].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let header_crc = crc32c::crc32c(&out[..24]);
    out[24..].copy_from_slice(&header_crc.to_le_bytes());
    out
}

/// Checks a whole state file and returns its payload.
pub fn unframe(file: &[u8]) -> Result<&[u8], CorruptFile> {
    if file.len() < HEADER_BYTES {
        return Err(CorruptFile::Truncated { got: file.len(), want: HEADER_BYTES });
    }
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&file[..24]) != u32_at(24) {
        // A damaged magic is reported as such: it is the likelier story.
        return Err(if &file[..8] != MAGIC { CorruptFile::Magic } else { CorruptFile::HeaderChecksum });
    }
    if &file[..8] != MAGIC {
        return Err(CorruptFile::Magic);
    }
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(CorruptFile::Version(version));
    }
    let len = u64::from_le_bytes(file[12..20].try_into().expect("8 bytes"));
    let want = HEADER_BYTES as u64 + len;
    if (file.len() as u64) < want {
        return Err(CorruptFile::Truncated { got: file.len(), want: want as usize });
    }
    if file.len() as u64 > want {
        return Err(CorruptFile::Trailing { extra: (file.len() as u64 - want) as usize });
    }
    let payload = &file[HEADER_BYTES..];
    let (stored, computed) = (u32_at(20), crc32c::crc32c(payload));
    if stored != computed {
        return Err(CorruptFile::PayloadChecksum { stored, computed });
    }
    Ok(payload)
}

/// Appends key-group-tagged entries to a payload.
#[derive(Debug, Default)]
pub struct StateWriter {
    buf: Vec<u8>,
    entries: usize,
}

impl StateWriter {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty payload with room for `bytes` (e.g. the size of the
    /// operator's previous snapshot), so a large snapshot is not copied as
    /// its buffer grows.
    pub fn with_capacity(bytes: usize) -> Self {
        Self { buf: Vec::with_capacity(bytes), entries: 0 }
    }

    /// Appends one entry.
    pub fn entry<V: Serialize + ?Sized>(&mut self, kind: u8, key_group: u32, value: &V) {
        self.buf.push(kind);
        self.buf.extend_from_slice(&key_group.to_le_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        // Encoding into a Vec fails only if a Serialize impl itself fails,
        // which the derived and std impls never do. (Measured: this takes
        // about 50 ns per small entry; postcard's slice encoder is slower.)
        let mut buf = std::mem::take(&mut self.buf);
        buf = postcard::to_extend(value, buf).expect("state values encode");
        let len = (buf.len() - len_at - 4) as u32;
        buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        self.buf = buf;
        self.entries += 1;
    }

    /// Appends one entry whose bytes are already encoded, prefixed with a
    /// 4-byte little-endian `tag` (e.g. which of an operator's states it
    /// belongs to); [`RawEntry::split_tag`] takes it apart.
    pub fn tagged_raw(&mut self, kind: u8, key_group: u32, tag: u32, bytes: &[u8]) {
        self.buf.push(kind);
        self.buf.extend_from_slice(&key_group.to_le_bytes());
        self.buf.extend_from_slice(&(bytes.len() as u32 + 4).to_le_bytes());
        self.buf.extend_from_slice(&tag.to_le_bytes());
        self.buf.extend_from_slice(bytes);
        self.entries += 1;
    }

    /// Entries written so far.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The payload.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// One undecoded entry of a payload.
#[derive(Debug, Clone, Copy)]
pub struct RawEntry<'a> {
    /// What the entry holds (the operator's own numbering).
    pub kind: u8,
    /// Its key group, or [`NO_KEY_GROUP`].
    pub key_group: u32,
    /// Its encoded value.
    pub bytes: &'a [u8],
    index: usize,
}

impl<'a> RawEntry<'a> {
    /// Decodes the value.
    pub fn decode<V: DeserializeOwned>(&self) -> Result<V, CorruptFile> {
        postcard::from_bytes(self.bytes)
            .map_err(|e| CorruptFile::Entry { index: self.index, reason: e.to_string() })
    }

    /// The tag and bytes of an entry written by [`StateWriter::tagged_raw`].
    pub fn split_tag(&self) -> Result<(u32, &'a [u8]), CorruptFile> {
        if self.bytes.len() < 4 {
            return Err(self.error("shorter than its tag"));
        }
        let (tag, rest) = self.bytes.split_at(4);
        Ok((u32::from_le_bytes(tag.try_into().expect("4 bytes")), rest))
    }

    /// A decoding error at this entry.
    pub fn error(&self, reason: impl Into<String>) -> CorruptFile {
        CorruptFile::Entry { index: self.index, reason: reason.into() }
    }
}

/// Iterates the entries of a (checked) payload.
pub fn entries(payload: &[u8]) -> impl Iterator<Item = Result<RawEntry<'_>, CorruptFile>> {
    let mut at = 0;
    let mut index = 0;
    std::iter::from_fn(move || {
        if at >= payload.len() {
            return None;
        }
        let bad = |reason: &str| CorruptFile::Entry { index, reason: reason.to_string() };
        if payload.len() - at < 9 {
            at = payload.len();
            return Some(Err(bad("cut short in its header")));
        }
        let kind = payload[at];
        let key_group = u32::from_le_bytes(payload[at + 1..at + 5].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(payload[at + 5..at + 9].try_into().expect("4 bytes")) as usize;
        let start = at + 9;
        if payload.len() - start < len {
            at = payload.len();
            return Some(Err(bad("longer than the payload")));
        }
        at = start + len;
        let e = RawEntry { kind, key_group, bytes: &payload[start..start + len], index };
        index += 1;
        Some(Ok(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = StateWriter::new();
        w.entry(1, 7, &("key".to_string(), 42u64));
        w.entry(2, NO_KEY_GROUP, &vec![1i64, -2, 3]);
        w.tagged_raw(3, 9, 5, &postcard::to_allocvec(&7u8).unwrap());
        frame(&w.finish())
    }

    #[test]
    fn entries_round_trip() {
        let file = sample();
        let payload = unframe(&file).unwrap();
        let got: Vec<RawEntry<'_>> = entries(payload).collect::<Result<_, _>>().unwrap();
        assert_eq!((got[0].kind, got[0].key_group), (1, 7));
        assert_eq!(got[0].decode::<(String, u64)>().unwrap(), ("key".to_string(), 42));
        assert_eq!(got[1].decode::<Vec<i64>>().unwrap(), vec![1, -2, 3]);
        let (tag, rest) = got[2].split_tag().unwrap();
        assert_eq!((tag, postcard::from_bytes::<u8>(rest).unwrap()), (5, 7));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn every_single_bit_flip_and_every_truncation_is_detected() {
        let file = sample();
        for byte in 0..file.len() {
            for bit in 0..8 {
                let mut f = file.clone();
                f[byte] ^= 1 << bit;
                assert!(unframe(&f).is_err(), "flip of bit {bit} of byte {byte} went unnoticed");
            }
        }
        for len in 0..file.len() {
            assert!(unframe(&file[..len]).is_err(), "truncation to {len} bytes went unnoticed");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(unframe(&longer), Err(CorruptFile::Trailing { extra: 1 }));
        assert!(matches!(unframe(&vec![0; file.len()]), Err(CorruptFile::Magic)));
    }
}
