//! The Nexmark queries on brisk's DataStream API, each meaning what the
//! nexmark-flink SQL of the same name means (shared/BENCHMARKS.md; the SQL
//! is in `tests/nexmark/queries/`), with the same result rows.
//!
//! | query | plan |
//! | --- | --- |
//! | q0 | bids → project |
//! | q1 | bids → price × 0.908 (exact, as Flink's `DECIMAL(23, 3)`) |
//! | q2 | bids → `auction mod 123 = 0` |
//! | q3 | persons in OR/ID/CA ∪ auctions of category 10 → key by person → join, both sides kept (a regular join) |
//! | q4 | auctions ∪ bids → key by auction → highest bid within the auction's lifetime, final when it closes → key by category → running average |
//! | q5 | bids → count per (auction, 2 s pane), combined per batch → to each of the pane's five 10 s windows → key by (window, auction mod 16) → counts per auction, the part's maximum at the window's end → key by window → the auctions with the most bids |
//! | q7 | bids → per 10 s window the highest price and its bids, combined per batch → key by window → bids at the maximum |
//! | q8 | persons ∪ auctions → key by person → 10 s windows: persons who also opened an auction |
//! | q9 | as q4, emitting the winning bid with its auction |
//! | q11 | bids → count per (bidder, ms), combined per batch → key by bidder → 10 s session windows |
//! | q12 | bids → count per bidder, combined per batch → key by bidder → 10 s processing-time windows |
//! | q14 | bids → filter on the converted price → day/night label, count of `c` in `extra` |
//!
//! Bid-keyed queries combine their records per batch before the exchange
//! ([`DataStream::combine_in_batch`]), so that the hot auction or bidder
//! (half, or three quarters, of all bids) does not put its work on one core.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use brisk::prelude::*;
use serde::{Deserialize, Serialize};

use super::csv::{CsvTable, TableParser, Ts};
use super::generator::{GeneratorConfig, bids_in};
use super::model::{Auction, Bid, Event, Person, Text};
use crate::SumCounts;
use crate::latency::{WindowLatency, Windowed};

/// Flink's DDL: `WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND`.
pub const OUT_OF_ORDERNESS_MS: i64 = 4000;

/// The queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Query {
    /// Pass-through of bids.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Local item suggestion (incremental join).
    Q3,
    /// Average price per category.
    Q4,
    /// Hot items.
    Q5,
    /// Highest bid.
    Q7,
    /// Monitor new users.
    Q8,
    /// Winning bids.
    Q9,
    /// User sessions.
    Q11,
    /// Processing-time windows.
    Q12,
    /// Calculation (scalar function).
    Q14,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 12] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q7,
        Query::Q8,
        Query::Q9,
        Query::Q11,
        Query::Q12,
        Query::Q14,
    ];

    /// `q0`, `q1`, ...
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q9 => "q9",
            Query::Q11 => "q11",
            Query::Q12 => "q12",
            Query::Q14 => "q14",
        }
    }
}

/// Where the events come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// The in-process generator: events `0..events`.
    Generator {
        /// What to generate.
        config: GeneratorConfig,
        /// How many events.
        events: u64,
        /// At most this many events per second of wall time (all splits).
        rate_limit: Option<f64>,
        /// Where a rate limit's schedule starts (wall-clock µs): from the
        /// first batch when `None` (see `GeneratorSource::with_rate_from`).
        schedule_from_us: Option<i64>,
    },
    /// `person.csv`, `auction.csv` and `bid.csv` in a directory.
    Files(PathBuf),
}

/// The query's tables, made on first use: a generator run makes one source
/// (only bids for bid-only queries: the events it skips are never read);
/// a file run reads only the files the query needs.
pub struct Tables<'a> {
    env: &'a StreamEnv,
    input: Input,
    events: RefCell<Option<DataStream<Event>>>,
}

fn watermarks<T: brisk::Data>(ts: fn(&T) -> i64) -> WatermarkStrategy<T> {
    WatermarkStrategy::for_bounded_out_of_orderness(OUT_OF_ORDERNESS_MS)
        .with_timestamp_assigner(move |e: &T, _| ts(e))
}

impl<'a> Tables<'a> {
    /// Tables of `input` on `env`.
    pub fn new(env: &'a StreamEnv, input: Input) -> Self {
        Self { env, input, events: RefCell::new(None) }
    }

