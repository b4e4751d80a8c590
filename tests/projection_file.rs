//! Proves the file projection keeps go-i2p-bt's file layout equal to the reducer, and that it
//! survives crashes.
//!
//! How: a scripted event stream (the deterministic client simulation, which produces every hook
//! kind, saves, metrics, purges and a session save, with `TorrentsSaved`, `TorrentDeleted` and
//! corner cases spliced in: metadata and errors for unknown torrents, v2 info hashes, floats that
//! `serde_json` reads back one ulp off, NaN, metainfo dropped by a later save) is applied in
//! batches of pseudo-random sizes, and after each batch the files read back through the storage
//! (`read_view`) must equal what the reducer's state says they should hold
//! (`FileView::of_state`). Then:
//! * reopening after every batch and continuing must give byte-identical files to applying
//!   everything at once (catching up incrementally == rebuilding);
//! * the sharded layout puts files under `torrents/<first byte>/`, and switching layouts rebuilds;
//! * on `SimStorage`, a power cut after each possible number of storage operations inside a
//!   batch, then reopening and replaying from the surviving checkpoint, must give the reducer's
//!   files (so the write order — metadata, torrents, checkpoint — is right); so must retrying in
//!   process after the failure;
//! * a batch writes each changed file once and nothing unchanged (counted by a storage wrapper);
//! * damaged or foreign directories are refused with the file named, and `open_empty` recovers.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use torrent_journal::event::HookRecord;
use torrent_journal::model::{
    HookEvent, InfoHash, MetaInfo, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};
use torrent_journal::projection::{
    Checkpoint, FileProjection, FileProjectionOptions, FileView, Projection,
};
use torrent_journal::simulate::Simulation;
use torrent_journal::state::{self, State};
use torrent_journal::storage::{
    CrashFill, LockGuard, ReadFile, RealStorage, SimStorage, Storage, StorageFile,
};
use torrent_journal::{Envelope, Error, Event};

const DIR: &str = "/data/files";

fn start() -> Timestamp {
    Timestamp::from_unix_nanos(1_714_564_800_000_000_000)
}

fn flat() -> FileProjectionOptions {
    FileProjectionOptions::default()
}

fn sharded() -> FileProjectionOptions {
    FileProjectionOptions {
        shard: true,
        ..FileProjectionOptions::default()
    }
}

fn open(storage: &SimStorage, options: FileProjectionOptions) -> FileProjection {
    FileProjection::open(Arc::new(storage.clone()), DIR, options).expect("open")
}

/// SplitMix64, for batch sizes.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Consecutive batches of 1..=64 events (sometimes a single one), covering all of `events`.
fn batches(events: &[Envelope], seed: u64) -> Vec<&[Envelope]> {
    let mut rng = seed;
    let mut out = Vec::new();
    let mut rest = events;
    while !rest.is_empty() {
        let n = (1 + next(&mut rng) % 64) as usize;
        let (batch, tail) = rest.split_at(n.min(rest.len()));
        out.push(batch);
        rest = tail;
    }
    out
}

fn hook(event: HookEvent, torrent: TorrentState, data: Value) -> Event {
    let Value::Object(data) = data else {
        panic!("data must be an object")
    };
    Event::Hook(HookRecord {
        event,
        torrent: Box::new(torrent),
        data,
        timestamp: start(),
    })
}

fn torrent(info_hash: InfoHash, name: &str) -> TorrentState {
    TorrentState::sample(info_hash, name, start())
}

fn meta(tag: &str) -> Option<MetaInfo> {
    Some(MetaInfo::new(
        format!("d4:infod4:name{}:{tag}ee", tag.len()).into_bytes(),
    ))
}

fn snapshot(event: &Event) -> Option<&TorrentState> {
    match event {
        Event::Hook(record) => Some(&record.torrent),
        Event::TorrentSaved { torrent } => Some(torrent),
        _ => None,
    }
}

