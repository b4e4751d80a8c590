//! torrent-journal: crash-proof, replayable, queryable state for BitTorrent clients.
//!
//! Start with [`TorrentStore`]: open a directory, save and load torrents, session settings,
//! metrics and hook events; every change is an event appended to a checksummed, segmented
//! journal (the only source of truth) before the call returns, and projections (memory always;
//! SQLite and plain files with [`StoreOptions`]) are views rebuilt from it.
//!
//! ```
//! use torrent_journal::{InfoHash, StoreOptions, Timestamp, TorrentState, TorrentStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> torrent_journal::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! // Takes the writer's lock, recovers the journal, catches the projections up.
//! let store = TorrentStore::open(dir.path(), StoreOptions::default()).await?;
//! let hash: InfoHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
//! let torrent = TorrentState { info_hash: hash, added_date: Timestamp::now(), ..Default::default() };
//! store.save_torrent(&torrent).await?; // durable (fdatasync) and visible when it returns
//! assert_eq!(store.load_torrent(&hash).await?.info_hash, hash);
//! store.close().await // waits for the projections, releases the lock
//! # }
//! ```
//!
//! Then, as you need them:
//! - your own views: implement [`Projection`] and register it
//!   ([`StoreOptions::with_projection`]), or fold a journal yourself with [`replay_into`];
//! - the journal alone: [`Journal`] (the single writer) and [`JournalReader`] (lock-free, from
//!   any process), with [`Durability`] choosing what an acknowledgement means;
//! - history and housekeeping: [`history`] (state at a seq or time), [`compaction`] (snapshots,
//!   removing old segments), [`check`] (projection drift), [`verify()`] and [`salvage`];
//! - the data model: [`TorrentState`], [`SessionConfiguration`], [`TorrentMetrics`],
//!   [`HookContext`], [`Event`] and [`Envelope`].
//!
//! Cargo features: `sqlite` (the SQLite projection; default), `follow` (tailing a live journal
//! from another process; default), `simulate` (the demo traffic generator), `testing` (the test
//! kit, the `testing` module). With `default-features = false` the library builds without
//! SQLite and notify. See `ARCHITECTURE.md` and `docs/FORMAT.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
mod error;
pub mod event;
#[cfg(feature = "follow")]
pub mod follow;
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
mod typed_journal;
pub mod verify;

pub use compaction::CompactionPolicy;
pub use error::{Error, Result};
pub use event::{Envelope, Event};
pub use history::Target;
pub use journal::{Durability, JournalOptions, JournalReader, Receipt};
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
pub use snapshot::{compaction, history};
pub use state::State;
pub use store::{StoreOptions, TorrentStore};
pub use typed_journal::Journal;
pub use verify::verify;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
