//! A file source: the lines of a file, or its CSV rows deserialized into a
//! struct with serde.
//!
//! The file is split in byte ranges, one per split. A line belongs to the
//! split in which its first byte lies: a split starting at byte `s > 0` skips
//! to the first line that starts at or after `s`, and reads lines until one
//! starts at or after its end. Every line is thus read by exactly one split,
//! whatever the core count.
//!
//! A line that cannot be parsed follows the [`MalformedPolicy`]: `Fail` stops
//! the job with the file and line number; `Skip` drops it and counts it in the
//! metric `malformed_skipped`. A split does not know how many lines precede
//! it, so the line number is computed only when an error needs it (by
//! counting newlines before the line).
//!
//! Limits: one record per line (a quoted CSV field cannot contain a newline);
//! lines longer than [`LINE_BYTES_MAX`] are malformed.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use brisk_engine::RestoredPosition;
use brisk_engine::{Counter, Source, SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus};
use glommio::io::BufferedFile;
use serde::de::DeserializeOwned;

use crate::shared::{SharedLine, is_utf8};

/// Bytes read from the file per I/O.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Longest accepted line; a longer one is malformed.
pub const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Read buffers a reader keeps for reuse while records still share its
/// current one (see [`crate::shared`]).
const SPARE_BUFFERS: usize = 4;
/// Bytes of a malformed line quoted in an error message.
const QUOTE_BYTES_MAX: usize = 120;

/// What to do with a line that cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MalformedPolicy {
    /// Fail the job, naming the file and line (the default).
    #[default]
    Fail,
    /// Drop the line and count it in the `malformed_skipped` metric.
    Skip,
}

impl std::str::FromStr for MalformedPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            other => Err(format!("unknown malformed-record policy '{other}' (expected fail or skip)")),
        }
    }
}

/// Turns one line (without its newline) into a record.
pub trait LineParser<T>: Clone + Send + 'static {
    /// Whether the file's first line is a header for this parser.
    fn has_header(&self) -> bool {
        false
    }
    /// Takes the header line.
    fn set_header(&mut self, line: &[u8]) -> Result<(), String> {
        let _ = line;
        Ok(())
    }
    /// Parses a line: `Ok(None)` ignores it (e.g. an empty CSV line).
    fn parse(&mut self, line: &[u8]) -> Result<Option<T>, String>;
    /// Parses a line of the source's shared read buffer: a parser whose
    /// records keep text overrides this to slice it without a copy
    /// ([`SharedLine::text`]). The default calls [`Self::parse`].
    fn parse_shared(&mut self, line: &SharedLine<'_>) -> Result<Option<T>, String> {
        self.parse(line.bytes())
    }
}

/// Lines as `String`s; invalid UTF-8 is malformed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lines;

impl LineParser<String> for Lines {
    fn parse(&mut self, line: &[u8]) -> Result<Option<String>, String> {
        match std::str::from_utf8(line) {
            Ok(s) => Ok(Some(s.to_string())),
            Err(e) => Err(format!("invalid UTF-8 ({e})")),
        }
    }
}

/// CSV rows deserialized into `T` with serde (fields by position, or by
/// header name when the file has a header).
pub struct Csv<T> {
    delimiter: u8,
    has_header: bool,
    trim: bool,
    headers: Option<csv::ByteRecord>,
    reader: Option<csv_core::Reader>,
    out: Vec<u8>,
    ends: Vec<usize>,
    record: csv::ByteRecord,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Csv<T> {
    fn clone(&self) -> Self {
        Self {
            delimiter: self.delimiter,
            has_header: self.has_header,
            trim: self.trim,
            headers: self.headers.clone(),
            reader: None,
            out: Vec::new(),
            ends: Vec::new(),
            record: csv::ByteRecord::new(),
            _type: PhantomData,
        }
    }
}

impl<T> Default for Csv<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Csv<T> {
    /// A parser of comma-separated rows without a header; for use inside
    /// another [`LineParser`] (a [`FileSource::csv`] makes its own).
    pub fn new() -> Self {
        Self {
            delimiter: b',',
            has_header: false,
            trim: false,
            headers: None,
            reader: None,
            out: Vec::new(),
            ends: Vec::new(),
            record: csv::ByteRecord::new(),
            _type: PhantomData,
        }
    }

