//! Flink's window table functions, rewritten for DataFusion's parser.
//!
//! `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))` becomes
//! `(SELECT *, fungi_window_start('tumble', dateTime, 10000, 0) AS window_start,
//! fungi_window_end(...) AS window_end, fungi_window_time(...) AS window_time FROM bid)`.
//! The `fungi_window_*` functions mark the window for the streaming planner, which turns
//! an aggregation grouped by `window_start, window_end` into a window operator; evaluated
//! directly they give the window of each row for tumbling windows.

use crate::ddl::parse_interval_ms;
use crate::error::{Result, SqlError};
use crate::text::{find_keyword, matching_paren, split_top_level, unquote};

/// The window kinds and their marker names.
pub(crate) const KINDS: &[&str] = &["tumble", "hop", "cumulate", "session"];

/// Applies the rewrites: window table functions, legacy group windows, Flink functions.
pub(crate) fn rewrite(sql: &str) -> Result<String> {
    crate::flink_functions::refuse_unparsed(sql)?;
    let sql = rewrite_date_format(&rewrite_group_windows(&rewrite_window_tvfs(sql)?)?)?;
    let sql = crate::flink_functions::rewrite_time_units(&sql)?;
    let sql = crate::flink_functions::rewrite_floor_ceil(&sql)?;
    crate::flink_functions::rewrite_constructors(&sql)
}

/// Flink's `DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')` (Java patterns) becomes DataFusion's
/// `to_char(ts, '%Y-%m-%d %H:%M:%S')`.
pub(crate) fn rewrite_date_format(sql: &str) -> Result<String> {
    let mut out = sql.to_string();
    let mut from = 0;
    while let Some(pos) = find_keyword(&out, "DATE_FORMAT", from) {
        let open = pos + "DATE_FORMAT".len();
        if !out[open..].starts_with('(') {
            from = open;
            continue;
        }
        let close = matching_paren(&out, open)
            .ok_or_else(|| SqlError::Plan("unbalanced parentheses in DATE_FORMAT".into()))?;
        let args = split_top_level(&out[open + 1..close]);
        if args.len() != 2 || !args[1].starts_with('\'') {
            return Err(SqlError::Plan("DATE_FORMAT takes a timestamp and a pattern literal, e.g. DATE_FORMAT(ts, 'yyyy-MM-dd')".into()));
        }
        let pattern = unquote(&args[1]);
        let chrono = crate::text::java_to_strftime(&pattern);
        let replacement = format!("to_char({}, '{}')", args[0], chrono.replace('\'', "''"));
        out.replace_range(pos..=close, &replacement);
        from = pos + replacement.len();
    }
    Ok(out)
}

/// Flink's lookup join `JOIN t FOR SYSTEM_TIME AS OF x.proctime [AS] s` becomes
/// `JOIN t [AS] s`; returns the rewritten SQL and the names of the tables joined that
/// way, which the planner turns into lookup joins.
pub(crate) fn rewrite_lookup_joins(sql: &str) -> Result<(String, Vec<String>)> {
    let mut out = sql.to_string();
    let mut tables = Vec::new();
    let mut from = 0;
    while let Some(pos) = find_keyword(&out, "SYSTEM_TIME", from) {
        let before = out[..pos].trim_end();
        let Some(head) = before
            .len()
            .checked_sub(3)
            .filter(|&i| before[i..].eq_ignore_ascii_case("for"))
        else {
            // Not a lookup join (e.g. a column named system_time).
            from = pos + 1;
            continue;
        };
        let table = before[..head]
            .split_whitespace()
            .last()
            .map(unquote)
            .ok_or_else(|| {
                SqlError::Plan("FOR SYSTEM_TIME AS OF must follow a table name".into())
            })?;
        let rest = &out[pos + "SYSTEM_TIME".len()..];
        let mut words = rest.split_whitespace();
        let (Some(a), Some(o), Some(time)) = (words.next(), words.next(), words.next()) else {
            return Err(SqlError::Plan(
                "expected AS OF <time attribute> after FOR SYSTEM_TIME".into(),
            ));
        };
        if !a.eq_ignore_ascii_case("as") || !o.eq_ignore_ascii_case("of") {
            return Err(SqlError::Plan(
                "expected AS OF <time attribute> after FOR SYSTEM_TIME".into(),
            ));
        }
        // The clause ends after the time attribute (one compound identifier).
        let time_at = rest.find(time).expect("a word of rest") + pos + "SYSTEM_TIME".len();
        let end = time_at + time.len();
        out.replace_range(head..end, "");
        tables.push(table);
        from = head;
    }
    Ok((out, tables))
}

