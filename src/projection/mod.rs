//! Projections: materialized views of the journal, each with a checkpoint, caught up or rebuilt
//! by replay.
//!
//! **Invariant:** a projection is a function of the journal prefix up to its checkpoint. It never
//! holds anything the journal does not, so deleting it loses nothing: [`catch_up`] rebuilds it.

pub mod custom;
pub mod file;
pub mod memory;
// A replica opens SQLite targets and applies a follower's items: it needs both features.
#[cfg(all(feature = "sqlite", feature = "follow"))]
mod replica;
mod restore;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::event::Envelope;
use std::sync::Arc;

use crate::history::{self, Target};
use crate::journal::JournalReader;
use crate::model::Timestamp;
use crate::replay;
use crate::state::State;

pub use custom::{Registered, SharedProjection};
pub use file::{FileProjection, FileProjectionOptions, FileView};
pub use memory::{MemoryProjection, MemoryStats};
#[cfg(all(feature = "sqlite", feature = "follow"))]
pub use replica::{Replica, ReplicaOpen, ReplicaTarget, Resync, checkpoint_belongs};
pub use restore::replay_into;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteProjection};

/// The last event a projection has applied: its seq and commit time. The time lets catch-up
/// notice a projection built from a different journal that merely has the same seqs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number.
    pub seq: u64,
    /// The commit time.
    pub at: Timestamp,
}

impl Checkpoint {
    /// The checkpoint after applying `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            seq: envelope.seq,
            at: envelope.at,
        }
    }
}

/// A materialized view of the journal: the built-in memory, file and SQLite projections, and
/// any of your own (register it with [`crate::StoreOptions::with_projection`], or fill it from a
/// journal with [`replay_into`]). A projection keeps a [`Checkpoint`] and applies batches of
/// consecutive [`Envelope`]s (seq, commit time, [`crate::Event`]); fold them through
/// [`crate::state::apply`] if you want the reducer's meaning rather than the raw events. See
/// [`custom`] for what the store does with yours.
pub trait Projection: Send {
    /// A short name for logs (`memory`, `files`, `sqlite`).
    fn name(&self) -> &'static str;

    /// The last event applied (seq 0: nothing).
    fn checkpoint(&self) -> Checkpoint;

    /// Applies consecutive envelopes, the first being `checkpoint().seq + 1`, and advances the
    /// checkpoint — atomically: after a crash either all of the batch and its checkpoint are
    /// visible, or none.
    fn apply(&mut self, batch: &[Envelope]) -> Result<()>;

    /// Forgets everything; the checkpoint returns to seq 0.
    fn reset(&mut self) -> Result<()>;

    /// Replaces everything with `state` (a snapshot's) and sets the checkpoint to its last
    /// event — atomically, like [`Projection::apply`]. Used when the journal no longer holds
    /// the events after the projection's checkpoint (compaction removed them).
    fn install(&mut self, state: &State) -> Result<()>;

    /// For a projection that is exactly the reducer's [`State`] (the memory projection): hands
    /// the state over, leaving the projection empty at seq 0, so catch-up can fold the journal
    /// into it with [`crate::replay::fold_frames`] and [`Projection::install_owned`] it back.
    /// `None` (the default): catch-up applies batches of decoded events.
    fn take_state(&mut self) -> Option<State> {
        None
    }

    /// [`Projection::install`] of a state the caller gives up (no copy needed).
    fn install_owned(&mut self, state: State) -> Result<()> {
        self.install(&state)
    }
}

/// Asserts the batch continues the checkpoint without gaps (a bug otherwise).
pub(crate) fn check_batch(name: &str, checkpoint: Checkpoint, batch: &[Envelope]) -> Result<()> {
    for (expected, envelope) in (checkpoint.seq + 1..).zip(batch) {
        if envelope.seq != expected {
            return Err(Error::InvalidArgument(format!(
                "{name} projection at seq {} was given seq {} (expected {expected})",
                checkpoint.seq, envelope.seq
            )));
        }
    }
    Ok(())
}

/// What [`catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Whether the projection was reset and rebuilt from the start.
    pub rebuilt: bool,
    /// Events applied.
    pub applied: u64,
    /// The checkpoint afterwards.
    pub checkpoint: Checkpoint,
}

/// Events applied per projection batch during catch-up.
pub const CATCH_UP_BATCH_EVENTS: usize = 4096;

/// Where catch-up may start a projection from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Replay the journal from the projection's checkpoint; install the state at the head
    /// (newest snapshot + tail) only when the journal no longer holds the events it needs.
    /// Disk projections use this: replaying keeps each row's own update time.
    WhenNeeded,
    /// Install the state at the head (newest snapshot + tail) whenever the projection is
    /// empty; the memory projection uses this so opening replays only the tail.
    Newest,
}

