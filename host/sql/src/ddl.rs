//! `CREATE TABLE` with Flink's `WATERMARK FOR` clause and `WITH (...)` options.
//!
//! The parts DataFusion's parser does not know are taken out here; the column list that
//! remains is planned by DataFusion, so column types follow its SQL type mapping.

use arrow::datatypes::DataType;
use fungi_connector::options::{MetadataColumn, map_type};

use crate::error::{Result, SqlError};
use crate::text::{find_keyword, matching_paren, split_top_level, unquote};

/// A `CREATE TABLE` taken apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CreateTable {
    pub(crate) name: String,
    /// The column definitions without the watermark (and primary key) clauses.
    pub(crate) columns: Vec<String>,
    /// `WATERMARK FOR column AS column - INTERVAL ...`: (column, delay in ms).
    pub(crate) watermark: Option<(String, i64)>,
    /// Computed columns `name AS expression`: (name, expression text).
    pub(crate) computed: Vec<(String, String)>,
    /// `WITH` options, keys and values unquoted, in order.
    pub(crate) options: Vec<(String, String)>,
    /// Columns declared `METADATA [FROM 'key'] [VIRTUAL]` (still listed in `columns`,
    /// without the clause).
    pub(crate) metadata: Vec<MetadataColumn>,
    /// `MAP<K, V>` columns, which DataFusion's parser does not know: listed in `columns`
    /// as `BYTEA`, and their type here.
    pub(crate) maps: Vec<(String, DataType)>,
    /// `PRIMARY KEY (a, b) NOT ENFORCED`: the key columns, unquoted.
    pub(crate) primary_key: Vec<String>,
}

/// The name of a column definition (its first word, unquoted), and where it ends.
fn column_name(def: &str) -> (String, usize) {
    let def_trim = def.trim_start();
    let lead = def.len() - def_trim.len();
    let end = match def_trim.chars().next() {
        Some(q @ ('`' | '"')) => def_trim[1..].find(q).map_or(def_trim.len(), |i| i + 2),
        _ => def_trim.find(char::is_whitespace).unwrap_or(def_trim.len()),
    };
    (unquote(&def_trim[..end]), lead + end)
}

/// Takes Flink's `METADATA [FROM 'key'] [VIRTUAL]` clause off a column definition.
fn split_metadata(def: &str) -> Result<(String, Option<MetadataColumn>)> {
    let (column, name_end) = column_name(def);
    let Some(at) = find_keyword(def, "METADATA", name_end) else {
        return Ok((def.to_string(), None));
    };
    let mut words = def[at + "METADATA".len()..].split_whitespace().peekable();
    let mut key = column.clone();
    let mut is_virtual = false;
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("FROM") {
            let k = words.next().ok_or_else(|| {
                SqlError::Plan(format!(
                    "column '{column}': METADATA FROM needs a key, e.g. METADATA FROM 'offset'"
                ))
            })?;
            key = unquote(k);
        } else if w.eq_ignore_ascii_case("VIRTUAL") {
            is_virtual = true;
        } else {
            return Err(SqlError::Plan(format!(
                "column '{column}': unexpected '{w}' after METADATA; write \
                 METADATA [FROM 'key'] [VIRTUAL]"
            )));
        }
    }
    Ok((
        def[..at].trim_end().to_string(),
        Some(MetadataColumn {
            column,
            key,
            is_virtual,
        }),
    ))
}

/// Joins items split inside `MAP<K, V>` (the comma splitter only knows parentheses).
fn join_map_types(items: Vec<String>) -> Vec<String> {
    let open = |s: &str| {
        s.to_ascii_uppercase().contains("MAP<") && s.matches('<').count() > s.matches('>').count()
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match out.last_mut() {
            Some(last) if open(last) => {
                last.push_str(", ");
                last.push_str(item.trim());
            }
            _ => out.push(item),
        }
    }
    out
}

