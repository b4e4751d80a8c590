//! A deterministic simulated torrent client: the event stream `tj demo`, tests and benchmarks
//! feed the journal.
//!
//! Each simulated client task owns a share of the torrents and walks each through a realistic
//! life: added as a magnet, metadata arrives (a real `.torrent`, see `simulate/metainfo.rs`), started,
//! progress saves with metrics samples, an occasional error, completed, stopped, for a few
//! removed, and later resumed for seeding. Everything derives from the seed, so a run is
//! reproducible.
//!
//! Progress is consistent at every event: pieces complete in order (the wanted ones first), each
//! file's `bytes_completed` is its overlap with the complete pieces, `downloaded` their sum,
//! `left` what the wanted files still miss and `percent_done` = 1 − left / wanted.

mod metainfo;

use serde_json::{Map, Value, json};

use crate::event::{Event, HookRecord};
use crate::model::{
    FileInfo, HookEvent, InfoHash, MetaInfo, PeerInfo, SessionConfiguration, Timestamp,
    TorrentMetrics, TorrentState, TorrentStatus,
};
use metainfo::SimTorrent;

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
            metainfo: true,
            index,
            budget,
            emitted: 0,
            torrents,
            cursor: 0,
            lives: Vec::new(),
        }
    }

    /// Like [`Simulation::task`], but the torrents carry no `.torrent` (metadata events set the
    /// files and pieces only, and info hashes are drawn, not hashed): small states, for
    /// benchmarks of the journal itself and for runs too large to carry real metainfo.
    pub fn task_without_metainfo(&self, index: usize) -> TaskEvents {
        TaskEvents {
            metainfo: false,
            ..self.task(index)
        }
    }

    /// The info hash of torrent `n` of this simulation: the SHA-1 (v1) or SHA-256 (v2) of the
    /// info dictionary of its generated `.torrent` (generating it costs up to a few ms).
    pub fn info_hash(&self, n: usize) -> InfoHash {
        SimTorrent::generate(self.seed, n).info_hash
    }

    /// The bencoded `.torrent` of torrent `n`, as the torrent-metadata event delivers it.
    pub fn metainfo(&self, n: usize) -> Vec<u8> {
        SimTorrent::generate(self.seed, n).raw
    }
}

/// Where one torrent is in its life.
#[derive(Debug, Clone)]
struct Life {
    torrent: SimTorrent,
    state: TorrentState,
    /// Steps taken: 0 = added, then metadata, started, progress..., completed, stopped.
    step: u32,
    rng: Rng,
    done: bool,
    /// Removed from the client: never saved again.
    removed: bool,
}

/// Iterator over one task's events; see [`Simulation::task`].
#[derive(Debug)]
pub struct TaskEvents {
    sim: Simulation,
    /// Whether torrents carry their real `.torrent` (see [`Simulation::task_without_metainfo`]).
    metainfo: bool,
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
            let life = Life::added(self.sim.seed, n, now, self.metainfo);
            let event = hook(
                HookEvent::TorrentAdded,
                life.state.clone(),
                now,
                json!({"source": "magnet"}),
            );
            self.lives.push(life);
            return event;
        }
        if self.lives.iter().all(|l| l.done) {
            // Every torrent has finished its life: keep seeding updates coming.
            return self.seeding_update(now);
        }
        let live = self.pick_live();
        self.lives[live].advance(now)
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
        self.lives[seeding[self.cursor]].seed_on(now)
    }
}

