//! The conformance kit: shipped plugins pass it, hostile ones do not.

use std::path::Path;

use fungi_plugin::conformance;
use fungi_plugin_artifacts::{
    COUNTER_SOURCE, DIR_SINK, HLL, HOSTILE_EVIL, STRINGS_GEO, TEXT_SPLIT,
};

use crate::load;

fn vectors() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conformance/vectors"
    ))
}

#[test]
fn shipped_plugins_pass_the_conformance_kit() {
    for path in [STRINGS_GEO, HLL, TEXT_SPLIT] {
        let report = conformance::run(&load(path), Some(vectors()));
        assert!(report.passed(), "{path}:\n{report}");
        assert!(
            report.checks.iter().any(|c| c.name.starts_with("vector")),
            "{path} has test vectors:\n{report}"
        );
    }
    for path in [COUNTER_SOURCE, DIR_SINK] {
        let report = conformance::run(&load(path), Some(vectors()));
        assert!(report.passed(), "{path}:\n{report}");
        assert!(report.checks.len() >= 2, "{report}");
    }
}

#[test]
fn a_hostile_plugin_fails_it() {
    let report = conformance::run(&load(HOSTILE_EVIL), Some(vectors()));
    assert!(!report.passed());
    let text = report.to_string();
    assert!(text.contains("FAIL spin"), "{text}");
}