/// Corner cases the simulation does not produce, spliced in at event index `at`.
fn extras(at: usize, seen: &[TorrentState]) -> Vec<Event> {
    let unknown = |n: u8| InfoHash::V1([n; 20]);
    match at {
        300 => {
            // Metadata and an error for torrents nobody added, both carrying metainfo.
            let mut m = torrent(unknown(0xa1), "early-metadata");
            m.meta_info = meta("early");
            let mut e = torrent(unknown(0xa2), "early-error");
            e.meta_info = meta("err");
            let v2 = torrent(InfoHash::V2([0xb3; 32]), "version-2");
            // A float serde_json reads back one ulp off, on a magnet without files.
            let mut tricky = torrent(unknown(0xa4), "tricky");
            tricky.files.clear();
            tricky.priorities.clear();
            tricky.wanted.clear();
            tricky.percent_done = 0.9719863718547629;
            tricky.seed_ratio_limit = 0.011935154727148345;
            let mut nan = tricky.clone();
            nan.info_hash = unknown(0xa5);
            nan.percent_done = f64::NAN;
            vec![
                hook(
                    HookEvent::TorrentMetadata,
                    m,
                    json!({"action": "metadata_received"}),
                ),
                hook(HookEvent::TorrentError, e, json!({"error": "disk full"})),
                Event::TorrentSaved {
                    torrent: Box::new(v2),
                },
                hook(HookEvent::TorrentAdded, tricky, json!({})),
                hook(HookEvent::TorrentAdded, nan, json!({})),
                Event::TorrentsSaved { torrents: vec![] },
                Event::TorrentDeleted {
                    info_hash: unknown(0xee),
                },
            ]
        }
        700 => {
            // Metadata arrives for the magnets of index 300 (files still empty there).
            let mut events = Vec::new();
            for n in [0xa4, 0xa5] {
                let mut t = torrent(unknown(n), "with-files");
                t.meta_info = meta("late");
                t.percent_done = 0.5;
                events.push(hook(HookEvent::TorrentMetadata, t, json!({})));
            }
            // A save without metainfo drops the metadata file of a torrent that had one.
            if let Some(t) = seen.iter().find(|t| t.meta_info.is_some()) {
                let mut t = t.clone();
                t.meta_info = None;
                events.push(Event::TorrentSaved {
                    torrent: Box::new(t),
                });
            }
            let mut config = SessionConfiguration::sample();
            config.peer_port += 1;
            config.seed_ratio_limit = 0.12489148443491327;
            events.push(Event::SessionConfigSaved {
                config: Box::new(config),
            });
            events
        }
        900 => {
            // Partial updates of stored torrents that have metainfo: an error, and metadata
            // without metainfo. Neither changes the files.
            let with_meta: Vec<&TorrentState> = seen
                .iter()
                .filter(|t| t.meta_info.is_some())
                .take(2)
                .collect();
            let mut events = Vec::new();
            if let [a, b] = with_meta[..] {
                events.push(hook(
                    HookEvent::TorrentError,
                    a.clone(),
                    json!({"error": "io"}),
                ));
                let mut b = b.clone();
                b.meta_info = None;
                events.push(hook(HookEvent::TorrentMetadata, b, json!({})));
            }
            events
        }
        i if i % 97 == 50 && seen.len() >= 2 => {
            let a = seen[i % seen.len()].clone();
            let mut b = seen[(i / 2) % seen.len()].clone();
            b.uploaded += 1;
            let mut a2 = a.clone();
            a2.labels.push(format!("batch-{i}"));
            vec![Event::TorrentsSaved {
                torrents: vec![a, b, a2],
            }]
        }
        i if i % 151 == 75 && !seen.is_empty() => vec![Event::TorrentDeleted {
            info_hash: seen[i % seen.len()].info_hash,
        }],
        _ => vec![],
    }
}

/// The scripted stream, as envelopes with seqs 1.. and commit times 1 ms apart.
fn scripted(seed: u64) -> Vec<Envelope> {
    let sim = Simulation {
        seed,
        torrents: 30,
        events: 1500,
        tasks: 1,
        start: start(),
    };
    let mut events = Vec::new();
    let mut seen: Vec<TorrentState> = Vec::new();
    for (i, event) in sim.task(0).enumerate() {
        if let Some(t) = snapshot(&event) {
            match seen.iter_mut().find(|s| s.info_hash == t.info_hash) {
                Some(s) => *s = t.clone(),
                None => seen.push(t.clone()),
            }
        }
        events.push(event);
        events.extend(extras(i, &seen));
    }
    envelopes(events)
}

fn envelopes(events: Vec<Event>) -> Vec<Envelope> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let seq = i as u64 + 1;
            let at = Timestamp::from_unix_nanos(start().as_unix_nanos() + seq as i64 * 1_000_000);
            Envelope::new(seq, at, e)
        })
        .collect()
}

fn expected_view(events: &[Envelope]) -> FileView {
    FileView::of_state(&State::from_envelopes(events)).expect("view of state")
}