impl Life {
    /// A magnet link just added: the hash is known, nothing else yet (no metainfo, no files,
    /// never started).
    fn added(seed: u64, n: usize, now: Timestamp, metainfo: bool) -> Life {
        let torrent = if metainfo {
            SimTorrent::generate(seed, n)
        } else {
            SimTorrent::generate_light(seed, n)
        };
        let mut rng = Rng::new(seed.wrapping_add(n as u64).rotate_left(17));
        let hash = torrent.info_hash.as_bytes();
        let state = TorrentState {
            id: i64::from(u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) >> 8),
            info_hash: torrent.info_hash,
            meta_info: None,
            status: TorrentStatus::Stopped.code(),
            error: None,
            download_dir: "/var/lib/torrents/downloads".to_owned(),
            added_date: now,
            start_date: None,
            labels: pick_labels(&mut rng),
            downloaded: 0,
            uploaded: 0,
            left: 0,
            percent_done: 0.0,
            piece_count: 0,
            pieces_complete: 0,
            pieces_available: 0,
            download_rate: 0,
            upload_rate: 0,
            eta: -1,
            peer_count: 0,
            peer_connected_count: 0,
            peer_sending_count: 0,
            peer_receiving_count: 0,
            files: Vec::new(),
            priorities: Vec::new(),
            wanted: Vec::new(),
            tracker_list: torrent.trackers.clone(),
            peers: Vec::new(),
            seed_ratio_limit: 2.0,
            seed_idle_limit: 30,
            honors_session_limits: !rng.one_in(5),
        };
        Life {
            torrent,
            state,
            step: 0,
            rng,
            done: false,
            removed: false,
        }
    }

    /// Moves the torrent one step through its life and returns the event for that step.
    fn advance(&mut self, now: Timestamp) -> Event {
        self.step += 1;
        match self.step {
            1 => self.metadata(now),
            2 => {
                self.state.status = TorrentStatus::Downloading.code();
                self.state.start_date = Some(now);
                self.connect_peers();
                hook(
                    HookEvent::TorrentStarted,
                    self.state.clone(),
                    now,
                    json!({}),
                )
            }
            step if step < 3 + PROGRESS_STEPS => self.progress(step - 2, now),
            step if step == 3 + PROGRESS_STEPS => {
                self.set_pieces_complete(self.torrent.wanted_piece_count());
                self.state.status = TorrentStatus::Seeding.code();
                self.state.download_rate = 0;
                self.state.eta = -1;
                self.state.error = None;
                hook(
                    HookEvent::TorrentCompleted,
                    self.state.clone(),
                    now,
                    json!({}),
                )
            }
            step if step == 4 + PROGRESS_STEPS => {
                self.stop();
                if !self.rng.one_in(REMOVE_ONE_IN) {
                    self.done = true;
                }
                let data = json!({"reason": "ratio reached"});
                hook(HookEvent::TorrentStopped, self.state.clone(), now, data)
            }
            _ => {
                self.done = true;
                self.removed = true;
                let data = json!({"delete_data": false});
                hook(HookEvent::TorrentRemoved, self.state.clone(), now, data)
            }
        }
    }

    /// The metadata of the magnet arrived: the `.torrent`, its files and pieces.
    fn metadata(&mut self, now: Timestamp) -> Event {
        let torrent = &self.torrent;
        let state = &mut self.state;
        state.meta_info = (!torrent.raw.is_empty()).then(|| MetaInfo::new(torrent.raw.clone()));
        state.files = torrent
            .files
            .iter()
            .map(|f| FileInfo {
                name: f.path.clone(),
                length: f.length,
                bytes_completed: 0,
                priority: i64::from(f.path.ends_with("README.txt")),
                wanted: f.wanted,
            })
            .collect();
        state.priorities = state.files.iter().map(|f| f.priority).collect();
        state.wanted = state.files.iter().map(|f| f.wanted).collect();
        state.piece_count = torrent.piece_count();
        state.pieces_available = state.piece_count;
        let data = json!({
            "action": "metadata_received",
            "file_count": torrent.files.len(),
            "total_size": torrent.total_length(),
        });
        self.set_pieces_complete(0);
        hook(HookEvent::TorrentMetadata, self.state.clone(), now, data)
    }

    /// Progress step `k` of `PROGRESS_STEPS`: alternately a save and a metrics sample, and for
    /// one torrent in [`ERROR_ONE_IN`] a tracker error at step 3.
    fn progress(&mut self, k: u32, now: Timestamp) -> Event {
        let wanted = self.torrent.wanted_piece_count();
        let pieces = wanted * i64::from(k) / i64::from(PROGRESS_STEPS + 1);
        self.set_pieces_complete(pieces);
        self.state.download_rate = 1_000_000 + self.rng.below(20_000_000) as i64;
        self.state.upload_rate = self.rng.below(2_000_000) as i64;
        self.state.eta = self.state.left / self.state.download_rate;
        self.state.uploaded = self.state.downloaded / 5;
        if k == 3 && self.rng.one_in(ERROR_ONE_IN) {
            let message = "tracker: connection timed out";
            self.state.error = Some(message.to_owned());
            let data = json!({"error": message});
            return hook(HookEvent::TorrentError, self.state.clone(), now, data);
        }
        if k.is_multiple_of(2) {
            return Event::MetricsRecorded {
                samples: vec![self.metrics(now, i64::from(k) * 60_000_000_000)],
            };
        }
        self.state.error = None;
        Event::TorrentSaved {
            torrent: Box::new(self.state.clone()),
        }
    }

    /// After its life, a torrent still in the client seeds on: resumed once, then its upload
    /// counter grows with every save.
    fn seed_on(&mut self, now: Timestamp) -> Event {
        if self.state.status == TorrentStatus::Stopped.code() {
            self.state.status = TorrentStatus::Seeding.code();
            self.connect_peers();
            let data = json!({"reason": "resumed for seeding"});
            return hook(HookEvent::TorrentStarted, self.state.clone(), now, data);
        }
        self.state.upload_rate = 100_000 + self.rng.below(5_000_000) as i64;
        self.state.uploaded += self.state.upload_rate * 60;
        Event::TorrentSaved {
            torrent: Box::new(self.state.clone()),
        }
    }

    fn metrics(&self, now: Timestamp, downloading_time: i64) -> TorrentMetrics {
        TorrentMetrics {
            info_hash: self.state.info_hash,
            timestamp: now,
            downloaded: self.state.downloaded,
            uploaded: self.state.uploaded,
            download_rate: self.state.download_rate,
            upload_rate: self.state.upload_rate,
            peer_count: self.state.peer_connected_count,
            seeding_time: 0,
            downloading_time,
        }
    }

    /// Sets every progress field from the number of complete pieces (a prefix of the pieces).
    fn set_pieces_complete(&mut self, pieces: i64) {
        let completed = self.torrent.bytes_completed(pieces);
        let state = &mut self.state;
        for (file, done) in state.files.iter_mut().zip(completed) {
            file.bytes_completed = done;
        }
        let wanted_total = self.torrent.wanted_length();
        state.pieces_complete = pieces;
        state.downloaded = state.files.iter().map(|f| f.bytes_completed).sum();
        state.left = state
            .files
            .iter()
            .filter(|f| f.wanted)
            .map(|f| f.length - f.bytes_completed)
            .sum();
        state.percent_done = if state.left == 0 {
            1.0
        } else {
            (wanted_total - state.left) as f64 / wanted_total as f64
        };
    }

    /// One to three peers, from documentation address ranges.
    fn connect_peers(&mut self) {
        let count = 1 + self.rng.below(3) as usize;
        let peers: Vec<PeerInfo> = (0..count)
            .map(|i| PeerInfo {
                id: format!("-TR3000-{:012x}", self.rng.next() >> 16),
                address: format!("198.51.100.{}", 1 + self.rng.below(254)),
                port: 1024 + self.rng.below(60_000) as i64,
                uploaded: self.rng.below(1 << 30) as i64,
                downloaded: self.rng.below(1 << 30) as i64,
                direction: if i % 2 == 0 { "outgoing" } else { "incoming" }.to_owned(),
            })
            .collect();
        let state = &mut self.state;
        state.peer_connected_count = peers.len() as i64;
        state.peer_sending_count = state.peer_connected_count.min(2);
        state.peer_receiving_count = state.peer_connected_count / 2;
        state.peer_count = state.peer_connected_count + self.rng.below(50) as i64;
        state.peers = peers;
    }

    fn stop(&mut self) {
        let state = &mut self.state;
        state.status = TorrentStatus::Stopped.code();
        state.peers.clear();
        state.peer_count = 0;
        state.peer_connected_count = 0;
        state.peer_sending_count = 0;
        state.peer_receiving_count = 0;
        state.download_rate = 0;
        state.upload_rate = 0;
        state.eta = -1;
    }
}

