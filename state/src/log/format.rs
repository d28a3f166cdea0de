//! The bytes of a segment: a header, then checksummed records.
//!
//! ```text
//! segment header (24 bytes)
//! 0   8  magic b"BRISKSEG"
//! 8   4  format version (little endian), currently 1
//! 12  8  segment id (unique within the job's state directory)
//! 20  4  CRC-32C of bytes 0..20
//!
//! record (20-byte header + payload)
//! 0   4  CRC-32C of bytes 4..20+len
//! 4   4  payload length
//! 8   4  tag: state id in the low 31 bits, bit 31 set for a tombstone
//! 12  8  key hash
//! 20  …  payload (postcard of (key, value), or of the key for a tombstone)
//! ```
//!
//! Every record carries its own checksum, so a reader can tell where valid
//! data ends: [`scan`] stops at the first record that is incomplete or does
//! not verify (a torn tail after a crash) and reports that offset, the length
//! the segment is cut back to.

/// First bytes of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"BRISKSEG";
/// Format version this build writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 24;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 20;
/// Largest payload of one record (records are addressed by 32-bit offsets).
pub const RECORD_PAYLOAD_MAX: usize = 1 << 30;

const TOMBSTONE_BIT: u32 = 1 << 31;

/// Inputs shorter than this take [`checksum`]'s word-at-a-time path.
const SHORT_INPUT: usize = 256;

/// CRC-32C of `bytes`: the `crc32c` crate's, computed faster for a short
/// input, which is what a state record mostly is (a window row's record is
/// about 45 bytes).
///
/// The crate feeds SSE 4.2's CRC instruction a byte at a time up to the
/// first 8-byte aligned address and after the last one. A record starts at
/// any offset, so that is up to 14 of its 40-odd bytes, each a 3-cycle
/// step; the crate's three-way interleaving, which pays off on long
/// inputs, does not start below a few hundred bytes. Here a short input is
/// fed 8 bytes at a time from wherever it starts (x86 loads unaligned words
/// at no cost), then its last 4, 2 and 1: at most 3 narrow steps. The
/// value is the same CRC-32C, so the format does not change (a test checks
/// every length and alignment against the crate). 2.3x faster for 41
/// bytes at every alignment (`cargo bench -p brisk-bench --bench
/// record_checksum`; bench/RESULTS.md).
#[inline]
pub fn checksum(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() < SHORT_INPUT && std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2, checked just now.
        return unsafe { checksum_short_sse42(bytes) };
    }
    crc32c::crc32c(bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn checksum_short_sse42(bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64};
    let mut words = bytes.chunks_exact(8);
    let mut crc = u64::from(!0u32);
    for w in &mut words {
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut crc = crc as u32;
    let mut rest = words.remainder();
    if let Some((w, r)) = rest.split_first_chunk::<4>() {
        crc = _mm_crc32_u32(crc, u32::from_le_bytes(*w));
        rest = r;
    }
    if let Some((w, r)) = rest.split_first_chunk::<2>() {
        crc = _mm_crc32_u16(crc, u16::from_le_bytes(*w));
        rest = r;
    }
    if let Some(&b) = rest.first() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

/// Why a segment's header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadSegment {
    /// Shorter than a header.
    Truncated(usize),
    /// Not a brisk segment.
    Magic,
    /// Written by another format version.
    Version(u32),
    /// The header's checksum does not match.
    Checksum,
    /// The header names another segment than the one asked for (a swapped file).
    WrongId {
        /// The id that was expected.
        expected: u64,
        /// The id the header holds.
        found: u64,
    },
}

impl std::fmt::Display for BadSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated(n) => write!(f, "truncated header ({n} bytes)"),
            Self::Magic => write!(f, "bad magic (not a brisk state segment)"),
            Self::Version(v) => write!(f, "format version {v}, this build reads {SEGMENT_VERSION}"),
            Self::Checksum => write!(f, "header checksum mismatch"),
            Self::WrongId { expected, found } => write!(f, "holds segment {found}, expected {expected}"),
        }
    }
}

