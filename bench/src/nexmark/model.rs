//! Nexmark's three record types, with the fields and names of the
//! nexmark-flink DDL (`person`, `auction`, `bid`), and [`Text`], the string
//! type that lets the generator hand out its vocabulary and padding without
//! copying them.

use std::fmt;
use std::sync::Arc;

use brisk::io::SharedStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string field: a word of the generator's vocabulary, a slice of its
/// padding pool (see [`super::generator::extra_pool`]), a slice of a file
/// source's read buffer, or text of its own (generated letter by letter, or
/// copied). Compares, hashes and serializes as its text.
///
/// Text read from a file shares the read buffer ([`SharedStr`]); a query that
/// keeps text in state calls [`Text::detached`] first, so that it does not
/// pin the buffers it came from.
#[derive(Clone)]
pub enum Text {
    /// A vocabulary word.
    Static(&'static str),
    /// `pool[start..start + len]` of the generator's padding pool.
    Pool {
        /// First byte.
        start: u32,
        /// Length in bytes.
        len: u32,
    },
    /// A slice of a file source's read buffer.
    Shared(SharedStr),
    /// Text of its own.
    Owned(Arc<str>),
}

impl Text {
    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Pool { start, len } => {
                &super::generator::extra_pool()[*start as usize..(*start + *len) as usize]
            }
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }

    /// The same text, copied out of a shared read buffer if it is a slice of
    /// one (for text kept in state: see [`Text`]).
    pub fn detached(self) -> Self {
        match self {
            Text::Shared(s) => Text::Owned(s.as_str().into()),
            t => t,
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::Owned(s.into())
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::Owned(s.into())
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        Ok(Text::from(&*s))
    }
}

/// A new person (`event_type = 0`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Person id, from 1000.
    pub id: u64,
    /// "First Last".
    pub name: Text,
    /// Random letters `@` random letters `.com`.
    pub email_address: Text,
    /// Four groups of four digits.
    pub credit_card: Text,
    /// One of ten US cities.
    pub city: Text,
    /// One of six US states.
    pub state: Text,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// Padding to the average person size.
    pub extra: Text,
}

/// A new auction (`event_type = 1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Auction id, from 1000.
    pub id: u64,
    /// Item name.
    pub item_name: Text,
    /// Item description.
    pub description: Text,
    /// Opening price.
    pub initial_bid: u64,
    /// Reserve price.
    pub reserve: u64,
    /// Event time (the auction opens), ms since the epoch.
    pub date_time: i64,
    /// When the auction closes, ms since the epoch.
    pub expires: i64,
    /// The seller's person id.
    pub seller: u64,
    /// Category, 10..=14.
    pub category: u64,
    /// Padding to the average auction size.
    pub extra: Text,
}

/// A bid (`event_type = 2`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction bid on.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Where the bid came from ("Google", ..., "channel-N").
    pub channel: Text,
    /// The bid's URL.
    pub url: Text,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// Padding to the average bid size.
    pub extra: Text,
}

impl Auction {
    /// The auction with its text copied out of shared read buffers (for
    /// state: see [`Text`]).
    pub fn detached(self) -> Self {
        Auction {
            item_name: self.item_name.detached(),
            description: self.description.detached(),
            extra: self.extra.detached(),
            ..self
        }
    }
}

impl Bid {
    /// The bid with its text copied out of shared read buffers (for state:
    /// see [`Text`]).
    pub fn detached(self) -> Self {
        Bid {
            channel: self.channel.detached(),
            url: self.url.detached(),
            extra: self.extra.detached(),
            ..self
        }
    }
}

/// One Nexmark event. Persons and auctions are boxed so that the common
/// case, a bid, keeps the enum small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Box<Person>),
    /// A new auction.
    Auction(Box<Auction>),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's time, ms since the epoch.
    #[inline]
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}
