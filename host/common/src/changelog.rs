//! Updating results as a changelog, as Flink's dynamic tables.
//!
//! An operator whose results change over time (an aggregation without a window, later
//! joins) emits batches with one extra, last column [`OP_COLUMN`] telling what each row
//! does to the result table: insert, retract the old version before an update, add the
//! new version, or delete. Sinks that can apply such changes accept these batches;
//! append-only sinks are refused at planning.

/// Name of the change column appended to updating streams.
pub const OP_COLUMN: &str = "__op";

/// What a row does to the result table (Flink's `RowKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the old version of a row that is about to be updated.
    UpdateBefore = 1,
    /// `+U`: the new version of an updated row.
    UpdateAfter = 2,
    /// `-D`: a row that is gone.
    Delete = 3,
}

impl RowKind {
    /// Flink's short form: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// The kind encoded as `code` in an [`OP_COLUMN`].
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => RowKind::Insert,
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => return None,
        })
    }
}
