//! Small, quote-aware text helpers for the parts of Flink SQL that DataFusion's parser
//! does not take (statement splitting, `WATERMARK FOR`, `WITH` options, window
//! table functions). They skip string literals, quoted identifiers and comments, so a
//! `;` or `(` inside them never counts.

/// What each byte of a SQL text is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Code,
    /// A string literal, quoted identifier or `$$ ... $$` body.
    Literal,
    Comment,
}

/// The part each byte of `sql` belongs to.
fn parts(sql: &str) -> Vec<Part> {
    let b = sql.as_bytes();
    let mut parts = vec![Part::Code; b.len()];
    let mut mark = |range: std::ops::Range<usize>, part: Part| {
        parts[range].iter_mut().for_each(|p| *p = part);
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                let start = i;
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                let end = (i + 1).min(b.len());
                mark(start..end, Part::Literal);
                i = end;
            }
            // A dollar-quoted body (PostgreSQL's `$$ ... $$`, as in inline functions).
            b'$' if b.get(i + 1) == Some(&b'$') => {
                let end = sql[i + 2..].find("$$").map_or(b.len(), |at| i + 2 + at + 2);
                mark(i..end, Part::Literal);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                mark(start..i, Part::Comment);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                let end = (i + 2).min(b.len());
                mark(start..end, Part::Comment);
                i = end;
            }
            _ => i += 1,
        }
    }
    parts
}

/// Byte ranges of the code (not literals or comments) of `sql`, as a mask.
fn code_mask(sql: &str) -> Vec<bool> {
    parts(sql).into_iter().map(|p| p == Part::Code).collect()
}

/// Removes `--` and `/* */` comments (keeps literals).
pub(crate) fn strip_comments(sql: &str) -> String {
    let parts = parts(sql);
    let mut out = String::with_capacity(sql.len());
    let mut in_comment = false;
    for (i, c) in sql.char_indices() {
        if parts[i] == Part::Comment {
            if !in_comment {
                out.push(' ');
            }
            in_comment = true;
        } else {
            in_comment = false;
            out.push(c);
        }
    }
    out
}

/// The body of the `$$ ... $$` that starts `sql` (after whitespace), and what follows it.
pub(crate) fn dollar_quoted(sql: &str) -> Option<(&str, &str)> {
    let rest = sql.trim_start().strip_prefix("$$")?;
    let end = rest.find("$$")?;
    Some((&rest[..end], &rest[end + 2..]))
}

