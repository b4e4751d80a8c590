//! The reducer: the one place that decides what every event means.
//!
//! [`apply`] is a pure function from (state, event) to the next state. Every projection —
//! memory, files, SQLite — must end up equal to folding the journal through it; the property
//! tests in `tests/projection_equivalence.rs` hold them to that.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{Envelope, Event, HookRecord};
use crate::model::{
    HookEvent, InfoHash, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};

/// Everything the journal says, folded: torrents, session configuration, metrics samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Live torrents by info hash. `Arc` so readers share them without copying.
    pub torrents: BTreeMap<InfoHash, Arc<TorrentState>>,
    /// The last saved session configuration.
    pub session: Option<SessionConfiguration>,
    /// Metrics samples per live torrent, in the order they were recorded.
    pub metrics: BTreeMap<InfoHash, Vec<TorrentMetrics>>,
    /// Seq of the last event applied (0: none).
    pub last_seq: u64,
    /// Commit time of the last event applied.
    pub last_at: Timestamp,
    /// When each live torrent and the session configuration were last written (the SQLite
    /// projection's `updated_date`). Snapshots written before this field read it as empty and
    /// are then completed by [`State::fill_missing_write_times`].
    #[serde(default)]
    pub written: WriteTimes,
}

/// The commit time (`Envelope::at`) of the last event that wrote each live torrent — stored it
/// (added, started, stopped, completed, `TorrentSaved`, `TorrentsSaved`) or changed it
/// (metadata, error) — and of the last `SessionConfigSaved`. A removal forgets the torrent's
/// entry; metrics events write neither. This is what the SQLite projection's
/// `torrents.updated_date` and `session_config.updated_date` hold, so a projection installed
/// from a state (restore, a rebuild after compaction, a follower's resync) writes the same rows
/// as one that applied every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteTimes {
    /// Per live torrent.
    #[serde(default)]
    pub torrents: BTreeMap<InfoHash, Timestamp>,
    /// Of the session configuration (`None` while none was saved).
    #[serde(default)]
    pub session: Option<Timestamp>,
}

impl WriteTimes {
    /// When `info_hash` was last written, if known.
    pub fn torrent(&self, info_hash: &InfoHash) -> Option<Timestamp> {
        self.torrents.get(info_hash).copied()
    }
}

impl State {
    /// Folds a sequence of envelopes into a fresh state.
    pub fn from_envelopes<'a>(envelopes: impl IntoIterator<Item = &'a Envelope>) -> State {
        let mut state = State::default();
        for envelope in envelopes {
            apply(&mut state, envelope);
        }
        state
    }

    /// Total number of metrics samples held.
    pub fn metrics_len(&self) -> usize {
        self.metrics.values().map(Vec::len).sum()
    }

    /// Gives every live torrent without a write time, and a saved session configuration
    /// without one, the time `at`; drops write times of torrents not live. A state folded by
    /// [`apply`] has every write time already; a snapshot written before write times were kept
    /// gets its own commit time here (the latest time anything in it can have been written —
    /// the true times are not in the file).
    pub fn fill_missing_write_times(&mut self, at: Timestamp) {
        let torrents = &self.torrents;
        self.written
            .torrents
            .retain(|h, _| torrents.contains_key(h));
        // After the retain the write times' keys are a subset of the torrents' keys, so equal
        // lengths mean equal key sets: the `<` only skips a loop that would insert nothing
        // (mutation testing: `<=` for `<` is equivalent).
        if self.written.torrents.len() < self.torrents.len() {
            for info_hash in self.torrents.keys() {
                self.written.torrents.entry(*info_hash).or_insert(at);
            }
        }
        if self.session.is_some() {
            self.written.session.get_or_insert(at);
        } else {
            self.written.session = None;
        }
    }
}

