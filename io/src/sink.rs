//! Output sinks: files (lines or CSV) and stdout.
//!
//! Records are encoded into a per-core byte buffer inside the operator chain;
//! a full buffer (or the end of input, or an idle core) hands it to glommio's
//! blocking-thread pool, which writes it with `std::io` and gives the buffer
//! back. The core never waits on the disk or the terminal, and a slow one is
//! backpressure. Every buffer write is whole, so lines of different cores
//! never interleave inside a line.

use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use brisk_engine::{Batch, Counter, Sink, SinkContext, SinkError, SinkParallelism, SinkWriter};
use serde::Serialize;

/// Buffered bytes per writer before they go out.
pub const SINK_BUFFER_BYTES: usize = 64 * 1024;

/// Encodes records as bytes.
pub trait Encoder<T>: Clone + Send + 'static {
    /// Appends the encoding of `records` to `out`.
    fn encode(&mut self, records: &[T], out: &mut Vec<u8>) -> Result<(), String>;
}

/// One line per record, through `Display`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DisplayLines;

impl<T: std::fmt::Display> Encoder<T> for DisplayLines {
    fn encode(&mut self, records: &[T], out: &mut Vec<u8>) -> Result<(), String> {
        for r in records {
            writeln!(out, "{r}").map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// One line per record, written by a function (which appends the line's
/// bytes, without the newline).
#[derive(Clone)]
pub struct FnLines<F>(pub F);

impl<T, F: FnMut(&T, &mut Vec<u8>) + Clone + Send + 'static> Encoder<T> for FnLines<F> {
    fn encode(&mut self, records: &[T], out: &mut Vec<u8>) -> Result<(), String> {
        for r in records {
            (self.0)(r, out);
            out.push(b'\n');
        }
        Ok(())
    }
}

/// CSV rows through serde; a header row first when `T` is a struct and
/// headers are on.
pub struct CsvRows<T> {
    /// Whether a header row is still to be written.
    header_due: bool,
    _type: PhantomData<fn(T)>,
}

impl<T> Clone for CsvRows<T> {
    fn clone(&self) -> Self {
        Self { header_due: self.header_due, _type: PhantomData }
    }
}

impl<T: Serialize + 'static> Encoder<T> for CsvRows<T> {
    fn encode(&mut self, records: &[T], out: &mut Vec<u8>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let mut w = csv::WriterBuilder::new().has_headers(self.header_due).from_writer(out);
        self.header_due = false;
        for r in records {
            w.serialize(r).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())
    }
}

/// Where a writer's bytes go.
#[derive(Clone, Debug)]
enum Target {
    File(PathBuf),
    Stdout,
}

/// Writes `write_all` of a whole buffer under one stdout lock.
struct StdoutWhole;

impl Write for StdoutWhole {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

/// Per-core writer of [`FileSink`] and [`StdoutSink`].
pub struct BytesWriter<T, E> {
    target: Target,
    encoder: E,
    buf: Vec<u8>,
    out: Option<Box<dyn Write + Send>>,
    records: Counter,
    _type: PhantomData<fn(T)>,
}

impl<T, E> BytesWriter<T, E> {
    async fn write_out(&mut self) -> Result<(), SinkError> {
        let out = self.out.take();
        let target = self.target.clone();
        let data = std::mem::take(&mut self.buf);
        let (out, mut data, result) = glommio::executor()
            .spawn_blocking(move || {
                let mut out: Box<dyn Write + Send> = match out {
                    Some(o) => o,
                    None => match open(&target) {
                        Ok(o) => o,
                        Err(e) => return (None, data, Err(e)),
                    },
                };
                let r = out.write_all(&data).and_then(|_| out.flush());
                (Some(out), data, r)
            })
            .await;
        self.out = out;
        data.clear();
        self.buf = data;
        result.map_err(|e| match &self.target {
            Target::File(p) => SinkError(format!("cannot write '{}': {e}", p.display())),
            Target::Stdout => SinkError(format!("cannot write to stdout: {e}")),
        })
    }
}

fn open(target: &Target) -> std::io::Result<Box<dyn Write + Send>> {
    match target {
        Target::Stdout => Ok(Box::new(StdoutWhole)),
        Target::File(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Ok(Box::new(std::fs::File::create(path)?))
        }
    }
}

impl<T: 'static, E: Encoder<T>> SinkWriter<T> for BytesWriter<T, E> {
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError> {
        self.records.add(batch.len() as u64);
        self.encoder.encode(&batch.records, &mut self.buf).map_err(SinkError)?;
        batch.clear();
        Ok(())
    }

