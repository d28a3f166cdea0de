//! Zero-copy text for parsers: a [`FileSource`](crate::FileSource) reads into
//! a buffer that the records parsed from it may share, so a text field costs
//! a reference count instead of an allocation and a copy.
//!
//! - [`SharedLine`]: a line of the read buffer, as a [`LineParser`](crate::LineParser)'s
//!   [`parse_shared`](crate::LineParser::parse_shared) sees it.
//! - [`SharedStr`]: a string slice of a read buffer, kept by a record.
//!
//! The reader validates UTF-8 once per read (SIMD, `simdutf8`) for the
//! complete lines it brings in, so slicing a field of such a line checks
//! nothing more; a field of a line that failed the check is validated alone,
//! so the error names that field.
//!
//! **Retention.** A [`SharedStr`] keeps its whole buffer alive (about
//! [`READ_CHUNK_BYTES`](crate::file::READ_CHUNK_BYTES) plus a partial line).
//! Records that flow through are dropped within a few batches, and the reader
//! then reuses the buffer; text kept for long, in state or a window, should be
//! copied out first ([`SharedStr::to_boxed`], or any owned string) so a few
//! kept fields do not pin every buffer they came from.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A string slice of a shared read buffer. Cloning it bumps a reference
/// count. It derefs to `str`, and compares, orders and hashes as its text.
#[derive(Clone)]
pub struct SharedStr {
    /// Invariant: `buf[start..start + len]` is in bounds and valid UTF-8, and
    /// `buf` is never mutated while shared (the reader mutates a buffer only
    /// through `Arc::get_mut`, that is, when no `SharedStr` refers to it).
    buf: Arc<Vec<u8>>,
    start: u32,
    len: u32,
}

impl SharedStr {
    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        let bytes = &self.buf[self.start as usize..(self.start + self.len) as usize];
        // SAFETY: by the field invariant, established by `SharedLine::text`,
        // these bytes are valid UTF-8 and the buffer is not mutated while
        // this slice refers to it.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The text, copied out of the shared buffer (for text kept for long).
    pub fn to_boxed(&self) -> Box<str> {
        self.as_str().into()
    }
}

impl Deref for SharedStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for SharedStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a shared read buffer (without its line ending).
pub struct SharedLine<'a> {
    buf: &'a Arc<Vec<u8>>,
    start: usize,
    end: usize,
    /// Whether the reader has validated the whole line as UTF-8.
    utf8: bool,
}

impl<'a> SharedLine<'a> {
    /// The line `buf[start..end]`; `utf8` says the reader validated it.
    pub(crate) fn new(buf: &'a Arc<Vec<u8>>, start: usize, end: usize, utf8: bool) -> Self {
        debug_assert!(start <= end && end <= buf.len());
        Self { buf, start, end, utf8 }
    }

    /// A line of its own buffer (for tests and for parsers called outside a
    /// file source): `buf` holds the line.
    pub fn of(buf: &'a Arc<Vec<u8>>) -> Self {
        Self { buf, start: 0, end: buf.len(), utf8: false }
    }

    /// The line's bytes.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        &self.buf[self.start..self.end]
    }

    /// `field`, a slice of [`Self::bytes`], as shared text: `None` if it is
    /// not valid UTF-8, or not a part of this line.
    #[inline]
    pub fn text(&self, field: &[u8]) -> Option<SharedStr> {
        let line = self.bytes();
        let from = (field.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
        if from + field.len() > line.len() {
            return None;
        }
        let valid = if self.utf8 {
            // A slice of a valid line is valid if it starts and ends on
            // character boundaries (not on a continuation byte).
            let boundary = |i: usize| i == line.len() || (line[i] as i8) >= -0x40;
            boundary(from) && boundary(from + field.len())
        } else {
            is_utf8(field)
        };
        if !valid {
            return None;
        }
        let start = self.start + from;
        // The buffer is at most a read plus the longest line, far below 4 GiB.
        let start = u32::try_from(start).ok()?;
        let len = u32::try_from(field.len()).ok()?;
        Some(SharedStr { buf: Arc::clone(self.buf), start, len })
    }
}

/// Whether `bytes` is valid UTF-8 (SIMD where the CPU has it).
#[inline]
pub(crate) fn is_utf8(bytes: &[u8]) -> bool {
    simdutf8::basic::from_utf8(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_slices_the_line_and_checks_what_it_was_not_told() {
        let buf = Arc::new(b"xx,h\xc3\xa9llo,\xff\xfe,end".to_vec());
        let line = SharedLine::new(&buf, 0, buf.len(), false);
        let fields: Vec<&[u8]> = line.bytes().split(|&b| b == b',').collect();
        assert_eq!(line.text(fields[1]).as_deref(), Some("héllo"));
        assert_eq!(line.text(fields[3]).map(|s| s.to_boxed()).as_deref(), Some("end"));
        // Invalid UTF-8 in an unvalidated line is refused.
        assert!(line.text(fields[2]).is_none());
        // A slice of another buffer is refused.
        let other = b"end".to_vec();
        assert!(line.text(&other).is_none());
        // Shared text holds its buffer (the line only borrows it).
        let kept = line.text(fields[1]).unwrap();
        assert_eq!(Arc::strong_count(&buf), 2);
        assert_eq!(kept, line_text_of(b"h\xc3\xa9llo"));
        drop(kept);
        assert_eq!(Arc::strong_count(&buf), 1);
    }

    fn line_text_of(bytes: &[u8]) -> SharedStr {
        let buf = Arc::new(bytes.to_vec());
        SharedLine::of(&buf).text(&buf[..]).unwrap()
    }

    #[test]
    fn a_subline_cannot_reach_past_its_end() {
        let buf = Arc::new(b"abc\ndef".to_vec());
        let first = SharedLine::new(&buf, 0, 3, true);
        assert_eq!(first.bytes(), b"abc");
        // `def` lies in the buffer but not in this line.
        assert!(first.text(&buf[4..]).is_none());
        assert_eq!(first.text(&first.bytes()[1..]).as_deref(), Some("bc"));
    }

    #[test]
    fn a_validated_line_still_refuses_a_split_character() {
        let buf = Arc::new("aé,b".as_bytes().to_vec());
        let line = SharedLine::new(&buf, 0, buf.len(), true);
        let b = line.bytes();
        assert_eq!(line.text(&b[..3]).as_deref(), Some("aé"));
        assert!(line.text(&b[..2]).is_none(), "ends inside é");
        assert!(line.text(&b[2..]).is_none(), "starts inside é");
    }
}
