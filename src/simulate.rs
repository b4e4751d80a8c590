//! A deterministic simulated torrent client: the event stream `tj demo`, tests and benchmarks
//! feed the journal.
//!
//! Each simulated client task owns a share of the torrents and walks each through a realistic
//! life: added as a magnet, metadata arrives, started, progress saves with metrics samples, an
//! occasional error, completed, stopped, and for a few, removed. Everything derives from the
//! seed, so a run is reproducible.

use serde_json::{Map, Value, json};

use crate::event::{Event, HookRecord};
use crate::model::{
    HookEvent, InfoHash, MetaInfo, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
    TorrentStatus,
};

/// Parameters of a simulated client session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulation {
    /// Distinguishes runs: torrents of different seeds have different info hashes.
    pub seed: u64,
    /// Torrents added over the session.
    pub torrents: usize,
    /// Events to produce in total.
    pub events: usize,
    /// Concurrent client tasks sharing the torrents.
    pub tasks: usize,
    /// Hook timestamps start here and advance one second per event of a task.
    pub start: Timestamp,
}

/// Progress saves between "started" and "completed" for each torrent.
const PROGRESS_STEPS: u32 = 8;
/// One in this many torrents is removed after it stops.
const REMOVE_ONE_IN: u64 = 20;
/// One in this many torrents reports a tracker error while downloading.
const ERROR_ONE_IN: u64 = 10;

impl Simulation {
    /// The events of task `index` (0-based, `< tasks`), in the order that task emits them.
    pub fn task(&self, index: usize) -> TaskEvents {
        assert!(index < self.tasks.max(1), "task index out of range");
        let tasks = self.tasks.max(1);
        let budget = self.events / tasks + usize::from(index < self.events % tasks);
        let torrents = (index..self.torrents).step_by(tasks).collect();
        TaskEvents {
            sim: *self,
            index,
            budget,
            emitted: 0,
            torrents,
            cursor: 0,
            lives: Vec::new(),
        }
    }

    /// The info hash of torrent `n` of this simulation.
    pub fn info_hash(&self, n: usize) -> InfoHash {
        let mut bytes = [0u8; 20];
        let mut state = self.seed ^ (n as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        for chunk in bytes.chunks_mut(8) {
            let word = splitmix64(&mut state).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        InfoHash::V1(bytes)
    }
}

/// Where one torrent is in its life.
#[derive(Debug, Clone)]
struct Life {
    n: usize,
    state: TorrentState,
    step: u32,
    done: bool,
    /// Removed from the client: never saved again.
    removed: bool,
}

/// Iterator over one task's events; see [`Simulation::task`].
#[derive(Debug)]
pub struct TaskEvents {
    sim: Simulation,
    index: usize,
    budget: usize,
    emitted: usize,
    torrents: Vec<usize>,
    cursor: usize,
    lives: Vec<Life>,
}

impl Iterator for TaskEvents {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.emitted >= self.budget {
            return None;
        }
        let now = self.now();
        let event = if self.index == 0 && self.emitted == 0 {
            Event::SessionConfigSaved {
                config: Box::new(SessionConfiguration::sample()),
            }
        } else if self.index == 0 && self.emitted == self.budget / 2 && self.budget > 4 {
            Event::MetricsPurged {
                older_than: Timestamp::from_unix_nanos(now.as_unix_nanos() - 3_600_000_000_000),
            }
        } else {
            self.next_torrent_event(now)
        };
        self.emitted += 1;
        Some(event)
    }
}

impl TaskEvents {
    fn now(&self) -> Timestamp {
        let offset_nanos = (self.emitted as i64) * 1_000_000_000 + self.index as i64;
        Timestamp::from_unix_nanos(self.sim.start.as_unix_nanos() + offset_nanos)
    }

