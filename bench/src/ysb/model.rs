//! YSB's ad event, its ids (UUIDs), and its JSON line: the fields and
//! spelling of the original benchmark's generator (`user_id`, `page_id`,
//! `ad_id`, `ad_type`, `event_type`, `event_time` as a string of epoch
//! milliseconds, `ip_address`).

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

use brisk::io::LineParser;
use brisk::io::kafka::{KafkaDeserializer, KafkaRecord};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UUID, held as its 128 bits; written and read in the 8-4-4-4-12
/// lowercase hex form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub u128);

impl Id {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex, either case).
    pub fn parse(s: &[u8]) -> Option<Id> {
        if s.len() != 36 {
            return None;
        }
        let mut v = 0u128;
        for (i, &c) in s.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let d = (c as char).to_digit(16)?;
            v = v << 4 | d as u128;
        }
        Some(Id(v))
    }

    /// Appends the hyphenated form.
    pub fn write(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in 0..32 {
            if matches!(i, 8 | 12 | 16 | 20) {
                out.push(b'-');
            }
            out.push(HEX[(self.0 >> (124 - 4 * i) & 0xf) as usize]);
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::with_capacity(36);
        self.write(&mut v);
        f.write_str(std::str::from_utf8(&v).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Cow<'de, str> = Deserialize::deserialize(d)?;
        Id::parse(s.as_bytes()).ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not a UUID")))
    }
}

/// Declares a field whose value is one word of a fixed list.
macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in the order the generator draws from.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The word as JSON spells it.
            pub fn word(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// The value spelled `word`.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

word_enum!(
    /// The kind of ad.
    AdType {
        /// `banner`.
        Banner = "banner",
        /// `modal`.
        Modal = "modal",
        /// `sponsored-search`.
        SponsoredSearch = "sponsored-search",
        /// `mail`.
        Mail = "mail",
        /// `mobile`.
        Mobile = "mobile",
    }
);

word_enum!(
    /// What the user did with the ad.
    EventType {
        /// `view`: the events the benchmark counts.
        View = "view",
        /// `click`.
        Click = "click",
        /// `purchase`.
        Purchase = "purchase",
    }
);

/// One ad event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdEvent {
    /// Who saw the ad.
    pub user_id: Id,
    /// On which page.
    pub page_id: Id,
    /// Which ad (the join key to its campaign).
    pub ad_id: Id,
    /// The ad's kind.
    pub ad_type: AdType,
    /// What happened.
    pub event_type: EventType,
    /// Event time, ms since the epoch.
    pub event_time: i64,
    /// The user's IPv4 address.
    pub ip_address: [u8; 4],
}

/// Appends `e` as one JSON line, as the original benchmark writes it.
pub fn write_json(out: &mut Vec<u8>, e: &AdEvent) {
    for (name, id) in
        [("{\"user_id\":\"", e.user_id), ("\",\"page_id\":\"", e.page_id), ("\",\"ad_id\":\"", e.ad_id)]
    {
        out.extend_from_slice(name.as_bytes());
        id.write(out);
    }
    let [a, b, c, d] = e.ip_address;
    let _ = writeln!(
        out,
        "\",\"ad_type\":\"{}\",\"event_type\":\"{}\",\"event_time\":\"{}\",\"ip_address\":\"{a}.{b}.{c}.{d}\"}}",
        e.ad_type.word(),
        e.event_type.word(),
        e.event_time
    );
}

/// The JSON object as serde reads it; strings borrowed unless escaped.
#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    page_id: Cow<'a, str>,
    #[serde(borrow)]
    ad_id: Cow<'a, str>,
    #[serde(borrow)]
    ad_type: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    event_time: Millis<'a>,
    #[serde(borrow)]
    ip_address: Cow<'a, str>,
}

/// `event_time`: a string of digits, as YSB writes it, or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Millis<'a> {
    Number(i64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

/// Parses one JSON ad event; the error names the field at fault.
pub fn parse_json(line: &[u8]) -> Result<AdEvent, String> {
    let j: JsonEvent<'_> = serde_json::from_slice(line).map_err(|e| format!("not a YSB event: {e}"))?;
    let id =
        |name: &str, s: &str| Id::parse(s.as_bytes()).ok_or_else(|| format!("{name} '{s}' is not a UUID"));
    Ok(AdEvent {
        user_id: id("user_id", &j.user_id)?,
        page_id: id("page_id", &j.page_id)?,
        ad_id: id("ad_id", &j.ad_id)?,
        ad_type: AdType::parse(&j.ad_type).ok_or_else(|| {
            format!("ad_type '{}' is not one of banner, modal, sponsored-search, mail, mobile", j.ad_type)
        })?,
        event_type: EventType::parse(&j.event_type)
            .ok_or_else(|| format!("event_type '{}' is not one of view, click, purchase", j.event_type))?,
        event_time: match j.event_time {
            Millis::Number(n) => n,
            Millis::Text(t) => {
                t.parse().map_err(|_| format!("event_time '{t}' is not epoch milliseconds"))?
            }
        },
        ip_address: j
            .ip_address
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("ip_address '{}' is not an IPv4 address", j.ip_address))?
            .octets(),
    })
}

/// Reads ad events from JSON lines (a file) or JSON record values (Kafka);
/// a malformed event follows the source's policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdEventJson;

impl LineParser<AdEvent> for AdEventJson {
    fn parse(&mut self, line: &[u8]) -> Result<Option<AdEvent>, String> {
        if line.is_empty() {
            return Ok(None);
        }
        parse_json(line).map(Some)
    }
}

impl KafkaDeserializer<AdEvent> for AdEventJson {
    fn deserialize(&mut self, record: &KafkaRecord<'_>) -> Result<Option<AdEvent>, String> {
        match record.value {
            None => Err("a tombstone (no value) is not a YSB event".into()),
            Some(v) => parse_json(v).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_in_uuid_form() {
        let id = Id(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(Id::parse(b"01234567-89AB-cdef-fedc-ba9876543210"), Some(id));
        for bad in [
            "",
            "01234567-89ab-cdef-fedc-ba987654321",
            "01234567x89ab-cdef-fedc-ba9876543210",
            "g1234567-89ab-cdef-fedc-ba9876543210",
        ] {
            assert_eq!(Id::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn json_lines_round_trip_and_bad_fields_are_named() {
        let e = AdEvent {
            user_id: Id(1),
            page_id: Id(u128::MAX),
            ad_id: Id(0xabc),
            ad_type: AdType::SponsoredSearch,
            event_type: EventType::View,
            event_time: 1_436_918_400_123,
            ip_address: [1, 2, 3, 4],
        };
        let mut line = Vec::new();
        write_json(&mut line, &e);
        assert_eq!(line.pop(), Some(b'\n'));
        assert_eq!(parse_json(&line), Ok(e));
        let text = String::from_utf8(line).unwrap();
        let numeric = text.replace("\"1436918400123\"", "1436918400123");
        assert_eq!(parse_json(numeric.as_bytes()), Ok(e));
        let bad = text.replace("\"view\"", "\"glance\"");
        assert!(parse_json(bad.as_bytes()).unwrap_err().contains("event_type 'glance'"));
        let bad = text.replace("\"1436918400123\"", "\"soon\"");
        assert!(parse_json(bad.as_bytes()).unwrap_err().contains("event_time 'soon'"));
        assert!(parse_json(b"{\"user_id\":1}").unwrap_err().starts_with("not a YSB event"));
        assert!(parse_json(b"not json").is_err());
    }
}