    /// A generator source of records `f(0..count(events))`, where `count`
    /// says how many of the run's events are of the kind `f` makes (a rate
    /// limit is scaled by the same share).
    fn generator_of<T: brisk::Data + Sync>(
        &self,
        count: fn(u64) -> u64,
        f: impl Fn(u64) -> T + Clone + Send + Sync + 'static,
    ) -> DataStream<T> {
        let Input::Generator { events, rate_limit, schedule_from_us, .. } = &self.input else {
            unreachable!("generator input")
        };
        let records = count(*events);
        let source = GeneratorSource::new(records, f).interleaved();
        let source = match (rate_limit, schedule_from_us) {
            (Some(r), None) if records > 0 => source.with_rate(*r * records as f64 / *events as f64),
            (Some(r), Some(from)) if records > 0 => {
                source.with_rate_from(*r * records as f64 / *events as f64, *from)
            }
            _ => source,
        };
        self.env.from_source(source).name("nexmark generator")
    }

    fn file<T: brisk::Data + CsvTable>(&self, dir: &Path, name: &str, texts: &[&str]) -> DataStream<T> {
        self.env
            .from_source(FileSource::with_parser(dir.join(name), TableParser::<T>::reading(texts)))
            .name(name)
    }

    /// Every event, with timestamps and watermarks (generator input only).
    fn events(&self, config: &GeneratorConfig) -> DataStream<Event> {
        let mut events = self.events.borrow_mut();
        events
            .get_or_insert_with(|| {
                let config = config.clone();
                self.generator_of(|n| n, move |n| config.event(n))
                    .assign_timestamps_and_watermarks(watermarks(Event::date_time))
            })
            .clone()
    }

    /// The bids, with timestamps and watermarks; of the text columns, a
    /// file run reads only those named in `texts` (the others are empty).
    pub fn bids(&self, texts: &[&str]) -> DataStream<Bid> {
        match &self.input {
            Input::Generator { config, .. } if self.events.borrow().is_none() => {
                let config = config.clone();
                self.generator_of(bids_in, move |k| config.nth_bid(k))
                    .assign_timestamps_and_watermarks(watermarks(|b: &Bid| b.date_time))
            }
            Input::Generator { config, .. } => self.events(config).flat_map(|e| match e {
                Event::Bid(b) => Some(b),
                _ => None,
            }),
            Input::Files(dir) => self
                .file::<Bid>(dir, "bid.csv", texts)
                .assign_timestamps_and_watermarks(watermarks(|b: &Bid| b.date_time)),
        }
    }

    /// The persons, with timestamps and watermarks; of the text columns, a
    /// file run reads only those named in `texts` (the others are empty).
    pub fn persons(&self, texts: &[&str]) -> DataStream<Person> {
        match &self.input {
            Input::Generator { config, .. } => self.events(config).flat_map(|e| match e {
                Event::Person(p) => Some(*p),
                _ => None,
            }),
            Input::Files(dir) => self
                .file::<Person>(dir, "person.csv", texts)
                .assign_timestamps_and_watermarks(watermarks(|p: &Person| p.date_time)),
        }
    }

    /// The auctions, with timestamps and watermarks; of the text columns, a
    /// file run reads only those named in `texts` (the others are empty).
    pub fn auctions(&self, texts: &[&str]) -> DataStream<Auction> {
        match &self.input {
            Input::Generator { config, .. } => self.events(config).flat_map(|e| match e {
                Event::Auction(a) => Some(*a),
                _ => None,
            }),
            Input::Files(dir) => self
                .file::<Auction>(dir, "auction.csv", texts)
                .assign_timestamps_and_watermarks(watermarks(|a: &Auction| a.date_time)),
        }
    }

    /// Makes the generator source produce every event (queries that read
    /// persons or auctions call this first, so that all tables come from
    /// one source, as in nexmark-flink).
    fn all_events(&self) {
        if let Input::Generator { config, .. } = &self.input {
            self.events(config);
        }
    }
}

/// Where result rows go.
#[derive(Clone, Default)]
pub struct Output {
    /// The CSV file for the rows (default: discard them).
    pub path: Option<PathBuf>,
    /// Records how late windowed results are (q5 and q7; see
    /// [`crate::latency`]).
    pub window_latency: Option<WindowLatency>,
}

impl Output {
    /// Rows to the CSV file at `path`, or discarded.
    pub fn to(path: Option<PathBuf>) -> Self {
        Self { path, window_latency: None }
    }

