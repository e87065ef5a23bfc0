//! File source and sink: round trips, and bad lines named by file and line.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use fungi_connector::options::Options;
use fungi_connector::registry;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::{CollectSink, Collected};
use fungi_execution::source::VecSource;

use crate::run;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn read(
    path: &str,
    format: &str,
    extra: &[(&str, &str)],
) -> (
    fungi_common::Result<fungi_execution::executor::JobSummary>,
    Collected,
) {
    let mut opts = vec![("path", path), ("format", format)];
    opts.extend_from_slice(extra);
    let (factory, schema) = registry::source(
        "filesystem",
        Some(schema()),
        &Options::new("filesystem", opts),
    )
    .unwrap();
    assert_eq!(schema.fields().len(), 2);
    let mut g = JobGraph::new("read");
    let src = g.add_source("files", 1, factory, None);
    let (sink, out) = CollectSink::new();
    let s = g.add_operator("collect", 1, sink.factory());
    g.connect(src, s, Partitioning::Forward);
    (run(g), out)
}

fn ids(out: &Collected) -> Vec<i64> {
    let mut v: Vec<i64> = out
        .batches()
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    v.sort();
    v
}

#[test]
fn malformed_json_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.json");
    std::fs::write(&path, "{\"id\": 1, \"name\": \"a\"}\n\n{\"id\": 2, \"name\": \"b\"}\n{\"id\": oops}\n{\"id\": 4}\n").unwrap();
    let (result, _) = read(path.to_str().unwrap(), "json", &[]);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("in.json:4:"), "names file and line: {err}");
}

#[test]
fn malformed_lines_go_to_dead_letters_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, "id,name\n1,a\ntwo,b\n3,c\n4\n").unwrap();
    let (result, out) = read(
        path.to_str().unwrap(),
        "csv",
        &[("csv.header", "true"), ("on-error", "dead-letter")],
    );
    let summary = result.unwrap();
    assert_eq!(ids(&out), vec![1, 3]);
    assert_eq!(summary.dead_letters.get("decode"), Some(&2));
    // Records in = records out + dead letters.
    let (result, _) = read(path.to_str().unwrap(), "csv", &[("csv.header", "true")]);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("in.csv:3:"), "{err}");
}

#[test]
fn unknown_options_and_missing_paths_are_refused() {
    let err = registry::source(
        "filesystem",
        Some(schema()),
        &Options::new(
            "filesystem",
            [("path", "/nonexistent/x"), ("format", "json")],
        ),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("/nonexistent/x"), "{err}");
    let err = registry::sink(
        "filesystem",
        &Options::new(
            "filesystem",
            [("path", "/tmp/x"), ("format", "json"), ("colour", "red")],
        ),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("'colour'"), "{err}");
    let err = registry::source("pulsar", None, &Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unknown source connector 'pulsar'") && err.contains("kafka"),
        "{err}"
    );
}

#[test]
fn every_format_round_trips() {
    for (format, extra) in [
        ("json", vec![]),
        ("csv", vec![("csv.header", "true")]),
        ("parquet", vec![]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out");
        let batches: Vec<RecordBatch> = (0..4)
            .map(|b| {
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(Int64Array::from_iter_values((0..50).map(|i| b * 50 + i))),
                        Arc::new(StringArray::from_iter(
                            (0..50).map(|i| (i % 3 != 0).then(|| format!("n{i}"))),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect();
        let mut opts = vec![("path", out_dir.to_str().unwrap()), ("format", format)];
        opts.extend(extra.iter().copied());
        let sink = registry::sink("filesystem", &Options::new("filesystem", opts.clone())).unwrap();
        let mut g = JobGraph::new("write");
        let src = g.add_source("mem", 2, VecSource::factory(schema(), batches), None);
        let s = g.add_operator("files", 2, sink);
        g.connect(src, s, Partitioning::Forward);
        run(g).unwrap();
        let names: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{format}: {names:?}");
        assert!(
            names.iter().all(|n| n.starts_with("part-")),
            "no in-progress files left: {names:?}"
        );
        let (result, out) = read(out_dir.to_str().unwrap(), format, &extra);
        result.unwrap();
        assert_eq!(ids(&out), (0..200).collect::<Vec<_>>(), "{format}");
        let nulls: usize = out.batches().iter().map(|b| b.column(1).null_count()).sum();
        assert_eq!(nulls, 4 * 17, "{format}: nulls survive");
        let name = out.batches()[0].column(1).as_string::<i32>().clone();
        assert!(name.iter().flatten().all(|n| n.starts_with('n')));
    }
}
