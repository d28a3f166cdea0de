//! YSB's data: 100 campaigns of 10 ads each, 100 users and 100 pages (random
//! UUIDs, as the original benchmark's setup makes them), and ad events drawn
//! uniformly from them.
//!
//! Event `n` is a function of the seed and `n` alone (a SplitMix64 hash of
//! both), so the stream is the same at any core count and can be generated
//! from any point. Event time advances evenly: event `n` happens at
//! `base_time_ms + n * 1000 / rate_per_s`. Differences from the original
//! generator (a Clojure loop that stamps each event with the wall clock and
//! pushes it to Kafka): the ids come from a seed instead of the system's
//! random UUIDs, and event time is a function of `n` instead of the clock,
//! so that runs can be repeated and compared with Flink.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::model::{AdEvent, AdType, EventType, Id, write_json};

/// Campaigns in the table.
pub const CAMPAIGNS: usize = 100;
/// Ads per campaign.
pub const ADS_PER_CAMPAIGN: usize = 10;
/// Distinct users, and distinct pages.
pub const USERS: usize = 100;

/// What to generate.
#[derive(Clone, Debug)]
pub struct YsbConfig {
    /// Seed of the ids and of the events.
    pub seed: u64,
    /// Events per second of event time (the spacing of timestamps, not the
    /// speed of a run).
    pub rate_per_s: u64,
    /// Event time of event 0, ms since the epoch.
    pub base_time_ms: i64,
}

impl Default for YsbConfig {
    fn default() -> Self {
        // 2015-07-15 00:00:00 UTC, as Nexmark's generator.
        Self { seed: 1, rate_per_s: 1_000_000, base_time_ms: 1_436_918_400_000 }
    }
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A version-4 UUID from two random words.
fn uuid(hi: u64, lo: u64) -> Id {
    let v = (hi as u128) << 64 | lo as u128;
    let v = (v & !(0xf_u128 << 76)) | (0x4_u128 << 76);
    Id((v & !(0x3_u128 << 62)) | (0x2_u128 << 62))
}

/// The ids of one run, and the ad → campaign table the job joins with.
#[derive(Clone, Debug)]
pub struct Ids {
    /// Campaign ids.
    pub campaigns: Vec<Id>,
    /// Ad ids; ad `i` belongs to campaign `i / ADS_PER_CAMPAIGN`.
    pub ads: Vec<Id>,
    /// User ids.
    pub users: Vec<Id>,
    /// Page ids.
    pub pages: Vec<Id>,
}

impl Ids {
    /// The ids of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut state = mix(seed ^ 0x5953_4200_0000_0000);
        let mut next = move |count: usize| -> Vec<Id> {
            (0..count)
                .map(|_| {
                    state = mix(state);
                    let hi = state;
                    state = mix(state);
                    uuid(hi, state)
                })
                .collect()
        };
        let campaigns = next(CAMPAIGNS);
        let ads = next(CAMPAIGNS * ADS_PER_CAMPAIGN);
        let users = next(USERS);
        let pages = next(USERS);
        Self { campaigns, ads, users, pages }
    }

    /// Ad id → campaign id.
    pub fn campaign_table(&self) -> CampaignTable {
        Arc::new(
            self.ads.iter().enumerate().map(|(i, ad)| (*ad, self.campaigns[i / ADS_PER_CAMPAIGN])).collect(),
        )
    }
}

/// Ad id → campaign id: the static table YSB keeps in Redis; every core
/// holds it (it is small), as the Flink job caches it.
pub type CampaignTable = Arc<FxHashMap<Id, Id>>;

/// Makes events.
#[derive(Clone, Debug)]
pub struct Generator {
    config: YsbConfig,
    ids: Arc<Ids>,
}

impl Generator {
    /// A generator of `config`.
    pub fn new(config: YsbConfig) -> Self {
        let ids = Arc::new(Ids::new(config.seed));
        Self { config, ids }
    }

    /// The ids it draws from.
    pub fn ids(&self) -> &Ids {
        &self.ids
    }

    /// Event `n`.
    #[inline]
    pub fn event(&self, n: u64) -> AdEvent {
        let h = mix(self.config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n);
        let h2 = mix(h);
        let pick = |h: u64, bits: u32, count: usize| (((h >> bits) & 0xffff) as usize * count) >> 16;
        let ids = &*self.ids;
        AdEvent {
            user_id: ids.users[pick(h, 0, USERS)],
            page_id: ids.pages[pick(h, 16, USERS)],
            ad_id: ids.ads[pick(h, 32, ids.ads.len())],
            ad_type: AdType::ALL[pick(h2, 0, AdType::ALL.len())],
            event_type: EventType::ALL[pick(h2, 16, EventType::ALL.len())],
            event_time: self.config.base_time_ms + (n as u128 * 1000 / self.config.rate_per_s as u128) as i64,
            ip_address: [1, 2, 3, 4],
        }
    }
}