/// Asserts two views are equal, reporting only what differs.
#[track_caller]
fn assert_view(actual: &FileView, expected: &FileView, context: impl std::fmt::Display) {
    if actual == expected {
        return;
    }
    let mut report = Vec::new();
    let keys: BTreeSet<&InfoHash> = actual
        .torrents
        .keys()
        .chain(expected.torrents.keys())
        .collect();
    for h in keys {
        let (a, e) = (actual.torrents.get(h), expected.torrents.get(h));
        if a != e {
            report.push(format!("torrent {h}:\n  actual   {a:?}\n  expected {e:?}"));
        }
    }
    let keys: BTreeSet<&InfoHash> = actual
        .metadata
        .keys()
        .chain(expected.metadata.keys())
        .collect();
    for h in keys {
        let (a, e) = (actual.metadata.get(h), expected.metadata.get(h));
        if a != e {
            let len = |m: Option<&Vec<u8>>| m.map(Vec::len);
            report.push(format!(
                "metadata {h}: actual {:?} bytes, expected {:?} bytes",
                len(a),
                len(e)
            ));
        }
    }
    if actual.session != expected.session {
        report.push(format!(
            "session:\n  actual   {:?}\n  expected {:?}",
            actual.session, expected.session
        ));
    }
    panic!(
        "{context}: the files differ from the reducer's view\n{}",
        report.join("\n")
    );
}

fn names(listing: &[(String, Vec<u8>)]) -> Vec<&str> {
    listing.iter().map(|(name, _)| name.as_str()).collect()
}

#[test]
fn the_script_covers_every_event_kind() {
    let events = scripted(1);
    let kinds: BTreeSet<&str> = events.iter().map(|e| e.event.kind()).collect();
    let all: BTreeSet<&str> = Event::KINDS.into_iter().collect();
    assert_eq!(kinds, all);
    let state = State::from_envelopes(&events);
    assert!(state.torrents.len() > 20, "{}", state.torrents.len());
    assert!(state.torrents.values().any(|t| t.meta_info.is_some()));
    assert!(state.torrents.values().any(|t| t.error.is_some()));
    assert!(state.metrics_len() > 0);
}

/// (1) On the real file system: after every batch the files equal the reducer's view.
#[test]
fn files_equal_the_reducer_after_every_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("files");
    let events = scripted(1);
    let mut projection = FileProjection::open(Arc::new(RealStorage), &dir, flat()).unwrap();
    assert_eq!(projection.checkpoint(), Checkpoint::default());
    let mut state = State::default();
    for batch in batches(&events, 11) {
        projection.apply(batch).unwrap();
        for envelope in batch {
            state::apply(&mut state, envelope);
        }
        assert_view(
            &projection.read_view().unwrap(),
            &FileView::of_state(&state).unwrap(),
            format!("after seq {}", state.last_seq),
        );
        assert_eq!(
            projection.checkpoint(),
            Checkpoint::of(&batch[batch.len() - 1])
        );
    }
    assert_eq!(projection.len(), state.torrents.len());

    // Go's layout, with Go's file contents, and nothing else.
    let listing = projection.tree_listing().unwrap();
    let mut expected: Vec<String> = vec!["checkpoint.json".into(), "session.json".into()];
    for (h, t) in &state.torrents {
        expected.push(format!("torrents/{}.json", h.to_hex()));
        if t.meta_info.is_some() {
            expected.push(format!("metadata/{}.torrent", h.to_hex()));
        }
    }
    expected.sort();
    assert_eq!(names(&listing), expected);
    for (h, t) in &state.torrents {
        let bytes = std::fs::read(dir.join("torrents").join(format!("{h}.json"))).unwrap();
        assert_eq!(bytes, t.to_go_file_json_pretty().unwrap());
        if let Some(m) = &t.meta_info {
            let bytes = std::fs::read(dir.join("metadata").join(format!("{h}.torrent"))).unwrap();
            assert_eq!(bytes, m.raw);
        }
    }
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        checkpoint,
        json!({"format": 1, "seq": last.seq, "at": last.at.to_rfc3339(), "shard": false})
    );
    // Reopening on the real file system finds the same checkpoint.
    drop(projection);
    let projection = FileProjection::open(Arc::new(RealStorage), &dir, flat()).unwrap();
    assert_eq!(projection.checkpoint(), Checkpoint::of(last));
    assert_view(
        &projection.read_view().unwrap(),
        &expected_view(&events),
        "reopened on the real file system",
    );
}

/// (2) Reopening after every batch and continuing gives byte-identical files to one batch.
#[test]
fn reopening_after_every_batch_equals_applying_everything_at_once() {
    for options in [flat(), sharded()] {
        let events = scripted(2);
        let storage = SimStorage::new();
        let mut projection = open(&storage, options);
        for batch in batches(&events, 22) {
            projection.apply(batch).unwrap();
            drop(projection);
            projection = open(&storage, options);
            assert_eq!(
                projection.checkpoint(),
                Checkpoint::of(&batch[batch.len() - 1])
            );
        }
        assert_view(
            &projection.read_view().unwrap(),
            &expected_view(&events),
            format!("reopened after every batch ({options:?})"),
        );

        let one_shot_storage = SimStorage::new();
        let mut one_shot = open(&one_shot_storage, options);
        one_shot.apply(&events).unwrap();
        assert_eq!(
            projection.tree_listing().unwrap(),
            one_shot.tree_listing().unwrap(),
            "{options:?}"
        );
    }
}

