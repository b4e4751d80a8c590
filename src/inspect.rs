//! Operator views of a journal: statistics (`tj stats`). Read-only, lock-free.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::{IoContext, Result};
use crate::journal::JournalReader;
use crate::model::Timestamp;

/// How much journal a read covered: segments, bytes, events and their seq and time range. The
/// shared head of [`JournalStats`] and [`VerifyReport`](crate::verify::VerifyReport) (flattened
/// into their JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalExtent {
    /// Number of segment files.
    pub segments: usize,
    /// Their total size.
    pub bytes: u64,
    /// Number of events read.
    pub events: u64,
    /// The first seq, if any event.
    pub first_seq: Option<u64>,
    /// The last seq, if any event.
    pub last_seq: Option<u64>,
    /// The first event's commit time.
    pub first_at: Option<Timestamp>,
    /// The last event's commit time.
    pub last_at: Option<Timestamp>,
}

impl JournalExtent {
    /// Counts one segment of `bytes` bytes.
    pub fn count_segment(&mut self, bytes: u64) {
        self.segments += 1;
        self.bytes += bytes;
    }

    /// Counts one event, read in seq order.
    pub fn count_event(&mut self, seq: u64, at: Timestamp) {
        self.events += 1;
        self.first_seq.get_or_insert(seq);
        self.first_at.get_or_insert(at);
        self.last_seq = Some(seq);
        self.last_at = Some(at);
    }
}

/// Summary statistics of a journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// Segments, bytes, events and their range.
    #[serde(flatten)]
    pub extent: JournalExtent,
    /// Distinct info hashes named by any event.
    pub torrents_seen: usize,
    /// Event counts by kind (`torrent-added`, `torrent-saved`, ...).
    pub events_by_kind: BTreeMap<String, u64>,
}

/// Reads every event once and summarizes the journal.
/// When a concurrent compaction removes segments meanwhile, it reads again from the new layout.
pub fn stats(reader: &JournalReader) -> Result<JournalStats> {
    crate::history::retry_if_compacted(|| stats_once(reader))
}

fn stats_once(reader: &JournalReader) -> Result<JournalStats> {
    let mut stats = JournalStats::default();
    for segment in &reader.segments()? {
        let len = reader.storage().file_len(&segment.path);
        stats.extent.count_segment(len.ctx("stat", &segment.path)?);
    }
    let mut torrents = HashSet::new();
    // From the first retained event: compaction may have removed the journal's beginning.
    for envelope in reader.events(reader.first_retained_seq()?)? {
        let envelope = envelope?;
        stats.extent.count_event(envelope.seq, envelope.at);
        torrents.extend(envelope.event.info_hashes());
        *stats
            .events_by_kind
            .entry(envelope.event.kind().to_owned())
            .or_default() += 1;
    }
    stats.torrents_seen = torrents.len();
    Ok(stats)
}
