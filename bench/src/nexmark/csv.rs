//! Nexmark as CSV files, for other systems and for brisk's own file runs:
//! `person.csv`, `auction.csv` and `bid.csv`, each with a header row, the
//! columns of the nexmark-flink DDL, and timestamps as Flink SQL reads and
//! prints them (`2015-07-15 00:00:00.123`, UTC).

use std::io::Write;
use std::path::Path;

use brisk::io::{Csv, LineParser, SharedLine};
use chrono::{Datelike, Timelike};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::generator::GeneratorConfig;
use super::model::{Auction, Bid, Event, Person, Text};

/// The header rows.
pub const PERSON_HEADER: &str = "id,name,emailAddress,creditCard,city,state,dateTime,extra";
/// See [`PERSON_HEADER`].
pub const AUCTION_HEADER: &str =
    "id,itemName,description,initialBid,reserve,dateTime,expires,seller,category,extra";
/// See [`PERSON_HEADER`].
pub const BID_HEADER: &str = "auction,bidder,price,channel,url,dateTime,extra";

/// Appends `ms` (since the epoch, UTC) as `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn write_ts(out: &mut Vec<u8>, ms: i64) {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().naive_utc();
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.and_utc().timestamp_subsec_millis()
    );
}

/// `ms` as `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn format_ts(ms: i64) -> String {
    let mut v = Vec::with_capacity(23);
    write_ts(&mut v, ms);
    String::from_utf8(v).unwrap_or_default()
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f{1,9}]` (or with a `T`) as ms since the
/// epoch, UTC; fractions beyond ms are truncated.
pub fn parse_ts(s: &str) -> Result<i64, String> {
    parse_ts_bytes(s.as_bytes()).ok_or_else(|| format!("'{s}' is not a timestamp (YYYY-MM-DD HH:MM:SS.mmm)"))
}

/// [`parse_ts`] on bytes, without the message.
fn parse_ts_bytes(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let time_ms = time_of_day_ms(b)?;
    let mut millis = 0;
    if b.len() > 19 {
        if b[19] != b'.' || b.len() == 20 || b.len() > 29 {
            return None;
        }
        let frac = digits(b, 20..b.len())?;
        let places = b.len() - 20;
        millis = if places >= 3 {
            frac / 10u32.pow(places as u32 - 3)
        } else {
            frac * 10u32.pow(3 - places as u32)
        };
    }
    let (year, month, day) = (digits(b, 0..4)? as i64, digits(b, 5..7)?, digits(b, 8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    let days = days_from_civil(year, month as i64, day as i64);
    Some(days * 86_400_000 + time_ms + millis as i64)
}

/// `b[r]` as a decimal number; `None` if a byte is not a digit.
#[inline]
fn digits(b: &[u8], r: std::ops::Range<usize>) -> Option<u32> {
    b[r].iter().try_fold(0u32, |a, &c| c.is_ascii_digit().then(|| a * 10 + (c - b'0') as u32))
}

/// The ` HH:MM:SS` (or `THH:MM:SS`) after a timestamp's date, `b[10..19]`,
/// as ms into the day.
#[inline]
fn time_of_day_ms(b: &[u8]) -> Option<i64> {
    if !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(b, 11..13)?, digits(b, 14..16)?, digits(b, 17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(((hour as i64 * 60 + minute as i64) * 60 + second as i64) * 1000)
}

/// The date of the last timestamp a parser read, so that the next one on
/// the same day parses only its time of day (rows come in time order, so
/// most share the date before them).
#[derive(Clone, Copy, Default)]
struct DayCache {
    /// `YYYY-MM-DD` (all zero bytes, no date, at first).
    date: [u8; 10],
    /// Its midnight, ms since the epoch.
    midnight_ms: i64,
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (exactly), through `cache`: equal to
/// [`parse_ts_bytes`].
fn parse_ts_cached(b: &[u8], cache: &mut DayCache) -> Option<i64> {
    if b.len() != 23 || b[..10] != cache.date {
        let ms = parse_ts_bytes(b)?;
        if b.len() == 23 {
            cache.date.copy_from_slice(&b[..10]);
            cache.midnight_ms = ms - ms.rem_euclid(86_400_000);
        }
        return Some(ms);
    }
    if b[19] != b'.' {
        return None;
    }
    Some(cache.midnight_ms + time_of_day_ms(b)? + digits(b, 20..23)? as i64)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (the
/// era-based method of Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A timestamp field of a CSV row (ms since the epoch), written and read as
/// Flink SQL's `TIMESTAMP(3)` text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(pub i64);

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(self.0))
    }
}

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        parse_ts(&s).map(Ts).map_err(serde::de::Error::custom)
    }
}

/// A row of `person.csv`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonRow {
    id: u64,
    name: Text,
    email_address: Text,
    credit_card: Text,
    city: Text,
    state: Text,
    date_time: Ts,
    extra: Text,
}

impl From<PersonRow> for Person {
    fn from(r: PersonRow) -> Self {
        Person {
            id: r.id,
            name: r.name,
            email_address: r.email_address,
            credit_card: r.credit_card,
            city: r.city,
            state: r.state,
            date_time: r.date_time.0,
            extra: r.extra,
        }
    }
}

/// A row of `auction.csv`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionRow {
    id: u64,
    item_name: Text,
    description: Text,
    initial_bid: u64,
    reserve: u64,
    date_time: Ts,
    expires: Ts,
    seller: u64,
    category: u64,
    extra: Text,
}

impl From<AuctionRow> for Auction {
    fn from(r: AuctionRow) -> Self {
        Auction {
            id: r.id,
            item_name: r.item_name,
            description: r.description,
            initial_bid: r.initial_bid,
            reserve: r.reserve,
            date_time: r.date_time.0,
            expires: r.expires.0,
            seller: r.seller,
            category: r.category,
            extra: r.extra,
        }
    }
}

/// A row of `bid.csv`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidRow {
    auction: u64,
    bidder: u64,
    price: u64,
    channel: Text,
    url: Text,
    date_time: Ts,
    extra: Text,
}

impl From<BidRow> for Bid {
    fn from(r: BidRow) -> Self {
        Bid {
            auction: r.auction,
            bidder: r.bidder,
            price: r.price,
            channel: r.channel,
            url: r.url,
            date_time: r.date_time.0,
            extra: r.extra,
        }
    }
}

/// A Nexmark record type read from its CSV file by [`TableParser`].
pub trait CsvTable: Sized + Send + 'static {
    /// The header row [`write_tables`] writes: the columns the fast path
    /// expects, in order.
    const HEADER: &'static str;
    /// The row as serde reads it, for files with other column orders or
    /// quoted fields.
    type Row: DeserializeOwned + Into<Self> + 'static;
    /// Reads the record from its fields, in [`Self::HEADER`]'s order.
    fn from_fields(fields: &mut Fields<'_>) -> Result<Self, String>;
}

/// The fields of one unquoted CSV line, taken in order, with messages that
/// name the column.
pub struct Fields<'a> {
    rest: Option<&'a [u8]>,
    /// The line in its shared read buffer, when read by a file source: text
    /// is sliced from it instead of copied.
    shared: Option<&'a SharedLine<'a>>,
    index: usize,
    header: &'static str,
    /// Bit `i`: text column `i` is read; the others are left empty.
    texts: u64,
    /// The parser's last date, when it keeps one.
    days: Option<&'a mut DayCache>,
}

impl<'a> Fields<'a> {
    fn new(line: &'a [u8], header: &'static str, texts: u64) -> Self {
        Self { rest: Some(line), shared: None, index: 0, header, texts, days: None }
    }

    fn of_shared(line: &'a SharedLine<'a>, header: &'static str, texts: u64, days: &'a mut DayCache) -> Self {
        Self { rest: Some(line.bytes()), shared: Some(line), index: 0, header, texts, days: Some(days) }
    }

    /// `f`, a field of the line, as text.
    #[inline]
    fn decode(&self, f: &[u8]) -> Result<Text, String> {
        match self.shared {
            Some(line) => line.text(f).map(Text::Shared),
            None => std::str::from_utf8(f).ok().map(Text::from),
        }
        .ok_or_else(|| self.bad(f, "UTF-8 text"))
    }

    /// Whether the text column about to be taken is read.
    fn wanted(&self) -> bool {
        self.texts & (1 << self.index.min(63)) != 0
    }

    /// `column N (name)` for the 0-based column `index`.
    fn column(&self, index: usize) -> String {
        let name = self.header.split(',').nth(index).unwrap_or("?");
        format!("column {} ({name})", index + 1)
    }

    fn next(&mut self) -> Result<&'a [u8], String> {
        let Some(rest) = self.rest else {
            return Err(format!(
                "{} is missing: the row has only {} fields",
                self.column(self.index),
                self.index
            ));
        };
        self.index += 1;
        Ok(match memchr::memchr(b',', rest) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                &rest[..i]
            }
            None => {
                self.rest = None;
                rest
            }
        })
    }

    /// Takes a field of `len` bytes at the start of the rest, which ends
    /// there or at a delimiter.
    fn take(&mut self, len: usize) {
        let rest = self.rest.unwrap_or_default();
        self.index += 1;
        self.rest = (len < rest.len()).then(|| &rest[len + 1..]);
    }

    fn bad(&self, field: &[u8], what: &str) -> String {
        format!("{}: {:?} is not {what}", self.column(self.index - 1), String::from_utf8_lossy(field))
    }

    /// An unsigned integer field.
    pub fn u64(&mut self) -> Result<u64, String> {
        // Fast path: digits up to the delimiter, split and parsed in one pass.
        if let Some(rest) = self.rest {
            let digits = rest.iter().take(20).take_while(|c| c.is_ascii_digit()).count();
            let ends = digits == rest.len() || rest[digits] == b',';
            if digits > 0 && digits < 20 && ends {
                let v = rest[..digits].iter().fold(0u64, |a, &c| a * 10 + (c - b'0') as u64);
                self.take(digits);
                return Ok(v);
            }
        }
        let f = self.next()?;
        (!f.is_empty() && f.len() <= 20)
            .then_some(())
            .and_then(|()| {
                f.iter().try_fold(0u64, |a, &c| {
                    c.is_ascii_digit().then_some(())?;
                    a.checked_mul(10)?.checked_add((c - b'0') as u64)
                })
            })
            .ok_or_else(|| self.bad(f, "an unsigned integer"))
    }

    /// A `TIMESTAMP(3)` field, as ms since the epoch.
    pub fn ts(&mut self) -> Result<i64, String> {
        // Fast path: `YYYY-MM-DD HH:MM:SS.mmm` and the delimiter.
        const LEN: usize = 23;
        if let Some(rest) = self.rest
            && rest.len() >= LEN
            && (rest.len() == LEN || rest[LEN] == b',')
            && let Some(ms) = match self.days.as_deref_mut() {
                Some(days) => parse_ts_cached(&rest[..LEN], days),
                None => parse_ts_bytes(&rest[..LEN]),
            }
        {
            self.take(LEN);
            return Ok(ms);
        }
        let f = self.next()?;
        parse_ts_bytes(f).ok_or_else(|| self.bad(f, "a timestamp (YYYY-MM-DD HH:MM:SS.mmm)"))
    }

    /// A text field (empty if the query does not read it).
    pub fn text(&mut self) -> Result<Text, String> {
        if !self.wanted() {
            self.next()?;
            return Ok(Text::Static(""));
        }
        let f = self.next()?;
        self.decode(f)
    }

    /// A text field that is most often one of `words` (kept without a copy).
    pub fn word(&mut self, words: &[&'static str]) -> Result<Text, String> {
        if !self.wanted() {
            self.next()?;
            return Ok(Text::Static(""));
        }
        let f = self.next()?;
        if let Some(w) = words.iter().find(|w| w.as_bytes() == f) {
            return Ok(Text::Static(w));
        }
        self.decode(f)
    }

    /// Ends the row: no field may be left.
    pub fn end(&self) -> Result<(), String> {
        match self.rest {
            None => Ok(()),
            Some(rest) => Err(format!(
                "the row has {} fields, expected {}",
                self.index + 1 + memchr::memchr_iter(b',', rest).count(),
                self.header.split(',').count()
            )),
        }
    }
}

impl CsvTable for Person {
    const HEADER: &'static str = PERSON_HEADER;
    type Row = PersonRow;
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, String> {
        let p = Person {
            id: f.u64()?,
            name: f.text()?,
            email_address: f.text()?,
            credit_card: f.text()?,
            city: f.text()?,
            state: f.text()?,
            date_time: f.ts()?,
            extra: f.text()?,
        };
        f.end()?;
        Ok(p)
    }
}

impl CsvTable for Auction {
    const HEADER: &'static str = AUCTION_HEADER;
    type Row = AuctionRow;
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, String> {
        let a = Auction {
            id: f.u64()?,
            item_name: f.text()?,
            description: f.text()?,
            initial_bid: f.u64()?,
            reserve: f.u64()?,
            date_time: f.ts()?,
            expires: f.ts()?,
            seller: f.u64()?,
            category: f.u64()?,
            extra: f.text()?,
        };
        f.end()?;
        Ok(a)
    }
}

impl CsvTable for Bid {
    const HEADER: &'static str = BID_HEADER;
    type Row = BidRow;
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, String> {
        let b = Bid {
            auction: f.u64()?,
            bidder: f.u64()?,
            price: f.u64()?,
            channel: f.word(&super::generator::HOT_CHANNELS)?,
            url: f.text()?,
            date_time: f.ts()?,
            extra: f.text()?,
        };
        f.end()?;
        Ok(b)
    }
}

/// Reads `T`'s CSV file: a hand-written path for rows in [`CsvTable::HEADER`]'s
/// column order without quotes (what [`write_tables`] writes), serde through
/// [`Csv`] for anything else (another column order, by header name; a quoted
/// field). Malformed rows get a message naming the column, and follow the
/// file source's policy.
///
/// A parser made [`TableParser::reading`] some text columns leaves the
/// others empty on the fast path: they are still split and counted, but not
/// decoded or copied (projection push-down, as Flink's planner pushes a
/// query's columns into its CSV format).
pub struct TableParser<T: CsvTable> {
    /// Set when the header is not [`CsvTable::HEADER`]: every row goes
    /// through serde, by header name.
    by_name: Option<Csv<T::Row>>,
    /// For quoted rows under the expected header.
    quoted: Option<Csv<T::Row>>,
    /// Bit `i`: column `i`, if text, is read.
    texts: u64,
    /// The last date read (a clone starts without one).
    days: DayCache,
}

impl<T: CsvTable> Default for TableParser<T> {
    fn default() -> Self {
        Self { by_name: None, quoted: None, texts: u64::MAX, days: DayCache::default() }
    }
}

impl<T: CsvTable> Clone for TableParser<T> {
    fn clone(&self) -> Self {
        Self { by_name: self.by_name.clone(), quoted: None, texts: self.texts, days: DayCache::default() }
    }
}

impl<T: CsvTable> TableParser<T> {
    /// A parser that reads only the text columns named in `texts` (other
    /// columns are always read).
    ///
    /// # Panics
    /// If a name is not a column of [`CsvTable::HEADER`] (a query's bug).
    pub fn reading(texts: &[&str]) -> Self {
        let columns: Vec<&str> = T::HEADER.split(',').collect();
        let mut mask = 0;
        for name in texts {
            let i = columns.iter().position(|c| c == name);
            let i = i.unwrap_or_else(|| panic!("'{name}' is not a column of {}", T::HEADER));
            mask |= 1 << i;
        }
        Self { texts: mask, ..Self::default() }
    }
}

impl<T: CsvTable> LineParser<T> for TableParser<T> {
    fn has_header(&self) -> bool {
        true
    }

    fn set_header(&mut self, line: &[u8]) -> Result<(), String> {
        if line == T::HEADER.as_bytes() {
            self.by_name = None;
            return Ok(());
        }
        let mut csv = Csv::new().with_header(true);
        csv.set_header(line)?;
        self.by_name = Some(csv);
        Ok(())
    }

    fn parse(&mut self, line: &[u8]) -> Result<Option<T>, String> {
        if line.is_empty() {
            return Ok(None);
        }
        if let Some(csv) = &mut self.by_name {
            return Ok(csv.parse(line)?.map(Into::into));
        }
        if memchr::memchr(b'"', line).is_some() {
            let csv = self.quoted.get_or_insert_with(Csv::new);
            return Ok(csv.parse(line)?.map(Into::into));
        }
        T::from_fields(&mut Fields::new(line, T::HEADER, self.texts)).map(Some)
    }

    fn parse_shared(&mut self, line: &SharedLine<'_>) -> Result<Option<T>, String> {
        let bytes = line.bytes();
        if bytes.is_empty() || self.by_name.is_some() || memchr::memchr(b'"', bytes).is_some() {
            return self.parse(bytes);
        }
        T::from_fields(&mut Fields::of_shared(line, T::HEADER, self.texts, &mut self.days)).map(Some)
    }
}

fn field(out: &mut Vec<u8>, t: &Text) {
    out.extend_from_slice(t.as_str().as_bytes());
}

/// Appends a person's CSV line.
pub fn write_person(out: &mut Vec<u8>, p: &Person) {
    let _ = write!(out, "{},", p.id);
    for t in [&p.name, &p.email_address, &p.credit_card, &p.city, &p.state] {
        field(out, t);
        out.push(b',');
    }
    write_ts(out, p.date_time);
    out.push(b',');
    field(out, &p.extra);
    out.push(b'\n');
}

/// Appends an auction's CSV line.
pub fn write_auction(out: &mut Vec<u8>, a: &Auction) {
    let _ = write!(out, "{},", a.id);
    field(out, &a.item_name);
    out.push(b',');
    field(out, &a.description);
    let _ = write!(out, ",{},{},", a.initial_bid, a.reserve);
    write_ts(out, a.date_time);
    out.push(b',');
    write_ts(out, a.expires);
    let _ = write!(out, ",{},{},", a.seller, a.category);
    field(out, &a.extra);
    out.push(b'\n');
}

/// Appends a bid's CSV line.
pub fn write_bid(out: &mut Vec<u8>, b: &Bid) {
    let _ = write!(out, "{},{},{},", b.auction, b.bidder, b.price);
    field(out, &b.channel);
    out.push(b',');
    field(out, &b.url);
    out.push(b',');
    write_ts(out, b.date_time);
    out.push(b',');
    field(out, &b.extra);
    out.push(b'\n');
}

/// How many rows [`write_tables`] wrote to each file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Rows of `person.csv`.
    pub persons: u64,
    /// Rows of `auction.csv`.
    pub auctions: u64,
    /// Rows of `bid.csv`.
    pub bids: u64,
}

/// Writes events `0..events` to `dir/{person,auction,bid}.csv` (creating
/// `dir`), in event order, each file with its header row.
pub fn write_tables(dir: &Path, config: &GeneratorConfig, events: u64) -> std::io::Result<TableCounts> {
    std::fs::create_dir_all(dir)?;
    let open = |name: &str, header: &str| -> std::io::Result<std::fs::File> {
        let mut f = std::fs::File::create(dir.join(name))?;
        writeln!(f, "{header}")?;
        Ok(f)
    };
    let mut files = [
        open("person.csv", PERSON_HEADER)?,
        open("auction.csv", AUCTION_HEADER)?,
        open("bid.csv", BID_HEADER)?,
    ];
    let mut bufs: [Vec<u8>; 3] = Default::default();
    let mut counts = TableCounts::default();
    for n in 0..events {
        match config.event(n) {
            Event::Person(p) => {
                write_person(&mut bufs[0], &p);
                counts.persons += 1;
            }
            Event::Auction(a) => {
                write_auction(&mut bufs[1], &a);
                counts.auctions += 1;
            }
            Event::Bid(b) => {
                write_bid(&mut bufs[2], &b);
                counts.bids += 1;
            }
        }
        if n % 4096 == 4095 {
            for (f, b) in files.iter_mut().zip(bufs.iter_mut()) {
                f.write_all(b)?;
                b.clear();
            }
        }
    }
    for (f, b) in files.iter_mut().zip(bufs.iter_mut()) {
        f.write_all(b)?;
        f.sync_all()?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_timestamps_parse_as_uncached() {
        // Steps of up to 17 minutes from 1969 on: about 170 rows per day,
        // across some 2 000 midnights (a fixed sequence, not a random one).
        let mut cache = DayCache::default();
        let (mut ms, mut x) = (-86_400_000 * 3 - 1, 0x9E37_79B9_7F4A_7C15_u64);
        for _ in 0..300_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ms += (x >> 44) as i64;
            let text = format_ts(ms);
            assert_eq!(parse_ts_cached(text.as_bytes(), &mut cache), Some(ms), "{text}");
        }
        // A bad time of day on the cached date is refused, as uncached.
        assert!(parse_ts_cached(b"2015-07-15 00:00:00.000", &mut cache).is_some());
        for bad in [
            "2015-07-15 24:00:00.000",
            "2015-07-15 23:60:00.000",
            "2015-07-15 23:59:60.000",
            "2015-07-15 23:59:59.0x0",
            "2015-07-15 23-59:59.000",
            "2015-07-15X23:59:59.000",
            "2015-07-15 23:59:59,000",
        ] {
            assert_eq!(parse_ts_bytes(bad.as_bytes()), None, "{bad}");
            assert_eq!(parse_ts_cached(bad.as_bytes(), &mut cache), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_round_trip_in_flink_sql_format() {
        for ms in [0, 1_436_918_400_000, 1_436_918_400_123, 1_436_918_409_999, 951_782_400_001] {
            let s = format_ts(ms);
            assert_eq!(parse_ts(&s), Ok(ms), "{s}");
        }
        assert_eq!(format_ts(1_436_918_400_123), "2015-07-15 00:00:00.123");
        assert_eq!(parse_ts("2015-07-15 00:00:00"), Ok(1_436_918_400_000));
        assert_eq!(parse_ts("2015-07-15T00:00:00.5"), Ok(1_436_918_400_500));
        for bad in
            ["", "2015-07-15", "2015-13-01 00:00:00", "2015-07-15 00:00:0x", "2015-07-15 00:00:00.", "x"]
        {
            assert!(parse_ts(bad).is_err(), "{bad}");
        }
    }

    fn parse<T: CsvTable>(header: &str, line: &str) -> Result<Option<T>, String> {
        let mut p = TableParser::<T>::default();
        p.set_header(header.as_bytes())?;
        p.parse(line.as_bytes())
    }

    #[test]
    fn rows_written_are_read_back_equal() {
        let config = GeneratorConfig::default();
        let (mut kinds, mut line) = ([0; 3], Vec::new());
        for n in 0..2000 {
            line.clear();
            match config.event(n) {
                Event::Person(p) => {
                    write_person(&mut line, &p);
                    line.pop();
                    let text = std::str::from_utf8(&line).unwrap();
                    assert_eq!(parse::<Person>(PERSON_HEADER, text), Ok(Some(*p)));
                    kinds[0] += 1;
                }
                Event::Auction(a) => {
                    write_auction(&mut line, &a);
                    line.pop();
                    let text = std::str::from_utf8(&line).unwrap();
                    assert_eq!(parse::<Auction>(AUCTION_HEADER, text), Ok(Some(*a)));
                    kinds[1] += 1;
                }
                Event::Bid(b) => {
                    write_bid(&mut line, &b);
                    line.pop();
                    let text = std::str::from_utf8(&line).unwrap();
                    assert_eq!(parse::<Bid>(BID_HEADER, text), Ok(Some(b)));
                    kinds[2] += 1;
                }
            }
        }
        assert!(kinds.iter().all(|&k| k > 0), "{kinds:?}");
    }

    #[test]
    fn quoted_fields_and_other_column_orders_go_through_serde() {
        let row = "1001,1002,345,\"Goo,gle\",https://x/y?a=1,2015-07-15 00:00:01.500,pad";
        let bid = parse::<Bid>(BID_HEADER, row).unwrap().unwrap();
        assert_eq!((bid.channel.as_str(), bid.price, bid.date_time), ("Goo,gle", 345, 1_436_918_401_500));
        let header = "price,auction,bidder,channel,url,dateTime,extra";
        let bid = parse::<Bid>(header, "7,1001,1002,Baidu,u,2015-07-15 00:00:00,e").unwrap().unwrap();
        assert_eq!((bid.auction, bid.bidder, bid.price), (1001, 1002, 7));
        assert_eq!(parse::<Bid>(BID_HEADER, ""), Ok(None));
    }

    #[test]
    fn a_projected_parser_reads_only_the_named_text_columns() {
        let row = b"1001,1002,345,Google,https://x/y,2015-07-15 00:00:01.500,pad";
        let bid = TableParser::<Bid>::reading(&["extra"]).parse(row).unwrap().unwrap();
        assert_eq!((bid.auction, bid.bidder, bid.price, bid.date_time), (1001, 1002, 345, 1_436_918_401_500));
        assert_eq!((bid.channel.as_str(), bid.url.as_str(), bid.extra.as_str()), ("", "", "pad"));
        // Unread columns are still counted.
        let err = TableParser::<Bid>::reading(&[]).parse(b"1,2,3,a,b").unwrap_err();
        assert!(err.contains("column 6 (dateTime) is missing"), "{err}");
    }

    #[test]
    fn malformed_rows_name_the_column() {
        let ts = "2015-07-15 00:00:00.000";
        let cases = [
            (format!("1,2,12x,Google,u,{ts},e"), "column 3 (price): \"12x\" is not an unsigned integer"),
            (format!("1,2,,Google,u,{ts},e"), "column 3 (price): \"\" is not an unsigned integer"),
            (format!("1,2,99999999999999999999,Google,u,{ts},e"), "column 3 (price)"),
            ("1,2,3,Google,u,2015-02-30 00:00:00.000,e".to_string(), "column 6 (dateTime)"),
            ("1,2,3,Google,u".to_string(), "column 6 (dateTime) is missing: the row has only 5 fields"),
            (format!("1,2,3,Google,u,{ts},e,f,g"), "the row has 9 fields, expected 7"),
        ];
        for (line, want) in cases {
            let err = parse::<Bid>(BID_HEADER, &line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
        let mut p = TableParser::<Bid>::default();
        let err = p.parse(b"1,2,3,Go\xffgle,u,2015-07-15 00:00:00,e").unwrap_err();
        assert!(err.contains("column 4 (channel)") && err.contains("UTF-8"), "{err}");
        assert!(parse_ts("2016-02-29 23:59:59.999").is_ok());
        assert!(parse_ts("2015-02-29 00:00:00").is_err());
        assert!(parse_ts("2015-07-15 24:00:00").is_err());
    }
}
