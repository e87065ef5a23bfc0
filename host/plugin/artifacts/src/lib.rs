//! Paths of the Wasm components built from `plugins/` and `conformance/hostile/` by this
//! crate's build script, for the tests and benchmarks of the plugin host.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
