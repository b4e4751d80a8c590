//! Owns [`Script`]: a deterministic journal written as a client's life — add a torrent, its
//! metadata arrives, it starts, progresses, completes, errs, is removed — one event per step,
//! each committed one second after the previous one.

use std::collections::BTreeMap;
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::EPOCH_NANOS;
use crate::event::{Event, HookRecord};
use crate::model::{
    HookEvent, InfoHash, MetaInfo, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
    TorrentStatus,
};

/// One step of a [`Script`]: the event and the commit time the harness gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When the journal commits it (the harness sets its [`crate::model::ManualClock`] to it).
    pub at: Timestamp,
    /// The event.
    pub event: Event,
}

/// A scripted client session. Every method appends one event (except [`Script::wait`]) and
/// returns the script, so a life reads as a chain:
///
/// ```
/// use torrent_journal::testing::Script;
///
/// let mut script = Script::new();
/// let debian = script.add("debian-12.iso");
/// script
///     .metadata(debian)
///     .start(debian)
///     .progress(debian, 0.5)
///     .metrics(debian)
///     .complete(debian)
///     .error(debian, "tracker: unregistered torrent")
///     .remove(debian)
///     .session();
/// assert_eq!(script.steps().len(), 9);
/// ```
///
/// Everything is derived from the names and the order of the calls: the same script gives the
/// same journal, byte for byte. Info hashes are the SHA-1 of the name; commit times start at
/// [`super::EPOCH_NANOS`] and advance by [`Script::STEP`] per event.
#[derive(Debug, Clone)]
pub struct Script {
    steps: Vec<Step>,
    torrents: BTreeMap<InfoHash, TorrentState>,
    names: BTreeMap<InfoHash, String>,
    now: Timestamp,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    /// Time between two events.
    pub const STEP: Duration = Duration::from_secs(1);

    /// An empty script whose first event commits at [`super::EPOCH_NANOS`].
    pub fn new() -> Script {
        Script {
            steps: Vec::new(),
            torrents: BTreeMap::new(),
            names: BTreeMap::new(),
            now: Timestamp::from_unix_nanos(EPOCH_NANOS),
        }
    }

    /// A script that continues this one: it knows its torrents, and its first event commits
    /// one step after this one's last. Run it on the same harness to append to the journal.
    pub fn then(&self) -> Script {
        Script {
            steps: Vec::new(),
            ..self.clone()
        }
    }

    /// The events so far, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The info hash [`Script::add`] gives a torrent named `name`.
    pub fn info_hash(name: &str) -> InfoHash {
        InfoHash::V1(Sha1::digest(name.as_bytes()).into())
    }

    /// The torrent as the script last described it (also after it was removed).
    pub fn torrent(&self, info_hash: InfoHash) -> &TorrentState {
        self.torrents
            .get(&info_hash)
            .expect("a torrent the script added")
    }

    /// `torrent-added`: a magnet link (no metadata yet), stopped at 0 %, labelled `labels`.
    pub fn add_labelled(&mut self, name: &str, labels: &[&str]) -> InfoHash {
        let info_hash = Self::info_hash(name);
        let mut torrent = TorrentState::sample(info_hash, name, self.peek_time());
        torrent.labels = labels.iter().map(|l| (*l).to_owned()).collect();
        torrent.status = TorrentStatus::Stopped.code();
        torrent.start_date = None;
        set_progress(&mut torrent, 0.0);
        torrent.files.clear();
        torrent.priorities.clear();
        torrent.wanted.clear();
        self.torrents.insert(info_hash, torrent);
        self.names.insert(info_hash, name.to_owned());
        self.hook(HookEvent::TorrentAdded, info_hash, serde_json::Map::new());
        info_hash
    }

    /// [`Script::add_labelled`] without labels.
    pub fn add(&mut self, name: &str) -> InfoHash {
        self.add_labelled(name, &[])
    }

    /// `torrent-metadata`: the `.torrent` arrives (a small, valid bencoded file) with the file
    /// list.
    pub fn metadata(&mut self, info_hash: InfoHash) -> &mut Script {
        let at = self.peek_time();
        let name = self.names.get(&info_hash).cloned().unwrap_or_default();
        let torrent = self.torrent_mut(info_hash);
        let sample = TorrentState::sample(info_hash, &name, at);
        torrent.files = sample.files;
        torrent.priorities = sample.priorities;
        torrent.wanted = sample.wanted;
        torrent.meta_info = Some(MetaInfo::new(metainfo(&name)));
        let data = object(&[("action", "metadata_received".into())]);
        self.hook(HookEvent::TorrentMetadata, info_hash, data)
    }

    /// `torrent-started`: downloading.
    pub fn start(&mut self, info_hash: InfoHash) -> &mut Script {
        let at = self.peek_time();
        let torrent = self.torrent_mut(info_hash);
        torrent.status = TorrentStatus::Downloading.code();
        torrent.start_date.get_or_insert(at);
        torrent.error = None;
        self.hook(HookEvent::TorrentStarted, info_hash, serde_json::Map::new())
    }

    /// A progress save (`save_torrent`): `fraction` (0.0 ..= 1.0) of the torrent downloaded.
    pub fn progress(&mut self, info_hash: InfoHash, fraction: f64) -> &mut Script {
        let torrent = self.torrent_mut(info_hash);
        set_progress(torrent, fraction);
        let torrent = Box::new(torrent.clone());
        self.push(Event::TorrentSaved { torrent })
    }

    /// `torrent-completed`: 100 %, seeding.
    pub fn complete(&mut self, info_hash: InfoHash) -> &mut Script {
        let torrent = self.torrent_mut(info_hash);
        set_progress(torrent, 1.0);
        torrent.status = TorrentStatus::Seeding.code();
        self.hook(
            HookEvent::TorrentCompleted,
            info_hash,
            serde_json::Map::new(),
        )
    }

