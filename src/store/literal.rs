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

use std::fmt::Write;

use mysql_async::Value;

/// Appends `value` to `sql` as a literal.
pub(super) fn push_literal(sql: &mut String, value: &Value) {
    match value {
        Value::NULL => sql.push_str("NULL"),
        Value::Bytes(bytes) => push_bytes(sql, bytes),
        Value::Int(n) => {
            let _ = write!(sql, "{n}");
        }
        Value::UInt(n) => {
            let _ = write!(sql, "{n}");
        }
        Value::Date(year, month, day, hour, minute, second, micros) => {
            let _ = write!(
                sql,
                "'{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{micros:06}'"
            );
        }
        // Not written by the batch (floats, times): the driver's own
        // rendering has no quotes to escape.
        other => sql.push_str(&other.as_sql(true)),
    }
}

fn push_bytes(sql: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.bytes().all(plain) => {
            sql.push('\'');
            sql.push_str(text);
            sql.push('\'');
        }
        _ => {
            sql.push_str("X'");
            for byte in bytes {
                let _ = write!(sql, "{byte:02x}");
            }
            sql.push('\'');
        }
    }
}

/// A byte that means itself between single quotes in every `sql_mode`.
fn plain(byte: u8) -> bool {
    byte >= 0x20 && byte != b'\'' && byte != b'\\' && byte != 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(value: Value) -> String {
        let mut sql = String::new();
        push_literal(&mut sql, &value);
        sql
    }

    #[test]
    fn plain_text_is_quoted_as_is() {
        assert_eq!(literal(Value::from("job-1")), "'job-1'");
        assert_eq!(literal(Value::from("{\"a\":\"é\"}")), "'{\"a\":\"é\"}'");
        assert_eq!(literal(Value::from("")), "''");
    }

    #[test]
    fn quotes_backslashes_control_bytes_and_binary_go_as_hex() {
        assert_eq!(literal(Value::from("it's")), "X'69742773'");
        assert_eq!(literal(Value::from("a\\b")), "X'615c62'");
        assert_eq!(literal(Value::from("a\nb")), "X'610a62'");
        assert_eq!(literal(Value::Bytes(vec![0xff, 0x00])), "X'ff00'");
        assert_eq!(literal(Value::from("\u{7f}")), "X'7f'");
    }

    #[test]
    fn numbers_null_and_datetimes() {
        assert_eq!(literal(Value::NULL), "NULL");
        assert_eq!(literal(Value::Int(-3)), "-3");
        assert_eq!(literal(Value::UInt(7)), "7");
        assert_eq!(
            literal(Value::Date(2023, 11, 14, 22, 13, 20, 123_000)),
            "'2023-11-14 22:13:20.123000'"
        );
    }
}