/// Applies one event. Envelopes must come in seq order, each exactly once.
///
/// Meanings:
/// - added / started / stopped / completed, `TorrentSaved`, `TorrentsSaved`: the snapshot
///   replaces the stored torrent (all of a `TorrentsSaved` at once: it is one event);
/// - metadata: attaches the `.torrent` (and the file list, if the stored torrent has none) to
///   the stored torrent, keeping its newer progress — the metadata hook runs on its own
///   goroutine and may arrive after later events; an unknown torrent is stored as given;
/// - error: records the message (`data["error"]`, else the snapshot's) on the stored torrent;
/// - removed, `TorrentDeleted`: forgets the torrent and its metrics samples;
/// - `MetricsRecorded`: keeps samples of known torrents only (like the seed's foreign key);
/// - `MetricsPurged`: drops samples taken strictly before `older_than`.
pub fn apply(state: &mut State, envelope: &Envelope) {
    apply_noting(state, envelope, &mut |_| {});
}

/// A change [`apply_noting`] reports: what an event did to the rows of a state, for projections
/// that write rows instead of holding the whole state (the SQLite projection). The content is
/// in the state: a projection folds a batch into a state holding the torrents the batch reads
/// (see [`needs`]), then writes what the changes name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change<'a> {
    /// The torrent was stored or changed: its content and write time are in the state.
    TorrentWritten(InfoHash),
    /// The torrent was forgotten, and every metrics sample of it with it.
    TorrentRemoved(InfoHash),
    /// The session configuration was saved: it and its write time are in the state.
    SessionWritten,
    /// A sample was kept (its torrent is known), in recording order. (Samples of unknown
    /// torrents are dropped and not reported.)
    MetricKept(&'a TorrentMetrics),
    /// Every sample taken strictly before this time was dropped, of every torrent.
    MetricsPurged(Timestamp),
}

/// [`apply`], reporting each [`Change`] to `note` as it makes it, in order.
pub fn apply_noting<'a>(
    state: &mut State,
    envelope: &'a Envelope,
    note: &mut impl FnMut(Change<'a>),
) {
    assert!(
        envelope.seq > state.last_seq,
        "events must be applied in seq order: seq {} after {}",
        envelope.seq,
        state.last_seq
    );
    let at = envelope.at;
    match &envelope.event {
        Event::Hook(record) => apply_hook(state, record, at, note),
        Event::TorrentSaved { torrent } => put(state, torrent, at, note),
        Event::TorrentsSaved { torrents } => torrents.iter().for_each(|t| put(state, t, at, note)),
        Event::TorrentDeleted { info_hash } => remove(state, info_hash, note),
        Event::SessionConfigSaved { config } => {
            state.session = Some((**config).clone());
            state.written.session = Some(at);
            note(Change::SessionWritten);
        }
        Event::MetricsRecorded { samples } => record_metrics(state, samples, note),
        Event::MetricsPurged { older_than } => {
            purge_metrics(&mut state.metrics, *older_than);
            note(Change::MetricsPurged(*older_than));
        }
    }
    state.last_seq = envelope.seq;
    state.last_at = envelope.at;
}

/// What applying an event needs to know of a torrent as stored before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    /// Nothing: the event replaces the torrent or forgets it, whatever was stored.
    Nothing,
    /// Whether it is stored (a metrics sample is kept only for a known torrent).
    Existence,
    /// The stored torrent itself (metadata and error hooks amend it).
    Content,
}

/// Calls `f` with every torrent `event` reads or writes and what [`apply`] needs to know of
/// it, so a projection can fold a batch on a state holding only those torrents. Must agree
/// with [`apply`] (`tests/projection_equivalence.rs` holds the SQLite projection, which relies
/// on it, to the reducer).
pub fn needs(event: &Event, mut f: impl FnMut(InfoHash, Needs)) {
    match event {
        Event::Hook(record) => {
            let needs = match hook_effect(record.event) {
                Effect::Put | Effect::Remove => Needs::Nothing,
                Effect::Amend => Needs::Content,
            };
            f(record.torrent.info_hash, needs);
        }
        Event::TorrentSaved { torrent } => f(torrent.info_hash, Needs::Nothing),
        Event::TorrentsSaved { torrents } => {
            torrents.iter().for_each(|t| f(t.info_hash, Needs::Nothing));
        }
        Event::TorrentDeleted { info_hash } => f(*info_hash, Needs::Nothing),
        Event::MetricsRecorded { samples } => {
            samples
                .iter()
                .for_each(|s| f(s.info_hash, Needs::Existence));
        }
        Event::SessionConfigSaved { .. } | Event::MetricsPurged { .. } => {}
    }
}