impl std::error::Error for BadSegment {}

/// Appends the header of segment `id` to `out`.
pub fn write_segment_header(out: &mut Vec<u8>, id: u64) {
    let start = out.len();
    out.extend_from_slice(SEGMENT_MAGIC);
    out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks a segment's header and returns its id.
pub fn read_segment_header(bytes: &[u8]) -> Result<u64, BadSegment> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(BadSegment::Truncated(bytes.len()));
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Err(BadSegment::Magic);
    }
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..20]) != crc {
        return Err(BadSegment::Checksum);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_VERSION {
        return Err(BadSegment::Version(version));
    }
    Ok(u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")))
}

/// What a record says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The key's value (payload = postcard of `(key, value)`).
    Put,
    /// The key was removed (payload = postcard of the key).
    Delete,
}

/// One record, borrowed from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Which state of the operator it belongs to.
    pub state: u32,
    /// Put or delete.
    pub kind: RecordKind,
    /// The key's stable hash.
    pub hash: u64,
    /// The encoded entry.
    pub payload: &'a [u8],
}

/// Appends one record to `out`; returns the record's offset in `out`.
/// `encode` appends the payload to the vector it is given.
pub fn append_record(
    out: &mut Vec<u8>,
    state: u32,
    kind: RecordKind,
    hash: u64,
    encode: impl FnOnce(&mut Vec<u8>),
) -> usize {
    debug_assert!(state < TOMBSTONE_BIT, "state ids use 31 bits");
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    encode(out);
    let len = out.len() - start - RECORD_HEADER_BYTES;
    assert!(len <= RECORD_PAYLOAD_MAX, "a state entry of {len} bytes exceeds the 1 GiB record limit");
    let tag = state | if kind == RecordKind::Delete { TOMBSTONE_BIT } else { 0 };
    out[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&tag.to_le_bytes());
    out[start + 12..start + 20].copy_from_slice(&hash.to_le_bytes());
    let crc = checksum(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    start
}

/// The record at `offset`, if a whole record that verifies starts there.
pub fn read_record(bytes: &[u8], offset: usize) -> Option<Record<'_>> {
    let header = bytes.get(offset..offset.checked_add(RECORD_HEADER_BYTES)?)?;
    let crc = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    if len > RECORD_PAYLOAD_MAX {
        return None;
    }
    let end = offset + RECORD_HEADER_BYTES + len;
    let body = bytes.get(offset + 4..end)?;
    if checksum(body) != crc {
        return None;
    }
    let tag = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let hash = u64::from_le_bytes(header[12..20].try_into().ok()?);
    Some(Record {
        state: tag & !TOMBSTONE_BIT,
        kind: if tag & TOMBSTONE_BIT != 0 { RecordKind::Delete } else { RecordKind::Put },
        hash,
        payload: &bytes[offset + RECORD_HEADER_BYTES..end],
    })
}

/// The whole length of the record at `offset` (header and payload); call only on
/// an offset [`read_record`] accepted.
pub fn record_len(rec: &Record<'_>) -> usize {
    RECORD_HEADER_BYTES + rec.payload.len()
}

/// Every valid record of a segment (header included in `bytes`), in order,
/// with its offset; returns the length of the valid prefix: where a torn or
/// corrupt tail begins, or `bytes.len()` if there is none.
pub fn scan<'a>(bytes: &'a [u8], mut each: impl FnMut(usize, Record<'a>)) -> usize {
    let mut at = SEGMENT_HEADER_BYTES.min(bytes.len());
    while let Some(rec) = read_record(bytes, at) {
        let len = record_len(&rec);
        each(at, rec);
        at += len;
    }
    at
}