    /// Whether the first line is a header (fields then match by name).
    pub fn with_header(mut self, yes: bool) -> Self {
        self.has_header = yes;
        self
    }

    fn split_fields(&mut self, line: &[u8]) -> &csv::ByteRecord {
        let delimiter = self.delimiter;
        let reader =
            self.reader.get_or_insert_with(|| csv_core::ReaderBuilder::new().delimiter(delimiter).build());
        reader.reset();
        if self.out.len() < line.len() + 1 {
            self.out.resize(line.len() + 1, 0);
        }
        if self.ends.len() < 16 {
            self.ends.resize(16, 0);
        }
        let (mut input, mut o, mut e) = (line, 0, 0);
        loop {
            let (res, nin, nout, nend) = reader.read_record(input, &mut self.out[o..], &mut self.ends[e..]);
            input = &input[nin..];
            o += nout;
            e += nend;
            match res {
                // Next call passes the empty rest: csv-core reads that as end of input.
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => self.out.resize(self.out.len() * 2, 0),
                csv_core::ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => break,
            }
        }
        self.record.clear();
        let mut start = 0;
        for &end in &self.ends[..e] {
            self.record.push_field(&self.out[start..end]);
            start = end;
        }
        if self.trim {
            self.record.trim();
        }
        &self.record
    }
}

fn describe_csv_error(e: csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        _ => e.to_string(),
    }
}

impl<T: DeserializeOwned + 'static> LineParser<T> for Csv<T> {
    fn has_header(&self) -> bool {
        self.has_header
    }

    fn set_header(&mut self, line: &[u8]) -> Result<(), String> {
        let headers = self.split_fields(line).clone();
        self.headers = Some(headers);
        Ok(())
    }

    fn parse(&mut self, line: &[u8]) -> Result<Option<T>, String> {
        if line.is_empty() {
            return Ok(None);
        }
        self.split_fields(line);
        self.record.deserialize::<T>(self.headers.as_ref()).map(Some).map_err(describe_csv_error)
    }
}

/// A file read line by line, split in byte ranges over the cores.
#[derive(Clone)]
pub struct FileSource<P> {
    path: Arc<PathBuf>,
    parser: P,
    policy: MalformedPolicy,
    rate_per_s: Option<f64>,
}

impl FileSource<Lines> {
    /// The lines of `path` as `String`s.
    pub fn lines(path: impl AsRef<Path>) -> Self {
        Self::with_parser(path, Lines)
    }

    /// The lines of `path`, each made a record by `parser`: for formats
    /// that neither [`FileSource::lines`] nor [`FileSource::csv`] read, or a
    /// hand-written parser where serde's generality costs too much.
    pub fn with_parser<T, P: LineParser<T>>(path: impl AsRef<Path>, parser: P) -> FileSource<P> {
        FileSource {
            path: Arc::new(path.as_ref().to_path_buf()),
            parser,
            policy: MalformedPolicy::Fail,
            rate_per_s: None,
        }
    }

    /// The CSV rows of `path`, deserialized into `T`:
    /// `FileSource::csv::<Trip>("trips.csv")`.
    pub fn csv<T: DeserializeOwned + 'static>(path: impl AsRef<Path>) -> FileSource<Csv<T>> {
        Self::with_parser(path, Csv::new())
    }
}

impl<T: DeserializeOwned + 'static> FileSource<Csv<T>> {
    /// Whether the first line is a header (fields then match by name).
    pub fn has_header(mut self, yes: bool) -> Self {
        self.parser.has_header = yes;
        self
    }

    /// The field delimiter (default `,`).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.parser.delimiter = delimiter;
        self
    }

    /// Trim whitespace around fields.
    pub fn trim(mut self, yes: bool) -> Self {
        self.parser.trim = yes;
        self
    }
}