fn apply_hook<'a>(
    state: &mut State,
    record: &HookRecord,
    at: Timestamp,
    note: &mut impl FnMut(Change<'a>),
) {
    let info_hash = record.torrent.info_hash;
    match hook_effect(record.event) {
        Effect::Put => put(state, &record.torrent, at, note),
        Effect::Remove => remove(state, &info_hash, note),
        Effect::Amend => {
            if let Some(added) = amend(state.torrents.get_mut(&info_hash), record) {
                state.torrents.insert(info_hash, Arc::new(added));
            }
            // Stored or changed either way: amending always leaves the torrent stored.
            state.written.torrents.insert(info_hash, at);
            note(Change::TorrentWritten(info_hash));
        }
    }
}

/// What the hook events are, for replays that look at an event before decoding it (see
/// [`crate::replay`]): how an event changes the torrent it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Replaces the stored torrent, whatever came before (added, started, stopped, completed).
    Put,
    /// Forgets the torrent and its metrics samples (removed).
    Remove,
    /// Changes the stored torrent, or adds it when unknown (metadata, error).
    Amend,
}

/// The effect of a hook event ([`apply`] dispatches on it too).
pub fn hook_effect(event: HookEvent) -> Effect {
    match event {
        HookEvent::TorrentAdded
        | HookEvent::TorrentStarted
        | HookEvent::TorrentStopped
        | HookEvent::TorrentCompleted => Effect::Put,
        HookEvent::TorrentRemoved => Effect::Remove,
        HookEvent::TorrentMetadata | HookEvent::TorrentError => Effect::Amend,
    }
}

fn put<'a>(
    state: &mut State,
    torrent: &TorrentState,
    at: Timestamp,
    note: &mut impl FnMut(Change<'a>),
) {
    state
        .torrents
        .insert(torrent.info_hash, Arc::new(torrent.clone()));
    state.written.torrents.insert(torrent.info_hash, at);
    note(Change::TorrentWritten(torrent.info_hash));
}

fn remove<'a>(state: &mut State, info_hash: &InfoHash, note: &mut impl FnMut(Change<'a>)) {
    state.torrents.remove(info_hash);
    state.metrics.remove(info_hash);
    state.written.torrents.remove(info_hash);
    note(Change::TorrentRemoved(*info_hash));
}

/// Applies a metadata or error hook (any other hook: nothing) to the stored torrent; when there
/// is none, returns the torrent to store. Shared by [`apply`] and the fast replay, so both give
/// these hooks the same meaning.
pub(crate) fn amend(
    stored: Option<&mut Arc<TorrentState>>,
    record: &HookRecord,
) -> Option<TorrentState> {
    match (record.event, stored) {
        (HookEvent::TorrentMetadata, Some(stored)) => {
            attach_metadata_to(Arc::make_mut(stored), &record.torrent);
            None
        }
        (HookEvent::TorrentMetadata, None) => Some((*record.torrent).clone()),
        (HookEvent::TorrentError, Some(stored)) => {
            Arc::make_mut(stored).error = error_message(record);
            None
        }
        (HookEvent::TorrentError, None) => {
            let mut torrent = (*record.torrent).clone();
            torrent.error = error_message(record);
            Some(torrent)
        }
        _ => None,
    }
}

/// What the metadata hook changes on a stored torrent: the `.torrent`, and the file list while
/// the stored one has none. Shared with projections that update rows in place.
pub(crate) fn attach_metadata_to(stored: &mut TorrentState, snapshot: &TorrentState) {
    if snapshot.meta_info.is_some() {
        stored.meta_info = snapshot.meta_info.clone();
    }
    if stored.files.is_empty() {
        stored.files = snapshot.files.clone();
        stored.priorities = snapshot.priorities.clone();
        stored.wanted = snapshot.wanted.clone();
    }
}