/// (3) The sharded layout, and switching layouts.
#[test]
fn sharded_layout_and_switching_layouts() {
    let events = scripted(3);
    let state = State::from_envelopes(&events);
    let storage = SimStorage::new();
    let mut projection = open(&storage, sharded());
    projection.apply(&events).unwrap();
    assert_view(
        &projection.read_view().unwrap(),
        &expected_view(&events),
        "sharded",
    );
    let listing = projection.tree_listing().unwrap();
    for (h, t) in &state.torrents {
        let (prefix, hex) = (h.shard_prefix(), h.to_hex());
        assert!(hex.starts_with(prefix));
        let path = format!("torrents/{prefix}/{hex}.json");
        assert!(names(&listing).contains(&path.as_str()), "{path}");
        assert_eq!(
            projection.torrent_path(h),
            Path::new(DIR)
                .join("torrents")
                .join(prefix)
                .join(format!("{hex}.json"))
        );
        let path = format!("metadata/{prefix}/{hex}.torrent");
        assert_eq!(
            t.meta_info.is_some(),
            names(&listing).contains(&path.as_str())
        );
    }
    for (name, _) in &listing {
        let parts: Vec<&str> = name.split('/').collect();
        assert!(
            parts.len() == 1 || (parts.len() == 3 && parts[1].len() == 2),
            "{name} is not in the sharded layout"
        );
    }

    // Opening flat discards the sharded files; a rebuild writes the flat layout.
    drop(projection);
    let mut projection = open(&storage, flat());
    assert_eq!(projection.checkpoint(), Checkpoint::default());
    assert_eq!(
        names(&projection.tree_listing().unwrap()),
        ["checkpoint.json"]
    );
    projection.apply(&events).unwrap();
    assert_view(
        &projection.read_view().unwrap(),
        &expected_view(&events),
        "rebuilt flat",
    );
    assert!(
        names(&projection.tree_listing().unwrap())
            .iter()
            .all(|name| name.split('/').count() <= 2)
    );
    // And back.
    drop(projection);
    let mut projection = open(&storage, sharded());
    assert_eq!(projection.checkpoint(), Checkpoint::default());
    projection.apply(&events).unwrap();
    assert_view(
        &projection.read_view().unwrap(),
        &expected_view(&events),
        "rebuilt sharded again",
    );
}

/// Events where the order of the write phases matters: torrents created by metadata and error
/// events from snapshots that carry metainfo, next to ordinary changes.
fn ordering_critical() -> Vec<Envelope> {
    let h = |n: u8| InfoHash::V1([n; 20]);
    let mut magnet = torrent(h(1), "magnet");
    magnet.files.clear();
    magnet.priorities.clear();
    magnet.wanted.clear();
    let mut with_meta = torrent(h(1), "magnet");
    with_meta.meta_info = meta("one");
    let mut early = torrent(h(2), "early");
    early.meta_info = meta("two");
    let mut failing = torrent(h(3), "failing");
    failing.meta_info = meta("three");
    let mut saved = torrent(h(4), "saved");
    saved.meta_info = meta("four");
    let mut dropped = saved.clone();
    dropped.info_hash = h(5);
    envelopes(vec![
        Event::SessionConfigSaved {
            config: Box::new(SessionConfiguration::sample()),
        },
        hook(HookEvent::TorrentAdded, magnet, json!({})),
        Event::TorrentSaved {
            torrent: Box::new(dropped.clone()),
        },
        // The crash window starts here (seq 4).
        hook(HookEvent::TorrentMetadata, early, json!({})),
        hook(
            HookEvent::TorrentError,
            failing,
            json!({"error": "disk full"}),
        ),
        hook(HookEvent::TorrentMetadata, with_meta, json!({})),
        Event::TorrentSaved {
            torrent: Box::new(saved),
        },
        hook(HookEvent::TorrentRemoved, dropped, json!({})),
        Event::SessionConfigSaved {
            config: Box::new(SessionConfiguration::default()),
        },
        Event::MetricsRecorded {
            samples: vec![TorrentMetrics {
                info_hash: h(4),
                timestamp: start(),
                ..TorrentMetrics::default()
            }],
        },
    ])
}

