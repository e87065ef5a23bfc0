//! Columnar Nexmark event generation.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fungi_common::{FungiError, Result};

use crate::rng::SplitMix64;

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const BID_PROPORTION: u64 = 46;
const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const AUCTION_ID_LEAD: u64 = 10;
const PERSON_ID_LEAD: u64 = 10;
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_CHANNELS_RATIO: u64 = 2;
const CHANNELS_NUMBER: usize = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// Random lowercase text that strings are cut from: one draw picks an offset, so a
/// string costs a copy instead of a draw per letter.
#[derive(Debug)]
struct LetterPool(String);

const POOL_LEN: usize = 1 << 16;

impl LetterPool {
    fn new() -> Self {
        let mut rng = SplitMix64::new(0x706f_6f6c);
        let mut bytes = Vec::with_capacity(POOL_LEN + 1024);
        rng.letters(POOL_LEN + 1024, &mut bytes);
        LetterPool(String::from_utf8(bytes).expect("ascii letters"))
    }

    /// `len` (at most 1024) random letters.
    #[inline]
    fn take(&self, rng: &mut SplitMix64, len: usize) -> &str {
        let start = rng.below(POOL_LEN as u64) as usize;
        &self.0[start..start + len.min(1024)]
    }
}

/// Which of the three Nexmark streams to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTable {
    /// `person(id, name, emailAddress, creditCard, city, state, dateTime, extra)`.
    Person,
    /// `auction(id, itemName, description, initialBid, reserve, dateTime, expires, seller,
    /// category, extra)`.
    Auction,
    /// `bid(auction, bidder, price, channel, url, dateTime, extra)`.
    Bid,
}

impl NexmarkTable {
    /// Parses `person`, `auction` or `bid`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "person" | "persons" | "people" => Ok(NexmarkTable::Person),
            "auction" | "auctions" => Ok(NexmarkTable::Auction),
            "bid" | "bids" => Ok(NexmarkTable::Bid),
            _ => Err(FungiError::Config(format!(
                "unknown Nexmark table '{s}'; use person, auction or bid"
            ))),
        }
    }

    /// Arrow schema of the table (Flink's Nexmark column names).
    pub fn schema(self) -> SchemaRef {
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, None);
        let fields = match self {
            NexmarkTable::Person => vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("emailAddress", DataType::Utf8, false),
                Field::new("creditCard", DataType::Utf8, false),
                Field::new("city", DataType::Utf8, false),
                Field::new("state", DataType::Utf8, false),
                Field::new("dateTime", ts(), false),
                Field::new("extra", DataType::Utf8, false),
            ],
            NexmarkTable::Auction => vec![
                Field::new("id", DataType::Int64, false),
                Field::new("itemName", DataType::Utf8, false),
                Field::new("description", DataType::Utf8, false),
                Field::new("initialBid", DataType::Int64, false),
                Field::new("reserve", DataType::Int64, false),
                Field::new("dateTime", ts(), false),
                Field::new("expires", ts(), false),
                Field::new("seller", DataType::Int64, false),
                Field::new("category", DataType::Int64, false),
                Field::new("extra", DataType::Utf8, false),
            ],
            NexmarkTable::Bid => vec![
                Field::new("auction", DataType::Int64, false),
                Field::new("bidder", DataType::Int64, false),
                Field::new("price", DataType::Int64, false),
                Field::new("channel", DataType::Utf8, false),
                Field::new("url", DataType::Utf8, false),
                Field::new("dateTime", ts(), false),
                Field::new("extra", DataType::Utf8, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    fn owns(self, event_id: u64) -> bool {
        let rem = event_id % TOTAL_PROPORTION;
        match self {
            NexmarkTable::Person => rem < PERSON_PROPORTION,
            NexmarkTable::Auction => {
                (PERSON_PROPORTION..PERSON_PROPORTION + AUCTION_PROPORTION).contains(&rem)
            }
            NexmarkTable::Bid => rem >= PERSON_PROPORTION + AUCTION_PROPORTION,
        }
    }
}

/// Generator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkConfig {
    /// Event time of event 0, ms since the epoch. Default 2015-07-15T00:00:00Z.
    pub base_time: i64,
    /// Events per second of event time (spacing of timestamps). Default 10 000.
    pub events_per_second: u64,
    /// Total events (all three kinds) to generate; `None` for unbounded.
    pub max_events: Option<u64>,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            base_time: 1_436_918_400_000,
            events_per_second: 10_000,
            max_events: None,
        }
    }
}

