//! Nexmark as CSV files, for other systems and for brisk's own file runs:
//! `person.csv`, `auction.csv` and `bid.csv`, each with a header row, the
//! columns of the nexmark-flink DDL, and timestamps as Flink SQL reads and
//! prints them (`2015-07-15 00:00:00.123`, UTC).

use std::io::Write;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Timelike};
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
    let bad = || format!("'{s}' is not a timestamp (YYYY-MM-DD HH:MM:SS.mmm)");
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let d = &b[r];
        if !d.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(d.iter().fold(0u32, |a, c| a * 10 + (c - b'0') as u32))
    };
    let mut millis = 0;
    if b.len() > 19 {
        if b[19] != b'.' || b.len() == 20 || b.len() > 29 {
            return Err(bad());
        }
        let frac = num(20..b.len())?;
        let digits = b.len() - 20;
        millis = if digits >= 3 {
            frac / 10u32.pow(digits as u32 - 3)
        } else {
            frac * 10u32.pow(3 - digits as u32)
        };
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let t = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
        .and_then(|d| d.and_hms_milli_opt(hour, minute, second, millis))
        .ok_or_else(bad)?;
    Ok(t.and_utc().timestamp_millis())
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
}
