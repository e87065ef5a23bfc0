//! Which statements a script may hold: an allow-list, decided from the statement's
//! leading keywords (read by sqlparser's tokenizer, so comments, quoted names and
//! string literals never count) before anything else looks at it.
//!
//! Fungi plans streaming jobs; it never runs a query while it plans one. So a script
//! holds only the statements Fungi itself plans: `CREATE TABLE ... WITH (...)`,
//! `CREATE [TEMPORARY] VIEW`, `CREATE FUNCTION`, `LOAD PLUGIN`, `SET`, `INSERT INTO`,
//! `SELECT` (and `WITH ...`, `VALUES`), `EXPLAIN` of one of those, and, outside a
//! server, `DROP TABLE|VIEW`. Everything else DataFusion would accept — external
//! tables, `COPY`, `CREATE TABLE ... AS SELECT`, `SHOW`, `DESCRIBE`, `PREPARE`, ... — is
//! refused naming the statement, whoever runs the script: those statements read or
//! write files, or execute a query, while the script is planned.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Result, SqlError};

/// The kinds of statement a script may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// `CREATE [TEMPORARY] TABLE name (...) WITH ('connector' = ...)`.
    CreateTable,
    /// `CREATE [OR REPLACE] [TEMPORARY] VIEW name AS query`.
    CreateView,
    /// `CREATE [TEMPORARY [SYSTEM]] FUNCTION ...`.
    CreateFunction,
    /// `LOAD PLUGIN 'name'`.
    LoadPlugin,
    /// `SET 'key' = 'value'`.
    Set,
    /// `INSERT INTO table query`.
    Insert,
    /// `SELECT ...`, `WITH ... SELECT ...`, `VALUES ...`.
    Query,
    /// `EXPLAIN` of a query or an insert.
    Explain,
    /// `DROP TABLE|VIEW name` (not on a server).
    Drop,
}

impl StatementKind {
    /// How messages name the kind.
    pub fn name(self) -> &'static str {
        match self {
            StatementKind::CreateTable => "CREATE TABLE",
            StatementKind::CreateView => "CREATE VIEW",
            StatementKind::CreateFunction => "CREATE FUNCTION",
            StatementKind::LoadPlugin => "LOAD PLUGIN",
            StatementKind::Set => "SET",
            StatementKind::Insert => "INSERT INTO",
            StatementKind::Query => "SELECT",
            StatementKind::Explain => "EXPLAIN",
            StatementKind::Drop => "DROP",
        }
    }
}

/// What a script may hold, for messages.
pub(crate) const ALLOWED: &str = "CREATE TABLE ... WITH (...), CREATE VIEW, CREATE FUNCTION, \
     LOAD PLUGIN, SET, INSERT INTO, SELECT and EXPLAIN";

/// The leading tokens of a statement that decide its kind: unquoted words upper-cased,
/// quoted names and literals as `None`, punctuation as its text.
#[derive(Debug)]
struct Lead {
    tokens: Vec<Token>,
}

impl Lead {
    fn of(stmt: &str) -> Result<Lead> {
        let tokens = Tokenizer::new(&GenericDialect {}, stmt)
            .tokenize()
            .map_err(|e| SqlError::Plan(format!("cannot read the statement: {e}")))?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
            .collect();
        Ok(Lead { tokens })
    }

