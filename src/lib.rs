//! torrent-journal: crash-proof, replayable, queryable state for BitTorrent clients.
//!
//! Every change is an event appended to a checksummed, segmented journal (the only source of
//! truth); projections are views rebuilt from it. See `ARCHITECTURE.md` and `docs/FORMAT.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod compaction;
mod error;
pub mod event;
#[cfg(feature = "follow")]
pub mod follow;
pub mod history;
pub mod inspect;
pub mod journal;
pub mod model;
mod msgpack;
pub mod projection;
pub mod replay;
pub mod salvage;
#[cfg(feature = "simulate")]
pub mod simulate;
pub mod snapshot;
pub mod state;
pub mod storage;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use compaction::CompactionPolicy;
pub use error::{Error, Result};
pub use event::{Envelope, Event};
pub use history::Target;
pub use journal::{Durability, Journal, JournalOptions, JournalReader, Receipt};
pub use journal::{FrameRef, RawFrame, SegmentInfo, WriterStatus};
pub use model::{
    Clock, FileInfo, HookContext, HookEvent, InfoHash, ManualClock, MetaInfo, MetricsSummary,
    PeerInfo, SessionConfiguration, SystemClock, Timestamp, TorrentFileRecord, TorrentMetrics,
    TorrentState, TorrentStatus,
};
pub use projection::{Checkpoint, Projection, replay_into};
pub use projection::{FileProjection, FileProjectionOptions, MemoryProjection};
#[cfg(feature = "sqlite")]
pub use projection::{SqliteOptions, SqliteProjection};
pub use state::State;
pub use store::{StoreOptions, TorrentStore};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