/// Every record of a segment prefix that [`scan`] already verified, in
/// order: offset, state, kind and key hash from its header, without
/// checking its checksum again. Stops at the first header that does not
/// fit (which a verified prefix does not have).
pub fn scan_verified_headers(bytes: &[u8], mut each: impl FnMut(usize, u32, RecordKind, u64)) {
    let mut at = SEGMENT_HEADER_BYTES.min(bytes.len());
    while let Some(header) = bytes.get(at..at + RECORD_HEADER_BYTES) {
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
        let tag = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        let hash = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        let kind = if tag & TOMBSTONE_BIT != 0 { RecordKind::Delete } else { RecordKind::Put };
        each(at, tag & !TOMBSTONE_BIT, kind, hash);
        at += RECORD_HEADER_BYTES + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u32, RecordKind, u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        write_segment_header(&mut out, 7);
        for &(s, k, h, p) in records {
            append_record(&mut out, s, k, h, |o| o.extend_from_slice(p));
        }
        out
    }

    /// The short path is the crate's CRC-32C for every length it takes (and
    /// past it) at every alignment.
    #[test]
    fn checksum_is_crc32c_at_every_length_and_alignment() {
        let seed = crate::log::tests::seed();
        let mut rng = fastrand::Rng::with_seed(seed);
        let data: Vec<u8> = (0..SHORT_INPUT + 64).map(|_| rng.u8(..)).collect();
        for start in 0..16 {
            for len in 0..=SHORT_INPUT + 32 {
                let bytes = &data[start..start + len];
                assert_eq!(checksum(bytes), crc32c::crc32c(bytes), "seed {seed}, start {start}, len {len}");
            }
        }
        assert_eq!(checksum(b"Hello world!"), 0x7B98_E751);
    }

    #[test]
    fn records_round_trip() {
        let seg = segment(&[(0, RecordKind::Put, 1, b"abc"), (3, RecordKind::Delete, u64::MAX, b"")]);
        assert_eq!(read_segment_header(&seg), Ok(7));
        let mut got = Vec::new();
        let valid = scan(&seg, |at, r| got.push((at, r.state, r.kind, r.hash, r.payload.to_vec())));
        assert_eq!(valid, seg.len());
        assert_eq!(
            got,
            vec![
                (24, 0, RecordKind::Put, 1, b"abc".to_vec()),
                (24 + 23, 3, RecordKind::Delete, u64::MAX, vec![]),
            ]
        );
    }

    #[test]
    fn every_truncation_and_every_bit_flip_of_the_tail_is_cut() {
        let seg = segment(&[(1, RecordKind::Put, 5, b"first"), (1, RecordKind::Put, 6, b"second record")]);
        let first_end = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 5;
        for cut in SEGMENT_HEADER_BYTES..seg.len() {
            let want = if cut >= first_end { first_end } else { SEGMENT_HEADER_BYTES };
            assert_eq!(scan(&seg[..cut], |_, _| {}), want, "cut at {cut}");
        }
        for byte in first_end..seg.len() {
            for bit in 0..8 {
                let mut bad = seg.clone();
                bad[byte] ^= 1 << bit;
                assert_eq!(scan(&bad, |_, _| {}), first_end, "flip {byte}.{bit}");
            }
        }
        // A zeroed tail (a sector that never reached the disk) is not a record.
        let mut zeroed = seg[..first_end].to_vec();
        zeroed.extend_from_slice(&[0; 64]);
        assert_eq!(scan(&zeroed, |_, _| {}), first_end);
    }

    #[test]
    fn bad_headers_are_named() {
        let seg = segment(&[]);
        assert_eq!(read_segment_header(&seg[..10]), Err(BadSegment::Truncated(10)));
        let mut bad = seg.clone();
        bad[0] = b'X';
        assert_eq!(read_segment_header(&bad), Err(BadSegment::Magic));
        let mut bad = seg.clone();
        bad[13] ^= 1;
        assert_eq!(read_segment_header(&bad), Err(BadSegment::Checksum));
    }
}
