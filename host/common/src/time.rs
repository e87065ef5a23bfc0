//! Event-time helpers: reading a timestamp column as milliseconds.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, PrimitiveArray};
use arrow::compute::kernels::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};

use crate::error::{FungiError, Result};

/// Milliseconds since the Unix epoch.
pub type EpochMillis = i64;

/// Reads `column` as event time in milliseconds.
///
/// Accepts every Arrow timestamp unit, `Date64` and `Int64` (taken as milliseconds).
/// Nulls are refused: a record without event time cannot be placed in a window.
pub fn timestamps_millis(column: &ArrayRef, name: &str) -> Result<Arc<Int64Array>> {
    let array: ArrayRef = match column.data_type() {
        DataType::Int64 => column.clone(),
        DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Date64 => {
            cast::cast(column, &DataType::Int64)?
        }
        DataType::Timestamp(_, _) => {
            let ms = cast::cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            cast::cast(&ms, &DataType::Int64)?
        }
        other => {
            return Err(FungiError::Plan(format!(
                "column '{name}' has type {other}; an event-time column must be a TIMESTAMP or BIGINT (milliseconds)"
            )));
        }
    };
    if array.null_count() > 0 {
        return Err(FungiError::Plan(format!(
            "event-time column '{name}' contains {} null value(s)",
            array.null_count()
        )));
    }
    let array: &PrimitiveArray<Int64Type> = array
        .as_any()
        .downcast_ref()
        .ok_or_else(|| FungiError::Internal("cast to Int64 did not give Int64Array".into()))?;
    Ok(Arc::new(array.clone()))
}

/// The wall clock in milliseconds since the epoch (0 if the clock is before 1970).
pub fn now_millis() -> EpochMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The wall clock in microseconds since the epoch (for latency markers).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Formats milliseconds since the epoch as an RFC 3339 UTC string (for logs and the CLI).
pub fn format_millis(ms: EpochMillis) -> String {
    if ms == i64::MAX {
        return "+inf".into();
    }
    if ms == i64::MIN {
        return "-inf".into();
    }
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;

    #[test]
    fn reads_micros_as_millis() {
        let col: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1_500_000, 2_999_999]));
        let ms = timestamps_millis(&col, "ts").unwrap();
        assert_eq!(ms.values().as_ref(), &[1500, 2999]);
    }

    #[test]
    fn refuses_strings() {
        let col: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["x"]));
        let err = timestamps_millis(&col, "ts").unwrap_err().to_string();
        assert!(err.contains("'ts'") && err.contains("TIMESTAMP"), "{err}");
    }

    #[test]
    fn formats_epoch() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
