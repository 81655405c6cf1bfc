//! The Nexmark generator: persons, auctions and bids in the 1:3:46 mix, deterministic from a
//! seed. Event `id` is a person if `id % 50 == 0`, an auction if `id % 50` is 1..=3, else a
//! bid; every field is derived from `(seed, id)` alone, so the events do not depend on how
//! they are split: shard `i` of `n` generates ids `i, i + n, i + 2n, ...`. Event time is
//! `first_event_ms + id / events_per_ms`.
//!
//! HOT PATH: values are written straight into reused column buffers; no per-record
//! allocation, no locks, no logging.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::record::{Batch, Column, DataType, Field, Schema, SchemaRef, BATCH_RECORDS_MAX};
use crate::source::{decode_position, encode_position, DeadLetters, Source, SourceStatus};

/// Which Nexmark stream a source emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NexmarkTable {
    /// People registering.
    Person,
    /// Auctions opening.
    Auction,
    /// Bids on auctions.
    Bid,
}

/// Generator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkConfig {
    /// Which stream to emit.
    #[serde(default = "default_table")]
    pub table: NexmarkTable,
    /// Seed of every generated value.
    #[serde(default)]
    pub seed: u64,
    /// Total events (of all three kinds, over all shards); 0 means unbounded.
    #[serde(default)]
    pub events: u64,
    /// Target events per second over all shards; 0 means full speed.
    #[serde(default)]
    pub rate_per_sec: u64,
    /// Event time of event 0.
    #[serde(default)]
    pub first_event_ms: i64,
    /// Events per millisecond of event time.
    #[serde(default = "default_events_per_ms")]
    pub events_per_ms: u64,
}

fn default_table() -> NexmarkTable {
    NexmarkTable::Bid
}

fn default_events_per_ms() -> u64 {
    10
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        Self {
            table: NexmarkTable::Bid,
            seed: 0,
            events: 0,
            rate_per_sec: 0,
            first_event_ms: 0,
            events_per_ms: default_events_per_ms(),
        }
    }
}

const FIRST_ID: i64 = 1000;
const HOT_WINDOW: u64 = 100;
const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const NAMES: [&str; 6] = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky"];
const CITIES: [&str; 5] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
];
const STATES: [&str; 5] = ["AZ", "CA", "ID", "OR", "WA"];

/// Returns the schema of a Nexmark table.
pub fn nexmark_schema(table: NexmarkTable) -> SchemaRef {
    use DataType::{Int, String, Timestamp};
    let fields: &[(&str, DataType)] = match table {
        NexmarkTable::Person => &[
            ("id", Int),
            ("name", String),
            ("email_address", String),
            ("credit_card", String),
            ("city", String),
            ("state", String),
            ("date_time", Timestamp),
        ],
        NexmarkTable::Auction => &[
            ("id", Int),
            ("item_name", String),
            ("description", String),
            ("initial_bid", Int),
            ("reserve", Int),
            ("date_time", Timestamp),
            ("expires", Timestamp),
            ("seller", Int),
            ("category", Int),
        ],
        NexmarkTable::Bid => &[
            ("auction", Int),
            ("bidder", Int),
            ("price", Int),
            ("channel", String),
            ("url", String),
            ("date_time", Timestamp),
        ],
    };
    Arc::new(Schema::trusted(
        fields.iter().map(|(n, t)| Field::new(*n, *t)).collect(),
    ))
}

