//! Owns the metrics data model: [`TorrentMetrics`] (one periodic sample of a torrent's
//! counters, Go `TorrentMetrics`) and [`MetricsSummary`] (an aggregate over a range of samples).

use serde::{Deserialize, Serialize};

use super::info_hash::InfoHash;
use super::timestamp::Timestamp;

/// One sample of a torrent's transfer counters (Go `TorrentMetrics`).
///
/// `seeding_time` and `downloading_time` are durations in **nanoseconds** (`i64`), which is
/// how Go's `time.Duration` marshals to JSON; the JSON keys carry no unit suffix, to match Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct TorrentMetrics {
    /// The torrent sampled.
    pub info_hash: InfoHash,
    /// When the sample was taken.
    pub timestamp: Timestamp,
    /// Total bytes downloaded so far.
    pub downloaded: i64,
    /// Total bytes uploaded so far.
    pub uploaded: i64,
    /// Download rate at sampling time, bytes/s.
    pub download_rate: i64,
    /// Upload rate at sampling time, bytes/s.
    pub upload_rate: i64,
    /// Connected peers at sampling time.
    pub peer_count: i64,
    /// Cumulative time spent seeding, nanoseconds.
    pub seeding_time: i64,
    /// Cumulative time spent downloading, nanoseconds.
    pub downloading_time: i64,
}

/// An aggregate of one torrent's samples over a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSummary {
    /// The torrent summarised.
    pub info_hash: InfoHash,
    /// Number of samples.
    pub samples: u64,
    /// Timestamp of the earliest sample.
    pub first: Timestamp,
    /// Timestamp of the latest sample.
    pub last: Timestamp,
    /// `downloaded` of the latest sample minus that of the earliest (negative if the counter
    /// was reset in between).
    pub downloaded_delta: i64,
    /// `uploaded` of the latest sample minus that of the earliest.
    pub uploaded_delta: i64,
    /// Mean of the samples' `download_rate`, bytes/s.
    pub avg_download_rate: f64,
    /// Mean of the samples' `upload_rate`, bytes/s.
    pub avg_upload_rate: f64,
    /// Largest `peer_count` seen.
    pub max_peer_count: i64,
}

impl MetricsSummary {
    /// Summarises `samples`, which may be in any order. "Earliest" and "latest" go by
    /// timestamp (on a tie, the one later in the slice counts as later).
    ///
    /// Returns `None` when `samples` is empty or the samples are not all for the same torrent.
    pub fn from_samples(samples: &[TorrentMetrics]) -> Option<MetricsSummary> {
        let head = samples.first()?;
        if samples.iter().any(|s| s.info_hash != head.info_hash) {
            return None;
        }
        let mut first = head;
        let mut last = head;
        let mut sum_down = 0f64;
        let mut sum_up = 0f64;
        let mut max_peers = i64::MIN;
        for s in samples {
            if s.timestamp < first.timestamp {
                first = s;
            }
            if s.timestamp >= last.timestamp {
                last = s;
            }
            sum_down += s.download_rate as f64;
            sum_up += s.upload_rate as f64;
            max_peers = max_peers.max(s.peer_count);
        }
        let n = samples.len() as f64;
        Some(MetricsSummary {
            info_hash: head.info_hash,
            samples: samples.len() as u64,
            first: first.timestamp,
            last: last.timestamp,
            downloaded_delta: last.downloaded.saturating_sub(first.downloaded),
            uploaded_delta: last.uploaded.saturating_sub(first.uploaded),
            avg_download_rate: sum_down / n,
            avg_upload_rate: sum_up / n,
            max_peer_count: max_peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(hash: InfoHash, secs: i64, down: i64, rate: i64, peers: i64) -> TorrentMetrics {
        TorrentMetrics {
            info_hash: hash,
            timestamp: Timestamp::from_unix_nanos(secs * 1_000_000_000),
            downloaded: down,
            uploaded: down / 10,
            download_rate: rate,
            upload_rate: rate / 2,
            peer_count: peers,
            seeding_time: 0,
            downloading_time: secs * 1_000_000_000,
        }
    }

    #[test]
    fn summary_of_unordered_samples() {
        let h = InfoHash::V1([7; 20]);
        let samples = vec![
            sample(h, 20, 3_000, 300, 4),
            sample(h, 10, 1_000, 100, 9),
            sample(h, 30, 6_000, 200, 2),
        ];
        let s = MetricsSummary::from_samples(&samples).unwrap();
        assert_eq!(s.info_hash, h);
        assert_eq!(s.samples, 3);
        assert_eq!(s.first, Timestamp::from_unix_nanos(10_000_000_000));
        assert_eq!(s.last, Timestamp::from_unix_nanos(30_000_000_000));
        assert_eq!(s.downloaded_delta, 5_000);
        assert_eq!(s.uploaded_delta, 500);
        assert_eq!(s.avg_download_rate, 200.0);
        assert_eq!(s.avg_upload_rate, 100.0);
        assert_eq!(s.max_peer_count, 9);

        let one = MetricsSummary::from_samples(&samples[..1]).unwrap();
        assert_eq!(one.samples, 1);
        assert_eq!(one.first, one.last);
        assert_eq!(one.downloaded_delta, 0);
    }

    #[test]
    fn summary_rejects_empty_and_mixed() {
        assert_eq!(MetricsSummary::from_samples(&[]), None);
        let mixed = [
            sample(InfoHash::V1([1; 20]), 1, 0, 0, 0),
            sample(InfoHash::V1([2; 20]), 2, 0, 0, 0),
        ];
        assert_eq!(MetricsSummary::from_samples(&mixed), None);
    }

    #[test]
    fn json_keys_match_go() {
        let m = sample(InfoHash::V1([0xab; 20]), 5, 1, 2, 3);
        let value = serde_json::to_value(&m).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "download_rate",
                "downloaded",
                "downloading_time",
                "info_hash",
                "peer_count",
                "seeding_time",
                "timestamp",
                "upload_rate",
                "uploaded"
            ]
        );
        assert_eq!(value["downloading_time"], 5_000_000_000_i64);
        assert_eq!(value["timestamp"], "1970-01-01T00:00:05Z");
        assert_eq!(serde_json::from_value::<TorrentMetrics>(value).unwrap(), m);
    }
}