    /// Sends `rows` to the CSV file, or discards them.
    pub fn sink<T: brisk::Data + Serialize>(&self, rows: DataStream<T>) {
        match &self.path {
            Some(path) => rows.sink_to(FileSink::csv(path)),
            None => rows.sink_to(brisk::DiscardSink),
        }
    }

    /// As [`sink`](Self::sink), recording each row's lateness first when
    /// window latency is measured.
    pub fn sink_windowed<T: brisk::Data + Serialize + Windowed>(&self, rows: DataStream<T>) {
        match &self.window_latency {
            Some(latency) => {
                let latency = latency.clone();
                self.sink(rows.map(move |r: T| {
                    latency.record(&r);
                    r
                }))
            }
            None => self.sink(rows),
        }
    }
}

/// A `DECIMAL(23, 3)` value, held in thousandths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec3(pub u64);

impl Serialize for Dec3 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}.{:03}", self.0 / 1000, self.0 % 1000))
    }
}

/// Adds the query's operators to `tables`' environment.
pub fn build(query: Query, tables: &Tables<'_>, out: &Output) {
    match query {
        Query::Q0 => q0(tables, out),
        Query::Q1 => q1(tables, out),
        Query::Q2 => q2(tables, out),
        Query::Q3 => q3(tables, out),
        Query::Q4 => q4(tables, out),
        Query::Q5 => q5(tables, out),
        Query::Q7 => q7(tables, out),
        Query::Q8 => q8(tables, out),
        Query::Q9 => q9(tables, out),
        Query::Q11 => q11(tables, out),
        Query::Q12 => q12(tables, out),
        Query::Q14 => q14(tables, out),
    }
}

/// A bid's row (q0).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BidRowOut {
    auction: u64,
    bidder: u64,
    price: u64,
    date_time: Ts,
    extra: Text,
}