/// Writes events `0..events` to `dir/events.json` (one JSON object per
/// line) and the ad → campaign table to `dir/campaigns.csv` (`ad_id,campaign_id`,
/// no header row), creating `dir`.
pub fn write_inputs(dir: &Path, config: &YsbConfig, events: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let generator = Generator::new(config.clone());
    let mut table = std::fs::File::create(dir.join("campaigns.csv"))?;
    for (i, ad) in generator.ids().ads.iter().enumerate() {
        writeln!(table, "{ad},{}", generator.ids().campaigns[i / ADS_PER_CAMPAIGN])?;
    }
    table.sync_all()?;
    let mut file = std::fs::File::create(dir.join("events.json"))?;
    let mut buf = Vec::with_capacity(1 << 20);
    for n in 0..events {
        write_json(&mut buf, &generator.event(n));
        if buf.len() > (1 << 20) - 512 {
            file.write_all(&buf)?;
            buf.clear();
        }
    }
    file.write_all(&buf)?;
    file.sync_all()
}

/// Reads an `ad_id,campaign_id` table (no header row); errors name the line.
pub fn read_campaigns(path: &Path) -> Result<CampaignTable, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    let mut table = FxHashMap::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("line {} of '{}': {what} in {line:?}", i + 1, path.display());
        let (ad, campaign) = line.split_once(',').ok_or_else(|| bad("expected ad_id,campaign_id"))?;
        let ad = Id::parse(ad.as_bytes()).ok_or_else(|| bad("ad_id is not a UUID"))?;
        let campaign = Id::parse(campaign.as_bytes()).ok_or_else(|| bad("campaign_id is not a UUID"))?;
        if table.insert(ad, campaign).is_some() {
            return Err(bad("the ad is listed twice"));
        }
    }
    Ok(Arc::new(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_version_4_uuids() {
        let ids = Ids::new(7);
        let all: Vec<Id> =
            [&ids.campaigns, &ids.ads, &ids.users, &ids.pages].into_iter().flatten().copied().collect();
        let distinct: std::collections::HashSet<Id> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
        for id in &all {
            let s = id.to_string();
            assert_eq!(&s[14..15], "4", "{s}");
            assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        }
        assert_eq!(Ids::new(7).ads, ids.ads);
        assert_ne!(Ids::new(8).ads, ids.ads);
    }

    #[test]
    fn events_are_uniform_over_ads_and_kinds_and_evenly_timed() {
        let g = Generator::new(YsbConfig { rate_per_s: 1000, ..YsbConfig::default() });
        let n = 300_000u64;
        let mut views = 0;
        let mut per_campaign = vec![0u64; CAMPAIGNS];
        let table = g.ids().campaign_table();
        let index: FxHashMap<Id, usize> =
            g.ids().campaigns.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        for i in 0..n {
            let e = g.event(i);
            assert_eq!(e.event_time, 1_436_918_400_000 + i as i64);
            views += (e.event_type == EventType::View) as u64;
            per_campaign[index[&table[&e.ad_id]]] += 1;
        }
        let third = n as f64 / 3.0;
        assert!((views as f64 - third).abs() < third * 0.02, "views {views}");
        let each = n as f64 / CAMPAIGNS as f64;
        for c in per_campaign {
            assert!((c as f64 - each).abs() < each * 0.1, "campaign share {c} of {each}");
        }
    }

    #[test]
    fn the_campaign_table_round_trips_through_its_file_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = YsbConfig::default();
        write_inputs(dir.path(), &config, 10).unwrap();
        let table = read_campaigns(&dir.path().join("campaigns.csv")).unwrap();
        assert_eq!(table, Generator::new(config).ids().campaign_table());
        let bad = dir.path().join("bad.csv");
        std::fs::write(
            &bad,
            "00000000-0000-4000-8000-000000000001,00000000-0000-4000-8000-000000000002\nxyz\n",
        )
        .unwrap();
        let e = read_campaigns(&bad).unwrap_err();
        assert!(e.contains("line 2") && e.contains("expected ad_id,campaign_id"), "{e}");
    }
}