/// Crashes after every possible number of storage operations while applying
/// `events[from..to]` over a projection holding `events[..from]`; checks recovery by reopening
/// the crash image and replaying, and by retrying in process.
fn crash_everywhere(events: &[Envelope], from: usize, to: usize, options: FileProjectionOptions) {
    let base = SimStorage::new();
    let mut projection = open(&base, options);
    projection.apply(&events[..from]).unwrap();
    drop(projection);
    let expected = expected_view(&events[..to]);
    let after = (to + 20).min(events.len());
    let expected_after = expected_view(&events[..after]);
    let fills = [CrashFill::Drop, CrashFill::Zeros, CrashFill::Garbage(7)];
    for k in 0.. {
        // Everything in `base` is durable, so a crash image of it is an exact copy.
        let sim = base.crash(CrashFill::Drop);
        let mut projection = open(&sim, options);
        sim.crash_after(k);
        if projection.apply(&events[from..to]).is_ok() {
            assert!(k > 5, "the batch needed only {k} operations");
            assert_view(&projection.read_view().unwrap(), &expected, "no crash");
            return;
        }

        // A power cut: reopen the image, replay from its checkpoint.
        let image = sim.crash(fills[k as usize % fills.len()]);
        let mut reopened = open(&image, options);
        let seq = reopened.checkpoint().seq as usize;
        assert!(seq == from || seq == to, "k {k}: checkpoint {seq}");
        reopened.apply(&events[seq..to]).unwrap();
        assert_view(
            &reopened.read_view().unwrap(),
            &expected,
            format!("k {k}: after replay"),
        );
        // The rebuilt mirror drives later partial updates correctly.
        reopened.apply(&events[to..after]).unwrap();
        assert_view(
            &reopened.read_view().unwrap(),
            &expected_after,
            format!("k {k}: later"),
        );

        // The disk recovers without a restart: the projection retries from its checkpoint.
        sim.crash_after(1 << 40);
        let seq = projection.checkpoint().seq as usize;
        assert!(
            seq == from || seq == to,
            "k {k}: in-process checkpoint {seq}"
        );
        projection.apply(&events[seq..to]).unwrap();
        assert_view(
            &projection.read_view().unwrap(),
            &expected,
            format!("k {k}: retried"),
        );
    }
}

/// (4) Power cuts inside batches.
#[test]
fn crash_at_every_storage_operation_then_replay() {
    let critical = ordering_critical();
    crash_everywhere(&critical, 3, critical.len(), flat());
    crash_everywhere(&critical, 0, critical.len(), sharded());
    let events = scripted(4);
    // Windows around the spliced corner cases (seqs 307-311, 721-724 and 928-929).
    crash_everywhere(&events, 0, 25, flat());
    crash_everywhere(&events, 300, 320, flat());
    crash_everywhere(&events, 715, 730, sharded());
    crash_everywhere(&events, 922, 935, flat());
}

/// A storage that records the files created and removed.
#[derive(Debug)]
struct Counting {
    inner: SimStorage,
    created: Mutex<Vec<PathBuf>>,
    removed: Mutex<Vec<PathBuf>>,
}

