//! Owns Go's JSON text: [`to_vec_pretty`] writes any `Serialize` value byte for byte as Go's
//! `encoding/json` `MarshalIndent(v, "", "  ")` writes the same value, and [`go_rfc3339_nano`]
//! / [`go_sqlite_timestamp`] write instants as Go's `time.Time` does in JSON and as the
//! `mattn/go-sqlite3` driver does in SQL text.
//!
//! What Go does differently from `serde_json`'s pretty printer, and this module copies:
//!
//! * **floats** (`float64`): `strconv.AppendFloat(f, 'f', -1, 64)` — the shortest digits that
//!   read back exactly, never an exponent, `1` not `1.0` — except when `|f| < 1e-6` or
//!   `|f| >= 1e21` (and `f != 0`), where it is the `'e'` form with a two-digit exponent at
//!   least, and `e-07` then shortened to `e-7`: `1e-7`, `1.5e+300`, `1e+21`;
//! * **HTML escaping** (on by default in Go): `<`, `>`, `&` become `\u003c`, `\u003e`,
//!   `\u0026`, and U+2028 / U+2029 become `\u2028` / `\u2029`;
//! * control characters: `\n`, `\r`, `\t`, `\b`, `\f` (Go 1.22 and later; Go 1.21 and earlier
//!   write `\u0008` and `\u000c`) and `\u00XX` with lowercase hex for the rest, as `serde_json`.
//!
//! Key order is the caller's business: Go writes struct fields in declaration order and map
//! keys sorted bytewise; a `Serialize` type used here must produce the same order. Non-finite
//! floats, which Go refuses to marshal, are written as `null` (as `serde_json` does).

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};

use super::timestamp::Timestamp;

/// `value` as Go's `json.MarshalIndent(value, "", "  ")` writes it (no trailing newline).
pub fn to_vec_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter::new());
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// `f` as Go's `encoding/json` writes a `float64` (finite values; see the module docs).
pub fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` gives the same shortest digits as Go's 'e' with precision -1; only
        // the exponent is spelled differently (`1e-7` / `1e21` vs Go's `1e-07` / `1e+21`, and
        // Go then shortens `e-07` back to `e-7`).
        let text = format!("{f:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        match exponent.strip_prefix('-') {
            Some(negative) => format!("{mantissa}e-{negative}"),
            None => format!("{mantissa}e+{exponent:0>2}"),
        }
    } else {
        // `Display` for f64 is the shortest round-tripping decimal, never an exponent.
        format!("{f}")
    }
}

/// Nanoseconds as Go's `.999999999` layout writes them: nothing for 0, else a dot and the
/// digits with trailing zeros trimmed.
fn trimmed_fraction(nanos: u32) -> String {
    if nanos == 0 {
        return String::new();
    }
    let digits = format!("{nanos:09}");
    format!(".{}", digits.trim_end_matches('0'))
}

/// `t` as Go's `time.Time.MarshalJSON` writes a UTC time (`time.RFC3339Nano`):
/// `2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.25Z`, `2024-05-01T12:00:00.000000001Z`.
pub fn go_rfc3339_nano(t: Timestamp) -> String {
    let dt = t.to_datetime();
    format!(
        "{}{}Z",
        dt.format("%Y-%m-%dT%H:%M:%S"),
        trimmed_fraction(dt.timestamp_subsec_nanos())
    )
}

/// `t` as the `mattn/go-sqlite3` driver binds a UTC `time.Time` (layout
/// `2006-01-02 15:04:05.999999999-07:00`): `2024-05-01 12:00:00+00:00`,
/// `2024-05-01 12:00:00.25+00:00`.
///
/// Text order is time order among these strings (four-digit years in our range; `+` sorts
/// before `.` and before every digit, so a shorter fraction sorts first exactly when it is the
/// smaller one).
pub fn go_sqlite_timestamp(t: Timestamp) -> String {
    let dt = t.to_datetime();
    format!(
        "{}{}+00:00",
        dt.format("%Y-%m-%d %H:%M:%S"),
        trimmed_fraction(dt.timestamp_subsec_nanos())
    )
}

/// `serde_json`'s two-space pretty printer with Go's floats and Go's HTML escaping.
struct GoFormatter {
    pretty: PrettyFormatter<'static>,
}

impl GoFormatter {
    fn new() -> Self {
        Self {
            pretty: PrettyFormatter::with_indent(b"  "),
        }
    }
}

impl Formatter for GoFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(go_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        // Go's float32 rules differ (bits = 32); nothing of ours is an f32. Widening keeps the
        // value; the digits may be longer than Go's.
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape)?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        // serde_json's escapes are Go's (1.22+): \" \\ \b \f \n \r \t and \u00xx.
        serde_json::ser::CompactFormatter.write_char_escape(writer, char_escape)
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_spelled_as_go_spells_them() {
        // Expected strings are what Go 1.22's json.Marshal(float64) prints.
        for (f, go) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (2.0, "2"),
            (0.5, "0.5"),
            (-1.25, "-1.25"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (-1.5e-7, "-1.5e-7"),
            (1e-10, "1e-10"),
            (5e-324, "5e-324"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (2.0 / 3.0, "0.6666666666666666"),
        ] {
            assert_eq!(go_float(f), go, "{f:?}");
        }
    }

    #[test]
    fn strings_get_go_html_escaping() {
        let bytes = to_vec_pretty("a<b>&c\u{2028}\u{2029}\"\\\n\t\u{1}\u{7f}é☃😀").unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "\"a\\u003cb\\u003e\\u0026c\\u2028\\u2029\\\"\\\\\\n\\t\\u0001\u{7f}é☃😀\""
        );
    }

    #[test]
    fn layout_is_marshal_indent_with_two_spaces() {
        let value = serde_json::json!({"a": [1, 2.5], "b": {}, "c": [], "d": null});
        let text = String::from_utf8(to_vec_pretty(&value).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": [\n    1,\n    2.5\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": null\n}"
        );
    }

    #[test]
    fn times_are_spelled_as_go_spells_them() {
        let t = |nanos: i64| Timestamp::from_unix_nanos(1_714_564_800_000_000_000 + nanos);
        assert_eq!(go_rfc3339_nano(t(0)), "2024-05-01T12:00:00Z");
        assert_eq!(go_rfc3339_nano(t(250_000_000)), "2024-05-01T12:00:00.25Z");
        assert_eq!(go_rfc3339_nano(t(1)), "2024-05-01T12:00:00.000000001Z");
        assert_eq!(go_sqlite_timestamp(t(0)), "2024-05-01 12:00:00+00:00");
        assert_eq!(
            go_sqlite_timestamp(t(500_000_000)),
            "2024-05-01 12:00:00.5+00:00"
        );
        assert_eq!(
            go_sqlite_timestamp(Timestamp::MIN),
            "1677-09-21 00:12:43.145224192+00:00"
        );
    }
}