/// Generates the events of one table for a share of the event-number space.
///
/// Subtask `i` of `p` owns the epochs (groups of 50 consecutive events) `i, i+p, ...`,
/// so the subtasks together produce every event exactly once and each one's timestamps
/// increase.
#[derive(Debug)]
pub struct NexmarkGenerator {
    table: NexmarkTable,
    config: NexmarkConfig,
    schema: SchemaRef,
    next_epoch: u64,
    epoch_step: u64,
    channels: Arc<Vec<(String, String)>>,
    pool: Arc<LetterPool>,
    scratch: Vec<u8>,
    /// Epochs generated before a change of parallelism: see [`GeneratorPosition`].
    done: Vec<DoneLayer>,
}

/// Which epochs a run at another parallelism already generated: epoch `e` is done when
/// `e < next[e % next.len()]` (each old subtask `i` generated its epochs below `next[i]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DoneLayer {
    /// The next epoch of each old subtask.
    pub next: Vec<u64>,
}

impl DoneLayer {
    fn contains(&self, epoch: u64) -> bool {
        epoch < self.next[(epoch % self.next.len() as u64) as usize]
    }
}

/// Where a generator subtask stands: saved in checkpoints, restorable at the same or
/// another parallelism.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneratorPosition {
    /// The next epoch this subtask generates.
    pub next_epoch: u64,
    /// Epochs generated by earlier runs at other parallelisms.
    pub done: Vec<DoneLayer>,
}