/// A SQL type name of a map's key or value.
fn map_part_type(name: &str) -> Option<DataType> {
    match name.trim().to_ascii_uppercase().as_str() {
        "STRING" | "VARCHAR" | "TEXT" => Some(DataType::Utf8),
        "BYTES" | "BYTEA" | "VARBINARY" | "BINARY" => Some(DataType::Binary),
        "BIGINT" => Some(DataType::Int64),
        "INT" | "INTEGER" => Some(DataType::Int32),
        "DOUBLE" => Some(DataType::Float64),
        "BOOLEAN" => Some(DataType::Boolean),
        _ => None,
    }
}

/// Replaces a `MAP<K, V>` type with `BYTEA` (for DataFusion's parser), returning its type.
fn split_map(def: &str) -> Result<(String, Option<DataType>)> {
    let (column, name_end) = column_name(def);
    let rest = def[name_end..].trim_start();
    if !rest.to_ascii_uppercase().starts_with("MAP") {
        return Ok((def.to_string(), None));
    }
    let bad = || {
        SqlError::Plan(format!(
            "column '{column}': cannot read the type '{rest}'; write MAP<STRING, BYTES>"
        ))
    };
    let open = rest.find(['<', '(']).ok_or_else(bad)?;
    if !rest[3..open].trim().is_empty() {
        return Ok((def.to_string(), None));
    }
    let close = rest.find(['>', ')']).ok_or_else(bad)?;
    let (k, v) = rest[open + 1..close].split_once(',').ok_or_else(bad)?;
    let (k, v) = (
        map_part_type(k).ok_or_else(bad)?,
        map_part_type(v).ok_or_else(bad)?,
    );
    let tail = &rest[close + 1..];
    Ok((
        format!("{} BYTEA{tail}", &def[..name_end]),
        Some(map_type(k, v)),
    ))
}

/// Parses `INTERVAL '4' SECOND`, `INTERVAL '0.001' SECOND`, `INTERVAL '5' MINUTES`,
/// `INTERVAL '2 seconds'` into milliseconds.
pub(crate) fn parse_interval_ms(text: &str) -> Result<i64> {
    let t = text.trim();
    let bad = || {
        SqlError::Plan(format!(
            "'{t}' is not an interval like INTERVAL '10' SECOND"
        ))
    };
    if !t.to_ascii_uppercase().starts_with("INTERVAL") {
        return Err(bad());
    }
    let rest = t[8..].trim();
    let (value, unit) = if let Some(quoted) = rest.strip_prefix('\'') {
        let close = quoted.find('\'').ok_or_else(bad)?;
        let inner = &quoted[..close];
        let unit = quoted[close + 1..].trim();
        if unit.is_empty() {
            // INTERVAL '2 seconds'
            let mut parts = inner.split_whitespace();
            (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            )
        } else {
            (inner.trim().to_string(), unit.to_string())
        }
    } else {
        let mut parts = rest.split_whitespace();
        (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        )
    };
    let value: f64 = value.parse().map_err(|_| bad())?;
    let unit = unit.to_ascii_uppercase();
    let factor = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1.0,
        "SECOND" => 1000.0,
        "MINUTE" => 60_000.0,
        "HOUR" => 3_600_000.0,
        "DAY" => 86_400_000.0,
        _ => {
            return Err(SqlError::Plan(format!(
                "unsupported interval unit '{unit}' in '{t}'; use MILLISECOND, SECOND, MINUTE, HOUR or DAY"
            )));
        }
    };
    Ok((value * factor).round() as i64)
}