    /// Adds the next torrent while there are any left, interleaved with advancing live ones.
    fn next_torrent_event(&mut self, now: Timestamp) -> Event {
        let add_now = self.lives.len() < self.torrents.len()
            && (self.lives.iter().all(|l| l.done) || self.emitted.is_multiple_of(3));
        if add_now {
            let n = self.torrents[self.lives.len()];
            let info_hash = self.sim.info_hash(n);
            let mut state = TorrentState::sample(info_hash, &format!("torrent-{n:06}"), now);
            state.status = TorrentStatus::Stopped.code();
            state.percent_done = 0.0;
            state.files.clear();
            state.priorities.clear();
            state.wanted.clear();
            state.peers.clear();
            state.start_date = None;
            self.lives.push(Life {
                n,
                state: state.clone(),
                step: 0,
                done: false,
                removed: false,
            });
            return hook(
                HookEvent::TorrentAdded,
                state,
                now,
                json!({"source": "magnet"}),
            );
        }
        if self.lives.iter().all(|l| l.done) {
            // Every torrent has finished its life: keep seeding updates coming.
            return self.seeding_update(now);
        }
        let live = self.pick_live();
        advance(&mut self.lives[live], now)
    }

    fn pick_live(&mut self) -> usize {
        loop {
            self.cursor = (self.cursor + 1) % self.lives.len();
            if !self.lives[self.cursor].done {
                return self.cursor;
            }
        }
    }

    fn seeding_update(&mut self, now: Timestamp) -> Event {
        // Removed torrents stay removed: only the ones still in the client seed on.
        let seeding: Vec<usize> = (0..self.lives.len())
            .filter(|&i| !self.lives[i].removed)
            .collect();
        if seeding.is_empty() {
            return Event::MetricsPurged { older_than: now };
        }
        self.cursor = (self.cursor + 1) % seeding.len();
        let life = &mut self.lives[seeding[self.cursor]];
        life.state.uploaded += 1_048_576;
        Event::TorrentSaved {
            torrent: Box::new(life.state.clone()),
        }
    }
}

/// Moves one torrent one step through its life and returns the event for that step.
fn advance(life: &mut Life, now: Timestamp) -> Event {
    life.step += 1;
    let state = &mut life.state;
    let salt = splitmix64(&mut (life.n as u64));
    match life.step {
        1 => {
            let full =
                TorrentState::sample(state.info_hash, &format!("torrent-{:06}", life.n), now);
            state.files = full.files;
            state.priorities = full.priorities;
            state.wanted = full.wanted;
            state.meta_info = Some(MetaInfo::new(bencoded_torrent(life.n, salt)));
            let total: i64 = state.files.iter().map(|f| f.length).sum();
            let data = json!({"action": "metadata_received", "file_count": state.files.len(), "total_size": total});
            hook(HookEvent::TorrentMetadata, state.clone(), now, data)
        }
        2 => {
            state.status = TorrentStatus::Downloading.code();
            state.start_date = Some(now);
            hook(HookEvent::TorrentStarted, state.clone(), now, json!({}))
        }
        step if step < 3 + PROGRESS_STEPS => progress(state, step - 2, salt, now),
        step if step == 3 + PROGRESS_STEPS => {
            state.status = TorrentStatus::Seeding.code();
            state.percent_done = 1.0;
            state.left = 0;
            hook(HookEvent::TorrentCompleted, state.clone(), now, json!({}))
        }
        step if step == 4 + PROGRESS_STEPS => {
            state.status = TorrentStatus::Stopped.code();
            if !salt.is_multiple_of(REMOVE_ONE_IN) {
                life.done = true;
            }
            hook(
                HookEvent::TorrentStopped,
                state.clone(),
                now,
                json!({"reason": "ratio reached"}),
            )
        }
        _ => {
            life.done = true;
            life.removed = true;
            hook(
                HookEvent::TorrentRemoved,
                state.clone(),
                now,
                json!({"delete_data": false}),
            )
        }
    }
}

/// Progress step `k` of `PROGRESS_STEPS`: alternately a save and a metrics sample.
fn progress(state: &mut TorrentState, k: u32, salt: u64, now: Timestamp) -> Event {
    let fraction = f64::from(k) / f64::from(PROGRESS_STEPS + 1);
    let total: i64 = state.files.iter().map(|f| f.length).sum();
    state.percent_done = fraction;
    state.downloaded = (total as f64 * fraction) as i64;
    state.left = total - state.downloaded;
    state.uploaded = state.downloaded / 5;
    if k == 3 && salt.is_multiple_of(ERROR_ONE_IN) {
        state.error = Some("tracker: connection timed out".to_owned());
        let data = json!({"error": "tracker: connection timed out"});
        return hook(HookEvent::TorrentError, state.clone(), now, data);
    }
    if k.is_multiple_of(2) {
        return Event::MetricsRecorded {
            samples: vec![TorrentMetrics {
                info_hash: state.info_hash,
                timestamp: now,
                downloaded: state.downloaded,
                uploaded: state.uploaded,
                download_rate: state.download_rate,
                upload_rate: state.upload_rate,
                peer_count: state.peer_connected_count,
                seeding_time: 0,
                downloading_time: i64::from(k) * 60_000_000_000,
            }],
        };
    }
    state.error = None;
    Event::TorrentSaved {
        torrent: Box::new(state.clone()),
    }
}

fn hook(event: HookEvent, torrent: TorrentState, now: Timestamp, data: Value) -> Event {
    let data = match data {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Event::Hook(HookRecord {
        event,
        torrent: Box::new(torrent),
        data,
        timestamp: now,
    })
}

/// A small but well-formed bencoded .torrent.
fn bencoded_torrent(n: usize, salt: u64) -> Vec<u8> {
    let name = format!("torrent-{n:06}");
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"d8:announce41:udp://tracker.opentrackr.org:1337/announce");
    out.extend_from_slice(b"13:creation datei1700000000e4:infod6:lengthi");
    out.extend_from_slice(
        format!("{}e4:name{}:{}", 1 + salt % 1_000_000_000, name.len(), name).as_bytes(),
    );
    out.extend_from_slice(b"12:piece lengthi262144e6:pieces20:");
    let mut state = salt;
    for _ in 0..3 {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes()[..]);
    }
    out.truncate(out.len() - 4);
    out.extend_from_slice(b"ee");
    out
}

