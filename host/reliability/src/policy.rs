//! What a failure does once retries are spent.

use std::str::FromStr;

/// The policy of an operator for records it cannot process (Flink users set it per
/// connector; Fungi names it `'sink.on-error'`, `'plugin.on-error'`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Fail the job (its restart strategy decides what next). The default: nothing is
    /// skipped unless asked.
    #[default]
    Fail,
    /// Send the records to the job's dead-letter output, with the reason, and go on.
    DeadLetter,
}

impl FromStr for OnFailure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fail" => Ok(OnFailure::Fail),
            "dead-letter" | "dead_letter" | "dlq" | "skip" => Ok(OnFailure::DeadLetter),
            other => Err(format!(
                "'{other}' is not an error policy; use 'fail' or 'dead-letter'"
            )),
        }
    }
}