impl Counting {
    fn take(&self) -> (Vec<String>, Vec<String>) {
        let relative = |paths: &mut Vec<PathBuf>| {
            let mut names: Vec<String> = paths
                .drain(..)
                .map(|p| p.strip_prefix(DIR).unwrap().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        (
            relative(&mut self.created.lock().unwrap()),
            relative(&mut self.removed.lock().unwrap()),
        )
    }
}

impl Storage for Counting {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read_file(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        self.inner.open_read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(path, offset, buf)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_len(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.created.lock().unwrap().push(path.to_path_buf());
        self.inner.create(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.inner.open_append(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.removed.lock().unwrap().push(path.to_path_buf());
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.inner.set_mode(path, mode)
    }
    fn try_lock(&self, path: &Path, pid: u32) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.try_lock(path, pid)
    }
}

/// (5) Each changed file is written once per batch; unchanged files are not written.
#[test]
fn a_batch_writes_each_changed_file_once() {
    let h = |n: u8| InfoHash::V1([n; 20]);
    let json = |n: u8| format!("torrents/{}.json.tmp", h(n).to_hex());
    let torrent_file = |n: u8| format!("metadata/{}.torrent", h(n).to_hex());
    let counting = Arc::new(Counting {
        inner: SimStorage::new(),
        created: Mutex::new(Vec::new()),
        removed: Mutex::new(Vec::new()),
    });
    let mut a = torrent(h(1), "a");
    a.meta_info = meta("a");
    let b = torrent(h(2), "b");
    let c = torrent(h(3), "c");
    let mut d = torrent(h(4), "d");
    d.meta_info = meta("d");

    let mut events = vec![
        hook(HookEvent::TorrentAdded, a.clone(), json!({})),
        hook(HookEvent::TorrentAdded, b.clone(), json!({})),
        hook(HookEvent::TorrentAdded, d.clone(), json!({})),
    ];
    let first = events.len();
    for i in 0..10 {
        a.uploaded += i;
        events.push(Event::TorrentSaved {
            torrent: Box::new(a.clone()),
        });
    }
    let mut b2 = b.clone();
    for _ in 0..5 {
        b2.downloaded += 1;
        events.push(Event::TorrentSaved {
            torrent: Box::new(b2.clone()),
        });
    }
    events.extend([
        hook(HookEvent::TorrentAdded, c.clone(), json!({})),
        hook(HookEvent::TorrentError, b2.clone(), json!({"error": "x"})),
        hook(HookEvent::TorrentRemoved, c, json!({})),
        Event::TorrentDeleted { info_hash: h(4) },
        Event::MetricsRecorded {
            samples: vec![TorrentMetrics {
                info_hash: h(1),
                ..TorrentMetrics::default()
            }],
        },
        Event::TorrentsSaved {
            torrents: vec![a.clone(), b2.clone(), a.clone()],
        },
    ]);
    let second = events.len();
    // The same content again.
    events.push(Event::TorrentSaved {
        torrent: Box::new(a.clone()),
    });
    let third = events.len();
    events.push(Event::TorrentSaved {
        torrent: Box::new(a.clone()),
    });
    let fourth = events.len();
    let mut a2 = a.clone();
    a2.meta_info = meta("a, re-made");
    events.push(Event::TorrentSaved {
        torrent: Box::new(a2),
    });
    let events = envelopes(events);

    let mut projection = FileProjection::open(counting.clone(), DIR, flat()).unwrap();
    counting.take();
    projection.apply(&events[..first]).unwrap();
    let (created, removed) = counting.take();
    let mut expected = vec![
        "checkpoint.json.tmp".to_owned(),
        format!("{}.tmp", torrent_file(1)),
        format!("{}.tmp", torrent_file(4)),
        json(1),
        json(2),
        json(4),
    ];
    expected.sort();
    assert_eq!(created, expected);
    assert!(removed.is_empty());

    projection.apply(&events[first..second]).unwrap();
    let (created, removed) = counting.take();
    // a and b once each (a's metainfo is unchanged), c (added and removed) never, d removed.
    assert_eq!(
        created,
        ["checkpoint.json.tmp".to_owned(), json(1), json(2)]
    );
    assert_eq!(
        removed,
        [torrent_file(4), format!("torrents/{}.json", h(4).to_hex())]
    );
    assert_view(
        &projection.read_view().unwrap(),
        &expected_view(&events[..second]),
        "after the batch of saves",
    );

    projection.apply(&events[second..third]).unwrap();
    assert_eq!(
        counting.take(),
        (vec!["checkpoint.json.tmp".to_owned()], vec![])
    );

    // After reopening (metainfo not read on open), an identical save still writes nothing.
    drop(projection);
    let mut projection = FileProjection::open(counting.clone(), DIR, flat()).unwrap();
    counting.take();
    projection.apply(&events[third..fourth]).unwrap();
    assert_eq!(
        counting.take(),
        (vec!["checkpoint.json.tmp".to_owned()], vec![])
    );
    // New metainfo alone rewrites only the metadata file.
    projection.apply(&events[fourth..]).unwrap();
    let (created, _) = counting.take();
    assert_eq!(
        created,
        [
            "checkpoint.json.tmp".to_owned(),
            format!("{}.tmp", torrent_file(1))
        ]
    );
    assert_view(
        &projection.read_view().unwrap(),
        &expected_view(&events),
        "after new metainfo",
    );
}

/// A magnet whose float serde_json reads back one ulp off gets its metadata after a reopen:
/// the rewritten file keeps the exact float.
#[test]
fn floats_survive_reopening_exactly() {
    let h = InfoHash::V1([9; 20]);
    let mut magnet = torrent(h, "magnet");
    magnet.files.clear();
    magnet.percent_done = 0.9719863718547629;
    let mut with_meta = torrent(h, "magnet");
    with_meta.meta_info = meta("m");
    let events = envelopes(vec![
        hook(HookEvent::TorrentAdded, magnet, json!({})),
        hook(HookEvent::TorrentMetadata, with_meta, json!({})),
    ]);
    let storage = SimStorage::new();
    open(&storage, flat()).apply(&events[..1]).unwrap();
    let mut projection = open(&storage, flat());
    projection.apply(&events[1..]).unwrap();
    let state = State::from_envelopes(&events);
    let path = projection.torrent_path(&h);
    assert_eq!(
        storage.file_bytes(&path).unwrap(),
        state.torrents[&h].to_go_file_json_pretty().unwrap()
    );
    assert!(
        String::from_utf8(storage.file_bytes(&path).unwrap())
            .unwrap()
            .contains("\"percent_done\": 0.9719863718547629,")
    );
}

/// Partial updates (errors, metadata without metainfo, metadata filling files) right after a
/// reopen, when the mirror comes from the files alone.
#[test]
fn partial_updates_after_reopening() {
    let h = |n: u8| InfoHash::V1([n; 20]);
    let mut with_meta = torrent(h(1), "with-meta");
    with_meta.meta_info = meta("one");
    let mut magnet = torrent(h(2), "magnet");
    magnet.files.clear();
    magnet.priorities.clear();
    magnet.wanted.clear();
    magnet.meta_info = meta("two");
    let mut no_meta = with_meta.clone();
    no_meta.meta_info = None;
    no_meta.percent_done = 0.0;
    let mut files_only = torrent(h(2), "magnet");
    files_only.meta_info = None;
    let events = envelopes(vec![
        hook(HookEvent::TorrentAdded, with_meta.clone(), json!({})),
        hook(HookEvent::TorrentAdded, magnet, json!({})),
        hook(
            HookEvent::TorrentError,
            no_meta.clone(),
            json!({"error": "tracker"}),
        ),
        hook(HookEvent::TorrentMetadata, no_meta, json!({})),
        hook(HookEvent::TorrentMetadata, files_only, json!({})),
        hook(HookEvent::TorrentError, torrent(h(3), "unknown"), json!({})),
    ]);
    for options in [flat(), sharded()] {
        let storage = SimStorage::new();
        for (i, envelope) in events.iter().enumerate() {
            let mut projection = open(&storage, options);
            projection.apply(std::slice::from_ref(envelope)).unwrap();
            assert_view(
                &open(&storage, options).read_view().unwrap(),
                &expected_view(&events[..=i]),
                format!("after seq {} ({options:?})", envelope.seq),
            );
        }
    }
}

fn message(err: &Error) -> String {
    err.to_string()
}

/// (6) Damaged and foreign directories are refused with the file named; `open_empty` recovers.
#[test]
fn damaged_or_foreign_directories_are_refused() {
    let events = scripted(5);
    let events = &events[..200];
    let storage = SimStorage::new();
    open(&storage, flat()).apply(events).unwrap();
    let checkpoint = Path::new(DIR).join("checkpoint.json");

    // Garbage checkpoint.
    let good = storage.file_bytes(&checkpoint).unwrap();
    storage.put_file(&checkpoint, b"{\"format\": 1, \"seq\": ".to_vec());
    let err = FileProjection::open(Arc::new(storage.clone()), DIR, flat()).unwrap_err();
    assert!(
        message(&err).contains("/data/files/checkpoint.json"),
        "{err}"
    );
    // A newer format.
    storage.put_file(&checkpoint, br#"{"format": 2, "seq": 3}"#.to_vec());
    let err = FileProjection::open(Arc::new(storage.clone()), DIR, flat()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    storage.put_file(&checkpoint, good);

    // A damaged torrent file, then one holding another torrent.
    let state = State::from_envelopes(events);
    let (h, _) = state.torrents.iter().next().unwrap();
    let projection = open(&storage, flat());
    let path = projection.torrent_path(h);
    drop(projection);
    let good = storage.file_bytes(&path).unwrap();
    storage.put_file(&path, good[..good.len() / 2].to_vec());
    let err = FileProjection::open(Arc::new(storage.clone()), DIR, flat()).unwrap_err();
    assert!(message(&err).contains(&h.to_hex()), "{err}");
    let other = torrent(InfoHash::V1([0x77; 20]), "other");
    storage.put_file(&path, other.to_go_file_json_pretty().unwrap());
    let err = FileProjection::open(Arc::new(storage.clone()), DIR, flat()).unwrap_err();
    assert!(message(&err).contains("holds torrent 7777"), "{err}");

    // open_empty discards everything; a rebuild restores the view.
    let mut projection =
        FileProjection::open_empty(Arc::new(storage.clone()), DIR, flat()).unwrap();
    assert_eq!(projection.checkpoint(), Checkpoint::default());
    assert_eq!(
        names(&projection.tree_listing().unwrap()),
        ["checkpoint.json"]
    );
    projection.apply(events).unwrap();
    assert_view(
        &projection.read_view().unwrap(),
        &expected_view(events),
        "rebuilt after open_empty",
    );

    // A go-i2p-bt data directory (no checkpoint.json) is not touched.
    let go = SimStorage::new();
    let go_dir = Path::new("/go");
    go.create_dir_all(&go_dir.join("torrents")).unwrap();
    let file = go_dir
        .join("torrents")
        .join(format!("{}.json", other.info_hash));
    go.put_file(&file, other.to_go_file_json_pretty().unwrap());
    let err = FileProjection::open(Arc::new(go.clone()), go_dir, flat()).unwrap_err();
    assert!(message(&err).contains("no checkpoint.json"), "{err}");
    assert!(go.file_bytes(&file).is_some());
    assert!(go.file_bytes(&go_dir.join("checkpoint.json")).is_none());
}

/// (7) Reset empties the directory; a reset cut short by a crash finishes on reopen.
#[test]
fn reset_and_interrupted_reset() {
    let events = scripted(6);
    let events = &events[..300];
    let base = SimStorage::new();
    open(&base, flat()).apply(events).unwrap();
    let full = expected_view(events);
    for k in 0.. {
        let sim = base.crash(CrashFill::Drop);
        let mut projection = open(&sim, flat());
        sim.crash_after(k);
        let done = projection.reset().is_ok();
        let image = sim.crash(CrashFill::Drop);
        let reopened = open(&image, flat());
        match reopened.checkpoint().seq {
            0 => {
                assert_eq!(
                    names(&reopened.tree_listing().unwrap()),
                    ["checkpoint.json"]
                );
                assert_view(
                    &reopened.read_view().unwrap(),
                    &FileView::default(),
                    "reset",
                );
            }
            seq => {
                assert!(!done, "k {k}");
                assert_eq!(seq, events.len() as u64);
                assert_view(&reopened.read_view().unwrap(), &full, format!("k {k}"));
            }
        }
        if done {
            assert_eq!(projection.checkpoint(), Checkpoint::default());
            assert!(projection.is_empty());
            break;
        }
    }
}

/// Metrics-only batches advance the checkpoint and write nothing else; empty batches are
/// no-ops; gaps are refused.
#[test]
fn metrics_only_empty_and_gapped_batches() {
    let events = scripted(7);
    let storage = SimStorage::new();
    let mut projection = open(&storage, flat());
    projection.apply(&events[..50]).unwrap();
    let before = projection.tree_listing().unwrap();
    let metrics = envelopes(
        events
            .iter()
            .map(|e| e.event.clone())
            .take(50)
            .chain(std::iter::once(Event::MetricsPurged {
                older_than: start(),
            }))
            .collect(),
    );
    projection.apply(&metrics[50..]).unwrap();
    let after = projection.tree_listing().unwrap();
    assert_eq!(projection.checkpoint(), Checkpoint::of(&metrics[50]));
    let without_checkpoint = |l: Vec<(String, Vec<u8>)>| {
        l.into_iter()
            .filter(|(n, _)| n != "checkpoint.json")
            .collect::<Vec<_>>()
    };
    assert_eq!(without_checkpoint(before), without_checkpoint(after));

    projection.apply(&[]).unwrap();
    assert_eq!(projection.checkpoint(), Checkpoint::of(&metrics[50]));
    let err = projection.apply(&events[52..53]).unwrap_err();
    assert!(message(&err).contains("expected 52"), "{err}");
    assert_eq!(projection.name(), "files");
}

/// Files get 0644 and directories 0755 by default (the seed's advice); stricter modes apply to
/// every file the projection writes, the checkpoint included.
#[test]
fn permission_modes_are_applied_on_the_real_file_system() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let envelopes = script_envelopes_for_modes();
    for (options, file_mode, dir_mode) in [
        (FileProjectionOptions::default(), 0o644, 0o755),
        (
            FileProjectionOptions {
                shard: true,
                dir_mode: 0o700,
                file_mode: 0o600,
            },
            0o600,
            0o700,
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("files");
        let mut projection = FileProjection::open(
            Arc::new(torrent_journal::storage::RealStorage),
            &dir,
            options,
        )
        .unwrap();
        projection.apply(&envelopes).unwrap();
        let mut seen_files = 0;
        for (relative, _) in projection.tree_listing().unwrap() {
            let path = dir.join(&relative);
            assert_eq!(mode(&path), file_mode, "{relative}");
            assert_eq!(mode(path.parent().unwrap()), dir_mode, "{relative}");
            seen_files += 1;
        }
        assert!(
            seen_files >= 3,
            "checkpoint, session and torrents: {seen_files}"
        );
    }
}

fn script_envelopes_for_modes() -> Vec<Envelope> {
    let sim = torrent_journal::simulate::Simulation {
        seed: 5,
        torrents: 3,
        events: 30,
        tasks: 1,
        start: Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    };
    sim.task(0)
        .enumerate()
        .map(|(i, e)| {
            Envelope::new(
                i as u64 + 1,
                Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + i as i64),
                e,
            )
        })
        .collect()
}