impl<P> FileSource<P> {
    /// What to do with lines that cannot be parsed.
    pub fn on_malformed(mut self, policy: MalformedPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Emits at most `events_per_s` records per second in total (shared
    /// evenly by the splits), paced by the job's clock: replays a file as a
    /// live stream. Must be positive.
    pub fn with_rate(mut self, events_per_s: f64) -> Self {
        self.rate_per_s = Some(events_per_s);
        self
    }
}

/// A part of the file a reader still has to read; a reader's position is
/// the list of its pieces, in reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Piece {
    /// Split `split` of `splits`, not started (resolved once the file's size
    /// is known).
    Whole { split: u64, splits: u64 },
    /// Lines starting in `[start, end)`; `start` is the start of a line (or
    /// of the file).
    Range { start: u64, end: u64 },
}

/// The pieces a reader resumes with: its own split's when the split count is
/// unchanged; otherwise every old split's pieces, dealt round-robin (each
/// piece begins at a line start, so any reader can take any).
fn restored_pieces(
    positions: &[RestoredPosition],
    split: usize,
    splits: usize,
) -> Result<Vec<Piece>, SourceError> {
    let decode = |p: &RestoredPosition| -> Result<Vec<Piece>, SourceError> {
        postcard::from_bytes(&p.position).map_err(|e| {
            SourceError(format!("restored position of split {} is not a file position: {e}", p.split))
        })
    };
    if positions.iter().all(|p| p.splits == splits) {
        return match positions.iter().find(|p| p.split == split) {
            Some(p) => decode(p),
            None => Err(SourceError(format!("the checkpoint has no position for split {split}"))),
        };
    }
    let mut ordered: Vec<&RestoredPosition> = positions.iter().collect();
    ordered.sort_by_key(|p| p.split);
    let mut all = Vec::new();
    for p in ordered {
        all.extend(decode(p)?);
    }
    Ok(all.into_iter().skip(split).step_by(splits).collect())
}

impl<T: 'static, P: LineParser<T>> Source<T> for FileSource<P> {
    type Reader = FileReader<P>;

    fn name(&self) -> String {
        format!("file({})", self.path.display())
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Self::Reader, SourceError> {
        let pieces = match ctx.restored_positions() {
            Some(p) => restored_pieces(p, ctx.split(), ctx.splits())
                .map_err(|e| SourceError(format!("cannot resume '{}': {e}", self.path.display())))?,
            None => vec![Piece::Whole { split: ctx.split() as u64, splits: ctx.splits() as u64 }],
        };
        let rate = match self.rate_per_s {
            None => None,
            Some(r) if r > 0.0 && r.is_finite() => Some(r / ctx.splits() as f64),
            Some(r) => {
                return Err(SourceError(format!(
                    "file source rate = {r}: must be a positive number of events per second"
                )));
            }
        };
        Ok(FileReader {
            path: self.path.clone(),
            parser: self.parser.clone(),
            policy: self.policy,
            initial: pieces.clone(),
            pieces: pieces.into_iter().rev().collect(),
            rate,
            emitted: 0,
            start_ns: None,
            clock: ctx.clock(),
            skipped: ctx.counter("malformed_skipped"),
            file: None,
            buf: Arc::default(),
            spare: Vec::new(),
            utf8_upto: 0,
            buf_pos: 0,
            buf_offset: 0,
            read_pos: 0,
            file_size: 0,
            end: 0,
            done: false,
        })
    }
}

/// One split of a [`FileSource`].
pub struct FileReader<P> {
    path: Arc<PathBuf>,
    parser: P,
    policy: MalformedPolicy,
    /// Pieces after the current one, last first (popped from the back).
    pieces: Vec<Piece>,
    /// Every piece this reader started with (progress).
    initial: Vec<Piece>,
    /// Records per second for this split, if paced.
    rate: Option<f64>,
    emitted: u64,
    start_ns: Option<u64>,
    clock: Arc<dyn brisk_engine::Clock>,
    skipped: Counter,
    file: Option<Rc<BufferedFile>>,
    /// Unconsumed bytes; `buf[0]` is at file offset `buf_offset`. Records
    /// may share it ([`SharedLine::text`]); it is mutated only when they
    /// are gone (`Arc::get_mut`).
    buf: Arc<Vec<u8>>,
    /// Former buffers, reused once no record shares them.
    spare: Vec<Arc<Vec<u8>>>,
    /// `buf[..utf8_upto]` is valid UTF-8 and ends with a newline.
    utf8_upto: usize,
    buf_pos: usize,
    buf_offset: u64,
    read_pos: u64,
    file_size: u64,
    /// Lines starting at or after this offset belong to the next split.
    end: u64,
    done: bool,
}

enum Line {
    /// A complete line at `offset` spanning `buf[start..end]`.
    At {
        offset: u64,
        start: usize,
        end: usize,
        next: usize,
    },
    TooLong {
        offset: u64,
    },
    Eof,
}

impl<P> FileReader<P> {
    fn io_error(&self, what: &str, e: impl std::fmt::Display) -> SourceError {
        SourceError(format!("cannot {what} '{}': {e}", self.path.display()))
    }