/// Rewrites every window table function call in `sql`.
pub(crate) fn rewrite_window_tvfs(sql: &str) -> Result<String> {
    let mut out = sql.to_string();
    let mut from = 0;
    while let Some(pos) = find_keyword(&out, "TABLE", from) {
        let after = out[pos + 5..].trim_start();
        let offset = out.len() - after.len();
        if !after.starts_with('(') {
            from = pos + 5;
            continue;
        }
        let close = matching_paren(&out, offset)
            .ok_or_else(|| SqlError::Plan("unbalanced parentheses after TABLE".into()))?;
        let inner = out[offset + 1..close].trim();
        let Some(open) = inner.find('(') else {
            from = pos + 5;
            continue;
        };
        let kind = inner[..open].trim().to_ascii_lowercase();
        if !KINDS.contains(&kind.as_str()) {
            from = pos + 5;
            continue;
        }
        let inner_close = matching_paren(inner, open)
            .ok_or_else(|| SqlError::Plan(format!("unbalanced parentheses in {kind}")))?;
        let args = split_top_level(&inner[open + 1..inner_close]);
        let replacement = rewrite_call(&kind, &args)?;
        out.replace_range(pos..=close, &replacement);
        from = pos + replacement.len();
    }
    Ok(out)
}

fn strip_named(arg: &str) -> &str {
    // DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), SIZE => INTERVAL ...
    match arg.find("=>") {
        Some(i) => arg[i + 2..].trim(),
        None => arg.trim(),
    }
}

fn rewrite_call(kind: &str, args: &[String]) -> Result<String> {
    let usage = || match kind {
        "tumble" => "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)",
        "hop" => {
            "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND) (slide, then size)"
        }
        "cumulate" => {
            "CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND) (step, then max size)"
        }
        _ => "SESSION(TABLE t PARTITION BY key, DESCRIPTOR(ts), INTERVAL '10' SECOND)",
    };
    let wrong = |what: &str| {
        SqlError::Plan(format!(
            "{}: {what}; write {}",
            kind.to_uppercase(),
            usage()
        ))
    };
    let expected = if matches!(kind, "tumble" | "session") {
        3
    } else {
        4
    };
    if args.len() != expected {
        return Err(wrong(&format!(
            "takes {expected} arguments, got {}",
            args.len()
        )));
    }
    let data = strip_named(&args[0]);
    let Some(table) = data
        .strip_prefix("TABLE")
        .or_else(|| data.strip_prefix("table"))
    else {
        return Err(wrong("the first argument must be TABLE <name>"));
    };
    // SESSION(TABLE t PARTITION BY k, ...): the partition keys come from GROUP BY.
    let table = match find_keyword(table, "PARTITION", 0) {
        Some(i) => table[..i].trim(),
        None => table.trim(),
    };
    let descriptor = strip_named(&args[1]);
    let col = descriptor
        .strip_prefix("DESCRIPTOR")
        .or_else(|| descriptor.strip_prefix("descriptor"))
        .map(str::trim)
        .and_then(|d| d.strip_prefix('(').and_then(|d| d.strip_suffix(')')))
        .ok_or_else(|| wrong("the second argument must be DESCRIPTOR(<time column>)"))?;
    let col = unquote(col);
    let a = parse_interval_ms(strip_named(&args[2]))?;
    let b = if expected == 4 {
        parse_interval_ms(strip_named(&args[3]))?
    } else {
        0
    };
    let call = |f: &str| format!("{f}('{kind}', \"{col}\", {a}, {b})");
    Ok(format!(
        "(SELECT *, {} AS window_start, {} AS window_end, {} AS window_time FROM {table})",
        call("fungi_window_start"),
        call("fungi_window_end"),
        call("fungi_window_time"),
    ))
}