/// Splits a script into statements at top-level `;`, dropping empty ones.
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let sql = strip_comments(sql);
    let mask = code_mask(&sql);
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in sql.bytes().enumerate() {
        if c == b';' && mask[i] {
            out.push(sql[start..i].trim().to_string());
            start = i + 1;
        }
    }
    out.push(sql[start..].trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

/// Index of the `)` (or `]`) that closes the `(` (or `[`) at `open`.
pub(crate) fn matching_paren(sql: &str, open: usize) -> Option<usize> {
    let mask = code_mask(sql);
    let (opening, closing) = match sql.as_bytes().get(open) {
        Some(b'[') => (b'[', b']'),
        _ => (b'(', b')'),
    };
    let mut depth = 0usize;
    for (i, c) in sql.bytes().enumerate().skip(open) {
        if !mask[i] {
            continue;
        }
        match c {
            c if c == opening => depth += 1,
            c if c == closing => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at top-level commas (not inside parentheses or literals).
pub(crate) fn split_top_level(sql: &str) -> Vec<String> {
    let mask = code_mask(sql);
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in sql.bytes().enumerate() {
        if !mask[i] {
            continue;
        }
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                out.push(sql[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = sql[start..].trim();
    if !last.is_empty() {
        out.push(last.to_string());
    }
    out
}

/// Finds `keyword` (case-insensitive, as a whole word, in code) at or after `from`.
pub(crate) fn find_keyword(sql: &str, keyword: &str, from: usize) -> Option<usize> {
    let mask = code_mask(sql);
    let lower = sql.to_ascii_lowercase();
    let kw = keyword.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut pos = from;
    while let Some(found) = lower[pos..].find(&kw) {
        let i = pos + found;
        let before_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let end = i + kw.len();
        let after_ok =
            end >= bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
        if before_ok && after_ok && mask[i] {
            return Some(i);
        }
        pos = i + 1;
    }
    None
}

/// Rewrites every call `function(...)` in `sql` (or `function[...]` when `open` is `[`),
/// found as a keyword outside literals and comments: `rewrite` gets the text between the
/// delimiters and returns the whole call's replacement, or `None` to keep the call (its
/// arguments are still searched). Scanning resumes after a replacement, so `rewrite`
/// handles calls nested in its arguments itself.
pub(crate) fn rewrite_calls(
    sql: &str,
    function: &str,
    open: char,
    mut rewrite: impl FnMut(&str) -> crate::Result<Option<String>>,
) -> crate::Result<String> {
    let mut out = sql.to_string();
    let mut from = 0;
    while let Some(pos) = find_keyword(&out, function, from) {
        let mut at = pos + function.len();
        if open == '(' {
            at += out[at..].len() - out[at..].trim_start().len();
        }
        from = at;
        if !out[at..].starts_with(open) {
            continue;
        }
        let close = matching_paren(&out, at).ok_or_else(|| {
            crate::SqlError::Plan(format!("unbalanced '{open}' after {function}"))
        })?;
        if let Some(replacement) = rewrite(&out[at + 1..close])? {
            out.replace_range(pos..=close, &replacement);
            from = pos + replacement.len();
        }
    }
    Ok(out)
}

/// Removes one level of quotes (`'x'`, `"x"`, `` `x` ``) if present.
pub(crate) fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['\'', '"', '`'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            let inner = &s[1..s.len() - 1];
            return inner.replace(&format!("{q}{q}"), &q.to_string());
        }
    }
    s.to_string()
}

/// The edit distance between two strings, counting a swap of neighbours as one edit
/// (optimal string alignment), for "did you mean" suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[n][m]
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A Java date-time pattern (`yyyy-MM-dd HH:mm:ss.SSS`, as Flink's `DATE_FORMAT`,
/// `FROM_UNIXTIME` and `UNIX_TIMESTAMP` take) as a chrono/strftime one
/// (`%Y-%m-%d %H:%M:%S%.3f`-like); other characters stand for themselves.
pub(crate) fn java_to_strftime(pattern: &str) -> String {
    const TOKENS: [(&str, &str); 9] = [
        ("yyyy", "%Y"),
        ("SSS", "%3f"),
        ("yy", "%y"),
        ("MM", "%m"),
        ("dd", "%d"),
        ("HH", "%H"),
        ("hh", "%I"),
        ("mm", "%M"),
        ("ss", "%S"),
    ];
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        match TOKENS.iter().find(|(java, _)| rest.starts_with(java)) {
            Some((java, strftime)) => {
                out.push_str(strftime);
                rest = &rest[java.len()..];
            }
            None => {
                if c == '%' {
                    out.push('%');
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_outside_literals_and_comments() {
        let s =
            "CREATE TABLE t (a INT) WITH ('x' = 'a;b'); -- c; d\nSELECT ';' FROM t /* ; */;\n\n";
        let parts = split_statements(s);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("'a;b')"));
        assert!(parts[1].starts_with("SELECT ';' FROM t"));
    }

    #[test]
    fn dollar_quoted_bodies_are_literals() {
        let s = "CREATE FUNCTION f LANGUAGE PYTHON AS $$\ndef f(x):\n    return x -- 1; # 'it's\n$$;\nSELECT f(1) -- done";
        let parts = split_statements(s);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("x -- 1; # 'it's\n$$"), "{parts:?}");
        assert_eq!(parts[1], "SELECT f(1)");
        let at = find_keyword(&parts[0], "AS", 0).unwrap();
        let (body, rest) = dollar_quoted(&parts[0][at + 2..]).unwrap();
        assert!(body.starts_with("\ndef f(x):") && rest.is_empty());
        assert_eq!(find_keyword(&parts[0], "return", 0), None);
    }

    #[test]
    fn parens_commas_keywords() {
        let s = "f(a, (b, c)), 'x,y', d";
        assert_eq!(split_top_level(s), vec!["f(a, (b, c))", "'x,y'", "d"]);
        assert_eq!(matching_paren(s, 1), Some(11));
        assert_eq!(find_keyword("select 'from' FROM t", "from", 0), Some(14));
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(
            closest("dateTme", ["auction", "dateTime", "price"]),
            Some("dateTime")
        );
        assert_eq!(closest("zzz", ["auction", "price"]), None);
        assert_eq!(closest("cuont", ["cot", "count"]), Some("count"));
    }
}
