//! The datagen source.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use fungi_connector::options::Options;
use fungi_connector::registry;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::CollectSink;

use crate::run;

#[test]
fn bounded_sequence_and_random_ranges() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("score", DataType::Int32, false),
        Field::new("tag", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let options = Options::new(
        "datagen",
        [
            ("rows-per-second", "0"),
            ("number-of-rows", "1000"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
            ("fields.score.min", "5"),
            ("fields.score.max", "7"),
            ("fields.tag.length", "4"),
        ],
    );
    let (factory, _) = registry::source("datagen", Some(schema), &options).unwrap();
    let mut g = JobGraph::new("datagen");
    let src = g.add_source("gen", 3, factory, None);
    let (sink, out) = CollectSink::new();
    let s = g.add_operator("collect", 1, sink.factory());
    g.connect(src, s, Partitioning::Rebalance);
    run(g).unwrap();
    let mut ids: Vec<i64> = out
        .batches()
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
    for b in out.batches() {
        let scores = b.column(1).as_primitive::<arrow::datatypes::Int32Type>();
        assert!(scores.values().iter().all(|s| (5..=7).contains(s)));
        assert!(
            b.column(2)
                .as_string::<i32>()
                .iter()
                .flatten()
                .all(|t| t.len() == 4)
        );
    }
    let err = registry::source(
        "datagen",
        Some(Arc::new(Schema::new(vec![Field::new(
            "id",
            DataType::Int64,
            false,
        )]))),
        &Options::new("datagen", [("fields.id.kind", "sequential")]),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("'sequential' is not random or sequence"),
        "{err}"
    );
}
