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
        let Some(bytes) = bytes else {
            return self.null();
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => self.text(text),
            Err(_) => {
                hex(self.next(), bytes);
                self
            }
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

    /// A unix-millisecond time as a DATETIME literal (NULL when absent or
    /// out of range), through `cache`.
    pub(super) fn datetime_ms(&mut self, cache: &mut Datetimes, unix_ms: Option<i64>) -> &mut Self {
        let Some(ms) = unix_ms else {
            return self.null();
        };
        let Some(text) = cache.text_of(ms) else {
            return self.null();
        };
        let sql = self.next();
        sql.push_str(text);
        // Whole milliseconds: exact in u32 (at most 999 000).
        close_datetime(sql, ms.rem_euclid(1000) as u32 * 1000);
        self
    }
}

/// The text of the latest few whole seconds written as DATETIMEs: a row's
/// enqueue, start and finish times, and those of one batch, fall within a
/// few seconds, so most reuse one instead of a calendar conversion each.
#[derive(Debug, Default)]
pub(super) struct Datetimes {
    /// (unix second, `'YYYY-MM-DD hh:mm:ss`), at most [`Datetimes::KEPT`].
    seconds: Vec<(i64, String)>,
    /// The entry the next new second replaces once all are in use.
    next: usize,
}

impl Datetimes {
    const KEPT: usize = 4;

    /// The text of the whole second `ms` falls in, or `None` when it is out
    /// of DATETIME's range.
    fn text_of(&mut self, ms: i64) -> Option<&str> {
        let second = ms.div_euclid(1000);
        if let Some(found) = self.seconds.iter().position(|(s, _)| *s == second) {
            return Some(&self.seconds[found].1);
        }
        let value = super::datetime(Some(ms));
        if value == Value::NULL {
            return None;
        }
        let mut text = String::with_capacity(20);
        date_to_second(&mut text, &value);
        let slot = if self.seconds.len() < Self::KEPT {
            self.seconds.push((second, text));
            self.seconds.len() - 1
        } else {
            let slot = self.next;
            self.seconds[slot] = (second, text);
            self.next = (slot + 1) % Self::KEPT;
            slot
        };
        Some(&self.seconds[slot].1)
    }
}

/// `'YYYY-MM-DD hh:mm:ss` of a `Value::Date` (nothing for other values).
fn date_to_second(sql: &mut String, value: &Value) {
    let Value::Date(year, month, day, hour, minute, second, _) = value else {
        return;
    };
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
}

/// `.ffffff'`: the microseconds and the closing quote of a DATETIME.
fn close_datetime(sql: &mut String, micros: u32) {
    sql.push('.');
    digits(sql, micros, 6);
    sql.push('\'');
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
    fn numbers_null_and_a_datetime() {
        assert_eq!(
            row(|r| {
                r.int(-3).null().opt_text(None).opt_bytes(None);
            }),
            "(-3, NULL, NULL, NULL)"
        );
        let mut cache = Datetimes::default();
        assert_eq!(
            row(|r| {
                r.datetime_ms(&mut cache, Some(1_672_797_785_123));
            }),
            "('2023-01-04 02:03:05.123000')"
        );
    }

    #[test]
    fn datetimes_from_unix_ms_reuse_the_second_and_agree_with_the_driver_value() {
        let mut cache = Datetimes::default();
        let mut times = vec![
            Some(1_700_000_000_123),
            Some(1_700_000_000_999),
            Some(1_700_000_001_000),
            None,
            Some(-99_999_999_999_999),
        ];
        // More seconds than are kept, coming back: entries are replaced.
        for round in 0..3 {
            times.extend((0..6).map(|s| Some(1_700_000_100_000 + s * 1000 + round)));
        }
        let cached = row(|r| {
            for ms in &times {
                r.datetime_ms(&mut cache, *ms);
            }
        });
        // Each time converted on its own, from the driver's value.
        let direct: Vec<String> = times
            .iter()
            .map(|ms| match super::super::datetime(*ms) {
                value @ Value::Date(.., micros) => {
                    let mut text = String::new();
                    date_to_second(&mut text, &value);
                    close_datetime(&mut text, micros);
                    text
                }
                _ => "NULL".to_string(),
            })
            .collect();
        let direct = format!("({})", direct.join(", "));
        assert_eq!(cached, direct);
        assert!(cached.starts_with("('2023-11-14 22:13:20.123000', '2023-11-14 22:13:20.999000', '2023-11-14 22:13:21.000000', NULL, NULL"), "{cached}");
    }
}
