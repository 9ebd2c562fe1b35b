//! SQL literals for the batch write of result rows, which goes as one text
//! statement: a prepared statement would be prepared again for nearly every
//! batch (each batch size is its own statement text), costing the server a
//! parse, a round trip and a parameter definition per placeholder.
//!
//! This module owns the rendering of values as literals. It must never
//! render a string that could end its quotes or change meaning with the
//! server's `sql_mode`: a value holding a quote, a backslash, a control
//! byte or bytes that are not UTF-8 goes as a hex literal (`X'…'`), which no
//! mode reads differently; everything else goes between single quotes as is.

use mysql_async::Value;

/// Appends one row's values to a statement as `(v1, v2, …)`.
pub(super) struct RowLiterals<'a> {
    sql: &'a mut String,
    first: bool,
}

impl<'a> RowLiterals<'a> {
    /// Opens the row's parentheses.
    pub(super) fn open(sql: &'a mut String) -> RowLiterals<'a> {
        sql.push('(');
        RowLiterals { sql, first: true }
    }

    /// Closes the row's parentheses.
    pub(super) fn close(self) {
        self.sql.push(')');
    }

    fn next(&mut self) -> &mut String {
        if !self.first {
            self.sql.push_str(", ");
        }
        self.first = false;
        self.sql
    }

    /// A text value (a Rust string is UTF-8 already).
    pub(super) fn text(&mut self, text: &str) -> &mut Self {
        let sql = self.next();
        if text.bytes().all(plain) {
            quoted(sql, text);
        } else {
            hex(sql, text.as_bytes());
        }
        self
    }

    /// A text value or NULL.
    pub(super) fn opt_text(&mut self, text: Option<&str>) -> &mut Self {
        match text {
            Some(text) => self.text(text),
            None => self.null(),
        }
    }

    /// Bytes (quoted when they are plain UTF-8 text) or NULL.
    pub(super) fn opt_bytes(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        match bytes.map(|b| (b, std::str::from_utf8(b))) {
            Some((_, Ok(text))) => self.text(text),
            Some((bytes, Err(_))) => {
                hex(self.next(), bytes);
                self
            }
            None => self.null(),
        }
    }

    /// An integer.
    pub(super) fn int(&mut self, n: i64) -> &mut Self {
        self.next().push_str(itoa::Buffer::new().format(n));
        self
    }

    /// NULL.
    pub(super) fn null(&mut self) -> &mut Self {
        self.next().push_str("NULL");
        self
    }

    /// A value as the driver holds it: NULL, an integer, bytes or a
    /// DATETIME (`'YYYY-MM-DD hh:mm:ss.ffffff'`).
    pub(super) fn value(&mut self, value: &Value) -> &mut Self {
        match value {
            Value::NULL => self.null(),
            Value::Int(n) => self.int(*n),
            Value::Bytes(bytes) => self.opt_bytes(Some(bytes)),
            Value::Date(year, month, day, hour, minute, second, micros) => {
                let sql = self.next();
                sql.push('\'');
                digits(sql, u32::from(*year), 4);
                for (separator, part) in [('-', *month), ('-', *day), (' ', *hour)] {
                    sql.push(separator);
                    digits(sql, u32::from(part), 2);
                }
                for part in [*minute, *second] {
                    sql.push(':');
                    digits(sql, u32::from(part), 2);
                }
                sql.push('.');
                digits(sql, *micros, 6);
                sql.push('\'');
                self
            }
            // Not written by the batch (unsigned, floats, times): the
            // driver's own rendering has no quotes to escape.
            other => {
                self.next().push_str(&other.as_sql(true));
                self
            }
        }
    }
}

/// A byte that means itself between single quotes in every `sql_mode`.
fn plain(byte: u8) -> bool {
    byte >= 0x20 && byte != b'\'' && byte != b'\\' && byte != 0x7f
}

fn quoted(sql: &mut String, text: &str) {
    sql.push('\'');
    sql.push_str(text);
    sql.push('\'');
}

fn hex(sql: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    sql.reserve(bytes.len() * 2 + 3);
    sql.push_str("X'");
    for byte in bytes {
        sql.push(char::from(DIGITS[usize::from(byte >> 4)]));
        sql.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    sql.push('\'');
}

/// `n` in decimal, zero-padded to `width` digits.
fn digits(sql: &mut String, n: u32, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let text = buffer.format(n);
    for _ in text.len()..width {
        sql.push('0');
    }
    sql.push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fill: impl FnOnce(&mut RowLiterals<'_>)) -> String {
        let mut sql = String::new();
        let mut literals = RowLiterals::open(&mut sql);
        fill(&mut literals);
        literals.close();
        sql
    }

    #[test]
    fn plain_text_is_quoted_as_is() {
        assert_eq!(
            row(|r| {
                r.text("job-1");
            }),
            "('job-1')"
        );
        assert_eq!(
            row(|r| {
                r.text("{\"a\":\"é\"}").text("");
            }),
            "('{\"a\":\"é\"}', '')"
        );
    }

    #[test]
    fn quotes_backslashes_control_bytes_and_binary_go_as_hex() {
        assert_eq!(
            row(|r| {
                r.text("it's");
            }),
            "(X'69742773')"
        );
        assert_eq!(
            row(|r| {
                r.text("a\\b");
            }),
            "(X'615c62')"
        );
        assert_eq!(
            row(|r| {
                r.text("a\nb");
            }),
            "(X'610a62')"
        );
        assert_eq!(
            row(|r| {
                r.text("\u{7f}");
            }),
            "(X'7f')"
        );
        assert_eq!(
            row(|r| {
                r.opt_bytes(Some(&[0xff, 0x00]));
            }),
            "(X'ff00')"
        );
        assert_eq!(
            row(|r| {
                r.opt_bytes(Some(b"{}"));
            }),
            "('{}')"
        );
    }

    #[test]
    fn numbers_null_and_datetimes() {
        assert_eq!(
            row(|r| {
                r.int(-3).null().opt_text(None).opt_bytes(None);
            }),
            "(-3, NULL, NULL, NULL)"
        );
        assert_eq!(
            row(|r| {
                r.value(&Value::Date(2023, 1, 4, 2, 3, 5, 123))
                    .value(&Value::NULL)
                    .value(&Value::Int(7));
            }),
            "('2023-01-04 02:03:05.000123', NULL, 7)"
        );
    }
}
