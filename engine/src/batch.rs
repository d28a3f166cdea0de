//! The unit of data movement: a [`Batch`] of records with optional event-time
//! timestamps, and the in-band [`Control`] messages that travel in the same
//! ordered stream.

/// Event time or watermark value in milliseconds.
pub type Timestamp = i64;

/// The watermark a bounded source emits last: every timer and window is due.
pub const MAX_WATERMARK: Timestamp = i64::MAX;
/// The watermark before any element was seen.
pub const MIN_WATERMARK: Timestamp = i64::MIN;

/// Records per batch a source or exchange fills before handing it on.
pub const BATCH_RECORDS_MAX: usize = 1024;

/// A batch of records, owned by whoever holds it; emptied batches are
/// recycled (an operator drains its input batch and the caller reuses it).
///
/// `timestamps` is either empty (the stream carries no event time) or holds
/// one timestamp per record, index for index.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    /// The records.
    pub records: Vec<T>,
    /// Per-record event timestamps, or empty.
    pub timestamps: Vec<Timestamp>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Self { records: Vec::new(), timestamps: Vec::new() }
    }
}

impl<T> Batch<T> {
    /// An empty batch with room for `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { records: Vec::with_capacity(capacity), timestamps: Vec::new() }
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether records carry timestamps.
    #[inline]
    pub fn has_timestamps(&self) -> bool {
        !self.timestamps.is_empty()
    }

    /// Appends a record without a timestamp.
    #[inline]
    pub fn push(&mut self, record: T) {
        debug_assert!(self.timestamps.is_empty(), "mixing records with and without timestamps");
        self.records.push(record);
    }

    /// Appends a record with its timestamp (`None` when the stream has none).
    #[inline]
    pub fn push_with(&mut self, record: T, timestamp: Option<Timestamp>) {
        if let Some(ts) = timestamp {
            debug_assert_eq!(self.timestamps.len(), self.records.len());
            self.timestamps.push(ts);
        }
        self.records.push(record);
    }

    /// The timestamp of record `i`, if the batch carries timestamps.
    #[inline]
    pub fn timestamp(&self, i: usize) -> Option<Timestamp> {
        self.timestamps.get(i).copied()
    }

    /// Empties the batch, keeping its allocation.
    #[inline]
    pub fn clear(&mut self) {
        self.records.clear();
        self.timestamps.clear();
    }

    /// Moves every record (and timestamp) of `self` into a fresh batch,
    /// leaving `self` empty with its allocation.
    pub fn take_all(&mut self) -> Batch<T> {
        Batch { records: self.records.drain(..).collect(), timestamps: self.timestamps.drain(..).collect() }
    }

    /// Iterates `(record, timestamp)` pairs, draining the batch.
    pub fn drain(&mut self) -> impl Iterator<Item = (T, Option<Timestamp>)> + '_ {
        let has_ts = self.has_timestamps();
        let mut ts = self.timestamps.drain(..);
        self.records.drain(..).map(move |r| (r, if has_ts { ts.next() } else { None }))
    }
}

/// Whether a stream is producing (active) or has gone idle: an idle input
/// does not hold back the combined watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// The input produces records and watermarks.
    Active,
    /// The input produces nothing for now.
    Idle,
}

/// In-band control messages. They travel in the same ordered channel as the
/// data, so none can overtake the records sent before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// No more records with timestamp <= this value will follow.
    Watermark(Timestamp),
    /// The input turned idle or active.
    Status(StreamStatus),
    /// Checkpoint barrier `n`: everything before it belongs to checkpoint
    /// `n`, everything after it to later ones.
    Barrier(u64),
    /// The input has ended; nothing follows.
    EndOfInput,
    /// A latency marker: when (epoch µs) the newest record a source had
    /// emitted before it was created (the generator's scheduled time, a
    /// Kafka timestamp) or read. It travels behind those records, through
    /// every operator, and one channel of each exchange, to the sinks, which
    /// record now − this in their latency histograms (Flink's
    /// `LatencyMarker`).
    Latency(i64),
}

/// What crosses an exchange channel.
#[derive(Debug)]
pub(crate) enum Message<T> {
    Data(Batch<T>),
    Control(Control),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_pairs_records_with_timestamps() {
        let mut b = Batch::default();
        b.push_with("a", Some(5));
        b.push_with("b", Some(7));
        assert_eq!(b.drain().collect::<Vec<_>>(), vec![("a", Some(5)), ("b", Some(7))]);
        assert!(b.is_empty() && !b.has_timestamps());
        b.push("c");
        assert_eq!(b.drain().collect::<Vec<_>>(), vec![("c", None)]);
    }
}
