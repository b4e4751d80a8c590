//! Owns [`SessionConfiguration`]: the client-wide settings go-i2p-bt persists as
//! `session.json`, with exactly the Go JSON keys.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Client-wide settings (Go `rpc.SessionConfiguration`).
///
/// Integers are `i64`, flags `bool`, as in Go. Decoding tolerates missing keys (defaulted) and
/// unknown keys (ignored). `version` is a string; a JSON number there is accepted and kept as
/// its decimal text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfiguration {
    /// Default download directory.
    pub download_dir: String,
    /// Directory for incomplete downloads.
    pub incomplete_dir: String,
    /// Whether `incomplete_dir` is used.
    pub incomplete_dir_enabled: bool,
    /// Listening port for peers.
    pub peer_port: i64,
    /// Maximum peers overall.
    pub peer_limit_global: i64,
    /// Maximum peers per torrent.
    pub peer_limit_per_torrent: i64,
    /// DHT enabled.
    pub dht_enabled: bool,
    /// Peer exchange enabled.
    pub pex_enabled: bool,
    /// Local peer discovery enabled.
    pub lpd_enabled: bool,
    /// uTP enabled.
    pub utp_enabled: bool,
    /// Web seeds enabled.
    pub webseeds_enabled: bool,
    /// Encryption mode (e.g. `"required"`, `"preferred"`, `"tolerated"`).
    pub encryption: String,
    /// Download speed limit (KB/s).
    pub speed_limit_down: i64,
    /// Whether the download limit applies.
    pub speed_limit_down_enabled: bool,
    /// Upload speed limit (KB/s).
    pub speed_limit_up: i64,
    /// Whether the upload limit applies.
    pub speed_limit_up_enabled: bool,
    /// Alternative ("turtle") download limit (KB/s).
    pub alt_speed_down: i64,
    /// Alternative upload limit (KB/s).
    pub alt_speed_up: i64,
    /// Whether the alternative limits apply.
    pub alt_speed_enabled: bool,
    /// Whether the download queue is enabled.
    pub download_queue_enabled: bool,
    /// Maximum simultaneous downloads.
    pub download_queue_size: i64,
    /// Whether the seed queue is enabled.
    pub seed_queue_enabled: bool,
    /// Maximum simultaneous seeds.
    pub seed_queue_size: i64,
    /// Session-wide seed ratio limit.
    pub seed_ratio_limit: f64,
    /// Whether the seed ratio limit applies.
    pub seed_ratio_limited: bool,
    /// Idle seeding limit (minutes).
    pub idle_seeding_limit: i64,
    /// Whether the idle seeding limit applies.
    pub idle_seeding_limit_enabled: bool,
    /// Whether added torrents start immediately.
    pub start_added_torrents: bool,
    /// Disk cache size in MB.
    pub cache_size_mb: i64,
    /// Client version string.
    #[serde(deserialize_with = "string_or_number")]
    pub version: String,
    /// Whether the blocklist is used.
    pub blocklist_enabled: bool,
    /// Blocklist URL.
    pub blocklist_url: String,
    /// Number of blocklist rules.
    pub blocklist_size: i64,
    /// Whether the torrent-done script runs.
    pub script_torrent_done_enabled: bool,
    /// Path of the torrent-done script.
    pub script_torrent_done_filename: String,
}

impl SessionConfiguration {
    /// Every JSON key, in Go's field order.
    pub const JSON_KEYS: [&'static str; 35] = [
        "download_dir",
        "incomplete_dir",
        "incomplete_dir_enabled",
        "peer_port",
        "peer_limit_global",
        "peer_limit_per_torrent",
        "dht_enabled",
        "pex_enabled",
        "lpd_enabled",
        "utp_enabled",
        "webseeds_enabled",
        "encryption",
        "speed_limit_down",
        "speed_limit_down_enabled",
        "speed_limit_up",
        "speed_limit_up_enabled",
        "alt_speed_down",
        "alt_speed_up",
        "alt_speed_enabled",
        "download_queue_enabled",
        "download_queue_size",
        "seed_queue_enabled",
        "seed_queue_size",
        "seed_ratio_limit",
        "seed_ratio_limited",
        "idle_seeding_limit",
        "idle_seeding_limit_enabled",
        "start_added_torrents",
        "cache_size_mb",
        "version",
        "blocklist_enabled",
        "blocklist_url",
        "blocklist_size",
        "script_torrent_done_enabled",
        "script_torrent_done_filename",
    ];

