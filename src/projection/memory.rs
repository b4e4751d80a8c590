//! The memory projection: the reducer's [`State`] held in memory, read through `Arc`s.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use super::{Checkpoint, Projection, check_batch};
use crate::error::Result;
use crate::event::Envelope;
use crate::model::{InfoHash, SessionConfiguration, TorrentState};
use crate::state::{self, Change, State};

/// The reducer's state in memory. Lookups hand out `Arc<TorrentState>`: no deep copy.
#[derive(Debug, Clone, Default)]
pub struct MemoryProjection {
    state: State,
    /// The same torrents as `state.torrents`, hashed for lookups (the ordered map is kept for
    /// ordered listings and deterministic snapshots).
    index: HashMap<InfoHash, Arc<TorrentState>, BuildDigestHasher>,
}

/// Info hashes are cryptographic digests, already uniformly distributed: a multiply-fold of
/// their bytes is a good and much cheaper hash than SipHash.
#[derive(Debug, Clone, Copy, Default)]
struct BuildDigestHasher;

impl BuildHasher for BuildDigestHasher {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// See [`BuildDigestHasher`].
#[derive(Debug, Clone, Copy)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Size figures of the memory projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// Number of torrents held.
    pub torrents: usize,
    /// Number of metrics samples held.
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
        let index = state
            .torrents
            .iter()
            .map(|(hash, torrent)| (*hash, Arc::clone(torrent)))
            .collect();
        Self { state, index }
    }

    /// Brings the index entry of `info_hash` in line with the state.
    fn reindex(&mut self, info_hash: &InfoHash) {
        match self.state.torrents.get(info_hash) {
            Some(torrent) => self.index.insert(*info_hash, Arc::clone(torrent)),
            None => self.index.remove(info_hash),
        };
    }

    /// The whole state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// One torrent, shared.
    pub fn get(&self, info_hash: &InfoHash) -> Option<Arc<TorrentState>> {
        self.index.get(info_hash).cloned()
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
        // The torrents the reducer wrote or removed: their index entries follow.
        let mut touched = Vec::new();
        for envelope in batch {
            state::apply_noting(&mut self.state, envelope, &mut |change| {
                if let Change::TorrentWritten(h) | Change::TorrentRemoved(h) = change {
                    touched.push(h);
                }
            });
            for info_hash in touched.drain(..) {
                self.reindex(&info_hash);
            }
        }
        debug_assert_eq!(self.index.len(), self.state.torrents.len());
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        *self = Self::default();
        Ok(())
    }

    fn install(&mut self, state: &State) -> Result<()> {
        *self = Self::from_state(state.clone());
        Ok(())
    }

    fn take_state(&mut self) -> Option<State> {
        let state = std::mem::take(&mut self.state);
        self.index.clear();
        Some(state)
    }

    fn install_owned(&mut self, state: State) -> Result<()> {
        *self = Self::from_state(state);
        Ok(())
    }
}