fn q0(t: &Tables<'_>, out: &Output) {
    out.sink(t.bids(&["extra"]).map(|b| BidRowOut {
        auction: b.auction,
        bidder: b.bidder,
        price: b.price,
        date_time: Ts(b.date_time),
        extra: b.extra,
    }));
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Q1Row {
    auction: u64,
    bidder: u64,
    price: Dec3,
    date_time: Ts,
    extra: Text,
}

fn q1(t: &Tables<'_>, out: &Output) {
    out.sink(t.bids(&["extra"]).map(|b| Q1Row {
        auction: b.auction,
        bidder: b.bidder,
        price: Dec3(b.price * 908),
        date_time: Ts(b.date_time),
        extra: b.extra,
    }));
}

#[derive(Clone, Debug, Serialize)]
struct Q2Row {
    auction: u64,
    price: u64,
}

fn q2(t: &Tables<'_>, out: &Output) {
    out.sink(
        t.bids(&[]).filter(|b| b.auction % 123 == 0).map(|b| Q2Row { auction: b.auction, price: b.price }),
    );
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Q14Row {
    auction: u64,
    bidder: u64,
    price: Dec3,
    bid_time_type: &'static str,
    date_time: Ts,
    extra: Text,
    c_counts: u64,
}

fn q14(t: &Tables<'_>, out: &Output) {
    // 0.908 × price in (1 000 000, 50 000 000), exactly, in thousandths.
    let rows = t
        .bids(&["extra"])
        .filter(|b| (1_000_000_000 + 1..50_000_000_000).contains(&(b.price * 908)))
        .map(|b| {
            let hour = b.date_time.rem_euclid(86_400_000) / 3_600_000;
            let bid_time_type = match hour {
                8..=18 => "dayTime",
                h if h <= 6 || h >= 20 => "nightTime",
                _ => "otherTime",
            };
            let c_counts = b.extra.as_str().bytes().filter(|&c| c == b'c').count() as u64;
            Q14Row {
                auction: b.auction,
                bidder: b.bidder,
                price: Dec3(b.price * 908),
                bid_time_type,
                date_time: Ts(b.date_time),
                extra: b.extra,
                c_counts,
            }
        });
    out.sink(rows);
}

#[derive(Clone, Debug, Serialize)]
struct Q3Row {
    name: Text,
    city: Text,
    state: Text,
    id: u64,
}

/// q3's join, keyed by person id: a person in OR, ID or CA is kept and
/// joins every category-10 auction they sell, before or after.
#[derive(Clone, Default)]
struct LocalItems {
    seller: ValueState<(Text, Text, Text)>,
    waiting: ListState<u64>,
}

impl KeyedProcessFunction<u64, Either<Person, Auction>, Q3Row> for LocalItems {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.seller = ctx.value_state("seller")?;
        self.waiting = ctx.list_state("waiting")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        e: Either<Person, Auction>,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, Q3Row>,
    ) -> Result<(), UserError> {
        match e {
            Either::Left(p) => {
                for id in ctx.list(&self.waiting).clear() {
                    out.collect(Q3Row {
                        name: p.name.clone(),
                        city: p.city.clone(),
                        state: p.state.clone(),
                        id,
                    });
                }
                ctx.value(&self.seller).set((p.name.detached(), p.city.detached(), p.state.detached()));
            }
            Either::Right(a) => match ctx.value(&self.seller).get() {
                Some((name, city, state)) => out.collect(Q3Row {
                    name: name.clone(),
                    city: city.clone(),
                    state: state.clone(),
                    id: a.id,
                }),
                None => ctx.list(&self.waiting).add(a.id),
            },
        }
        Ok(())
    }
}

fn q3(t: &Tables<'_>, out: &Output) {
    t.all_events();
    let persons = t
        .persons(&["name", "city", "state"])
        .filter(|p| matches!(p.state.as_str(), "OR" | "ID" | "CA"))
        .map(Either::<Person, Auction>::Left);
    let auctions = t.auctions(&[]).filter(|a| a.category == 10).map(Either::<Person, Auction>::Right);
    let joined = persons
        .union(&[auctions])
        .key_by(|e: &Either<Person, Auction>| match e {
            Either::Left(p) => p.id,
            Either::Right(a) => a.seller,
        })
        .process(LocalItems::default());
    out.sink(joined);
}

/// The highest bid of each auction within its lifetime
/// (`bid.dateTime BETWEEN auction.dateTime AND auction.expires`), highest
/// price first, then earliest; final once the watermark passes `expires`.
#[derive(Clone, Default, Serialize, Deserialize)]
struct AuctionBids {
    auction: Option<Auction>,
    best: Option<Bid>,
    /// Bids that came before their auction (from another core): they wait
    /// until the watermark passes them.
    waiting: Vec<Bid>,
    /// Set once the auction closed: its later bids are dropped until then.
    forget_at: Option<i64>,
}

impl AuctionBids {
    fn offer(&mut self, b: Bid) {
        let Some(a) = &self.auction else { return };
        if b.date_time < a.date_time || b.date_time > a.expires {
            return;
        }
        match &self.best {
            Some(best) if (best.price, -best.date_time) >= (b.price, -b.date_time) => {}
            _ => self.best = Some(b.detached()),
        }
    }
}

/// Runs [`AuctionBids`] per auction and emits `emit(auction, winner)` at
/// each close.
#[derive(Clone)]
struct WinningBids<O> {
    state: ValueState<AuctionBids>,
    emit: fn(&Auction, &Bid) -> O,
}

impl<O: brisk::Data> KeyedProcessFunction<u64, Either<Auction, Bid>, O> for WinningBids<O> {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.state = ctx.value_state("auction_bids")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        e: Either<Auction, Bid>,
        ctx: &mut Context<'_, u64>,
        _out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        let mut timer = None;
        {
            let mut state = ctx.value(&self.state);
            let s = state.get_or_insert_with(AuctionBids::default);
            match e {
                Either::Left(a) => {
                    timer = Some(a.expires);
                    s.auction = Some(a.detached());
                    for b in std::mem::take(&mut s.waiting) {
                        s.offer(b);
                    }
                }
                Either::Right(_) if s.forget_at.is_some() => {}
                Either::Right(b) if s.auction.is_some() => s.offer(b),
                Either::Right(b) => {
                    timer = Some(b.date_time);
                    s.waiting.push(b.detached());
                }
            }
        }
        if let Some(t) = timer {
            ctx.register_event_time_timer(t);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        let mut forget = None;
        {
            let mut state = ctx.value(&self.state);
            let Some(s) = state.get_mut() else { return Ok(()) };
            match (&s.auction, s.forget_at) {
                (_, Some(f)) if at >= f => {
                    state.clear();
                    return Ok(());
                }
                (Some(a), None) if at >= a.expires => {
                    if let Some(b) = &s.best {
                        out.collect((self.emit)(a, b));
                    }
                    // Later bids for it can only be past its end: drop them
                    // for as long again as it was open, then forget it.
                    let f = a.expires + (a.expires - a.date_time).max(1);
                    s.forget_at = Some(f);
                    s.best = None;
                    s.waiting = Vec::new();
                    forget = Some(f);
                }
                (None, _) => {
                    s.waiting.retain(|b| b.date_time > at);
                    if s.waiting.is_empty() {
                        state.clear();
                    }
                }
                _ => {}
            }
        }
        if let Some(f) = forget {
            ctx.register_event_time_timer(f);
        }
        Ok(())
    }
}

/// Auctions and bids keyed by auction into [`WinningBids`]; bids are
/// combined per batch by (auction, ms), keeping the best. `texts`: the text
/// columns `emit` reads, of auctions and of bids.
fn winning_bids<O: brisk::Data>(
    t: &Tables<'_>,
    texts: [&[&str]; 2],
    emit: fn(&Auction, &Bid) -> O,
) -> DataStream<O> {
    t.all_events();
    let auctions = t.auctions(texts[0]).map(Either::<Auction, Bid>::Left);
    let bids = t
        .bids(texts[1])
        .combine_in_batch(
            |b| (b.auction, b.date_time),
            |best, b| {
                if b.price > best.price {
                    *best = b;
                }
            },
        )
        .map(Either::<Auction, Bid>::Right);
    auctions
        .union(&[bids])
        .key_by(|e: &Either<Auction, Bid>| match e {
            Either::Left(a) => a.id,
            Either::Right(b) => b.auction,
        })
        .process(WinningBids { state: ValueState::default(), emit })
}

#[derive(Clone, Debug, Serialize)]
struct Q4Row {
    category: u64,
    avg: u64,
}

/// q4's second step: the running average (integer, as Flink's `AVG` of a
/// `BIGINT`) of the final prices per category.
#[derive(Clone, Default)]
struct CategoryAverage {
    sum_count: ValueState<(u64, u64)>,
}

impl KeyedProcessFunction<u64, (u64, u64), Q4Row> for CategoryAverage {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.sum_count = ctx.value_state("sum_count")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (category, price): (u64, u64),
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, Q4Row>,
    ) -> Result<(), UserError> {
        let mut state = ctx.value(&self.sum_count);
        let (sum, count) = state.get_or_insert_with(|| (0, 0));
        *sum += price;
        *count += 1;
        out.collect(Q4Row { category, avg: *sum / *count });
        Ok(())
    }
}