/// A deterministic 64-bit mix of `(seed, id, salt)` (splitmix64 finalizer).
fn rand(seed: u64, id: u64, salt: u64) -> u64 {
    let mut z =
        seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One shard's split of the generator.
#[derive(Debug)]
pub struct NexmarkSource {
    config: NexmarkConfig,
    schema: SchemaRef,
    next_id: u64,
    step: u64,
    produced: u64,
    /// `produced` when the rate clock started (at open, or at a restore).
    rate_base: u64,
    rate_per_sec: f64,
    started: Instant,
}

impl NexmarkSource {
    /// Creates split `shard` of `shards`.
    pub fn new(config: NexmarkConfig, shard: usize, shards: usize) -> Result<Self, EngineError> {
        if shards == 0 || shard >= shards || config.events_per_ms == 0 {
            return Err(EngineError::Plan(format!(
                "nexmark split {shard} of {shards} with events_per_ms {} is invalid",
                config.events_per_ms
            )));
        }
        let rate_per_sec = config.rate_per_sec as f64 / shards as f64;
        Ok(Self {
            schema: nexmark_schema(config.table),
            config,
            next_id: shard as u64,
            step: shards as u64,
            produced: 0,
            rate_base: 0,
            rate_per_sec,
            started: Instant::now(),
        })
    }

    /// Returns how many events (of all kinds) this split has stepped over.
    pub fn events_generated(&self) -> u64 {
        self.produced
    }

    fn write_row(&self, id: u64, columns: &mut [Column]) -> bool {
        let seed = self.config.seed;
        let kind = id % 50;
        let epoch = id / 50;
        let ts = self.config.first_event_ms + (id / self.config.events_per_ms) as i64;
        let r = |salt| rand(seed, id, salt);
        match (self.config.table, kind) {
            (NexmarkTable::Person, 0) => {
                let name = NAMES[(r(1) % NAMES.len() as u64) as usize];
                let last = NAMES[(r(2) % NAMES.len() as u64) as usize];
                push_int(&mut columns[0], FIRST_ID + epoch as i64);
                push_fmt(&mut columns[1], format_args!("{name} {last}"));
                push_fmt(
                    &mut columns[2],
                    format_args!("{}@{}.com", name.to_ascii_lowercase_stack(), r(3) % 1000),
                );
                push_fmt(
                    &mut columns[3],
                    format_args!(
                        "{:04} {:04} {:04} {:04}",
                        r(4) % 10_000,
                        r(5) % 10_000,
                        r(6) % 10_000,
                        r(7) % 10_000
                    ),
                );
                push_fmt(
                    &mut columns[4],
                    format_args!("{}", CITIES[(r(8) % 5) as usize]),
                );
                push_fmt(
                    &mut columns[5],
                    format_args!("{}", STATES[(r(9) % 5) as usize]),
                );
                push_int(&mut columns[6], ts);
                true
            }
            (NexmarkTable::Auction, 1..=3) => {
                let persons = epoch + 1;
                let initial = 100 + (r(1) % 10_000) as i64;
                push_int(&mut columns[0], FIRST_ID + (epoch * 3 + kind - 1) as i64);
                push_fmt(&mut columns[1], format_args!("item-{}", r(2) % 100_000));
                push_fmt(
                    &mut columns[2],
                    format_args!("description of item {}", r(3) % 1000),
                );
                push_int(&mut columns[3], initial);
                push_int(&mut columns[4], initial + (r(4) % 10_000) as i64);
                push_int(&mut columns[5], ts);
                push_int(&mut columns[6], ts + 10_000 + (r(5) % 60_000) as i64);
                push_int(
                    &mut columns[7],
                    FIRST_ID + (persons - 1 - r(6) % persons.min(HOT_WINDOW)) as i64,
                );
                push_int(&mut columns[8], 10 + (r(7) % 5) as i64);
                true
            }
            (NexmarkTable::Bid, 4..) => {
                let auctions = epoch * 3 + 3;
                let persons = epoch + 1;
                let channel = CHANNELS[(r(1) % 4) as usize];
                push_int(
                    &mut columns[0],
                    FIRST_ID + (auctions - 1 - r(2) % auctions.min(HOT_WINDOW)) as i64,
                );
                push_int(
                    &mut columns[1],
                    FIRST_ID + (persons - 1 - r(3) % persons.min(HOT_WINDOW)) as i64,
                );
                push_int(
                    &mut columns[2],
                    100 + (r(4) % 1_000_000) as i64 / (1 + (r(5) % 100) as i64),
                );
                push_str(&mut columns[3], &[channel], None);
                push_str(
                    &mut columns[4],
                    &["https://www.nexmark.com/", channel, "/item.htm?query="],
                    Some(r(6) % 1000),
                );
                push_int(&mut columns[5], ts);
                true
            }
            _ => false,
        }
    }
}

trait LowercaseStack {
    fn to_ascii_lowercase_stack(&self) -> LowerAscii<'_>;
}

impl LowercaseStack for str {
    fn to_ascii_lowercase_stack(&self) -> LowerAscii<'_> {
        LowerAscii(self)
    }
}

/// Formats a string in ASCII lower case without allocating.
struct LowerAscii<'a>(&'a str);

impl std::fmt::Display for LowerAscii<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            f.write_char(c.to_ascii_lowercase())?;
        }
        Ok(())
    }
}

fn push_int(column: &mut Column, v: i64) {
    match column {
        Column::Int(c) | Column::Timestamp(c) => c.push(v),
        _ => debug_assert!(false, "nexmark int into a non-int column"),
    }
}