/// The message an error hook records: `data["error"]`, else the snapshot's.
pub(crate) fn error_message(record: &HookRecord) -> Option<String> {
    record
        .data
        .get("error")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| record.torrent.error.clone())
}

fn record_metrics<'a>(
    state: &mut State,
    samples: &'a [TorrentMetrics],
    note: &mut impl FnMut(Change<'a>),
) {
    let torrents = &state.torrents;
    record_metrics_of_known(
        &mut state.metrics,
        samples,
        |h: &InfoHash| torrents.contains_key(h),
        |kept| note(Change::MetricKept(kept)),
    );
}

/// Keeps the samples of torrents `known` says exist at this point of the journal. Shared by
/// [`apply`] and the fast replay (which knows existence without holding every torrent).
/// `kept` hears of each sample kept, in order.
pub(crate) fn record_metrics_of_known<'a>(
    metrics: &mut BTreeMap<InfoHash, Vec<TorrentMetrics>>,
    samples: &'a [TorrentMetrics],
    known: impl Fn(&InfoHash) -> bool,
    mut kept: impl FnMut(&'a TorrentMetrics),
) {
    for sample in samples {
        if known(&sample.info_hash) {
            metrics
                .entry(sample.info_hash)
                .or_default()
                .push(sample.clone());
            kept(sample);
        }
    }
}