/// SplitMix64: a tiny, good-enough deterministic generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(events: usize, torrents: usize, tasks: usize) -> Simulation {
        Simulation {
            seed: 7,
            torrents,
            events,
            tasks,
            start: Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
        }
    }

    #[test]
    fn tasks_share_the_event_budget_exactly() {
        let s = sim(1001, 30, 4);
        let total: usize = (0..4).map(|i| s.task(i).count()).sum();
        assert_eq!(total, 1001);
    }

    #[test]
    fn every_event_kind_appears_and_runs_are_reproducible() {
        let s = sim(2000, 40, 2);
        let kinds: std::collections::BTreeSet<&str> =
            (0..2).flat_map(|i| s.task(i)).map(|e| e.kind()).collect();
        for kind in [
            "torrent-added",
            "torrent-metadata",
            "torrent-started",
            "torrent-completed",
            "torrent-stopped",
            "torrent-removed",
            "torrent-error",
            "torrent-saved",
            "metrics-recorded",
            "metrics-purged",
            "session-config-saved",
        ] {
            assert!(kinds.contains(kind), "missing {kind} in {kinds:?}");
        }
        let a: Vec<Event> = s.task(1).collect();
        let b: Vec<Event> = s.task(1).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn removed_torrents_are_never_saved_again() {
        let s = sim(3000, 40, 1);
        let mut removed = std::collections::HashSet::new();
        let mut saw_removal = false;
        for event in s.task(0) {
            let hash = event.info_hash();
            if event.kind() == "torrent-removed" {
                removed.extend(hash);
                saw_removal = true;
            } else if let Some(hash) = hash {
                assert!(!removed.contains(&hash), "{} after removal", event.kind());
            }
        }
        assert!(saw_removal);
    }

    #[test]
    fn info_hashes_are_distinct_across_torrents_and_seeds() {
        let s = sim(0, 0, 1);
        let other = Simulation { seed: 8, ..s };
        assert_ne!(s.info_hash(1), s.info_hash(2));
        assert_ne!(s.info_hash(1), other.info_hash(1));
    }
}