/// Zero to two labels.
fn pick_labels(rng: &mut Rng) -> Vec<String> {
    const LABELS: [&str; 4] = ["linux", "iso", "video", "archive"];
    let count = rng.below(3) as usize;
    (0..count)
        .map(|i| LABELS[(i * 2 + rng.below(2) as usize) % LABELS.len()].to_owned())
        .collect()
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

/// SplitMix64: a tiny, good-enough deterministic generator.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0; the modulo bias is irrelevant here).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
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

    /// Every field of progress agrees with every other at every event, and the demo exercises
    /// every field path: peers, errors, unset start dates, unwanted files, v1 and v2 hashes.
    #[test]
    fn progress_is_consistent_at_every_event() {
        let s = sim(4000, 60, 3);
        let mut seen = std::collections::BTreeSet::new();
        for event in (0..3).flat_map(|i| s.task(i)) {
            let torrent = match &event {
                Event::Hook(h) => &*h.torrent,
                Event::TorrentSaved { torrent } => &**torrent,
                _ => continue,
            };
            check_consistent(torrent);
            let facts = [
                ("peers", !torrent.peers.is_empty()),
                ("error", torrent.error.is_some()),
                ("no start date", torrent.start_date.is_none()),
                ("start date", torrent.start_date.is_some()),
                ("unwanted file", torrent.wanted.contains(&false)),
                ("v2", !torrent.info_hash.is_v1()),
                ("metainfo", torrent.meta_info.is_some()),
                ("complete", torrent.percent_done == 1.0),
                (
                    "partial",
                    torrent.percent_done > 0.0 && torrent.percent_done < 1.0,
                ),
            ];
            seen.extend(facts.iter().filter(|f| f.1).map(|f| f.0));
        }
        assert_eq!(seen.len(), 9, "the run lacks some field paths: {seen:?}");
    }

    fn check_consistent(t: &TorrentState) {
        let name = t.info_hash;
        let completed: i64 = t.files.iter().map(|f| f.bytes_completed).sum();
        assert_eq!(t.downloaded, completed, "{name}: downloaded");
        let wanted: Vec<&crate::model::FileInfo> = t.files.iter().filter(|f| f.wanted).collect();
        let left: i64 = wanted.iter().map(|f| f.length - f.bytes_completed).sum();
        assert_eq!(t.left, left, "{name}: left");
        let wanted_total: i64 = wanted.iter().map(|f| f.length).sum();
        if wanted_total > 0 {
            let expected = (wanted_total - left) as f64 / wanted_total as f64;
            assert!(
                (t.percent_done - expected).abs() < 1e-12,
                "{name}: percent_done"
            );
        }
        assert_eq!(
            t.percent_done == 1.0,
            t.left == 0 && !t.files.is_empty(),
            "{name}"
        );
        assert!(t.pieces_complete <= t.piece_count, "{name}: pieces");
        assert_eq!(
            t.pieces_complete == 0,
            t.downloaded == 0,
            "{name}: pieces vs bytes"
        );
        assert_eq!(t.files.len(), t.wanted.len());
        assert_eq!(t.files.len(), t.priorities.len());
        for file in &t.files {
            assert!(
                (0..=file.length).contains(&file.bytes_completed),
                "{}",
                file.name
            );
        }
        if t.status == TorrentStatus::Seeding.code() {
            assert_eq!(t.left, 0, "{name}: seeding with bytes left");
        }
        assert_eq!(t.peer_connected_count, t.peers.len() as i64);
        if let Some(meta) = &t.meta_info {
            let expected = metainfo::hash_of(meta.as_bytes());
            assert_eq!(expected, t.info_hash, "metainfo hashes to the info hash");
        }
    }

    #[test]
    fn without_metainfo_the_same_life_carries_no_torrent_file() {
        let s = sim(600, 12, 2);
        let light: Vec<Event> = (0..2).flat_map(|i| s.task_without_metainfo(i)).collect();
        let full: Vec<Event> = (0..2).flat_map(|i| s.task(i)).collect();
        let kinds = |events: &[Event]| events.iter().map(Event::kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(&light),
            kinds(&full),
            "the same life, event for event"
        );
        for event in &light {
            if let Event::Hook(h) = event {
                assert!(h.torrent.meta_info.is_none());
                check_consistent(&h.torrent);
            }
        }
    }
}