    /// A realistic configuration (Transmission-like defaults) for tests and demos (`testing` or
    /// `simulate` feature).
    #[cfg(any(test, feature = "testing", feature = "simulate"))]
    pub fn sample() -> SessionConfiguration {
        SessionConfiguration {
            download_dir: "/var/lib/torrents/downloads".to_owned(),
            incomplete_dir: "/var/lib/torrents/incomplete".to_owned(),
            incomplete_dir_enabled: false,
            peer_port: 51413,
            peer_limit_global: 200,
            peer_limit_per_torrent: 50,
            dht_enabled: true,
            pex_enabled: true,
            lpd_enabled: false,
            utp_enabled: true,
            webseeds_enabled: true,
            encryption: "preferred".to_owned(),
            speed_limit_down: 100,
            speed_limit_down_enabled: false,
            speed_limit_up: 100,
            speed_limit_up_enabled: false,
            alt_speed_down: 50,
            alt_speed_up: 50,
            alt_speed_enabled: false,
            download_queue_enabled: true,
            download_queue_size: 5,
            seed_queue_enabled: false,
            seed_queue_size: 10,
            seed_ratio_limit: 2.0,
            seed_ratio_limited: false,
            idle_seeding_limit: 30,
            idle_seeding_limit_enabled: false,
            start_added_torrents: true,
            cache_size_mb: 4,
            version: "go-i2p-bt 1.0.0".to_owned(),
            blocklist_enabled: false,
            blocklist_url: String::new(),
            blocklist_size: 0,
            script_torrent_done_enabled: false,
            script_torrent_done_filename: String::new(),
        }
    }
}

/// Accepts a string, a number (kept as its decimal text) or `null` (empty).
fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<String, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a version string or number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    deserializer.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_KEYS: &[&str] = &[
        "download_dir",
        "incomplete_dir",
        "incomplete_dir_enabled",
        "peer_port",
        "peer_limit_global",
        "peer_limit_per_torrent",
        "dht_enabled",
        "pex_enabled",
        "lpd_enabled",
        "utp_enabled",
        "webseeds_enabled",
        "encryption",
        "speed_limit_down",
        "speed_limit_down_enabled",
        "speed_limit_up",
        "speed_limit_up_enabled",
        "alt_speed_down",
        "alt_speed_up",
        "alt_speed_enabled",
        "download_queue_enabled",
        "download_queue_size",
        "seed_queue_enabled",
        "seed_queue_size",
        "seed_ratio_limit",
        "seed_ratio_limited",
        "idle_seeding_limit",
        "idle_seeding_limit_enabled",
        "start_added_torrents",
        "cache_size_mb",
        "version",
        "blocklist_enabled",
        "blocklist_url",
        "blocklist_size",
        "script_torrent_done_enabled",
        "script_torrent_done_filename",
    ];

    #[test]
    fn json_has_exactly_the_go_keys() {
        let value = serde_json::to_value(SessionConfiguration::sample()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = GO_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(SessionConfiguration::JSON_KEYS.to_vec(), GO_KEYS.to_vec());
    }

    #[test]
    fn round_trips_and_tolerates_sparse_input() {
        let c = SessionConfiguration::sample();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<SessionConfiguration>(&json).unwrap(),
            c
        );
        let bin = rmp_serde::to_vec_named(&c).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<SessionConfiguration>(&bin).unwrap(),
            c
        );

        let sparse: SessionConfiguration =
            serde_json::from_str(r#"{"peer_port":6881,"version":3,"new_key":true}"#).unwrap();
        assert_eq!(sparse.peer_port, 6881);
        assert_eq!(sparse.version, "3");
        assert!(!sparse.dht_enabled);
        let null_version: SessionConfiguration =
            serde_json::from_str(r#"{"version":null}"#).unwrap();
        assert_eq!(null_version.version, "");
    }
}