/// Each row updates its category's average: the last row of a category is
/// its result (Flink's q4 is an updating query, too).
fn q4(t: &Tables<'_>, out: &Output) {
    let finals = winning_bids(t, [&[], &[]], |a, b| (a.category, b.price));
    out.sink(finals.key_by(|f: &(u64, u64)| f.0).process(CategoryAverage::default()));
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Q9Row {
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
    auction: u64,
    bidder: u64,
    price: u64,
    bid_date_time: Ts,
    bid_extra: Text,
}

fn q9(t: &Tables<'_>, out: &Output) {
    out.sink(winning_bids(t, [&["itemName", "description", "extra"], &["extra"]], |a, b| Q9Row {
        id: a.id,
        item_name: a.item_name.clone(),
        description: a.description.clone(),
        initial_bid: a.initial_bid,
        reserve: a.reserve,
        date_time: Ts(a.date_time),
        expires: Ts(a.expires),
        seller: a.seller,
        category: a.category,
        extra: a.extra.clone(),
        auction: b.auction,
        bidder: b.bidder,
        price: b.price,
        bid_date_time: Ts(b.date_time),
        bid_extra: b.extra.clone(),
    }));
}

#[derive(Clone, Debug, Serialize)]
struct Q5Row {
    auction: u64,
    num: u64,
    /// When the row's window closed (not a column).
    #[serde(skip)]
    closes_at_ms: i64,
}

impl Windowed for Q5Row {
    fn closes_at_ms(&self) -> i64 {
        self.closes_at_ms
    }
}

/// The first event time at which the watermark of a bounded-out-of-orderness
/// strategy reaches `timer`.
fn closes_at(timer: i64) -> i64 {
    timer + OUT_OF_ORDERNESS_MS + 1
}

const Q5_SIZE_MS: i64 = 10_000;
const Q5_SLIDE_MS: i64 = 2_000;
/// q5 counts each window's auctions in this many parts (by auction id), so
/// that a window's work spreads over the cores.
const Q5_PARTS: u64 = 16;

/// The auctions with the most bids in one window, among all auctions or one
/// part of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct HotAuctions {
    end: i64,
    max: u64,
    auctions: Vec<u64>,
}

