//! Built-in operators: batch functions, windowed aggregation, keyed process functions,
//! watermark assignment, changelog normalisation of upserts, and a collecting sink for
//! tests and examples.

mod coalesce;
mod collect;
mod hash_join;
mod interval_join;
mod keyed_process;
mod map;
mod normalize;
mod rank;
mod regular_join;
mod updating;
mod watermark;
mod window;
mod window_join;
mod window_rank;

pub use coalesce::CoalesceOperator;
pub use collect::{CollectSink, Collected};
pub use interval_join::{IntervalJoinOperator, IntervalJoinSpec};
pub use keyed_process::{KeyedContext, KeyedProcessFunction, KeyedProcessOperator, KeyedRows};
pub use map::{FilterOperator, FlatMapOperator, MapOperator};
pub use normalize::ChangelogNormalizeOperator;
pub use rank::{RankOperator, RankSpec};
pub use regular_join::{RegularJoinOperator, RegularJoinSpec};
pub use updating::UpdatingAggregateOperator;
pub use watermark::{ProcessingTimeWatermarks, WatermarkAssigner};
pub use window::{LATE_TAG, WindowOperator, WindowPartialOperator, rescale_filter};
pub use window_join::{WindowJoinOperator, WindowJoinSpec};
pub use window_rank::{WindowRankOperator, WindowRankSpec};
