//! The Nexmark source through the runtime.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use fungi_connector::options::Options;
use fungi_connector::registry;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::CollectSink;

use crate::run;

#[test]
fn parallel_bids_are_complete_and_deterministic() {
    let collect = |p: u32| {
        let (factory, schema) = registry::source(
            "nexmark",
            None,
            &Options::new("nexmark", [("table", "bid"), ("events", "20000")]),
        )
        .unwrap();
        assert_eq!(schema.field(5).name(), "dateTime");
        let mut g = JobGraph::new("nexmark");
        let src = g.add_source("bids", p, factory, None);
        let (sink, out) = CollectSink::new();
        let s = g.add_operator("collect", 1, sink.factory());
        g.connect(src, s, Partitioning::Rebalance);
        run(g).unwrap();
        let mut rows: Vec<(i64, i64, i64)> = out
            .batches()
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_primitive::<Int64Type>().clone();
                let bd = b.column(1).as_primitive::<Int64Type>().clone();
                let p = b.column(2).as_primitive::<Int64Type>().clone();
                (0..b.num_rows())
                    .map(move |i| (a.value(i), bd.value(i), p.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        rows
    };
    let one = collect(1);
    assert_eq!(one.len(), 18_400);
    assert_eq!(one, collect(3));
}
