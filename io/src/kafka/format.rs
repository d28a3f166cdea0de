//! What a Kafka record is to a job: the borrowed view a deserializer reads
//! ([`KafkaRecord`]), the deserializers the source ships with (bytes, UTF-8
//! lines, CSV and JSON through serde), and the serializers of the sink.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One consumed record, borrowed from the client's buffer.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The key, if it has one.
    pub key: Option<&'a [u8]>,
    /// The value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
    /// Create or log-append time, epoch milliseconds, if the record has one.
    pub timestamp: Option<i64>,
    /// Headers in order: name and value (`None`: a null value).
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// An owned copy of a record: what [`Bytes`] hands the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The key, if it has one.
    pub key: Option<Vec<u8>>,
    /// The value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Create or log-append time, epoch milliseconds.
    pub timestamp: Option<i64>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Turns a consumed record into a job's record. `Ok(None)` drops it
/// silently (a filter); `Err(reason)` makes it malformed, handled by the
/// source's [`MalformedPolicy`](super::KafkaMalformed).
pub trait KafkaDeserializer<T>: Clone + Send + 'static {
    /// Decodes one record.
    fn deserialize(&mut self, record: &KafkaRecord<'_>) -> Result<Option<T>, String>;
}

/// The whole record, owned: key, value, timestamp, headers and coordinates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl KafkaDeserializer<OwnedRecord> for Bytes {
    fn deserialize(&mut self, r: &KafkaRecord<'_>) -> Result<Option<OwnedRecord>, String> {
        Ok(Some(OwnedRecord {
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            timestamp: r.timestamp,
            headers: r.headers.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect(),
        }))
    }
}

fn value<'a>(r: &KafkaRecord<'a>) -> Result<&'a [u8], String> {
    r.value.ok_or_else(|| "the record has no value (a tombstone)".to_string())
}

/// The value as one UTF-8 line, without a trailing `\n` or `\r\n`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lines;

impl KafkaDeserializer<String> for Lines {
    fn deserialize(&mut self, r: &KafkaRecord<'_>) -> Result<Option<String>, String> {
        let v = value(r)?;
        let v = v.strip_suffix(b"\n").unwrap_or(v);
        let v = v.strip_suffix(b"\r").unwrap_or(v);
        match std::str::from_utf8(v) {
            Ok(s) => Ok(Some(s.to_string())),
            Err(e) => Err(format!("the value is not UTF-8: {e}")),
        }
    }
}

/// The value as one CSV row (no header) into a serde struct, fields in order.
pub struct Csv<T> {
    delimiter: u8,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Csv<T> {
    fn clone(&self) -> Self {
        Self { delimiter: self.delimiter, _type: PhantomData }
    }
}

impl<T> Csv<T> {
    /// Comma-separated.
    pub fn new() -> Self {
        Self { delimiter: b',', _type: PhantomData }
    }
    /// Separated by `delimiter` instead.
    pub fn with_delimiter(delimiter: u8) -> Self {
        Self { delimiter, _type: PhantomData }
    }
}

impl<T> Default for Csv<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned + 'static> KafkaDeserializer<T> for Csv<T> {
    fn deserialize(&mut self, r: &KafkaRecord<'_>) -> Result<Option<T>, String> {
        let v = value(r)?;
        let v = v.strip_suffix(b"\n").unwrap_or(v);
        let mut reader =
            csv::ReaderBuilder::new().has_headers(false).delimiter(self.delimiter).from_reader(v);
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(true) => record.deserialize(None).map(Some).map_err(|e| format!("bad CSV row: {e}")),
            Ok(false) => Err("empty CSV row".into()),
            Err(e) => Err(format!("bad CSV row: {e}")),
        }
    }
}

/// The value as one JSON document into a serde type.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<T> Json<T> {
    /// A JSON deserializer (or serializer, for the sink) of `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned + 'static> KafkaDeserializer<T> for Json<T> {
    fn deserialize(&mut self, r: &KafkaRecord<'_>) -> Result<Option<T>, String> {
        serde_json::from_slice(value(r)?).map(Some).map_err(|e| format!("bad JSON: {e}"))
    }
}

/// Any function of the record: `KafkaDeserializer` for closures.
#[derive(Clone)]
pub struct FnDeserializer<F>(pub F);

impl<T, F> KafkaDeserializer<T> for FnDeserializer<F>
where
    F: FnMut(&KafkaRecord<'_>) -> Result<Option<T>, String> + Clone + Send + 'static,
{
    fn deserialize(&mut self, r: &KafkaRecord<'_>) -> Result<Option<T>, String> {
        (self.0)(r)
    }
}

/// Where a serializer writes one record: key and value bytes (cleared
/// before every record), and optionally a timestamp and headers.
#[derive(Debug, Default)]
pub struct KafkaOut {
    key: Vec<u8>,
    keyed: bool,
    /// The value.
    pub value: Vec<u8>,
    /// Epoch milliseconds (`None`: the producer's current time).
    pub timestamp: Option<i64>,
    /// Headers to attach.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaOut {
    pub(crate) fn clear(&mut self) {
        self.key.clear();
        self.keyed = false;
        self.value.clear();
        self.timestamp = None;
        self.headers.clear();
    }

    /// Sets the key to `key`.
    pub fn set_key(&mut self, key: &[u8]) {
        self.key.clear();
        self.key.extend_from_slice(key);
        self.keyed = true;
    }

    /// The key's buffer, to write into (the record then has a key).
    pub fn key_mut(&mut self) -> &mut Vec<u8> {
        self.keyed = true;
        &mut self.key
    }

    /// The key, if one was set.
    pub fn key(&self) -> Option<&[u8]> {
        self.keyed.then_some(self.key.as_slice())
    }
}

/// Turns a job's record into a Kafka record.
pub trait KafkaSerializer<T>: Clone + Send + 'static {
    /// Writes `record`'s key, value and so on into `out` (cleared).
    fn serialize(&mut self, record: &T, out: &mut KafkaOut) -> Result<(), String>;
}

/// `Display` as the value, no key.
#[derive(Debug, Clone, Copy, Default)]
pub struct DisplayValue;

impl<T: std::fmt::Display> KafkaSerializer<T> for DisplayValue {
    fn serialize(&mut self, record: &T, out: &mut KafkaOut) -> Result<(), String> {
        use std::io::Write;
        write!(out.value, "{record}").map_err(|e| e.to_string())
    }
}

impl<T: Serialize + 'static> KafkaSerializer<T> for Json<T> {
    fn serialize(&mut self, record: &T, out: &mut KafkaOut) -> Result<(), String> {
        serde_json::to_writer(&mut out.value, record).map_err(|e| format!("cannot encode JSON: {e}"))
    }
}

/// Any function writing key and value: `KafkaSerializer` for closures.
#[derive(Clone)]
pub struct FnSerializer<F>(pub F);

impl<T, F> KafkaSerializer<T> for FnSerializer<F>
where
    F: FnMut(&T, &mut KafkaOut) + Clone + Send + 'static,
{
    fn serialize(&mut self, record: &T, out: &mut KafkaOut) -> Result<(), String> {
        (self.0)(record, out);
        Ok(())
    }
}