/// Drops samples taken strictly before `older_than`, and torrents left without samples.
pub(crate) fn purge_metrics(
    metrics: &mut BTreeMap<InfoHash, Vec<TorrentMetrics>>,
    older_than: Timestamp,
) {
    for samples in metrics.values_mut() {
        samples.retain(|s| s.timestamp >= older_than);
    }
    metrics.retain(|_, samples| !samples.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + secs * 1_000_000_000)
    }

    fn torrent(n: u8) -> TorrentState {
        TorrentState::sample(InfoHash::V1([n; 20]), &format!("t{n}"), at(0))
    }

    fn hook(event: HookEvent, torrent: TorrentState, data: serde_json::Value) -> Event {
        let serde_json::Value::Object(data) = data else {
            panic!("data must be an object")
        };
        Event::Hook(HookRecord {
            event,
            torrent: Box::new(torrent),
            data,
            timestamp: at(1),
        })
    }

    fn fold(events: Vec<Event>) -> State {
        let envelopes: Vec<Envelope> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Envelope::new(i as u64 + 1, at(i as i64), e))
            .collect();
        State::from_envelopes(&envelopes)
    }

    #[test]
    fn metadata_attaches_to_a_magnet_and_keeps_newer_progress() {
        let mut magnet = torrent(1);
        magnet.files.clear();
        magnet.meta_info = None;
        let mut progressed = magnet.clone();
        progressed.percent_done = 0.75;
        let mut with_meta = torrent(1);
        with_meta.meta_info = Some(crate::model::MetaInfo::new(b"d4:infod4:name1:xee".to_vec()));
        with_meta.percent_done = 0.0;
        let state = fold(vec![
            hook(HookEvent::TorrentAdded, magnet, json!({})),
            Event::TorrentSaved {
                torrent: Box::new(progressed),
            },
            hook(HookEvent::TorrentMetadata, with_meta.clone(), json!({})),
        ]);
        let stored = &state.torrents[&with_meta.info_hash];
        assert_eq!(stored.meta_info, with_meta.meta_info);
        assert_eq!(stored.files, with_meta.files);
        assert_eq!(stored.percent_done, 0.75);
    }

    #[test]
    fn error_records_the_message_and_removal_forgets_metrics() {
        let t = torrent(2);
        let sample = TorrentMetrics {
            info_hash: t.info_hash,
            timestamp: at(5),
            ..TorrentMetrics::default()
        };
        let state = fold(vec![
            hook(HookEvent::TorrentAdded, t.clone(), json!({})),
            hook(
                HookEvent::TorrentError,
                t.clone(),
                json!({"error": "disk full"}),
            ),
            Event::MetricsRecorded {
                samples: vec![sample.clone()],
            },
        ]);
        assert_eq!(
            state.torrents[&t.info_hash].error.as_deref(),
            Some("disk full")
        );
        assert_eq!(state.metrics[&t.info_hash], vec![sample]);

        let mut events = vec![hook(HookEvent::TorrentAdded, t.clone(), json!({}))];
        events.push(hook(HookEvent::TorrentRemoved, t.clone(), json!({})));
        let state = fold(events);
        assert!(state.torrents.is_empty());
        assert!(state.metrics.is_empty());
    }

    #[test]
    fn metrics_for_unknown_torrents_are_dropped_and_purge_is_strict() {
        let t = torrent(3);
        let sample = |secs| TorrentMetrics {
            info_hash: t.info_hash,
            timestamp: at(secs),
            ..TorrentMetrics::default()
        };
        let stranger = TorrentMetrics {
            info_hash: InfoHash::V1([9; 20]),
            ..sample(1)
        };
        let state = fold(vec![
            Event::TorrentSaved {
                torrent: Box::new(t.clone()),
            },
            Event::MetricsRecorded {
                samples: vec![sample(1), sample(2), stranger],
            },
            Event::MetricsPurged { older_than: at(2) },
        ]);
        assert_eq!(state.metrics[&t.info_hash], vec![sample(2)]);
        assert_eq!(state.metrics_len(), 1);
    }

    #[test]
    fn write_times_are_the_last_storing_or_changing_events() {
        let (t1, t2) = (torrent(4), torrent(5));
        let sample = TorrentMetrics {
            info_hash: t1.info_hash,
            timestamp: at(0),
            ..TorrentMetrics::default()
        };
        let state = fold(vec![
            hook(HookEvent::TorrentAdded, t1.clone(), json!({})), // at(0)
            Event::TorrentSaved {
                torrent: Box::new(t2.clone()),
            }, // at(1)
            hook(HookEvent::TorrentMetadata, t1.clone(), json!({})), // at(2)
            Event::SessionConfigSaved {
                config: Box::new(SessionConfiguration::sample()),
            }, // at(3)
            hook(HookEvent::TorrentError, t2.clone(), json!({"error": "x"})), // at(4)
            Event::MetricsRecorded {
                samples: vec![sample],
            }, // at(5): writes no row of torrents
            Event::MetricsPurged { older_than: at(-1) },          // at(6)
        ]);
        assert_eq!(state.written.torrent(&t1.info_hash), Some(at(2)));
        assert_eq!(state.written.torrent(&t2.info_hash), Some(at(4)));
        assert_eq!(state.written.session, Some(at(3)));

        let state = fold(vec![
            hook(HookEvent::TorrentAdded, t1.clone(), json!({})),
            hook(HookEvent::TorrentRemoved, t1.clone(), json!({})),
        ]);
        assert_eq!(state.written, WriteTimes::default());

        let mut filled = state.clone();
        filled.torrents.insert(t2.info_hash, Arc::new(t2.clone()));
        filled.written.torrents.insert(t1.info_hash, at(0));
        filled.fill_missing_write_times(at(9));
        assert_eq!(
            filled.written.torrents.into_iter().collect::<Vec<_>>(),
            vec![(t2.info_hash, at(9))]
        );
        assert_eq!(filled.written.session, None);
    }

    #[test]
    fn apply_noting_reports_each_row_change_in_order_and_needs_lists_what_is_read() {
        let (t1, t2) = (torrent(6), torrent(7));
        let sample = |t: &TorrentState| TorrentMetrics {
            info_hash: t.info_hash,
            timestamp: at(3),
            ..TorrentMetrics::default()
        };
        let envelopes: Vec<Envelope> = vec![
            hook(HookEvent::TorrentAdded, t1.clone(), json!({})),
            Event::MetricsRecorded {
                samples: vec![sample(&t1), sample(&t2)],
            },
            hook(HookEvent::TorrentError, t2.clone(), json!({"error": "x"})),
            Event::MetricsPurged { older_than: at(1) },
            Event::SessionConfigSaved {
                config: Box::new(SessionConfiguration::sample()),
            },
            Event::TorrentDeleted {
                info_hash: t1.info_hash,
            },
        ]
        .into_iter()
        .enumerate()
        .map(|(i, e)| Envelope::new(i as u64 + 1, at(i as i64), e))
        .collect();
        let mut state = State::default();
        let mut changes = Vec::new();
        for envelope in &envelopes {
            apply_noting(&mut state, envelope, &mut |c| changes.push(c));
        }
        let kept = sample(&t1);
        assert_eq!(
            changes,
            vec![
                Change::TorrentWritten(t1.info_hash),
                Change::MetricKept(&kept), // t2 is not known yet: its sample is dropped
                Change::TorrentWritten(t2.info_hash),
                Change::MetricsPurged(at(1)),
                Change::SessionWritten,
                Change::TorrentRemoved(t1.info_hash),
            ]
        );
        assert_eq!(state, State::from_envelopes(&envelopes));

        let mut needed = Vec::new();
        for envelope in &envelopes {
            needs(&envelope.event, |h, n| needed.push((h, n)));
        }
        assert_eq!(
            needed,
            vec![
                (t1.info_hash, Needs::Nothing),
                (t1.info_hash, Needs::Existence),
                (t2.info_hash, Needs::Existence),
                (t2.info_hash, Needs::Content),
                (t1.info_hash, Needs::Nothing),
            ]
        );
    }

    #[test]
    fn metadata_and_error_for_an_unknown_torrent_store_it_as_given() {
        let (t1, t2, t3) = (torrent(10), torrent(11), torrent(12));
        let mut t3_erred = t3.clone();
        t3_erred.error = Some("tracker gone".to_owned());
        let state = fold(vec![
            hook(HookEvent::TorrentMetadata, t1.clone(), json!({})), // at(0)
            hook(
                HookEvent::TorrentError,
                t2.clone(),
                json!({"error": "disk full"}),
            ), // at(1)
            hook(HookEvent::TorrentError, t3_erred.clone(), json!({})), // at(2)
        ]);
        let mut t2_erred = t2.clone();
        t2_erred.error = Some("disk full".to_owned());
        assert_eq!(
            state.torrents,
            BTreeMap::from([
                (t1.info_hash, Arc::new(t1.clone())),
                (t2.info_hash, Arc::new(t2_erred)),
                // No `data["error"]`: the snapshot's own message is kept.
                (t3.info_hash, Arc::new(t3_erred)),
            ])
        );
        assert_eq!(
            state.written.torrents,
            BTreeMap::from([
                (t1.info_hash, at(0)),
                (t2.info_hash, at(1)),
                (t3.info_hash, at(2)),
            ])
        );
        assert_eq!((state.last_seq, state.last_at), (3, at(2)));
    }

    #[test]
    fn metrics_len_counts_every_sample_of_every_torrent() {
        let (t1, t2) = (torrent(13), torrent(14));
        let sample = |t: &TorrentState, secs| TorrentMetrics {
            info_hash: t.info_hash,
            timestamp: at(secs),
            ..TorrentMetrics::default()
        };
        let state = fold(vec![
            Event::TorrentsSaved {
                torrents: vec![t1.clone(), t2.clone()],
            },
            Event::MetricsRecorded {
                samples: vec![sample(&t1, 1), sample(&t2, 1), sample(&t1, 2)],
            },
        ]);
        assert_eq!(state.metrics_len(), 3);
        assert_eq!(State::default().metrics_len(), 0);
    }

    #[test]
    #[should_panic(expected = "seq order")]
    fn out_of_order_application_is_a_bug() {
        let mut state = State::default();
        let event = Event::MetricsPurged { older_than: at(0) };
        apply(&mut state, &Envelope::new(2, at(0), event.clone()));
        apply(&mut state, &Envelope::new(2, at(0), event));
    }
}