fn parse_watermark(item: &str) -> Result<(String, i64)> {
    // WATERMARK FOR <col> AS <expr>
    let words: Vec<&str> = item.split_whitespace().collect();
    if words.len() < 5
        || !words[1].eq_ignore_ascii_case("FOR")
        || !words[3].eq_ignore_ascii_case("AS")
    {
        return Err(SqlError::Plan(format!(
            "cannot read '{item}'; write WATERMARK FOR ts AS ts - INTERVAL '5' SECOND"
        )));
    }
    let column = unquote(words[2]);
    let expr = words[4..].join(" ");
    let expr_col = unquote(words[4]);
    if expr_col != column {
        return Err(SqlError::Plan(format!(
            "watermark expression '{expr}' must be based on the column '{column}' (e.g. {column} - INTERVAL '5' SECOND)"
        )));
    }
    let rest = expr[words[4].len()..].trim();
    if rest.is_empty() {
        return Ok((column, 0));
    }
    let Some(interval) = rest.strip_prefix('-') else {
        return Err(SqlError::Plan(format!(
            "unsupported watermark expression '{expr}'; write {column} or {column} - INTERVAL '5' SECOND"
        )));
    };
    Ok((column, parse_interval_ms(interval)?))
}

/// Takes a `CREATE TABLE` statement apart.
pub(crate) fn parse_create_table(stmt: &str) -> Result<CreateTable> {
    let with = find_keyword(stmt, "WITH", 0);
    let open = stmt
        .find('(')
        .ok_or_else(|| SqlError::Plan("CREATE TABLE needs WITH (...) options".into()))?;
    // `CREATE TABLE t WITH (...)`: no columns, the connector brings its schema.
    let no_columns = with.is_some_and(|w| w < open);
    let header_end = if no_columns {
        with.unwrap_or(open)
    } else {
        open
    };
    let header: Vec<&str> = stmt[..header_end].split_whitespace().collect();
    let name = header
        .iter()
        .rev()
        .find(|w| !["IF", "NOT", "EXISTS"].contains(&w.to_ascii_uppercase().as_str()))
        .map(|w| unquote(w))
        .filter(|n| !n.eq_ignore_ascii_case("TABLE"))
        .ok_or_else(|| SqlError::Plan("CREATE TABLE needs a table name".into()))?;
    let close = if no_columns {
        header_end.saturating_sub(1)
    } else {
        matching_paren(stmt, open).ok_or_else(|| {
            SqlError::Plan(format!("unbalanced parentheses in CREATE TABLE {name}"))
        })?
    };
    let mut columns = Vec::new();
    let mut metadata = Vec::new();
    let mut maps = Vec::new();
    let mut computed = Vec::new();
    let mut watermark = None;
    let mut primary_key = Vec::new();
    let items = if no_columns {
        Vec::new()
    } else {
        join_map_types(split_top_level(&stmt[open + 1..close]))
    };
    for item in items {
        let upper = item.to_ascii_uppercase();
        if upper.starts_with("WATERMARK") {
            watermark = Some(parse_watermark(&item)?);
        } else if upper.split_whitespace().nth(1) == Some("AS") {
            let name = item.split_whitespace().next().expect("two words");
            let at = item.to_ascii_uppercase().find(" AS ").expect("AS");
            computed.push((unquote(name), item[at + 4..].trim().to_string()));
        } else if upper.starts_with("PRIMARY KEY") {
            // Flink's `PRIMARY KEY (..) NOT ENFORCED`: upsert connectors key by it;
            // nothing enforces it.
            primary_key = parse_primary_key(&item)?;
        } else {
            let (item, meta) = split_metadata(&item)?;
            let (item, map) = split_map(&item)?;
            if let Some(t) = map {
                maps.push((column_name(&item).0, t));
            }
            metadata.extend(meta);
            columns.push(item);
        }
    }
    let mut options = Vec::new();
    let rest = &stmt[close + 1..];
    if let Some(with) = find_keyword(rest, "WITH", 0) {
        let open = rest[with..]
            .find('(')
            .map(|i| i + with)
            .ok_or_else(|| SqlError::Plan("WITH needs options in parentheses".into()))?;
        let end = matching_paren(rest, open)
            .ok_or_else(|| SqlError::Plan("unbalanced parentheses in WITH (...)".into()))?;
        for pair in split_top_level(&rest[open + 1..end]) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                SqlError::Plan(format!(
                    "option '{pair}' is not of the form 'key' = 'value'"
                ))
            })?;
            options.push((unquote(k), unquote(v)));
        }
    } else if !rest.trim().is_empty() {
        return Err(SqlError::Plan(format!(
            "unexpected '{}' after the columns of {name}; options go in WITH (...)",
            rest.trim()
        )));
    }
    Ok(CreateTable {
        name,
        columns,
        watermark,
        computed,
        options,
        metadata,
        maps,
        primary_key,
    })
}

