//! Value parsers shared by the commands: every number has a range and every duration is read by
//! `humantime`, so nonsense is a usage error naming the flag (exit 2), never a panic.

use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use torrent_journal::Durability;

/// The largest seq any command accepts: seqs are stored as SQLite `INTEGER` (an `i64`).
pub const MAX_SEQ: u64 = i64::MAX as u64;
/// Torrents a demo may simulate.
pub const MAX_TORRENTS: u64 = 1_000_000;
/// Events a demo may append (the default is 50 per torrent, at most 50 million).
pub const MAX_EVENTS: u64 = 100_000_000;
/// Concurrent demo tasks.
pub const MAX_TASKS: u64 = 1024;
/// Segment size in MiB (1 GiB: far above any useful segment, far below any offset limit).
pub const MAX_SEGMENT_MIB: u64 = 1024;
/// The longest interval in milliseconds (`--poll-interval-ms`, `interval:MS`): one hour.
pub const MAX_INTERVAL_MS: u64 = Durability::MAX_INTERVAL_MS;
/// The longest idle time in milliseconds (`--idle-exit-ms`): 30 days.
pub const MAX_IDLE_MS: u64 = 30 * 24 * 3_600_000;

/// An integer in `min..=max`, as `T`.
pub fn ranged<T>(min: u64, max: u64) -> RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::error::Error + Send + Sync + 'static,
{
    RangedU64ValueParser::<T>::new().range(min..=max)
}

/// A seq (0 included).
pub fn seq() -> RangedU64ValueParser<u64> {
    ranged(0, MAX_SEQ)
}

/// A duration as `humantime` reads it (`90s`, `12h`, `7d`, `1d 12h`, `2w`), or `0`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|err| {
        format!("{err} (expected a duration such as 90s, 15m, 12h, 7d, \"1d 12h\", 2w, or 0)")
    })
}

/// A value in the library's text form (`FromStr`), its error message without the library's
/// prefix: `--durability` ([`Durability`]), `--into` (`ReplicaTarget`).
pub fn parsed<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = torrent_journal::Error>,
{
    text.parse().map_err(|err| match err {
        torrent_journal::Error::InvalidArgument(message) => message,
        other => other.to_string(),
    })
}

/// `every-batch`, `never`, or `interval:T` (see the library's `FromStr for Durability`).
pub fn durability(text: &str) -> Result<Durability, String> {
    parsed(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_humantime_forms() {
        assert_eq!(duration("1d 12h").unwrap(), Duration::from_secs(129_600));
        assert_eq!(duration("1d12h").unwrap(), Duration::from_secs(129_600));
        assert_eq!(duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("2w").unwrap(), Duration::from_secs(1_209_600));
        assert_eq!(duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "7", "d", "7x", "1d2", "99999999999999999999d", "-1h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durability_reads_milliseconds_or_a_duration() {
        assert_eq!(
            durability("interval:250").unwrap(),
            Durability::Interval { interval_ms: 250 }
        );
        assert_eq!(
            durability("interval:2s").unwrap(),
            Durability::Interval { interval_ms: 2000 }
        );
        assert_eq!(durability("never").unwrap(), Durability::Never);
        for bad in [
            "interval:0",
            "interval:",
            "interval:99999999999999999999999",
            "interval:2h",
            "interval:1ns",
            "sometimes",
        ] {
            assert!(durability(bad).is_err(), "{bad}");
        }
    }
}