    async fn fill(&mut self) -> Result<bool, SourceError> {
        if self.read_pos >= self.file_size {
            return Ok(false);
        }
        let file = self.file.clone().expect("opened");
        let want = READ_CHUNK_BYTES.min((self.file_size - self.read_pos) as usize);
        let chunk = file.read_at(self.read_pos, want).await.map_err(|e| self.io_error("read", e))?;
        if chunk.is_empty() {
            // The file shrank while being read.
            self.file_size = self.read_pos;
            return Ok(false);
        }
        self.refill(&chunk);
        self.read_pos += chunk.len() as u64;
        Ok(true)
    }

    /// Makes the buffer the unconsumed bytes followed by `chunk`, in a
    /// buffer no record shares, and validates the complete lines it now
    /// holds as UTF-8 (once: the unconsumed bytes hold no newline, so none of
    /// them was validated before).
    fn refill(&mut self, chunk: &[u8]) {
        let keep = self.buf.len() - self.buf_pos;
        if let Some(buf) = Arc::get_mut(&mut self.buf) {
            buf.drain(..self.buf_pos);
            buf.extend_from_slice(chunk);
        } else {
            let free = self.spare.iter_mut().position(|b| Arc::get_mut(b).is_some());
            let mut next = match free {
                Some(i) => self.spare.swap_remove(i),
                None => Arc::new(Vec::with_capacity(keep + chunk.len())),
            };
            let buf = Arc::get_mut(&mut next).expect("a buffer no record shares");
            buf.clear();
            buf.extend_from_slice(&self.buf[self.buf_pos..]);
            buf.extend_from_slice(chunk);
            let old = std::mem::replace(&mut self.buf, next);
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(old);
            }
        }
        self.buf_offset += self.buf_pos as u64;
        self.buf_pos = 0;
        self.utf8_upto = match memchr::memrchr(b'\n', chunk) {
            Some(i) if is_utf8(&self.buf[..keep + i]) => keep + i + 1,
            _ => 0,
        };
    }

    /// Empties the buffer (a new range starts).
    fn clear_buf(&mut self) {
        match Arc::get_mut(&mut self.buf) {
            Some(buf) => buf.clear(),
            None => self.buf = Arc::default(),
        }
        self.utf8_upto = 0;
    }

    /// The next complete line in the buffer, reading more as needed.
    async fn next_line(&mut self) -> Result<Line, SourceError> {
        loop {
            let rest = &self.buf[self.buf_pos..];
            if let Some(i) = memchr::memchr(b'\n', rest) {
                let start = self.buf_pos;
                return Ok(Line::At {
                    offset: self.buf_offset + start as u64,
                    start,
                    end: start + i,
                    next: start + i + 1,
                });
            }
            if rest.len() > LINE_BYTES_MAX {
                return Ok(Line::TooLong { offset: self.buf_offset + self.buf_pos as u64 });
            }
            if !self.fill().await? {
                let start = self.buf_pos;
                if start == self.buf.len() {
                    return Ok(Line::Eof);
                }
                let end = self.buf.len();
                return Ok(Line::At { offset: self.buf_offset + start as u64, start, end, next: end });
            }
        }
    }

