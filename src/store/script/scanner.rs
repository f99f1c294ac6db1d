//! The SQL text scanner scripts are built on: finding `$n` placeholders outside quoted text,
//! renumbering them, writing them in SQLite's `?n` form, and writing the `VALUES` rows of a
//! multi-row statement.

use std::fmt::Write as _;

/// Calls `f` for each `$n` placeholder outside quoted text, with its byte range and number.
pub(super) fn placeholders(sql: &str, mut f: impl FnMut(std::ops::Range<usize>, usize)) {
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'$' => {
                let start = i;
                let mut end = i + 1;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start + 1
                    && let Ok(n) = sql[start + 1..end].parse::<usize>()
                {
                    f(start..end, n);
                    i = end;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
}

pub(super) fn highest_placeholder(sql: &str) -> usize {
    let mut highest = 0;
    placeholders(sql, |_, n| highest = highest.max(n));
    highest
}

/// `sql` with every `$n` made `$(n + offset)`.
pub(super) fn renumber(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    placeholders(sql, |range, n| {
        out.push_str(&sql[copied..range.start]);
        let _ = write!(out, "${}", n + offset);
        copied = range.end;
    });
    out.push_str(&sql[copied..]);
    out
}

/// `sql` with every `$n` written `?n`, SQLite's own numbered form (for rusqlite, which binds by
/// position: SQLite numbers `$n` names by first appearance, not by `n`).
pub(super) fn question_marks(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    placeholders(sql, |range, _| {
        // The `$` becomes `?`; the number after it is copied with the next stretch.
        out.push_str(&sql[copied..range.start]);
        out.push('?');
        copied = range.start + 1;
    });
    out.push_str(&sql[copied..]);
    out
}

/// The rows of a multi-row `VALUES` list for `rows` rows of `columns` values each, bound row
/// after row: `($1, $2), ($3, $4)` for two rows of two.
pub fn values_rows(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 1..=columns {
            if column > 1 {
                out.push_str(", ");
            }
            let _ = write!(out, "${}", row * columns + column);
        }
        out.push(')');
    }
    out
}

/// The rows of a multi-row `VALUES` list made from one row written as a template with its own
/// placeholders: `$1…$shared` are bound once for the whole statement and stay as they are in
/// every row (a time every row shares, say); the row's own, `$(shared + 1)…$(shared + k)`, are
/// numbered on past the row before. A placeholder may appear twice in the template (two
/// columns of one value), and literal text is copied as written:
/// `values_rows_from(2, "($2, 'pending', $3, $1)", 1)` is
/// `($2, 'pending', $3, $1), ($4, 'pending', $5, $1)`.
pub fn values_rows_from(rows: usize, row: &str, shared: usize) -> String {
    // The template cut once into its literal stretches and placeholders.
    let mut pieces: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
    let mut copied = 0;
    placeholders(row, |range, n| {
        pieces.push((copied..range.start, n));
        copied = range.end;
    });
    let tail = &row[copied..];
    let own = highest_placeholder(row).saturating_sub(shared);
    let mut out = String::with_capacity(rows * (row.len() + 4));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        for (literal, n) in &pieces {
            out.push_str(&row[literal.clone()]);
            let n = if *n > shared { n + r * own } else { *n };
            let _ = write!(out, "${n}");
        }
        out.push_str(tail);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_number_placeholders_for_sqlite() {
        assert_eq!(
            question_marks("UPDATE t SET a = $2, b = '$1' WHERE id = $1 AND c = $10"),
            "UPDATE t SET a = ?2, b = '$1' WHERE id = ?1 AND c = ?10"
        );
    }

    #[test]
    fn renumbers_placeholders_but_not_quoted_text() {
        assert_eq!(
            renumber("INSERT INTO t VALUES ($1, '$2', $2, $10)", 5),
            "INSERT INTO t VALUES ($6, '$2', $7, $15)"
        );
        assert_eq!(highest_placeholder("SELECT $3, $12, '$99'"), 12);
        assert_eq!(highest_placeholder("SELECT 1"), 0);
    }

    #[test]
    fn values_rows_number_each_row_after_the_one_before() {
        assert_eq!(values_rows(0, 3), "");
        assert_eq!(values_rows(1, 1), "($1)");
        assert_eq!(values_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    #[test]
    fn templated_rows_keep_shared_placeholders_and_literals() {
        assert_eq!(
            values_rows_from(2, "($2, 'pending', $3, $1)", 1),
            "($2, 'pending', $3, $1), ($4, 'pending', $5, $1)"
        );
        assert_eq!(
            values_rows_from(3, "($1, $2, $2)", 0),
            "($1, $2, $2), ($3, $4, $4), ($5, $6, $6)"
        );
        // A quoted `$n` is text, not a placeholder.
        assert_eq!(
            values_rows_from(2, "($1, '$1')", 0),
            "($1, '$1'), ($2, '$1')"
        );
        assert_eq!(values_rows_from(2, "($1, $2)", 0), values_rows(2, 2));
        assert_eq!(values_rows_from(0, "($1)", 0), "");
    }
}