fn last_base0_auction_id(event_id: u64) -> u64 {
    let mut epoch = event_id / TOTAL_PROPORTION;
    let mut offset = event_id % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        epoch = epoch.saturating_sub(1);
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

fn last_base0_person_id(event_id: u64) -> u64 {
    let epoch = event_id / TOTAL_PROPORTION;
    let rem = event_id % TOTAL_PROPORTION;
    let offset = if rem >= PERSON_PROPORTION {
        PERSON_PROPORTION - 1
    } else {
        rem
    };
    epoch * PERSON_PROPORTION + offset
}

fn next_base0_auction_id(event_id: u64, rng: &mut SplitMix64) -> u64 {
    let max = last_base0_auction_id(event_id);
    let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
}

fn next_base0_person_id(event_id: u64, rng: &mut SplitMix64) -> u64 {
    let num_people = last_base0_person_id(event_id) + 1;
    let active = num_people.min(NUM_ACTIVE_PEOPLE);
    num_people - active + rng.below(active + PERSON_ID_LEAD)
}

fn next_price(rng: &mut SplitMix64) -> i64 {
    // 10^(6u) * 100, with exp instead of the costlier powf.
    ((rng.next_f64() * 6.0 * std::f64::consts::LN_10).exp() * 100.0).round() as i64
}

fn base_url(rng: &mut SplitMix64) -> String {
    let mut s = b"https://www.nexmark.com/".to_vec();
    for _ in 0..3 {
        let len = 1 + rng.below(5) as usize;
        rng.letters(len, &mut s);
        s.push(b'/');
    }
    s.extend_from_slice(b"item.htm?query=1");
    String::from_utf8(s).expect("ascii")
}

/// The fixed channel table: 4 hot channels first, then `channel-N` entries.
fn channel_table() -> Vec<(String, String)> {
    let mut rng = SplitMix64::new(0x004e_4558_4d41_524b);
    let mut out: Vec<(String, String)> = HOT_CHANNELS
        .iter()
        .map(|c| (c.to_string(), base_url(&mut rng)))
        .collect();
    for n in 0..CHANNELS_NUMBER {
        let mut url = base_url(&mut rng);
        if rng.below(10) > 0 {
            url.push_str("&channel_id=");
            url.push_str(&n.to_string().chars().rev().collect::<String>());
        }
        out.push((format!("channel-{n}"), url));
    }
    out
}

impl NexmarkGenerator {
    /// A generator of `table` for subtask `index` of `parallelism`.
    pub fn new(
        table: NexmarkTable,
        config: NexmarkConfig,
        index: u32,
        parallelism: u32,
    ) -> Result<Self> {
        if config.events_per_second == 0 {
            return Err(FungiError::Config(
                "Nexmark events per second must be positive".into(),
            ));
        }
        Ok(NexmarkGenerator {
            table,
            schema: table.schema(),
            config,
            next_epoch: index as u64,
            epoch_step: parallelism.max(1) as u64,
            channels: Arc::new(channel_table()),
            pool: Arc::new(LetterPool::new()),
            scratch: Vec::with_capacity(256),
            done: Vec::new(),
        })
    }

    /// Where this generator stands.
    pub fn position(&self) -> GeneratorPosition {
        GeneratorPosition {
            next_epoch: self.next_epoch,
            done: self.done.clone(),
        }
    }

    /// Resumes from the positions of every subtask of an earlier run. At the same
    /// parallelism `positions` is this subtask's own; at another, all of them, and the
    /// generator skips every epoch they already generated.
    pub fn restore(&mut self, positions: &[GeneratorPosition], same_parallelism: bool) {
        if same_parallelism && let [own] = positions {
            self.next_epoch = own.next_epoch;
            self.done = own.done.clone();
        } else {
            let mut done: Vec<DoneLayer> = positions.iter().flat_map(|p| p.done.clone()).collect();
            done.push(DoneLayer {
                next: positions.iter().map(|p| p.next_epoch).collect(),
            });
            done.dedup();
            self.done = done;
        }
        self.skip_done();
    }

    /// Moves past epochs an earlier run generated; forgets layers that are behind.
    fn skip_done(&mut self) {
        while !self.done.is_empty() && !self.is_finished() {
            if self.done.iter().any(|l| l.contains(self.next_epoch)) {
                self.next_epoch += self.epoch_step;
                continue;
            }
            let next = self.next_epoch;
            self.done.retain(|l| l.next.iter().any(|&n| n > next));
            break;
        }
    }

    /// The table's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Event time of an event, in ms.
    #[inline]
    fn timestamp(&self, event_id: u64) -> i64 {
        self.config.base_time
            + (event_id as u128 * 1000 / self.config.events_per_second as u128) as i64
    }

    fn exhausted(&self, epoch: u64) -> bool {
        self.config
            .max_events
            .is_some_and(|max| epoch * TOTAL_PROPORTION >= max)
    }

    /// Whether every event has been generated.
    pub fn is_finished(&self) -> bool {
        self.exhausted(self.next_epoch)
    }

    /// The next batch of about `rows` rows, or `None` when finished.
    pub fn next_batch(&mut self, rows: usize) -> Result<Option<RecordBatch>> {
        if self.is_finished() {
            return Ok(None);
        }
        let mut ids = Vec::with_capacity(rows + BID_PROPORTION as usize);
        while ids.len() < rows && !self.is_finished() {
            let first = self.next_epoch * TOTAL_PROPORTION;
            let last = match self.config.max_events {
                Some(max) => (first + TOTAL_PROPORTION).min(max),
                None => first + TOTAL_PROPORTION,
            };
            ids.extend((first..last).filter(|&id| self.table.owns(id)));
            self.next_epoch += self.epoch_step;
            self.skip_done();
        }
        if ids.is_empty() {
            return Ok(None);
        }
        let columns = match self.table {
            NexmarkTable::Bid => self.bids(&ids),
            NexmarkTable::Auction => self.auctions(&ids),
            NexmarkTable::Person => self.persons(&ids),
        };
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    /// Appends padding so the event is about `avg` bytes, as the Java generator does.
    fn extra(&self, rng: &mut SplitMix64, current: usize, avg: usize, out: &mut StringBuilder) {
        if current >= avg {
            out.append_value("");
            return;
        }
        let desired = avg - current;
        let delta = (desired as f64 * 0.2).round() as u64;
        let len = desired as u64 - delta + rng.below(2 * delta + 1);
        out.append_value(self.pool.take(rng, len as usize));
    }

    fn bids(&mut self, ids: &[u64]) -> Vec<ArrayRef> {
        let n = ids.len();
        let mut auction = Int64Builder::with_capacity(n);
        let mut bidder = Int64Builder::with_capacity(n);
        let mut price = Int64Builder::with_capacity(n);
        let mut channel = StringBuilder::with_capacity(n, n * 10);
        let mut url = StringBuilder::with_capacity(n, n * 56);
        let mut date_time = TimestampMillisecondBuilder::with_capacity(n);
        let mut extra = StringBuilder::with_capacity(n, n * (AVG_BID_BYTES - 32));
        for &id in ids {
            let mut rng = SplitMix64::new(id);
            let a = if rng.below(HOT_AUCTION_RATIO) > 0 {
                (last_base0_auction_id(id) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
            } else {
                next_base0_auction_id(id, &mut rng)
            };
            let b = if rng.below(HOT_BIDDER_RATIO) > 0 {
                (last_base0_person_id(id) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
            } else {
                next_base0_person_id(id, &mut rng)
            };
            auction.append_value(a as i64 + FIRST_AUCTION_ID);
            bidder.append_value(b as i64 + FIRST_PERSON_ID);
            price.append_value(next_price(&mut rng));
            let c = if rng.below(HOT_CHANNELS_RATIO) > 0 {
                rng.below(HOT_CHANNELS.len() as u64) as usize
            } else {
                HOT_CHANNELS.len() + rng.below(CHANNELS_NUMBER as u64) as usize
            };
            let (ch, u) = &self.channels[c];
            channel.append_value(ch);
            url.append_value(u);
            date_time.append_value(self.timestamp(id));
            self.extra(&mut rng, 32, AVG_BID_BYTES, &mut extra);
        }
        vec![
            Arc::new(auction.finish()),
            Arc::new(bidder.finish()),
            Arc::new(price.finish()),
            Arc::new(channel.finish()),
            Arc::new(url.finish()),
            Arc::new(date_time.finish()),
            Arc::new(extra.finish()),
        ]
    }

    fn auctions(&mut self, ids: &[u64]) -> Vec<ArrayRef> {
        let n = ids.len();
        let mut id_b = Int64Builder::with_capacity(n);
        let mut item = StringBuilder::with_capacity(n, n * 10);
        let mut desc = StringBuilder::with_capacity(n, n * 50);
        let mut initial = Int64Builder::with_capacity(n);
        let mut reserve = Int64Builder::with_capacity(n);
        let mut date_time = TimestampMillisecondBuilder::with_capacity(n);
        let mut expires = TimestampMillisecondBuilder::with_capacity(n);
        let mut seller = Int64Builder::with_capacity(n);
        let mut category = Int64Builder::with_capacity(n);
        let mut extra = StringBuilder::with_capacity(n, n * 400);
        for &id in ids {
            let mut rng = SplitMix64::new(id);
            let ts = self.timestamp(id);
            id_b.append_value(last_base0_auction_id(id) as i64 + FIRST_AUCTION_ID);
            let s = if rng.below(HOT_SELLER_RATIO) > 0 {
                (last_base0_person_id(id) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
            } else {
                next_base0_person_id(id, &mut rng)
            };
            seller.append_value(s as i64 + FIRST_PERSON_ID);
            category.append_value(FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64);
            let bid = next_price(&mut rng);
            initial.append_value(bid);
            reserve.append_value(bid + next_price(&mut rng));
            date_time.append_value(ts);
            // Auctions stay open for a share of the in-flight window in event time.
            let events_in_flight = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
            let span_ms = (events_in_flight * 1000 / self.config.events_per_second).max(1);
            expires.append_value(ts + 1 + rng.below(span_ms * 2) as i64);
            let len = 1 + rng.below(20) as usize;
            item.append_value(self.pool.take(&mut rng, len));
            let len = 1 + rng.below(100) as usize;
            desc.append_value(self.pool.take(&mut rng, len));
            self.extra(&mut rng, 100, AVG_AUCTION_BYTES, &mut extra);
        }
        vec![
            Arc::new(id_b.finish()),
            Arc::new(item.finish()),
            Arc::new(desc.finish()),
            Arc::new(initial.finish()),
            Arc::new(reserve.finish()),
            Arc::new(date_time.finish()),
            Arc::new(expires.finish()),
            Arc::new(seller.finish()),
            Arc::new(category.finish()),
            Arc::new(extra.finish()),
        ]
    }

    fn persons(&mut self, ids: &[u64]) -> Vec<ArrayRef> {
        let n = ids.len();
        let mut id_b = Int64Builder::with_capacity(n);
        let mut name = StringBuilder::with_capacity(n, n * 12);
        let mut email = StringBuilder::with_capacity(n, n * 16);
        let mut card = StringBuilder::with_capacity(n, n * 19);
        let mut city = StringBuilder::with_capacity(n, n * 10);
        let mut state = StringBuilder::with_capacity(n, n * 2);
        let mut date_time = TimestampMillisecondBuilder::with_capacity(n);
        let mut extra = StringBuilder::with_capacity(n, n * 150);
        for &id in ids {
            let mut rng = SplitMix64::new(id);
            id_b.append_value(last_base0_person_id(id) as i64 + FIRST_PERSON_ID);
            let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
            let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
            self.scratch.clear();
            self.scratch.extend_from_slice(first.as_bytes());
            self.scratch.push(b' ');
            self.scratch.extend_from_slice(last.as_bytes());
            name.append_value(std::str::from_utf8(&self.scratch).expect("ascii"));
            self.scratch.clear();
            let len = 1 + rng.below(7) as usize;
            rng.letters(len, &mut self.scratch);
            self.scratch.push(b'@');
            let len = 1 + rng.below(5) as usize;
            rng.letters(len, &mut self.scratch);
            self.scratch.extend_from_slice(b".com");
            email.append_value(std::str::from_utf8(&self.scratch).expect("ascii"));
            self.scratch.clear();
            for g in 0..4 {
                if g > 0 {
                    self.scratch.push(b' ');
                }
                let digits = rng.below(10_000);
                self.scratch
                    .extend_from_slice(format!("{digits:04}").as_bytes());
            }
            card.append_value(std::str::from_utf8(&self.scratch).expect("ascii"));
            city.append_value(US_CITIES[rng.below(US_CITIES.len() as u64) as usize]);
            state.append_value(US_STATES[rng.below(US_STATES.len() as u64) as usize]);
            date_time.append_value(self.timestamp(id));
            self.extra(&mut rng, 50, AVG_PERSON_BYTES, &mut extra);
        }
        vec![
            Arc::new(id_b.finish()),
            Arc::new(name.finish()),
            Arc::new(email.finish()),
            Arc::new(card.finish()),
            Arc::new(city.finish()),
            Arc::new(state.finish()),
            Arc::new(date_time.finish()),
            Arc::new(extra.finish()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    fn all(table: NexmarkTable, events: u64, p: u32) -> Vec<RecordBatch> {
        let config = NexmarkConfig {
            max_events: Some(events),
            ..Default::default()
        };
        let mut out = Vec::new();
        for i in 0..p {
            let mut g = NexmarkGenerator::new(table, config.clone(), i, p).unwrap();
            while let Some(b) = g.next_batch(1000).unwrap() {
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn proportions_and_determinism() {
        let rows = |t, p| {
            all(t, 10_000, p)
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        };
        assert_eq!(rows(NexmarkTable::Bid, 1), 9200);
        assert_eq!(rows(NexmarkTable::Auction, 1), 600);
        assert_eq!(rows(NexmarkTable::Person, 1), 200);
        // Parallel subtasks cover the same events.
        assert_eq!(rows(NexmarkTable::Bid, 3), 9200);
        let a = all(NexmarkTable::Bid, 1000, 1);
        let b = all(NexmarkTable::Bid, 1000, 1);
        assert_eq!(a, b);
        let prices = a[0].column(2).as_primitive::<Int64Type>();
        assert!(
            prices
                .values()
                .iter()
                .all(|&p| (100..=100_000_000).contains(&p))
        );
    }

    #[test]
    fn bids_reference_existing_auctions_mostly() {
        let batches = all(NexmarkTable::Bid, 50_000, 1);
        let auctions: i64 = batches
            .iter()
            .map(|b| {
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .filter(|&&a| a >= FIRST_AUCTION_ID)
                    .count() as i64
            })
            .sum();
        assert_eq!(auctions, 46_000);
    }
}