/// Appends the concatenation of `parts` and then `number` in decimal, as one string value
/// (the generator's common case, without the cost of `format_args!`).
fn push_str(column: &mut Column, parts: &[&str], number: Option<u64>) {
    if let Column::Str(c) = column {
        let buffer = c.buffer();
        for part in parts {
            buffer.push_str(part);
        }
        if let Some(mut n) = number {
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            loop {
                at -= 1;
                digits[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            for d in &digits[at..] {
                buffer.push(char::from(*d));
            }
        }
        c.finish();
    }
}

fn push_fmt(column: &mut Column, args: std::fmt::Arguments<'_>) {
    if let Column::Str(c) = column {
        let _ = c.buffer().write_fmt(args);
        c.finish();
    }
}

impl Source for NexmarkSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        let mut budget = u64::MAX;
        if self.rate_per_sec > 0.0 {
            let allowed = (self.started.elapsed().as_secs_f64() * self.rate_per_sec) as u64;
            budget = allowed.saturating_sub(self.produced - self.rate_base);
            if budget == 0 {
                return Ok(SourceStatus::Pending);
            }
        }
        let limit = self.config.events;
        // Bound the ids scanned per poll so a sparse table (persons) still returns promptly.
        let mut scanned = 0;
        while out.len() < BATCH_RECORDS_MAX && budget > 0 && scanned < BATCH_RECORDS_MAX * 50 {
            if limit > 0 && self.next_id >= limit {
                return Ok(SourceStatus::Exhausted);
            }
            if self.write_row(self.next_id, out.columns_mut()) {
                out.commit_row();
            }
            self.next_id += self.step;
            self.produced += 1;
            budget -= 1;
            scanned += 1;
        }
        if limit > 0 && self.next_id >= limit {
            return Ok(SourceStatus::Exhausted);
        }
        Ok(SourceStatus::Ready)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(encode_position(
            NEXMARK_POSITION_TAG,
            &[self.next_id, self.produced],
        ))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), EngineError> {
        let [next_id, produced] =
            decode_position::<2>("nexmark source", NEXMARK_POSITION_TAG, position)?;
        if next_id % self.step != self.next_id % self.step {
            return Err(EngineError::Checkpoint(format!(
                "nexmark source: event {next_id} belongs to another split"
            )));
        }
        self.next_id = next_id;
        self.produced = produced;
        self.rate_base = produced;
        self.started = Instant::now();
        Ok(())
    }
}

/// Tags a Nexmark position.
const NEXMARK_POSITION_TAG: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(config: &NexmarkConfig, shards: usize) -> Vec<Batch> {
        (0..shards)
            .map(|s| {
                let mut src = NexmarkSource::new(config.clone(), s, shards).unwrap();
                let mut all = Batch::new(src.schema().clone());
                let mut dead = DeadLetters::new(None).unwrap();
                loop {
                    let mut b = Batch::new(src.schema().clone());
                    let status = src.poll(&mut b, &mut dead).unwrap();
                    all.append(&b);
                    if status == SourceStatus::Exhausted {
                        break;
                    }
                }
                all
            })
            .collect()
    }

    #[test]
    fn mix_is_1_3_46_and_deterministic() {
        let counts: Vec<usize> = [
            NexmarkTable::Person,
            NexmarkTable::Auction,
            NexmarkTable::Bid,
        ]
        .into_iter()
        .map(|table| {
            let config = NexmarkConfig {
                table,
                events: 5000,
                seed: 7,
                ..Default::default()
            };
            drain(&config, 1)[0].len()
        })
        .collect();
        assert_eq!(counts, [100, 300, 4600]);
        let config = NexmarkConfig {
            events: 5000,
            seed: 7,
            ..Default::default()
        };
        assert_eq!(drain(&config, 1), drain(&config, 1));
    }

    #[test]
    fn splits_partition_the_same_events() {
        let config = NexmarkConfig {
            events: 3000,
            seed: 3,
            ..Default::default()
        };
        let whole = drain(&config, 1).remove(0);
        let parts = drain(&config, 3);
        let mut rows: Vec<_> = parts.iter().flat_map(Batch::to_rows).collect();
        let mut expected = whole.to_rows();
        let key = |r: &Vec<crate::record::OwnedValue>| format!("{r:?}");
        rows.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(rows, expected);
        // Bids refer only to auctions that exist by then.
        for r in 0..whole.len() {
            let auction = whole.column(0).get_i64(r).unwrap();
            assert!(auction >= FIRST_ID, "auction {auction}");
        }
    }

    #[test]
    fn bid_strings_are_well_formed() {
        let config = NexmarkConfig {
            events: 200,
            seed: 11,
            ..Default::default()
        };
        let bids = drain(&config, 1).remove(0);
        for r in 0..bids.len() {
            let (channel, url) = (bids.value(r, 3).to_string(), bids.value(r, 4).to_string());
            assert!(CHANNELS.contains(&channel.as_str()), "{channel}");
            let query = url
                .strip_prefix(&format!(
                    "https://www.nexmark.com/{channel}/item.htm?query="
                ))
                .unwrap_or_else(|| panic!("bad url {url}"));
            let n: u64 = query.parse().unwrap();
            assert_eq!(query, n.to_string());
            assert!(n < 1000);
        }
        let mut c = Column::new(DataType::String);
        push_str(&mut c, &["x"], Some(0));
        push_str(&mut c, &[], Some(u64::MAX));
        assert_eq!(c.get(0), crate::record::Value::Str("x0"));
        assert_eq!(c.get(1), crate::record::Value::Str("18446744073709551615"));
    }

    #[test]
    fn rate_limit_yields_pending() {
        let config = NexmarkConfig {
            events: 0,
            rate_per_sec: 1,
            ..Default::default()
        };
        let mut src = NexmarkSource::new(config, 0, 1).unwrap();
        let mut b = Batch::new(src.schema().clone());
        let mut dead = DeadLetters::new(None).unwrap();
        assert_eq!(src.poll(&mut b, &mut dead).unwrap(), SourceStatus::Pending);
    }
}