    fn wants_flush(&self) -> bool {
        self.buf.len() >= SINK_BUFFER_BYTES
    }

    fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    async fn flush(&mut self, end_of_input: bool) -> Result<(), SinkError> {
        // At the end, write even an empty buffer: that creates the file.
        if !self.buf.is_empty() || (end_of_input && self.out.is_none()) {
            self.write_out().await?;
        }
        if end_of_input {
            self.out = None;
        }
        Ok(())
    }
}

/// Writes records to a file: one file fed by all cores (the default), or one
/// `part-N` file per core in a directory.
#[derive(Clone)]
pub struct FileSink<E> {
    path: Arc<PathBuf>,
    encoder: E,
    per_core: bool,
}

impl FileSink<DisplayLines> {
    /// One line per record (`Display`).
    pub fn lines(path: impl AsRef<Path>) -> Self {
        Self { path: Arc::new(path.as_ref().to_path_buf()), encoder: DisplayLines, per_core: false }
    }
}

impl<F> FileSink<FnLines<F>> {
    /// One line per record, written by `f` (without the newline).
    pub fn lines_with(path: impl AsRef<Path>, f: F) -> Self {
        Self { path: Arc::new(path.as_ref().to_path_buf()), encoder: FnLines(f), per_core: false }
    }
}

impl<T> FileSink<CsvRows<T>> {
    /// CSV rows through serde, with a header row for structs.
    pub fn csv(path: impl AsRef<Path>) -> Self {
        Self {
            path: Arc::new(path.as_ref().to_path_buf()),
            encoder: CsvRows { header_due: true, _type: PhantomData },
            per_core: false,
        }
    }

    /// CSV rows without a header row.
    pub fn without_header(mut self) -> Self {
        self.encoder.header_due = false;
        self
    }
}

impl<E> FileSink<E> {
    /// Each core writes `PATH/part-CORE` (PATH becomes a directory).
    pub fn per_core(mut self) -> Self {
        self.per_core = true;
        self
    }
}

impl<T: 'static, E: Encoder<T>> Sink<T> for FileSink<E> {
    type Writer = BytesWriter<T, E>;

    fn name(&self) -> String {
        format!("file_sink({})", self.path.display())
    }

    fn parallelism(&self) -> SinkParallelism {
        if self.per_core { SinkParallelism::PerCore } else { SinkParallelism::Single }
    }

    fn create_writer(&self, ctx: &SinkContext) -> Result<Self::Writer, SinkError> {
        let path =
            if self.per_core { self.path.join(format!("part-{}", ctx.core())) } else { (*self.path).clone() };
        Ok(BytesWriter {
            target: Target::File(path),
            encoder: self.encoder.clone(),
            buf: Vec::with_capacity(SINK_BUFFER_BYTES),
            out: None,
            records: ctx.counter("records_written"),
            _type: PhantomData,
        })
    }
}

/// Prints records to stdout, one line each, from every core.
#[derive(Clone)]
pub struct StdoutSink<E> {
    encoder: E,
}

impl StdoutSink<DisplayLines> {
    /// One line per record (`Display`).
    pub fn new() -> Self {
        Self { encoder: DisplayLines }
    }
}

impl Default for StdoutSink<DisplayLines> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F> StdoutSink<FnLines<F>> {
    /// One line per record, written by `f` (without the newline).
    pub fn lines_with(f: F) -> Self {
        Self { encoder: FnLines(f) }
    }
}

impl<T: 'static, E: Encoder<T>> Sink<T> for StdoutSink<E> {
    type Writer = BytesWriter<T, E>;

    fn name(&self) -> String {
        "stdout".into()
    }

    fn create_writer(&self, ctx: &SinkContext) -> Result<Self::Writer, SinkError> {
        Ok(BytesWriter {
            target: Target::Stdout,
            encoder: self.encoder.clone(),
            buf: Vec::with_capacity(SINK_BUFFER_BYTES),
            out: None,
            records: ctx.counter("records_written"),
            _type: PhantomData,
        })
    }
}
