//! Runnable examples of Fungi's Rust APIs; see `hot_auctions.rs`
//! (`cargo run -p fungi-examples --example hot_auctions`).