impl HotAuctions {
    fn merge(&mut self, other: HotAuctions) {
        if other.max > self.max {
            *self = other;
        } else if other.max == self.max {
            self.auctions.extend(other.auctions);
        }
    }
}

/// q5's first step, keyed by (window end, part): bids per auction of the
/// window, and, kept up to date as counts arrive, the part's hottest
/// auctions, so that the window's end emits them without scanning its
/// counts (the window closes in constant time, whatever its size). A count
/// that arrives after its window ended is dropped, as Flink's window
/// operator drops it. One timer per window and part, none per auction.
#[derive(Clone, Default)]
struct WindowCounts {
    counts: ValueState<PartCounts>,
    /// Count maps of closed windows, emptied, kept with their capacity for
    /// the next windows (at most [`Q5_SPARE_MAPS`]): freeing a window's map
    /// and growing the next one from nothing cost about 5 ms at each slide,
    /// which delayed the windows' results.
    spare: Vec<rustc_hash::FxHashMap<u64, u64>>,
}

/// Emptied count maps [`WindowCounts`] keeps per core: a slide closes one
/// window's parts and opens the next one's, so this many cover it (they are
/// not charged to the state's memory budget).
const Q5_SPARE_MAPS: usize = Q5_PARTS as usize;

/// The bids per auction of one window and part, and the auctions at the
/// highest count.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PartCounts {
    counts: rustc_hash::FxHashMap<u64, u64>,
    max: u64,
    hottest: Vec<u64>,
}

impl PartCounts {
    fn add(&mut self, auction: u64, n: u64) {
        let c = self.counts.entry(auction).or_default();
        *c += n;
        // Counts only grow: an auction reaching the maximum was below it.
        if *c > self.max {
            self.max = *c;
            self.hottest.clear();
            self.hottest.push(auction);
        } else if *c == self.max {
            self.hottest.push(auction);
        }
    }
}

