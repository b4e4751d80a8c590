//! Owns the data model shared with go-i2p-bt (torrent state, session configuration, metrics,
//! hook events) plus the time primitives ([`Timestamp`], [`Clock`]) and [`InfoHash`].
//!
//! JSON produced from these types uses exactly the Go library's keys; binary (MessagePack)
//! encodings use compact forms (raw bytes for hashes and metainfo, `i64` nanoseconds for time).

mod clock;
pub mod go_json;
mod hook;
mod info_hash;
mod metrics;
mod session;
mod timestamp;
mod torrent;

pub use clock::{Clock, ManualClock, SystemClock};
pub use hook::{HookContext, HookEvent};
pub use info_hash::InfoHash;
pub use metrics::{MetricsSummary, TorrentMetrics};
pub use session::SessionConfiguration;
pub use timestamp::Timestamp;
pub use torrent::{FileInfo, MetaInfo, PeerInfo, TorrentFileRecord, TorrentState, TorrentStatus};
