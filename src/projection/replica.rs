//! Owns keeping a disk projection a replica of a journal from outside the store: where it lives
//! ([`ReplicaTarget`], `sqlite:PATH` or `files:DIR`), whether its checkpoint belongs to the
//! journal (resume after it, or rebuild), and applying what a [`crate::follow::Follower`] yields
//! — events in batches, snapshot resyncs after compaction. `tj replay`, `tj restore` and
//! `tj follow` are loops over a [`Replica`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use tracing::warn;

use super::{
    CatchUp, Checkpoint, FileProjection, FileProjectionOptions, Projection, SqliteOptions,
    SqliteProjection, journal_has, replay_into,
};
use crate::error::{Error, Result};
use crate::event::Envelope;
use crate::follow::FollowItem;
use crate::history::Target;
use crate::journal::JournalReader;
use crate::model::Timestamp;
use crate::snapshot;
use crate::state::State;
use crate::storage::RealStorage;

/// Where a replica lives: a SQLite database or a file projection's directory. Its text form is
/// `sqlite:PATH` or `files:DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaTarget {
    /// A SQLite database file (`sqlite:PATH`).
    Sqlite(PathBuf),
    /// A file projection's directory (`files:DIR`).
    Files(PathBuf),
}

impl ReplicaTarget {
    /// The database file or the directory.
    pub fn path(&self) -> &Path {
        match self {
            Self::Sqlite(path) | Self::Files(path) => path,
        }
    }
}

impl FromStr for ReplicaTarget {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(Self::Sqlite(path.into())),
            Some(("files", dir)) if !dir.is_empty() => Ok(Self::Files(dir.into())),
            _ => Err(Error::InvalidArgument(format!(
                "expected sqlite:PATH or files:DIR, got {text:?}"
            ))),
        }
    }
}

/// What opening a replica does with what the target already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaOpen {
    /// Keep it, to resume from its checkpoint (`tj follow`).
    Keep,
    /// Start from an empty file projection (`tj replay`, `tj restore`; they reset or replace
    /// the contents anyway, and a damaged directory must not stop them).
    Empty,
}

/// A compaction resynchronization a [`Replica`] applied: it skipped the events after
/// `before_seq` up to `seq` (committed at `at`) by installing the snapshot's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resync {
    /// The last seq the replica held before the resync.
    pub before_seq: u64,
    /// The snapshot's seq: the replica's checkpoint after it.
    pub seq: u64,
    /// The snapshot's commit time.
    pub at: Timestamp,
}

/// A disk projection kept as a replica of a journal.
pub struct Replica {
    projection: Box<dyn Projection>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("projection", &self.projection.name())
            .field("checkpoint", &self.projection.checkpoint())
            .finish()
    }
}

impl Replica {
    /// Opens the projection at `target` (`shard`: a sharded file projection).
    pub fn open(target: &ReplicaTarget, shard: bool, open: ReplicaOpen) -> Result<Self> {
        let projection: Box<dyn Projection> = match target {
            ReplicaTarget::Sqlite(path) => {
                Box::new(SqliteProjection::open(path, SqliteOptions::default())?)
            }
            ReplicaTarget::Files(dir) => {
                let options = FileProjectionOptions {
                    shard,
                    ..FileProjectionOptions::default()
                };
                let storage = Arc::new(RealStorage);
                Box::new(match open {
                    ReplicaOpen::Keep => FileProjection::open(storage, dir, options)?,
                    ReplicaOpen::Empty => FileProjection::open_empty(storage, dir, options)?,
                })
            }
        };
        Ok(Self { projection })
    }

    /// The projection's short name (`sqlite`, `files`).
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// The last event applied.
    pub fn checkpoint(&self) -> Checkpoint {
        self.projection.checkpoint()
    }

    /// Forgets everything.
    pub fn reset(&mut self) -> Result<()> {
        self.projection.reset()
    }

    /// Replaces everything with `state`.
    pub fn install(&mut self, state: &State) -> Result<()> {
        self.projection.install(state)
    }