/// Brings `projection` up to the end of the journal: replays from its checkpoint + 1, or — when
/// its checkpoint is not in the journal (ahead of it, or from another journal) — resets it and
/// rebuilds, with a warning. When compaction removed the events it needs (or `base` is
/// [`Base::Newest`] and it is empty), it installs the state at the head, built from the newest
/// usable snapshot plus the journal tail. `progress` is called with each batch's last seq.
pub fn catch_up(
    projection: &mut dyn Projection,
    reader: &JournalReader,
    progress: &mut dyn FnMut(u64),
) -> Result<CatchUp> {
    catch_up_from(projection, reader, Base::WhenNeeded, progress)
}

/// [`catch_up`] with a choice of [`Base`].
pub fn catch_up_from(
    projection: &mut dyn Projection,
    reader: &JournalReader,
    base: Base,
    progress: &mut dyn FnMut(u64),
) -> Result<CatchUp> {
    let mut rebuilt = false;
    let first_retained = reader.segments()?.first().map_or(1, |s| s.first_seq);
    let checkpoint = projection.checkpoint();
    if checkpoint.seq >= first_retained && !journal_has(reader, checkpoint)? {
        warn!(
            projection = projection.name(),
            checkpoint_seq = checkpoint.seq,
            "projection checkpoint is not in the journal (journal restored from an older backup, or another journal); rebuilding"
        );
        projection.reset()?;
        rebuilt = true;
    }
    let seq = projection.checkpoint().seq;
    let behind_retained = seq + 1 < first_retained;
    if (behind_retained || (base == Base::Newest && seq == 0))
        && install_head(projection, reader, progress)?
    {
        // The head was read to the end of the journal just now: reading the journal again
        // for what a concurrent writer may have appended since would only move the same
        // race a little later (and rescan the active segment for nothing).
        return Ok(CatchUp {
            rebuilt,
            applied: 0,
            checkpoint: projection.checkpoint(),
        });
    }
    let applied = apply_journal(projection, reader, progress)?;
    if applied > 0 {
        info!(
            projection = projection.name(),
            applied, rebuilt, "projection caught up"
        );
    }
    Ok(CatchUp {
        rebuilt,
        applied,
        checkpoint: projection.checkpoint(),
    })
}

/// Installs the state at the head (newest usable snapshot plus the journal tail) when it is
/// past the projection's checkpoint; `Ok(false)` when it is not.
fn install_head(
    projection: &mut dyn Projection,
    reader: &JournalReader,
    progress: &mut dyn FnMut(u64),
) -> Result<bool> {
    let head = history::state_at(Arc::clone(reader.storage()), reader.dir(), Target::Head)?;
    if head.seq <= projection.checkpoint().seq {
        return Ok(false);
    }
    let (head_seq, snapshot) = (head.seq, head.snapshot);
    projection.install_owned(head.state)?;
    progress(head_seq);
    info!(projection = projection.name(), seq = head_seq, snapshot = ?snapshot, "installed the state at the head");
    Ok(true)
}

/// Applies the journal after the projection's checkpoint: folded into a state projection's
/// state, or in batches of decoded events. Returns the events applied.
fn apply_journal(
    projection: &mut dyn Projection,
    reader: &JournalReader,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let from = projection.checkpoint().seq + 1;
    // Not peeked for emptiness here: the first frame loads a whole segment, which the fold
    // does on its reading thread, overlapped with folding. (With nothing to apply, a state
    // projection is taken and reinstalled: the memory projection rebuilds its index.)
    let frames = reader.frames(from)?;
    if let Some(state) = projection.take_state() {
        let before = state.last_seq;
        let state = replay::fold_frames_with_progress(state, frames, progress)?;
        let applied = state.last_seq - before;
        let last_seq = state.last_seq;
        projection.install_owned(state)?;
        if applied > 0 {
            progress(last_seq);
        }
        return Ok(applied);
    }
    let mut applied = 0;
    let mut batch = Vec::with_capacity(CATCH_UP_BATCH_EVENTS);
    for frame in frames {
        batch.push(frame?.decode()?);
        if batch.len() == CATCH_UP_BATCH_EVENTS {
            applied += flush(projection, &mut batch, progress)?;
        }
    }
    applied += flush(projection, &mut batch, progress)?;
    Ok(applied)
}

fn flush(
    projection: &mut dyn Projection,
    batch: &mut Vec<Envelope>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let Some(last) = batch.last() else {
        return Ok(0);
    };
    let last_seq = last.seq;
    projection.apply(batch)?;
    progress(last_seq);
    let applied = batch.len() as u64;
    batch.clear();
    Ok(applied)
}

/// Whether the journal holds the event `checkpoint` names (same seq, same commit time).
fn journal_has(reader: &JournalReader, checkpoint: Checkpoint) -> Result<bool> {
    let mut frames = match reader.frames(checkpoint.seq) {
        Ok(frames) => frames,
        Err(Error::SeqNotRetained { .. }) => return Ok(false),
        Err(err) => return Err(err),
    };
    match frames.next() {
        Some(frame) => {
            let frame = frame?;
            Ok(frame.seq == checkpoint.seq && frame.at == checkpoint.at)
        }
        None => Ok(false),
    }
}
