//! Owns the hook vocabulary shared with go-i2p-bt: [`HookEvent`] (the seven lifecycle events,
//! as their Go strings) and [`HookContext`] (what a hook callback receives).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::timestamp::Timestamp;
use super::torrent::TorrentState;
use crate::error::{Error, Result};

/// A torrent lifecycle event (Go `rpc.HookEvent`), serialized as its Go string
/// (`torrent-added` … `torrent-error`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum HookEvent {
    /// `torrent-added`: a torrent was added to the session (the [`Default`]).
    #[default]
    TorrentAdded,
    /// `torrent-started`: a torrent was started.
    TorrentStarted,
    /// `torrent-stopped`: a torrent was stopped.
    TorrentStopped,
    /// `torrent-completed`: a torrent finished downloading.
    TorrentCompleted,
    /// `torrent-removed`: a torrent was removed from the session.
    TorrentRemoved,
    /// `torrent-metadata`: a torrent's metadata arrived (magnet links).
    TorrentMetadata,
    /// `torrent-error`: a torrent hit an error.
    TorrentError,
}

impl HookEvent {
    /// All seven events, in Go's declaration order.
    pub const ALL: [HookEvent; 7] = [
        HookEvent::TorrentAdded,
        HookEvent::TorrentStarted,
        HookEvent::TorrentStopped,
        HookEvent::TorrentCompleted,
        HookEvent::TorrentRemoved,
        HookEvent::TorrentMetadata,
        HookEvent::TorrentError,
    ];

    /// The Go string, e.g. `"torrent-added"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HookEvent::TorrentAdded => "torrent-added",
            HookEvent::TorrentStarted => "torrent-started",
            HookEvent::TorrentStopped => "torrent-stopped",
            HookEvent::TorrentCompleted => "torrent-completed",
            HookEvent::TorrentRemoved => "torrent-removed",
            HookEvent::TorrentMetadata => "torrent-metadata",
            HookEvent::TorrentError => "torrent-error",
        }
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookEvent {
    type Err = Error;

    /// Parses the exact Go string; anything else is [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<HookEvent> {
        HookEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = HookEvent::ALL.iter().map(|e| e.as_str()).collect();
                Error::InvalidArgument(format!(
                    "unknown hook event {s:?}; expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// What a hook callback receives (Go `rpc.HookContext`, minus the cancellation context).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookContext {
    /// Which event fired.
    pub event: HookEvent,
    /// A snapshot of the torrent at the time of the event.
    pub torrent: TorrentState,
    /// Free-form event data, e.g. `{"action": "metadata_received", "file_count": 3}` or an
    /// error message for `torrent-error`.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// When the event fired.
    pub timestamp: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        let expected = [
            "torrent-added",
            "torrent-started",
            "torrent-stopped",
            "torrent-completed",
            "torrent-removed",
            "torrent-metadata",
            "torrent-error",
        ];
        for (e, s) in HookEvent::ALL.iter().zip(expected) {
            assert_eq!(e.as_str(), s);
            assert_eq!(e.to_string(), s);
            assert_eq!(s.parse::<HookEvent>().unwrap(), *e);
            assert_eq!(serde_json::to_string(e).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<HookEvent>(&format!("\"{s}\"")).unwrap(),
                *e
            );
            let bin = rmp_serde::to_vec(e).unwrap();
            assert_eq!(rmp_serde::from_slice::<HookEvent>(&bin).unwrap(), *e);
        }
    }

    #[test]
    fn unknown_event_is_an_error() {
        let err = "torrent-exploded"
            .parse::<HookEvent>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown hook event \"torrent-exploded\""),
            "{err}"
        );
        assert!(err.contains("torrent-added, torrent-started"), "{err}");
        assert!("TorrentAdded".parse::<HookEvent>().is_err());
    }

    #[test]
    fn context_json() {
        let ctx = HookContext {
            event: HookEvent::TorrentMetadata,
            torrent: TorrentState::default(),
            data: serde_json::json!({"action": "metadata_received", "file_count": 3})
                .as_object()
                .unwrap()
                .clone(),
            timestamp: Timestamp::from_unix_nanos(0),
        };
        let json = serde_json::to_value(&ctx).unwrap();
        assert_eq!(json["event"], "torrent-metadata");
        assert_eq!(json["data"]["file_count"], 3);
        assert_eq!(serde_json::from_value::<HookContext>(json).unwrap(), ctx);
    }
}
