//! Owns [`Timestamp`]: an instant as nanoseconds since the Unix epoch (UTC), with RFC 3339
//! text for humans and JSON (the shape Go's `time.Time` marshals to) and a plain `i64` for
//! MessagePack.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};

/// An instant in time: nanoseconds since 1970-01-01T00:00:00Z.
///
/// The representable range is that of an `i64` of nanoseconds, roughly the years 1677 to 2262.
///
/// Serde: human-readable formats (JSON) use an RFC 3339 string with `Z` suffix and 0, 3, 6 or 9
/// fractional digits (`2024-05-01T12:00:00.5Z` style, which Go's `time.Time` reads); binary
/// formats (MessagePack in the journal) use the raw `i64` nanosecond count. Human-readable
/// input also accepts an integer (nanoseconds).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Seconds from 0001-01-01T00:00:00Z (Go's zero `time.Time`) to the Unix epoch, negated.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    /// The earliest representable instant.
    pub const MIN: Timestamp = Timestamp(i64::MIN);

    /// The latest representable instant.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// A timestamp from nanoseconds since the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_unix_nanos(self) -> i64 {
        self.0
    }

    /// The current wall-clock time from [`SystemTime::now`], saturated to the representable
    /// range.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`], saturating at [`Timestamp::MIN`] / [`Timestamp::MAX`].
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX)),
            Err(before) => {
                let nanos = before.duration().as_nanos();
                Timestamp(i64::try_from(nanos).map_or(i64::MIN, |n| -n))
            }
        }
    }

    /// Parses an RFC 3339 timestamp (any UTC offset; normalised to UTC), e.g.
    /// `2024-05-01T12:00:00Z` or `2024-05-01T14:00:00.123456789+02:00`.
    ///
    /// Fails with [`Error::InvalidArgument`] when the text is not RFC 3339 or the instant lies
    /// outside the `i64`-nanosecond range (years ~1677..2262).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|e| {
            Error::InvalidArgument(format!("invalid RFC 3339 timestamp {s:?}: {e}"))
        })?;
        dt.timestamp_nanos_opt().map(Timestamp).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "timestamp {s:?} is outside the representable range (years 1677 to 2262)"
            ))
        })
    }

    /// Formats as RFC 3339 in UTC with a `Z` suffix and 0, 3, 6 or 9 fractional digits.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// This instant as a chrono `DateTime<Utc>`.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    /// Converts a chrono `DateTime`; `None` when it is outside the representable range.
    pub fn from_datetime<Tz: chrono::TimeZone>(dt: &DateTime<Tz>) -> Option<Timestamp> {
        dt.timestamp_nanos_opt().map(Timestamp)
    }

    /// This timestamp moved by `nanos` (saturating).
    pub const fn saturating_add_nanos(self, nanos: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// `self - earlier` in nanoseconds (saturating).
    pub const fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = Error;

    fn from_str(s: &str) -> Result<Timestamp> {
        Timestamp::parse_rfc3339(s)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        Timestamp::from_system_time(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_rfc3339())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            // A non-lenient visitor never yields `None`; Go's zero time is an out-of-range
            // error here.
            deserializer
                .deserialize_any(TimestampVisitor {
                    go_zero_lenient: false,
                })?
                .ok_or_else(|| de::Error::custom("timestamp is Go's zero time"))
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

/// Visits an RFC 3339 string or an integer nanosecond count. When `go_zero_lenient`, Go's
/// zero `time.Time` (`0001-01-01T00:00:00Z`) yields `None` instead of an out-of-range error.
struct TimestampVisitor {
    go_zero_lenient: bool,
}

impl Visitor<'_> for TimestampVisitor {
    type Value = Option<Timestamp>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp string or integer nanoseconds since the Unix epoch")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        if self.go_zero_lenient && is_go_zero_time(v) {
            return Ok(None);
        }
        Timestamp::parse_rfc3339(v).map(Some).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Ok(Some(Timestamp(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        i64::try_from(v)
            .map(|n| Some(Timestamp(n)))
            .map_err(|_| E::custom(format!("timestamp {v} ns is out of range")))
    }
}

/// Whether `s` is Go's zero `time.Time` (0001-01-01T00:00:00Z in any offset).
fn is_go_zero_time(s: &str) -> bool {
    DateTime::parse_from_rfc3339(s)
        .map(|dt| dt.timestamp() == GO_ZERO_UNIX_SECONDS && dt.timestamp_subsec_nanos() == 0)
        .unwrap_or(false)
}

/// Deserializes a timestamp or `None` from Go JSON: `null`, a missing value handled by
/// `#[serde(default)]`, and Go's zero `time.Time` (`0001-01-01T00:00:00Z`, what Go writes for
/// an unset non-pointer `time.Time`) all become `None`.
pub(crate) fn deserialize_optional_go_time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Timestamp>, D::Error> {
    Ok(Option::<LenientTimestamp>::deserialize(deserializer)?.and_then(|t| t.0))
}

/// Deserializes a timestamp from Go JSON, mapping Go's zero `time.Time` (which lies outside
/// the `i64`-nanosecond range) to [`Timestamp::UNIX_EPOCH`] instead of failing the record.
pub(crate) fn deserialize_go_time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Timestamp, D::Error> {
    Ok(LenientTimestamp::deserialize(deserializer)?
        .0
        .unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A timestamp that tolerates Go's zero time in human-readable formats (`None` then).
struct LenientTimestamp(Option<Timestamp>);

impl<'de> Deserialize<'de> for LenientTimestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer
                .deserialize_any(TimestampVisitor {
                    go_zero_lenient: true,
                })
                .map(LenientTimestamp)
        } else {
            i64::deserialize(deserializer).map(|n| LenientTimestamp(Some(Timestamp(n))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2024-05-01T12:34:56.123456789Z").unwrap();
        assert_eq!(t.as_unix_nanos(), 1_714_566_896_123_456_789);
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:34:56.123456789Z");
        assert_eq!(t.to_string(), "2024-05-01T12:34:56.123456789Z");
        assert_eq!(
            Timestamp::from_unix_nanos(1_714_566_896_000_000_000).to_rfc3339(),
            "2024-05-01T12:34:56Z"
        );
        assert_eq!(
            Timestamp::from_unix_nanos(1_714_566_896_500_000_000).to_rfc3339(),
            "2024-05-01T12:34:56.500Z"
        );
        assert_eq!(Timestamp::UNIX_EPOCH.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::MIN.to_string().parse::<Timestamp>().unwrap(),
            Timestamp::MIN
        );
        assert_eq!(
            Timestamp::MAX.to_string().parse::<Timestamp>().unwrap(),
            Timestamp::MAX
        );
    }

    #[test]
    fn offsets_normalise_to_utc() {
        let a = Timestamp::parse_rfc3339("2024-05-01T14:00:00+02:00").unwrap();
        let b = Timestamp::parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(a, b);
        // Go's RFC3339Nano trims trailing zeros; we must read that.
        let c = Timestamp::parse_rfc3339("2024-05-01T12:00:00.1Z").unwrap();
        assert_eq!(c.as_unix_nanos() - b.as_unix_nanos(), 100_000_000);
    }

    #[test]
    fn parse_errors_are_clear() {
        let err = Timestamp::parse_rfc3339("yesterday")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid argument: invalid RFC 3339 timestamp \"yesterday\""),
            "{err}"
        );
        let err = Timestamp::parse_rfc3339("0001-01-01T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the representable range"), "{err}");
    }

    #[test]
    fn serde_json_is_rfc3339_and_msgpack_is_i64() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_000_000_001);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.000000001Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<Timestamp>("1700000000000000001").unwrap(),
            t
        );

        let bin = rmp_serde::to_vec(&t).unwrap();
        assert_eq!(
            bin,
            rmp_serde::to_vec(&1_700_000_000_000_000_001_i64).unwrap()
        );
        assert_eq!(rmp_serde::from_slice::<Timestamp>(&bin).unwrap(), t);
        let neg = Timestamp::from_unix_nanos(-5);
        let bin = rmp_serde::to_vec(&neg).unwrap();
        assert_eq!(rmp_serde::from_slice::<Timestamp>(&bin).unwrap(), neg);
        assert!(serde_json::from_str::<Timestamp>("\"0001-01-01T00:00:00Z\"").is_err());
    }

    #[test]
    fn go_zero_time_is_tolerated_where_asked() {
        #[derive(Deserialize)]
        struct S {
            #[serde(default, deserialize_with = "deserialize_optional_go_time")]
            opt: Option<Timestamp>,
            #[serde(deserialize_with = "deserialize_go_time")]
            req: Timestamp,
        }
        let s: S =
            serde_json::from_str(r#"{"opt":"0001-01-01T00:00:00Z","req":"0001-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(s.opt, None);
        assert_eq!(s.req, Timestamp::UNIX_EPOCH);
        let s: S = serde_json::from_str(r#"{"opt":null,"req":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(s.opt, None);
        let s: S = serde_json::from_str(r#"{"req":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(s.opt, None);
        let s: S =
            serde_json::from_str(r#"{"opt":"2024-01-01T00:00:00Z","req":"2024-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(s.opt, Some(s.req));
    }

    #[test]
    fn system_time_conversion() {
        let t = Timestamp::from_system_time(UNIX_EPOCH + std::time::Duration::from_nanos(42));
        assert_eq!(t.as_unix_nanos(), 42);
        let t = Timestamp::from_system_time(UNIX_EPOCH - std::time::Duration::from_nanos(42));
        assert_eq!(t.as_unix_nanos(), -42);
        assert!(Timestamp::now() > Timestamp::parse_rfc3339("2020-01-01T00:00:00Z").unwrap());
    }
}