    /// Discards bytes up to and including the next newline.
    async fn skip_past_newline(&mut self) -> Result<(), SourceError> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.buf_pos..]) {
                self.buf_pos += i + 1;
                return Ok(());
            }
            self.buf_pos = self.buf.len();
            if !self.fill().await? {
                return Ok(());
            }
        }
    }

    async fn open(&mut self) -> Result<(), SourceError> {
        let file = BufferedFile::open(self.path.as_ref()).await.map_err(|e| self.io_error("open", e))?;
        self.file_size = file.file_size().await.map_err(|e| self.io_error("stat", e))?;
        self.file = Some(Rc::new(file));
        self.next_range().await?;
        Ok(())
    }

    /// Moves to the next range to read; `false` when none is left.
    async fn next_range(&mut self) -> Result<bool, SourceError> {
        let size = self.file_size;
        let (start, end) = match self.pieces.pop() {
            None => {
                self.done = true;
                return Ok(false);
            }
            Some(Piece::Whole { split, splits }) => {
                (size * split / splits.max(1), size * (split + 1) / splits.max(1))
            }
            Some(Piece::Range { start, end }) => (start, end),
        };
        self.clear_buf();
        self.buf_pos = 0;
        self.buf_offset = start;
        self.read_pos = start;
        self.end = end;
        if start > 0 {
            // Our first line is the first one starting at or after `start`:
            // skip the line that contains byte `start - 1`.
            self.read_pos = start - 1;
            self.buf_offset = start - 1;
            self.skip_past_newline().await?;
        }
        Ok(true)
    }

    /// The offset of the next unread line.
    fn next_offset(&self) -> u64 {
        self.buf_offset + self.buf_pos as u64
    }

    /// 1-based number of the line starting at `offset` (counts newlines before it).
    async fn line_number(&self, offset: u64) -> Result<u64, SourceError> {
        let file = self.file.clone().expect("opened");
        let (mut pos, mut newlines) = (0u64, 0u64);
        while pos < offset {
            let want = READ_CHUNK_BYTES.min((offset - pos) as usize);
            let chunk = file.read_at(pos, want).await.map_err(|e| self.io_error("read", e))?;
            if chunk.is_empty() {
                break;
            }
            newlines += memchr::memchr_iter(b'\n', &chunk).count() as u64;
            pos += chunk.len() as u64;
        }
        Ok(newlines + 1)
    }

    async fn malformed(&self, offset: u64, reason: String, line: Option<&[u8]>) -> Result<(), SourceError> {
        match self.policy {
            MalformedPolicy::Skip => {
                self.skipped.add(1);
                Ok(())
            }
            MalformedPolicy::Fail => {
                let number = self.line_number(offset).await?;
                let quoted = line.map_or(String::new(), |l| {
                    let shown = &l[..l.len().min(QUOTE_BYTES_MAX)];
                    let ellipsis = if l.len() > QUOTE_BYTES_MAX { "..." } else { "" };
                    format!(" in {:?}{ellipsis}", String::from_utf8_lossy(shown))
                });
                Err(SourceError(format!(
                    "malformed line {number} of '{}' (byte {offset}): {reason}{quoted}",
                    self.path.display()
                )))
            }
        }
    }

    /// Reads the file's first line (the header) into the parser.
    async fn read_header<T>(&mut self) -> Result<(), SourceError>
    where
        P: LineParser<T>,
    {
        let file = self.file.clone().expect("opened");
        let mut header = Vec::new();
        let mut pos = 0u64;
        while pos < self.file_size {
            let want = READ_CHUNK_BYTES.min((self.file_size - pos) as usize);
            let chunk = file.read_at(pos, want).await.map_err(|e| self.io_error("read", e))?;
            if chunk.is_empty() {
                break;
            }
            if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
                header.extend_from_slice(&chunk[..i]);
                break;
            }
            header.extend_from_slice(&chunk);
            if header.len() > LINE_BYTES_MAX {
                return Err(SourceError(format!("header line of '{}' is too long", self.path.display())));
            }
            pos += chunk.len() as u64;
        }
        strip_cr(&mut header);
        self.parser
            .set_header(&header)
            .map_err(|e| SourceError(format!("bad header line of '{}': {e}", self.path.display())))
    }
}