    /// Replays the journal into the replica up to `target` ([`replay_into`]).
    pub fn replay(
        &mut self,
        reader: &JournalReader,
        target: Target,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CatchUp> {
        replay_into(reader, self.projection.as_mut(), target, progress)
    }

    /// The seq to follow from: after the checkpoint when its event belongs to this journal
    /// ([`checkpoint_belongs`]); otherwise — a replica of another journal, or ahead of this
    /// one — the replica is reset, with a warning, and followed from the start.
    pub fn resume(&mut self, reader: &JournalReader) -> Result<u64> {
        let checkpoint = self.checkpoint();
        if checkpoint.seq == 0 {
            return Ok(1);
        }
        if checkpoint_belongs(reader, checkpoint)? {
            return Ok(checkpoint.seq + 1);
        }
        warn!(
            checkpoint_seq = checkpoint.seq,
            "the replica's checkpoint is not in this journal (another journal, or ahead of it); rebuilding it"
        );
        self.reset()?;
        Ok(1)
    }

    /// Applies what a follower yielded, in order: runs of events as one batch each, a
    /// [`FollowItem::Resynced`] by installing its state (reported to `on_resync`). Returns the
    /// events applied.
    pub fn apply_items(
        &mut self,
        items: impl IntoIterator<Item = FollowItem>,
        on_resync: &mut dyn FnMut(Resync),
    ) -> Result<u64> {
        let mut applied = 0;
        let mut events: Vec<Envelope> = Vec::new();
        for item in items {
            match item {
                FollowItem::Event(envelope) => events.push(envelope),
                FollowItem::Resynced { seq, at, state } => {
                    applied += self.apply_events(&mut events)?;
                    let before_seq = self.checkpoint().seq;
                    self.projection.install(&state)?;
                    on_resync(Resync {
                        before_seq,
                        seq,
                        at,
                    });
                }
            }
        }
        applied += self.apply_events(&mut events)?;
        Ok(applied)
    }

    fn apply_events(&mut self, events: &mut Vec<Envelope>) -> Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        self.projection.apply(events)?;
        let count = events.len() as u64;
        events.clear();
        Ok(count)
    }
}

/// Whether the event `checkpoint` names belongs to the journal `reader` reads: the journal
/// holds it (same seq and commit time), or compaction removed it and no snapshot at that seq
/// says otherwise. A checkpoint past the head belongs to another journal (or a lost tail).
pub fn checkpoint_belongs(reader: &JournalReader, checkpoint: Checkpoint) -> Result<bool> {
    if checkpoint.seq < reader.first_retained_seq()? {
        return compacted_checkpoint_belongs(reader, checkpoint);
    }
    journal_has(reader, checkpoint)
}

/// A checkpoint compaction removed from the journal: it belongs to this history unless a
/// snapshot at the same seq says otherwise.
fn compacted_checkpoint_belongs(reader: &JournalReader, checkpoint: Checkpoint) -> Result<bool> {
    let storage = &**reader.storage();
    let snapshots = snapshot::list_snapshots(storage, reader.dir())?;
    match snapshots.iter().find(|s| s.seq == checkpoint.seq) {
        Some(found) => Ok(snapshot::read_header(storage, &found.path)?.at == checkpoint.at),
        None => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::ReplicaTarget;

    #[test]
    fn a_target_reads_sqlite_path_or_files_dir_and_nothing_else() {
        assert_eq!(
            "sqlite:a/state.db".parse::<ReplicaTarget>().unwrap(),
            ReplicaTarget::Sqlite("a/state.db".into())
        );
        let files = "files:out:dir".parse::<ReplicaTarget>().unwrap();
        assert_eq!(files, ReplicaTarget::Files("out:dir".into()));
        assert_eq!(files.path(), std::path::Path::new("out:dir"));
        for bad in ["sqlite:", "files:", "memory:x", "state.db", ""] {
            assert!(bad.parse::<ReplicaTarget>().is_err(), "{bad}");
        }
    }
}