/// Rewrites Flink's legacy group windows: `GROUP BY TUMBLE(ts, INTERVAL '10' SECOND)`
/// (also `HOP(ts, slide, size)`, `SESSION(ts, gap)`) and their `TUMBLE_START`,
/// `TUMBLE_END`, `TUMBLE_ROWTIME` (and `HOP_*`, `SESSION_*`) companions.
pub(crate) fn rewrite_group_windows(sql: &str) -> Result<String> {
    let mut out = sql.to_string();
    for kind in ["TUMBLE", "HOP", "SESSION"] {
        for (suffix, bounds) in [
            ("_START", &["fungi_window_start"][..]),
            ("_END", &["fungi_window_end"][..]),
            ("_ROWTIME", &["fungi_window_time"][..]),
            ("", &["fungi_window_start", "fungi_window_end"][..]),
        ] {
            let name = format!("{kind}{suffix}");
            let mut from = 0;
            while let Some(pos) = find_keyword(&out, &name, from) {
                let after = &out[pos + name.len()..];
                let Some(open) = after
                    .find(|c: char| !c.is_whitespace())
                    .filter(|&i| after[i..].starts_with('('))
                else {
                    from = pos + name.len();
                    continue;
                };
                let open = pos + name.len() + open;
                let close = matching_paren(&out, open)
                    .ok_or_else(|| SqlError::Plan(format!("unbalanced parentheses in {name}")))?;
                let args = split_top_level(&out[open + 1..close]);
                let expected = if kind == "HOP" { 3 } else { 2 };
                if args.len() != expected
                    || args[0].trim().to_ascii_uppercase().starts_with("TABLE")
                {
                    from = close;
                    continue;
                }
                let (a, b) = if kind == "HOP" {
                    (parse_interval_ms(&args[1])?, parse_interval_ms(&args[2])?)
                } else {
                    (parse_interval_ms(&args[1])?, 0)
                };
                let call: Vec<String> = bounds
                    .iter()
                    .map(|f| {
                        format!(
                            "{f}('{}', {}, {a}, {b})",
                            kind.to_ascii_lowercase(),
                            args[0].trim()
                        )
                    })
                    .collect();
                let replacement = call.join(", ");
                out.replace_range(pos..=close, &replacement);
                from = pos + replacement.len();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_lookup_joins() {
        let (sql, tables) = rewrite_lookup_joins(
            "SELECT * FROM b JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S ON b.k = S.key",
        )
        .unwrap();
        assert_eq!(sql, "SELECT * FROM b JOIN side_input  AS S ON b.k = S.key");
        assert_eq!(tables, vec!["side_input".to_string()]);
        assert!(
            rewrite_lookup_joins("SELECT system_time FROM t")
                .unwrap()
                .1
                .is_empty()
        );
        assert!(rewrite_lookup_joins("SELECT * FROM a JOIN t FOR SYSTEM_TIME b").is_err());
    }

    #[test]
    fn rewrites_date_format() {
        let out = rewrite_date_format("SELECT DATE_FORMAT(dateTime, 'yyyy-MM-dd HH:mm'), x FROM t GROUP BY DATE_FORMAT(dateTime, 'yyyy-MM-dd')").unwrap();
        assert_eq!(
            out,
            "SELECT to_char(dateTime, '%Y-%m-%d %H:%M'), x FROM t GROUP BY to_char(dateTime, '%Y-%m-%d')"
        );
    }

    #[test]
    fn rewrites_legacy_group_windows() {
        let sql = "SELECT B.bidder, count(*), SESSION_START(B.dateTime, INTERVAL '10' SECOND) FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)";
        let out = rewrite_group_windows(sql).unwrap();
        assert!(
            out.contains("count(*), fungi_window_start('session', B.dateTime, 10000, 0) FROM"),
            "{out}"
        );
        assert!(out.ends_with("GROUP BY B.bidder, fungi_window_start('session', B.dateTime, 10000, 0), fungi_window_end('session', B.dateTime, 10000, 0)"), "{out}");
        let out = rewrite_group_windows(
            "GROUP BY HOP(dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
        )
        .unwrap();
        assert!(out.contains("('hop', dateTime, 2000, 10000)"), "{out}");
    }

    #[test]
    fn rewrites_tumble_and_hop() {
        let sql = "SELECT auction, count(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end";
        let out = rewrite_window_tvfs(sql).unwrap();
        assert!(out.contains("FROM (SELECT *, fungi_window_start('tumble', \"dateTime\", 10000, 0) AS window_start"), "{out}");
        assert!(
            out.ends_with("FROM bid) GROUP BY auction, window_start, window_end"),
            "{out}"
        );
        let out = rewrite_window_tvfs("SELECT * FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))").unwrap();
        assert!(out.contains("('hop', \"dateTime\", 2000, 10000)"), "{out}");
        let out = rewrite_window_tvfs("SELECT * FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))").unwrap();
        assert!(
            out.contains("('session', \"dateTime\", 10000, 0)") && out.contains("FROM bid)"),
            "{out}"
        );
        assert_eq!(
            rewrite_window_tvfs("SELECT 1 FROM t").unwrap(),
            "SELECT 1 FROM t"
        );
        let err = rewrite_window_tvfs(
            "SELECT * FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HOP: takes 4 arguments") && err.contains("slide, then size"),
            "{err}"
        );
    }
}
