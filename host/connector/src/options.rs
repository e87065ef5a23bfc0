//! String options of a connector (`WITH ('key' = 'value', ...)`), with typed getters that
//! name the offending option in their errors and refuse unknown keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fungi_common::{FungiError, Result};

/// Options of one connector instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    connector: String,
    values: BTreeMap<String, String>,
    used: std::cell::RefCell<BTreeSet<String>>,
    metadata: Vec<MetadataColumn>,
    egress: Option<crate::egress::Egress>,
    primary_key: Vec<String>,
}

/// A column declared `name TYPE METADATA [FROM 'key'] [VIRTUAL]` (Flink's syntax): the
/// connector fills it from what it knows about a record (a Kafka message's offset,
/// timestamp, headers, ...) instead of the record's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataColumn {
    /// The column.
    pub column: String,
    /// The connector's metadata key (the column name when `FROM` is left out).
    pub key: String,
    /// `VIRTUAL`: read, never written by a sink.
    pub is_virtual: bool,
}

/// The type of a `MAP<key, value>` column, with the field names Flink and DataFusion use
/// (`entries`, `key`, `value`); keys are never null.
pub fn map_type(
    key: arrow::datatypes::DataType,
    value: arrow::datatypes::DataType,
) -> arrow::datatypes::DataType {
    use arrow::datatypes::{DataType, Field, Fields};
    DataType::Map(
        std::sync::Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", key, false),
                Field::new("value", value, true),
            ])),
            false,
        )),
        false,
    )
}

impl Options {
    /// Options for `connector` from key/value pairs.
    pub fn new<K: Into<String>, V: Into<String>>(
        connector: &str,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Options {
            connector: connector.to_string(),
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            used: Default::default(),
            metadata: Vec::new(),
            egress: None,
            primary_key: Vec::new(),
        }
    }

    /// These options with the table's `PRIMARY KEY` columns.
    pub fn with_primary_key(mut self, columns: Vec<String>) -> Self {
        self.primary_key = columns;
        self
    }

    /// The table's `PRIMARY KEY` columns (empty without one).
    pub fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    /// These options for a confined tenant's table: the connector may reach only the
    /// hosts of `egress`, and checks that itself where it connects.
    pub fn with_egress(mut self, egress: Option<crate::egress::Egress>) -> Self {
        self.egress = egress;
        self
    }

    /// The hosts the connector may reach, when it runs for a confined tenant.
    pub fn egress(&self) -> Option<&crate::egress::Egress> {
        self.egress.as_ref()
    }

    /// These options with the table's metadata columns.
    pub fn with_metadata(mut self, metadata: Vec<MetadataColumn>) -> Self {
        self.metadata = metadata;
        self
    }

    /// The table's metadata columns.
    pub fn metadata(&self) -> &[MetadataColumn] {
        &self.metadata
    }

    /// Refuses metadata columns, for connectors that have none.
    pub fn refuse_metadata(&self) -> Result<()> {
        match self.metadata.first() {
            None => Ok(()),
            Some(m) => Err(FungiError::Config(format!(
                "connector '{}' has no metadata; column '{}' is declared METADATA FROM '{}' \
                 (only the kafka connector has metadata columns)",
                self.connector, m.column, m.key
            ))),
        }
    }

    fn err(&self, key: &str, msg: impl std::fmt::Display) -> FungiError {
        FungiError::Config(format!(
            "connector '{}', option '{key}': {msg}",
            self.connector
        ))
    }

    /// A string option.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.used.borrow_mut().insert(key.to_string());
        self.values.get(key).map(String::as_str)
    }

    /// A required string option.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| self.err(key, "is required"))
    }

    /// An integer option.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| self.err(key, format!("'{v}' is not a non-negative integer")))
            })
            .transpose()
    }

    /// A signed integer option.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| self.err(key, format!("'{v}' is not an integer")))
            })
            .transpose()
    }

    /// A boolean option (`true`/`false`).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.err(key, format!("'{v}' is not true or false"))),
            })
            .transpose()
    }

    /// A duration option: `500ms`, `10s`, `5min`, `1h`, or a plain number of ms.
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>> {
        self.get(key)
            .map(|v| parse_duration(v).map_err(|m| self.err(key, m)))
            .transpose()
    }

    /// An error policy option (`fail`, the default, or `dead-letter`).
    pub fn on_error(&self, key: &str) -> Result<fungi_reliability::OnFailure> {
        match self.get(key) {
            None => Ok(fungi_reliability::OnFailure::Fail),
            Some(v) => v
                .parse()
                .map_err(|_| self.err(key, format!("'{v}' is not fail or dead-letter"))),
        }
    }

    /// Keys that start with `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.values {
            if let Some(rest) = k.strip_prefix(prefix) {
                self.used.borrow_mut().insert(k.clone());
                out.insert(rest.to_string(), v.clone());
            }
        }
        out
    }

    /// Accepts `keys` without reading them: options of the other side of a connector
    /// that is both a source and a sink (a table can be read and written).
    pub fn accept(&self, keys: &[&str]) {
        self.used
            .borrow_mut()
            .extend(keys.iter().map(|k| k.to_string()));
    }

    /// Refuses options that no getter asked for (typos), naming them and the known ones.
    pub fn check_all_used(&self, known: &[&str]) -> Result<()> {
        let used = self.used.borrow();
        let unknown: Vec<&String> = self.values.keys().filter(|k| !used.contains(*k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(FungiError::Config(format!(
            "connector '{}': unknown option(s) {}; known options: {}",
            self.connector,
            unknown
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        )))
    }
}

/// The longest duration an option takes (100 years): longer ones are mistakes, and
/// would overflow the arithmetic of deadlines.
const MAX_DURATION_MS: u64 = 100 * 365 * 86_400_000;

/// Parses `500ms`, `10s`, `10 s`, `5min`, `1h`, `2d`, or a plain number of milliseconds.
pub fn parse_duration(v: &str) -> std::result::Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{v}' is not a duration like 500ms, 10s, 5min"))?;
    let unit_ms: u64 = match unit.trim() {
        "" | "ms" => 1,
        "s" | "sec" | "second" | "seconds" => 1000,
        "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        other => return Err(format!("unknown time unit '{other}' in '{v}'")),
    };
    let ms = n
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| format!("'{v}' is longer than 100 years"))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_name_the_option() {
        let o = Options::new("datagen", [("rows-per-second", "fast"), ("x", "1")]);
        let err = o.get_u64("rows-per-second").unwrap_err().to_string();
        assert!(
            err.contains("'rows-per-second'") && err.contains("'fast'"),
            "{err}"
        );
        let err = o
            .check_all_used(&["rows-per-second"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option(s) 'x'"), "{err}");
        assert_eq!(parse_duration("5min").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("999999999999999d").is_err());
    }
}