    /// The `i`th token as an unquoted keyword, upper-cased.
    fn word(&self, i: usize) -> Option<String> {
        match self.tokens.get(i)? {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    /// Whether an unquoted `keyword` appears outside parentheses from token `from` on.
    fn top_level_word(&self, from: usize, keywords: &[&str]) -> Option<String> {
        let mut depth = 0i32;
        for t in self.tokens.iter().skip(from) {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                    let upper = w.value.to_ascii_uppercase();
                    if keywords.contains(&upper.as_str()) {
                        return Some(upper);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The first `n` tokens as the statement is written, for messages.
    fn words(&self, n: usize) -> String {
        self.tokens
            .iter()
            .take(n)
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn refused(what: &str, why: &str) -> SqlError {
    SqlError::Plan(format!(
        "the statement '{what}' is not allowed: {why}. A script holds {ALLOWED}"
    ))
}

/// The kind of `stmt`, or an error naming the statement when it is not one a script
/// may hold.
pub fn classify(stmt: &str) -> Result<StatementKind> {
    let lead = Lead::of(stmt)?;
    let first = lead.word(0);
    match first.as_deref() {
        Some("CREATE") => classify_create(&lead),
        Some("LOAD") if lead.word(1).as_deref() == Some("PLUGIN") => Ok(StatementKind::LoadPlugin),
        Some("SET") => Ok(StatementKind::Set),
        Some("INSERT") if lead.word(1).as_deref() == Some("INTO") => Ok(StatementKind::Insert),
        Some("INSERT") => Err(refused(
            &lead.words(2),
            "only INSERT INTO appends to a streaming table",
        )),
        Some("SELECT" | "WITH" | "VALUES") => Ok(StatementKind::Query),
        None if matches!(lead.tokens.first(), Some(Token::LParen)) => Ok(StatementKind::Query),
        Some("EXPLAIN") => {
            // EXPLAIN of an allowed query or insert only (`EXPLAIN ANALYZE` runs it).
            let inner = lead.word(1);
            match inner.as_deref() {
                Some("SELECT" | "WITH" | "VALUES" | "INSERT") => Ok(StatementKind::Explain),
                None if matches!(lead.tokens.get(1), Some(Token::LParen)) => {
                    Ok(StatementKind::Explain)
                }
                _ => Err(refused(
                    &lead.words(2),
                    "EXPLAIN shows the plan of a SELECT or an INSERT INTO, and never runs it",
                )),
            }
        }
        Some("UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" | "UPSERT" | "REPLACE") => Err(refused(
            &lead.words(2),
            "a streaming table is appended to: use INSERT INTO (an updating query's \
             changelog goes to a sink that accepts updates)",
        )),
        Some("DROP") => match lead.word(1).as_deref() {
            Some("TABLE" | "VIEW") => Ok(StatementKind::Drop),
            _ => Err(refused(
                &lead.words(2),
                "only tables and views can be dropped",
            )),
        },
        _ => Err(refused(
            &lead.words(2),
            "it is not a statement Fungi plans into a streaming job",
        )),
    }
}

fn classify_create(lead: &Lead) -> Result<StatementKind> {
    let mut i = 1;
    let mut words = Vec::new();
    while let Some(w) = lead.word(i) {
        match w.as_str() {
            "OR" | "REPLACE" | "TEMPORARY" | "TEMP" | "IF" | "NOT" | "EXISTS" => {
                words.push(w);
                i += 1;
            }
            _ => break,
        }
    }
    let object = lead.word(i).unwrap_or_default();
    let statement = lead.words(i + 2);
    match object.as_str() {
        "TABLE" => {
            // `CREATE TABLE t AS SELECT ...` (and `LIKE`, `CLONE`) copy rows while the
            // script is planned; a streaming table is declared with columns and WITH.
            if let Some(kw) = lead.top_level_word(i + 1, &["AS", "LIKE", "CLONE"]) {
                return Err(refused(
                    &format!("{statement} ... {kw}"),
                    "a streaming table is declared with its columns and WITH ('connector' = \
                     ...), and filled by INSERT INTO; CREATE TABLE ... AS runs a query while \
                     the script is planned",
                ));
            }
            if words.iter().any(|w| w == "OR" || w == "REPLACE") {
                return Err(refused(
                    &statement,
                    "CREATE OR REPLACE TABLE replaces what DataFusion holds, not a streaming \
                     table; declare each table once with CREATE TABLE ... WITH (...)",
                ));
            }
            Ok(StatementKind::CreateTable)
        }
        "VIEW" => Ok(StatementKind::CreateView),
        "FUNCTION" => Ok(StatementKind::CreateFunction),
        // Flink's `CREATE TEMPORARY SYSTEM FUNCTION`.
        "SYSTEM" if lead.word(i + 1).as_deref() == Some("FUNCTION") => {
            Ok(StatementKind::CreateFunction)
        }
        "EXTERNAL" | "UNBOUNDED" => Err(refused(
            &lead.words(i + 2),
            "external tables read files of the server while the script is planned; declare \
             a streaming table with CREATE TABLE ... WITH ('connector' = 'filesystem', \
             'path' = ...)",
        )),
        "MATERIALIZED" => Err(refused(
            &lead.words(i + 2),
            "a materialized view runs a query; use CREATE VIEW, or INSERT INTO a table",
        )),
        _ => Err(refused(
            &statement,
            "it is not a statement Fungi plans into a streaming job",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_statements_are_classified() {
        for (sql, kind) in [
            (
                "CREATE TABLE t (a INT, ts AS PROCTIME()) WITH ('connector' = 'datagen')",
                StatementKind::CreateTable,
            ),
            (
                "create temporary table t (a int) with ('connector'='blackhole')",
                StatementKind::CreateTable,
            ),
            ("CREATE VIEW v AS SELECT 1", StatementKind::CreateView),
            (
                "CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1",
                StatementKind::CreateView,
            ),
            (
                "CREATE FUNCTION f LANGUAGE WASM USING 'geo'",
                StatementKind::CreateFunction,
            ),
            (
                "CREATE TEMPORARY SYSTEM FUNCTION f LANGUAGE WASM USING 'geo'",
                StatementKind::CreateFunction,
            ),
            ("LOAD PLUGIN 'geo'", StatementKind::LoadPlugin),
            ("SET 'parallelism.default' = '2'", StatementKind::Set),
            ("INSERT INTO t SELECT 1", StatementKind::Insert),
            ("/* c */ SELECT 1", StatementKind::Query),
            (
                "-- c\nWITH x AS (SELECT 1) SELECT * FROM x",
                StatementKind::Query,
            ),
            ("(SELECT 1)", StatementKind::Query),
            ("EXPLAIN SELECT 1", StatementKind::Explain),
            ("EXPLAIN INSERT INTO t SELECT 1", StatementKind::Explain),
            ("DROP TABLE t", StatementKind::Drop),
        ] {
            assert_eq!(classify(sql).unwrap(), kind, "{sql}");
        }
    }

    #[test]
    fn statements_that_run_or_read_while_planned_are_refused_by_name() {
        for (sql, named) in [
            (
                "CREATE EXTERNAL TABLE ext (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            (
                "CREATE UNBOUNDED EXTERNAL TABLE e STORED AS CSV LOCATION '/x'",
                "CREATE UNBOUNDED EXTERNAL",
            ),
            (
                "CREATE OR REPLACE TABLE x AS SELECT CAST(line AS INT) FROM ext",
                "AS",
            ),
            ("CREATE TABLE x AS SELECT 1", "CREATE TABLE x ... AS"),
            ("create table x as (select 1)", "AS"),
            ("CREATE TABLE x LIKE y", "LIKE"),
            ("COPY t TO '/tmp/out.csv'", "COPY"),
            ("CREATE MATERIALIZED VIEW m AS SELECT 1", "MATERIALIZED"),
            ("SHOW TABLES", "SHOW TABLES"),
            ("DESCRIBE t", "DESCRIBE"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE"),
            ("INSERT OVERWRITE t SELECT 1", "INSERT OVERWRITE"),
            ("CREATE SCHEMA s", "CREATE SCHEMA"),
            ("DROP SCHEMA s", "DROP SCHEMA"),
            ("/* CREATE TABLE */ COPY t TO 'x'", "COPY"),
            ("\"SELECT\" 1", "SELECT"),
        ] {
            let e = classify(sql).unwrap_err().to_string();
            assert!(
                e.contains("is not allowed") && e.contains(named),
                "{sql}: {e}"
            );
        }
    }

    #[test]
    fn computed_columns_and_watermarks_are_not_create_table_as() {
        let sql = "CREATE TABLE t (a BIGINT, b AS a + 1, ts TIMESTAMP(3), \
                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'x')";
        assert_eq!(classify(sql).unwrap(), StatementKind::CreateTable);
    }
}