    /// `torrent-stopped`.
    pub fn stop(&mut self, info_hash: InfoHash) -> &mut Script {
        self.torrent_mut(info_hash).status = TorrentStatus::Stopped.code();
        self.hook(HookEvent::TorrentStopped, info_hash, serde_json::Map::new())
    }

    /// `torrent-error` with `message`.
    pub fn error(&mut self, info_hash: InfoHash, message: &str) -> &mut Script {
        self.torrent_mut(info_hash).error = Some(message.to_owned());
        let data = object(&[("error", message.into())]);
        self.hook(HookEvent::TorrentError, info_hash, data)
    }

    /// `torrent-removed`: the torrent and its metrics samples are forgotten.
    pub fn remove(&mut self, info_hash: InfoHash) -> &mut Script {
        self.hook(HookEvent::TorrentRemoved, info_hash, serde_json::Map::new())
    }

    /// `delete_torrent`: the explicit delete (like `remove`, without a hook).
    pub fn delete(&mut self, info_hash: InfoHash) -> &mut Script {
        self.push(Event::TorrentDeleted { info_hash })
    }

    /// `save_all_torrents` of these torrents as the script last described them: one event.
    pub fn save_all(&mut self, info_hashes: &[InfoHash]) -> &mut Script {
        let torrents = info_hashes
            .iter()
            .map(|h| self.torrent(*h).clone())
            .collect();
        self.push(Event::TorrentsSaved { torrents })
    }

    /// `purge_metrics`: drops the samples taken more than `older_than` before this step.
    pub fn purge_metrics(&mut self, older_than: Duration) -> &mut Script {
        let nanos = i64::try_from(older_than.as_nanos()).unwrap_or(i64::MAX);
        let older_than = self.peek_time().saturating_add_nanos(-nanos);
        self.push(Event::MetricsPurged { older_than })
    }

    /// `save_session_config` of a realistic configuration.
    pub fn session(&mut self) -> &mut Script {
        self.session_with(SessionConfiguration::sample())
    }

    /// `save_session_config` of `config`.
    pub fn session_with(&mut self, config: SessionConfiguration) -> &mut Script {
        let config = Box::new(config);
        self.push(Event::SessionConfigSaved { config })
    }

    /// One metrics sample of the torrent's counters now.
    pub fn metrics(&mut self, info_hash: InfoHash) -> &mut Script {
        let at = self.peek_time();
        let torrent = self.torrent(info_hash);
        let sample = TorrentMetrics {
            info_hash,
            timestamp: at,
            downloaded: torrent.downloaded,
            uploaded: torrent.uploaded,
            download_rate: torrent.download_rate,
            upload_rate: torrent.upload_rate,
            peer_count: torrent.peer_connected_count,
            seeding_time: 0,
            downloading_time: 0,
        };
        self.push(Event::MetricsRecorded {
            samples: vec![sample],
        })
    }

    /// Any event, as is.
    pub fn event(&mut self, event: Event) -> &mut Script {
        self.push(event)
    }

    /// Lets `duration` pass before the next event (on top of [`Script::STEP`]).
    pub fn wait(&mut self, duration: Duration) -> &mut Script {
        let nanos = i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
        self.now = self.now.saturating_add_nanos(nanos);
        self
    }

    fn torrent_mut(&mut self, info_hash: InfoHash) -> &mut TorrentState {
        self.torrents
            .get_mut(&info_hash)
            .expect("a torrent the script added")
    }

    /// The commit time of the next event.
    fn peek_time(&self) -> Timestamp {
        let step = i64::try_from(Self::STEP.as_nanos()).unwrap_or(i64::MAX);
        self.now.saturating_add_nanos(step)
    }

    fn next_time(&mut self) -> Timestamp {
        self.now = self.peek_time();
        self.now
    }

    fn hook(
        &mut self,
        event: HookEvent,
        info_hash: InfoHash,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> &mut Script {
        let torrent = Box::new(self.torrent(info_hash).clone());
        let timestamp = self.peek_time();
        self.push(Event::Hook(HookRecord {
            event,
            torrent,
            data,
            timestamp,
        }))
    }

    fn push(&mut self, event: Event) -> &mut Script {
        let at = self.next_time();
        self.steps.push(Step { at, event });
        self
    }
}

/// Sets every progress field consistently for `fraction` of the wanted bytes.
fn set_progress(torrent: &mut TorrentState, fraction: f64) {
    let fraction = fraction.clamp(0.0, 1.0);
    let total: i64 = torrent
        .files
        .iter()
        .map(|f| f.length)
        .sum::<i64>()
        .max(1 << 20);
    let done = (total as f64 * fraction) as i64;
    torrent.percent_done = fraction;
    torrent.downloaded = done;
    torrent.uploaded = done / 4;
    torrent.left = total - done;
    torrent.pieces_complete = (torrent.piece_count as f64 * fraction) as i64;
    torrent.eta = if fraction >= 1.0 {
        -1
    } else {
        torrent.left / 2_500_000
    };
}

/// A small, valid single-file `.torrent` (canonical bencode) named `name`.
fn metainfo(name: &str) -> Vec<u8> {
    let pieces = Sha1::digest(name.as_bytes());
    let mut out = Vec::new();
    out.extend_from_slice(
        b"d8:announce35:udp://tracker.example.invalid:1337/4:infod6:lengthi1048576e",
    );
    out.extend_from_slice(format!("4:name{}:{name}", name.len()).as_bytes());
    out.extend_from_slice(b"12:piece lengthi1048576e6:pieces20:");
    out.extend_from_slice(&pieces);
    out.extend_from_slice(b"ee");
    out
}

fn object(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
