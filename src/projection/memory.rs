//! The memory projection: the reducer's [`State`] held in memory, read through `Arc`s.

use std::sync::Arc;

use super::{Checkpoint, Projection, check_batch};
use crate::error::Result;
use crate::event::Envelope;
use crate::model::{InfoHash, SessionConfiguration, TorrentState};
use crate::state::{self, State};

/// The reducer's state in memory. Lookups hand out `Arc<TorrentState>`: no deep copy.
#[derive(Debug, Clone, Default)]
pub struct MemoryProjection {
    state: State,
}

/// Size figures of the memory projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    pub torrents: usize,
    pub metrics_samples: usize,
    /// Estimated heap bytes held by torrent states (strings, vectors, metainfo).
    pub approx_bytes: usize,
}

impl MemoryProjection {
    /// An empty projection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from a known state (for example a snapshot's).
    pub fn from_state(state: State) -> Self {
        Self { state }
    }

    /// The whole state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// One torrent, shared.
    pub fn get(&self, info_hash: &InfoHash) -> Option<Arc<TorrentState>> {
        self.state.torrents.get(info_hash).cloned()
    }

    /// Every torrent, in info-hash order.
    pub fn all(&self) -> Vec<Arc<TorrentState>> {
        self.state.torrents.values().cloned().collect()
    }

    /// The session configuration, if one was saved.
    pub fn session(&self) -> Option<&SessionConfiguration> {
        self.state.session.as_ref()
    }

    /// Size figures.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            torrents: self.state.torrents.len(),
            metrics_samples: self.state.metrics_len(),
            approx_bytes: self.state.torrents.values().map(|t| approx_bytes(t)).sum(),
        }
    }
}

/// A rough heap-size estimate of one torrent state.
fn approx_bytes(t: &TorrentState) -> usize {
    let strings = |v: &[String]| v.iter().map(|s| s.capacity() + 24).sum::<usize>();
    std::mem::size_of::<TorrentState>()
        + t.download_dir.capacity()
        + t.error.as_ref().map_or(0, String::capacity)
        + t.meta_info.as_ref().map_or(0, |m| m.len())
        + strings(&t.labels)
        + strings(&t.tracker_list)
        + t.files
            .iter()
            .map(|f| f.name.capacity() + 48)
            .sum::<usize>()
        + t.priorities.capacity() * 8
        + t.wanted.capacity()
        + t.peers
            .iter()
            .map(|p| p.id.capacity() + p.address.capacity() + 80)
            .sum::<usize>()
}

impl Projection for MemoryProjection {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.state.last_seq,
            at: self.state.last_at,
        }
    }

    fn apply(&mut self, batch: &[Envelope]) -> Result<()> {
        check_batch(self.name(), self.checkpoint(), batch)?;
        for envelope in batch {
            state::apply(&mut self.state, envelope);
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        self.state = State::default();
        Ok(())
    }

    fn install(&mut self, state: &State) -> Result<()> {
        self.state = state.clone();
        Ok(())
    }
}