/// The columns of `PRIMARY KEY (a, b) [NOT ENFORCED]`.
fn parse_primary_key(item: &str) -> Result<Vec<String>> {
    let bad = || {
        SqlError::Plan(format!(
            "'{}' is not PRIMARY KEY (column, ...) NOT ENFORCED",
            item.trim()
        ))
    };
    let open = item.find('(').ok_or_else(bad)?;
    let close = matching_paren(item, open).ok_or_else(bad)?;
    let columns: Vec<String> = item[open + 1..close]
        .split(',')
        .map(|c| unquote(c.trim()))
        .collect();
    if columns.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_ddl() {
        let t = parse_create_table(
            "CREATE TABLE bid (auction BIGINT, price BIGINT, dateTime TIMESTAMP(3), \
             WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND) \
             WITH ('connector' = 'nexmark', 'table' = 'bid')",
        )
        .unwrap();
        assert_eq!(t.name, "bid");
        assert_eq!(t.columns.len(), 3);
        assert_eq!(t.watermark, Some(("dateTime".into(), 4000)));
        assert_eq!(
            t.options,
            vec![
                ("connector".into(), "nexmark".into()),
                ("table".into(), "bid".into())
            ]
        );
        let t = parse_create_table("CREATE TABLE bid WITH ('connector' = 'nexmark')").unwrap();
        assert_eq!(
            (t.name.as_str(), t.columns.len(), t.options.len()),
            ("bid", 0, 1)
        );
    }

    #[test]
    fn metadata_columns_and_maps() {
        let t = parse_create_table(
            "CREATE TABLE k (id BIGINT, `offset` BIGINT METADATA VIRTUAL, \
             ts TIMESTAMP(3) METADATA FROM 'timestamp', \
             h MAP<STRING, BYTES> METADATA FROM 'headers', metadata_count INT) \
             WITH ('connector' = 'kafka')",
        )
        .unwrap();
        assert_eq!(
            t.columns,
            vec![
                "id BIGINT",
                "`offset` BIGINT",
                "ts TIMESTAMP(3)",
                "h BYTEA",
                "metadata_count INT"
            ]
        );
        let keys: Vec<(&str, &str, bool)> = t
            .metadata
            .iter()
            .map(|m| (m.column.as_str(), m.key.as_str(), m.is_virtual))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("offset", "offset", true),
                ("ts", "timestamp", false),
                ("h", "headers", false)
            ]
        );
        assert_eq!(
            t.maps,
            vec![("h".to_string(), map_type(DataType::Utf8, DataType::Binary))]
        );
        let err = parse_create_table("CREATE TABLE k (a INT METADATA FROM) WITH ()")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a key"), "{err}");
        let err = parse_create_table("CREATE TABLE k (m MAP<DATE, INT>) WITH ()")
            .unwrap_err()
            .to_string();
        assert!(err.contains("write MAP<STRING, BYTES>"), "{err}");
    }

    #[test]
    fn intervals_and_bad_watermarks() {
        assert_eq!(parse_interval_ms("INTERVAL '0.001' SECOND").unwrap(), 1);
        assert_eq!(parse_interval_ms("INTERVAL '2' MINUTES").unwrap(), 120_000);
        assert_eq!(parse_interval_ms("INTERVAL '3 seconds'").unwrap(), 3000);
        let err = parse_create_table(
            "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS other - INTERVAL '1' SECOND)",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("based on the column 'ts'"), "{err}");
    }
}