impl KeyedProcessFunction<(i64, u64), (i64, u64, u64), HotAuctions> for WindowCounts {
    fn open(&mut self, ctx: &mut OpenContext<'_, (i64, u64)>) -> Result<(), UserError> {
        self.counts = ctx.value_state("counts")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (end, auction, n): (i64, u64, u64),
        ctx: &mut Context<'_, (i64, u64)>,
        _out: &mut Collector<'_, HotAuctions>,
    ) -> Result<(), UserError> {
        if end - 1 <= ctx.current_watermark() {
            return Ok(());
        }
        let mut counts = ctx.value(&self.counts);
        match counts.get_mut() {
            Some(c) => c.add(auction, n),
            None => {
                let mut c = PartCounts { counts: self.spare.pop().unwrap_or_default(), ..Default::default() };
                c.add(auction, n);
                counts.set(c);
                ctx.register_event_time_timer(end - 1);
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _at: i64,
        ctx: &mut Context<'_, (i64, u64)>,
        out: &mut Collector<'_, HotAuctions>,
    ) -> Result<(), UserError> {
        let Some(mut part) = ctx.value(&self.counts).clear() else { return Ok(()) };
        if self.spare.len() < Q5_SPARE_MAPS {
            part.counts.clear();
            self.spare.push(part.counts);
        }
        out.collect(HotAuctions { end: ctx.current_key().0, max: part.max, auctions: part.hottest });
        Ok(())
    }
}

/// q5's last step, keyed by window end: the parts' hottest auctions merged,
/// emitted at the window's end (the parts' results, stamped with that time,
/// have all arrived when the watermark passes it).
#[derive(Clone, Default)]
struct HottestAuctions {
    hot: ValueState<HotAuctions>,
}

impl KeyedProcessFunction<i64, HotAuctions, Q5Row> for HottestAuctions {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), UserError> {
        self.hot = ctx.value_state("hot")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        part: HotAuctions,
        ctx: &mut Context<'_, i64>,
        _out: &mut Collector<'_, Q5Row>,
    ) -> Result<(), UserError> {
        let end = part.end;
        let mut hot = ctx.value(&self.hot);
        match hot.get_mut() {
            Some(h) => h.merge(part),
            None => {
                hot.set(part);
                ctx.register_event_time_timer(end - 1);
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, Q5Row>,
    ) -> Result<(), UserError> {
        let Some(hot) = ctx.value(&self.hot).clear() else { return Ok(()) };
        for auction in hot.auctions {
            out.collect(Q5Row { auction, num: hot.max, closes_at_ms: closes_at(at) });
        }
        Ok(())
    }
}

fn q5(t: &Tables<'_>, out: &Output) {
    // Bids per (auction, 2 s pane), combined per batch; each pane's count
    // goes to the five 10 s windows that contain the pane.
    let panes = Q5_SIZE_MS / Q5_SLIDE_MS;
    let hot = t
        .bids(&[])
        .map(|b| (b.auction, b.date_time.div_euclid(Q5_SLIDE_MS), 1u64))
        .combine_in_batch(|c| (c.0, c.1), |acc, c| acc.2 += c.2)
        .flat_map(move |(auction, pane, n)| (1..=panes).map(move |i| ((pane + i) * Q5_SLIDE_MS, auction, n)))
        .key_by(|c: &(i64, u64, u64)| (c.0, c.1 % Q5_PARTS))
        .process(WindowCounts::default())
        .key_by(|h: &HotAuctions| h.end)
        .process(HottestAuctions::default());
    out.sink_windowed(hot);
}

const Q7_SIZE_MS: i64 = 10_000;

/// q7's row: nexmark-flink's q7 selects the price before the bidder.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Q7Row {
    auction: u64,
    price: u64,
    bidder: u64,
    date_time: Ts,
    extra: Text,
    /// When the row's window closed (not a column).
    #[serde(skip)]
    closes_at_ms: i64,
}

impl Windowed for Q7Row {
    fn closes_at_ms(&self) -> i64 {
        self.closes_at_ms
    }
}

/// Bids of one 10 s window at its highest price so far; `at_end` holds the
/// bids made exactly at the window's end, which q7's
/// `BETWEEN window_end - 10 s AND window_end` also joins (they belong to the
/// next window and do not count for this one's maximum). Its bids keep
/// sharing their read buffers (not [`Text::detached`]): a window holds only
/// its few bids at the maximum, so it pins a few buffers at most.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct HighestBids {
    window: i64,
    max: Option<u64>,
    best: Vec<Bid>,
    at_end: Vec<Bid>,
}

impl HighestBids {
    fn merge(&mut self, other: HighestBids) {
        match (self.max, other.max) {
            (_, None) => {}
            (Some(m), Some(o)) if o < m => {}
            (Some(m), Some(o)) if o == m => self.best.extend(other.best),
            _ => {
                self.max = other.max;
                self.best = other.best;
            }
        }
        self.at_end.extend(other.at_end);
        if let Some(m) = self.max {
            self.at_end.retain(|b| b.price >= m);
        }
    }
}

/// q7's final step, keyed by window start: at the window's end (a timer at
/// `end`, so bids at exactly `end` have arrived) emit the bids at the max.
#[derive(Clone, Default)]
struct HighestBid {
    state: ValueState<HighestBids>,
}

impl KeyedProcessFunction<i64, HighestBids, Q7Row> for HighestBid {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), UserError> {
        self.state = ctx.value_state("highest")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        h: HighestBids,
        ctx: &mut Context<'_, i64>,
        _out: &mut Collector<'_, Q7Row>,
    ) -> Result<(), UserError> {
        let end = h.window + Q7_SIZE_MS;
        let mut state = ctx.value(&self.state);
        match state.get_mut() {
            Some(s) => s.merge(h),
            None => {
                state.set(h);
                ctx.register_event_time_timer(end);
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, Q7Row>,
    ) -> Result<(), UserError> {
        let Some(h) = ctx.value(&self.state).clear() else { return Ok(()) };
        let Some(max) = h.max else { return Ok(()) };
        for b in h.best.into_iter().chain(h.at_end.into_iter().filter(|b| b.price == max)) {
            out.collect(Q7Row {
                auction: b.auction,
                price: b.price,
                bidder: b.bidder,
                date_time: Ts(b.date_time),
                extra: b.extra,
                closes_at_ms: closes_at(at),
            });
        }
        Ok(())
    }
}

fn q7(t: &Tables<'_>, out: &Output) {
    let highest = t
        .bids(&["extra"])
        .flat_map(|b| {
            let window = b.date_time.div_euclid(Q7_SIZE_MS) * Q7_SIZE_MS;
            let at_end = (b.date_time == window).then(|| HighestBids {
                window: window - Q7_SIZE_MS,
                max: None,
                best: Vec::new(),
                at_end: vec![b.clone()],
            });
            let own = HighestBids { window, max: Some(b.price), best: vec![b], at_end: Vec::new() };
            std::iter::once(own).chain(at_end)
        })
        .combine_in_batch(|h| h.window, HighestBids::merge)
        .key_by(|h: &HighestBids| h.window)
        .process(HighestBid::default());
    out.sink_windowed(highest);
}

#[derive(Clone, Debug, Serialize)]
struct Q8Row {
    id: u64,
    name: Text,
    stime: Ts,
}

/// A person's names and whether they opened an auction, in one window.
#[derive(Clone)]
struct NewSellers;

impl AggregateFunction<Either<Text, ()>> for NewSellers {
    type Acc = (Vec<Text>, bool);
    type Out = (Vec<Text>, bool);
    fn create_accumulator(&mut self) -> Self::Acc {
        (Vec::new(), false)
    }
    fn add(&mut self, v: Either<Text, ()>, mut acc: Self::Acc) -> Self::Acc {
        match v {
            Either::Left(name) if !acc.0.contains(&name) => acc.0.push(name),
            Either::Left(_) => {}
            Either::Right(()) => acc.1 = true,
        }
        acc
    }
    fn get_result(&mut self, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
    fn merge(&mut self, mut a: Self::Acc, b: Self::Acc) -> Self::Acc {
        for name in b.0 {
            if !a.0.contains(&name) {
                a.0.push(name);
            }
        }
        (a.0, a.1 || b.1)
    }
}

fn q8(t: &Tables<'_>, out: &Output) {
    t.all_events();
    // Names are kept for a window: copied out of the read buffers.
    let persons = t.persons(&["name"]).map(|p| (p.id, Either::<Text, ()>::Left(p.name.detached())));
    let sellers = t.auctions(&[]).map(|a| (a.seller, Either::<Text, ()>::Right(())));
    let rows = persons
        .union(&[sellers])
        .key_by(|e: &(u64, Either<Text, ()>)| e.0)
        .window(WindowAssigner::tumbling(10_000))
        .aggregate_with(
            Projected(NewSellers),
            |id: &u64, ctx: &WindowContext, found: &[(Vec<Text>, bool)], out: &mut Collector<'_, Q8Row>| {
                for (names, sold) in found {
                    if *sold {
                        for name in names {
                            out.collect(Q8Row { id: *id, name: name.clone(), stime: Ts(ctx.window.start()) });
                        }
                    }
                }
                Ok(())
            },
        );
    out.sink(rows);
}

/// Feeds the second field of `(key, value)` records to an aggregate.
#[derive(Clone)]
struct Projected<A>(A);

impl<K, V, A: AggregateFunction<V>> AggregateFunction<(K, V)> for Projected<A> {
    type Acc = A::Acc;
    type Out = A::Out;
    fn create_accumulator(&mut self) -> Self::Acc {
        self.0.create_accumulator()
    }
    fn add(&mut self, v: (K, V), acc: Self::Acc) -> Self::Acc {
        self.0.add(v.1, acc)
    }
    fn get_result(&mut self, acc: &Self::Acc) -> Self::Out {
        self.0.get_result(acc)
    }
    fn merge(&mut self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        self.0.merge(a, b)
    }
}

#[derive(Clone, Debug, Serialize)]
struct SessionRow {
    bidder: u64,
    bid_count: u64,
    starttime: Ts,
    endtime: Ts,
}

fn count_rows(
    bidder: &u64,
    ctx: &WindowContext,
    counts: &[u64],
    out: &mut Collector<'_, SessionRow>,
) -> Result<(), UserError> {
    for &n in counts {
        out.collect(SessionRow {
            bidder: *bidder,
            bid_count: n,
            starttime: Ts(ctx.window.start()),
            endtime: Ts(ctx.window.end()),
        });
    }
    Ok(())
}

fn q11(t: &Tables<'_>, out: &Output) {
    let sessions = t
        .bids(&[])
        .map(|b| (b.bidder, b.date_time, 1u64))
        .combine_in_batch(|c| (c.0, c.1), |acc, c| acc.2 += c.2)
        .map(|c| (c.0, c.2))
        .key_by(|c: &(u64, u64)| c.0)
        .window(WindowAssigner::session(10_000))
        .aggregate_with(SumCounts, count_rows);
    out.sink(sessions);
}

fn q12(t: &Tables<'_>, out: &Output) {
    let windows = t
        .bids(&[])
        .map(|b| (b.bidder, 1u64))
        .combine_in_batch(|c| c.0, |acc, c| acc.1 += c.1)
        .key_by(|c: &(u64, u64)| c.0)
        .window(WindowAssigner::tumbling(10_000).processing_time())
        .aggregate_with(SumCounts, count_rows);
    out.sink(windows);
}
