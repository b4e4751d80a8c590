//! An embedder's own projection, written against torrent-journal's public API only: how many
//! live torrents carry each label, kept in memory (per torrent its labels; counts on demand).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use torrent_journal::event::Event;
use torrent_journal::model::{InfoHash, TorrentState};
use torrent_journal::state::{Effect, State, hook_effect};
use torrent_journal::{Checkpoint, Envelope, Projection};

/// Labels per live torrent, and the last event applied.
#[derive(Debug, Default)]
pub struct LabelCounts {
    labels: BTreeMap<InfoHash, Vec<String>>,
    checkpoint: Checkpoint,
}

impl LabelCounts {
    /// Label → number of live torrents carrying it.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for label in self.labels.values().flatten() {
            *counts.entry(label.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn put(&mut self, torrent: &TorrentState) {
        self.labels
            .insert(torrent.info_hash, torrent.labels.clone());
    }

    /// The reducer's meaning of each event, as far as labels go: metadata and error hooks
    /// change a known torrent's labels not at all, and store an unknown one as given.
    fn apply_event(&mut self, event: &Event) {
        match event {
            Event::Hook(hook) => match hook_effect(hook.event) {
                Effect::Put => self.put(&hook.torrent),
                Effect::Remove => {
                    self.labels.remove(&hook.torrent.info_hash);
                }
                Effect::Amend => {
                    if !self.labels.contains_key(&hook.torrent.info_hash) {
                        self.put(&hook.torrent);
                    }
                }
            },
            Event::TorrentSaved { torrent } => self.put(torrent),
            Event::TorrentsSaved { torrents } => torrents.iter().for_each(|t| self.put(t)),
            Event::TorrentDeleted { info_hash } => {
                self.labels.remove(info_hash);
            }
            _ => {}
        }
    }
}

impl Projection for LabelCounts {
    fn name(&self) -> &'static str {
        "label-counts"
    }

    fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    fn apply(&mut self, batch: &[Envelope]) -> torrent_journal::Result<()> {
        for envelope in batch {
            self.apply_event(&envelope.event);
            self.checkpoint = Checkpoint::of(envelope);
        }
        Ok(())
    }

    fn reset(&mut self) -> torrent_journal::Result<()> {
        *self = LabelCounts::default();
        Ok(())
    }

    fn install(&mut self, state: &State) -> torrent_journal::Result<()> {
        self.labels.clear();
        state.torrents.values().for_each(|t| self.put(t));
        self.checkpoint = Checkpoint {
            seq: state.last_seq,
            at: state.last_at,
        };
        Ok(())
    }
}
