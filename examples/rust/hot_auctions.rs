//! Hot auctions with the DataStream API: Nexmark bids, filtered and keyed by auction,
//! counted in sliding windows, plus a keyed process function that flags bidders whose
//! spending in a minute of event time passes a threshold (state and timers).
//!
//! Run: `cargo run -p fungi-examples --example hot_auctions`

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::compute::kernels::cmp::gt;
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::util::pretty::pretty_format_batches;
use fungi_flink::prelude::*;
use fungi_state::ValueState;
use fungi_streaming::timer::{TimeDomain, Timer};

/// Sums each bidder's spending; one minute (event time) after a bidder's first bid,
/// emits the bidder if the sum passed 10 000 000 and starts over.
struct BigSpenders {
    spent: ValueState<i64>,
}

impl KeyedProcessFunction for BigSpenders {
    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &KeyedRows,
        ctx: &mut KeyedContext<'_>,
        _out: &mut fungi_execution::Output,
    ) -> fungi_common::Result<()> {
        let price = batch
            .column_by_name("price")
            .expect("bid has price")
            .as_primitive::<Int64Type>();
        let time = batch
            .column_by_name("dateTime")
            .expect("bid has dateTime")
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        for i in 0..keys.len() {
            let (kg, key) = (keys.key_group(i), keys.key(i));
            let spent = self.spent.get(ctx.state, kg, key)?;
            if spent.is_none() {
                ctx.register_event_time_timer(kg, key, time.value(i) + 60_000);
            }
            self.spent
                .put(ctx.state, kg, key, &(spent.unwrap_or(0) + price.value(i)))?;
        }
        Ok(())
    }

    fn on_timers(
        &mut self,
        timers: &[Timer],
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_>,
        out: &mut fungi_execution::Output,
    ) -> fungi_common::Result<()> {
        let mut flagged = Vec::new();
        let mut totals = Vec::new();
        for t in timers {
            let spent = self.spent.get(ctx.state, t.key_group, &t.key)?.unwrap_or(0);
            self.spent.clear(ctx.state, t.key_group, &t.key)?;
            if spent > 10_000_000 {
                flagged.push(t.clone());
                totals.push(spent);
            }
        }
        if !flagged.is_empty() {
            let mut columns = ctx.key_columns(&flagged)?;
            columns.push(Arc::new(Int64Array::from(totals)) as ArrayRef);
            out.emit(RecordBatch::try_new(spender_schema(), columns)?);
        }
        Ok(())
    }
}

fn spender_schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("bidder", DataType::Int64, false),
        Field::new("spent", DataType::Int64, false),
    ]))
}

/// Prints how many rows came out and the first few of them.
fn print_sample(what: &str, batches: &[RecordBatch]) -> fungi_common::Result<()> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!("{rows} {what}, for example:");
    let first: Vec<RecordBatch> = batches
        .iter()
        .take(1)
        .map(|b| b.slice(0, b.num_rows().min(5)))
        .collect();
    println!("{}", pretty_format_batches(&first)?);
    Ok(())
}

fn main() -> fungi_common::Result<()> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let bids = env.from_source(
        nexmark_source("bid", 1_000_000)?,
        WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_secs(2)),
        "bids",
    );
    // Bids above 1000 cents, counted per auction in 10 s windows sliding every 5 s.
    let (windows_sink, windows) = CollectSink::new();
    bids.filter(|b| {
        Ok(gt(
            b.column_by_name("price").expect("price"),
            &Int64Array::new_scalar(1000),
        )?)
    })
    .key_by(["auction"])
    .window(SlidingEventTimeWindows::of(
        Duration::from_secs(10),
        Duration::from_secs(5),
    ))
    .aggregate(vec![count_star("bids"), max("price", "top_price")])?
    .sink_to(windows_sink.factory(), "windows");
    let (spenders_sink, spenders) = CollectSink::new();
    bids.key_by(["bidder"])
        .process(spender_schema(), || {
            Box::new(BigSpenders {
                spent: ValueState::new("spent"),
            })
        })?
        .sink_to(spenders_sink.factory(), "spenders");

    println!("{}", env.explain()?);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let summary = runtime.block_on(env.execute("hot auctions"))?;
    println!("finished in {:.2}s", summary.elapsed.as_secs_f64());
    print_sample("window results", &windows.batches())?;
    print_sample("big spenders flagged", &spenders.batches())?;
    Ok(())
}