fn strip_cr(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

impl<T: 'static, P: LineParser<T>> SourceReader<T> for FileReader<P> {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        if self.done {
            return Ok(SourceStatus::Done);
        }
        if self.file.is_none() {
            self.open().await?;
            if self.parser.has_header() {
                self.read_header::<T>().await?;
                if !self.done && self.next_offset() == 0 {
                    // The header is not a record.
                    self.skip_past_newline().await?;
                }
            }
        }
        let mut allowed = out.remaining();
        if let Some(rate) = self.rate {
            let now = self.clock.monotonic_ns();
            let start = *self.start_ns.get_or_insert(now);
            let (due, wait) = crate::generator::schedule(rate, now - start, self.emitted);
            allowed = allowed.min(due.saturating_sub(self.emitted) as usize);
            if allowed == 0 {
                return Ok(SourceStatus::Wait(wait.max(std::time::Duration::from_micros(10))));
            }
        }
        let room = out.remaining();
        while !self.done && room - out.remaining() < allowed {
            match self.next_line().await? {
                Line::Eof => {
                    self.next_range().await?;
                }
                Line::At { offset, .. } | Line::TooLong { offset } if offset >= self.end => {
                    self.next_range().await?;
                }
                Line::TooLong { offset } => {
                    self.malformed(offset, format!("line longer than {LINE_BYTES_MAX} bytes"), None).await?;
                    self.skip_past_newline().await?;
                }
                Line::At { offset, start, mut end, next } => {
                    if end > start && self.buf[end - 1] == b'\r' {
                        end -= 1;
                    }
                    // A line ends before a validated newline or is checked
                    // field by field.
                    let utf8 = end < self.utf8_upto;
                    let parsed = self.parser.parse_shared(&SharedLine::new(&self.buf, start, end, utf8));
                    match parsed {
                        Ok(Some(record)) => out.collect(record),
                        Ok(None) => {}
                        Err(reason) => {
                            let line = self.buf[start..end].to_vec();
                            self.malformed(offset, reason, Some(&line)).await?;
                        }
                    }
                    self.buf_pos = next;
                }
            }
        }
        self.emitted += (room - out.remaining()) as u64;
        Ok(if self.done { SourceStatus::Done } else { SourceStatus::More })
    }

    fn progress(&self) -> Option<(u64, u64)> {
        // Bytes, once the file's size is known (it is opened at the first
        // batch).
        self.file.as_ref()?;
        let len = |p: &Piece| match *p {
            Piece::Whole { split, splits } => {
                let s = splits.max(1);
                self.file_size * (split + 1) / s - self.file_size * split / s
            }
            Piece::Range { start, end } => end.saturating_sub(start),
        };
        let current = if self.done { 0 } else { self.end.saturating_sub(self.next_offset()) };
        let left = current + self.pieces.iter().map(len).sum::<u64>();
        let total = self.initial.iter().map(len).sum::<u64>().max(left);
        Some((total - left, total))
    }

    fn position(&self) -> Option<Vec<u8>> {
        let mut pieces: Vec<Piece> = Vec::with_capacity(self.pieces.len() + 1);
        if self.file.is_some() && !self.done {
            pieces.push(Piece::Range { start: self.next_offset(), end: self.end });
        }
        pieces.extend(self.pieces.iter().rev().copied());
        postcard::to_stdvec(&pieces).ok()
    }
}
