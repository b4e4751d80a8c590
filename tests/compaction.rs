//! Compaction (`src/compaction.rs`): it never changes the state at the head nor at any point
//! the retention keeps (proptest over random append/compact interleavings with a live writer);
//! a simulated power cut after *every* storage operation inside a compaction (after the tmp
//! write, after the rename, between segment removals, …) leaves a store that opens to the same
//! state and that a rerun compacts to the same result; archive mode moves segments aside and
//! can restore from before the live window (and notices a missing archived segment); a live
//! writer — appending from another thread while compactions run — is never disturbed; two
//! compactions exclude each other; tombstones let a removal be undone after its event was
//! compacted away, and expire after their window; compaction keeps two generations — it
//! removes only the segments the *previous* verified snapshot covers (nothing on a first
//! compaction), never removes that snapshot (whatever `keep_snapshots` says), never takes a
//! damaged one for it — so one flipped bit in the newest snapshot loses nothing: every point
//! from the previous snapshot to the head still restores.
//!
//! How: journals are written through the real `Journal` writer with a `ManualClock` advanced
//! one second before each append, on `SimStorage` (crash images via `crash_after` + `crash`) or
//! on a temp dir (`RealStorage`); expected states are folds of the appended envelopes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use torrent_journal::Error;
use torrent_journal::compaction::{self, CompactOptions, CompactReport, Retention};
use torrent_journal::event::{Envelope, Event, HookRecord};
use torrent_journal::history::{self, Target};
use torrent_journal::journal::JournalOptions;
use torrent_journal::model::{HookEvent, InfoHash, ManualClock, Timestamp, TorrentState};
use torrent_journal::simulate::Simulation;
use torrent_journal::snapshot;
use torrent_journal::state::State;
use torrent_journal::storage::{CrashFill, RealStorage, SimStorage, Storage};
use torrent_journal::{Journal, JournalReader};

const DIR: &str = "/store";
const ARCHIVE: &str = "/archive";
const START: i64 = 1_700_000_000_000_000_000;
const SECOND: i64 = 1_000_000_000;
const SEGMENT_BYTES: u64 = 4096;

fn sim_events(seed: u64, torrents: usize, count: usize) -> Vec<Event> {
    Simulation {
        seed,
        torrents,
        events: count,
        tasks: 1,
        start: Timestamp::from_unix_nanos(START),
    }
    .task(0)
    .collect()
}

fn open(storage: Arc<dyn Storage>, dir: &Path, clock: &ManualClock) -> Journal {
    Journal::open_with(
        dir,
        JournalOptions {
            storage,
            clock: Arc::new(clock.clone()),
            segment_size_bytes: SEGMENT_BYTES,
            ..JournalOptions::default()
        },
    )
    .unwrap()
}

/// A journal being written, and what was written to it.
struct Store {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    clock: ManualClock,
    journal: Journal,
    envelopes: Vec<Envelope>,
}

impl Store {
    fn sim(storage: &SimStorage) -> Store {
        let storage: Arc<dyn Storage> = Arc::new(storage.clone());
        let clock = ManualClock::new(Timestamp::from_unix_nanos(START));
        let journal = open(Arc::clone(&storage), Path::new(DIR), &clock);
        Store {
            storage,
            dir: PathBuf::from(DIR),
            clock,
            journal,
            envelopes: Vec::new(),
        }
    }

    fn real(dir: &Path) -> Store {
        let storage: Arc<dyn Storage> = Arc::new(RealStorage);
        let clock = ManualClock::new(Timestamp::from_unix_nanos(START));
        let journal = open(Arc::clone(&storage), dir, &clock);
        Store {
            storage,
            dir: dir.to_path_buf(),
            clock,
            journal,
            envelopes: Vec::new(),
        }
    }

    /// Appends each event one second after the previous one.
    fn append(&mut self, events: &[Event]) {
        self.append_every(events, SECOND);
    }

    fn append_every(&mut self, events: &[Event], step_nanos: i64) {
        for event in events {
            self.clock.advance_nanos(step_nanos);
            let receipt = self.journal.append(event).unwrap();
            self.envelopes
                .push(Envelope::new(receipt.first_seq, receipt.at, event.clone()));
        }
    }

    fn head(&self) -> u64 {
        self.envelopes.len() as u64
    }

    fn fold(&self, n: u64) -> State {
        State::from_envelopes(&self.envelopes[..n as usize])
    }

    fn compact(&self, options: &CompactOptions) -> CompactReport {
        compaction::compact(Arc::clone(&self.storage), &self.dir, options).unwrap()
    }

    fn state_at(&self, target: Target) -> State {
        history::state_at(Arc::clone(&self.storage), &self.dir, target)
            .unwrap()
            .state
    }

    fn earliest(&self) -> u64 {
        history::earliest_restorable(Arc::clone(&self.storage), &self.dir, None)
            .unwrap()
            .unwrap()
            .seq
    }

    fn first_live_seq(&self) -> u64 {
        JournalReader::with_storage(Arc::clone(&self.storage), &self.dir)
            .unwrap()
            .segments()
            .unwrap()[0]
            .first_seq
    }
}

/// Every seq from `from` to `store`'s head restores to the fold.
fn assert_restorable_from(store: &Store, from: u64) {
    for n in from..=store.head() {
        assert_eq!(store.state_at(Target::Seq(n)), store.fold(n), "seq {n}");
    }
}

#[derive(Debug, Clone)]
enum Step {
    Append(usize),
    Compact(Retention),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..25).prop_map(Step::Append),
        1 => Just(Step::Compact(Retention::None)),
        1 => (0u64..40).prop_map(|n| Step::Compact(Retention::Events(n))),
        1 => (0u64..40).prop_map(|s| Step::Compact(Retention::Duration(Duration::from_secs(s)))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn compaction_never_changes_the_head_nor_any_retained_point(
        seed in any::<u64>(),
        torrents in 1usize..6,
        steps in proptest::collection::vec(step(), 1..9),
        archive in any::<bool>(),
    ) {
        let total: usize = steps.iter().map(|s| match s { Step::Append(n) => *n, _ => 0 }).sum();
        let events = sim_events(seed, torrents, total + 1);
        let storage = SimStorage::new();
        let mut store = Store::sim(&storage);
        let options = |retain| CompactOptions {
            retain,
            archive: archive.then(|| PathBuf::from(ARCHIVE)),
            ..CompactOptions::default()
        };
        let mut next = 0;
        for step in &steps {
            match *step {
                Step::Append(n) => {
                    store.append(&events[next..next + n]);
                    next += n;
                }
                Step::Compact(retain) => {
                    let before = store.earliest();
                    let head = store.head();
                    let report = store.compact(&options(retain));
                    prop_assert_eq!(store.state_at(Target::Head), store.fold(head));
                    let after = store.earliest();
                    prop_assert!(after >= before, "compaction never makes history restorable again");
                    // What the retention keeps stays restorable.
                    let boundary = match retain {
                        Retention::None => head,
                        Retention::Events(n) => head.saturating_sub(n),
                        Retention::Duration(d) => {
                            let head_at = store.envelopes.last().map_or(0, |e| e.at.as_unix_nanos());
                            let cutoff = head_at - d.as_nanos() as i64;
                            store.envelopes.iter().take_while(|e| e.at.as_unix_nanos() < cutoff).count() as u64
                        }
                    };
                    prop_assert!(after <= before.max(boundary), "earliest {after}, before {before}, boundary {boundary}");
                    if head > 0 && boundary >= before && boundary > 0 {
                        // At the boundary, unless no sealed segment lay wholly before it: then
                        // nothing is written (a snapshot would only add bytes).
                        match report.snapshot_seq {
                            Some(seq) => prop_assert_eq!(seq, boundary),
                            None => prop_assert!(
                                !report.snapshot_written && report.segments_removed.is_empty()
                            ),
                        }
                    }
                }
            }
        }
        let earliest = store.earliest();
        assert_restorable_from(&store, earliest);
        if archive && store.storage.is_dir(Path::new(ARCHIVE)) {
            for n in 0..=store.head() {
                let point = history::state_at_with_archive(
                    Arc::clone(&store.storage), DIR, Some(Path::new(ARCHIVE)), Target::Seq(n),
                ).unwrap();
                prop_assert_eq!(point.state, store.fold(n), "seq {} with the archive", n);
            }
        }

        // The writer reopens after compaction and continues where it was.
        store.journal.close().unwrap();
        store.journal = open(Arc::clone(&store.storage), Path::new(DIR), &store.clock);
        store.append(&events[next..next + 1]);
        prop_assert_eq!(store.state_at(Target::Head), store.fold(store.head()));
        store.journal.close().unwrap();
    }
}

/// A closed journal on simulated storage that has been compacted once already (so the next
/// compaction has an older snapshot to prune and tombstones to inherit), holding a removal.
fn crash_fixture() -> (SimStorage, Vec<Envelope>) {
    let storage = SimStorage::new();
    let mut store = Store::sim(&storage);
    let mut events = sim_events(5, 6, 70);
    let sim = Simulation {
        seed: 5,
        torrents: 6,
        events: 70,
        tasks: 1,
        start: Timestamp::from_unix_nanos(START),
    };
    events.insert(
        30,
        Event::TorrentDeleted {
            info_hash: sim.info_hash(0),
        },
    );
    store.append(&events[..40]);
    store.compact(&CompactOptions::default());
    store.append(&events[40..]);
    store.journal.close().unwrap();
    (storage, store.envelopes)
}

fn crash_at_every_operation(options: &CompactOptions) {
    let (base, envelopes) = crash_fixture();
    let head = envelopes.len() as u64;
    let expected = State::from_envelopes(&envelopes);
    let dyn_storage = |s: &SimStorage| -> Arc<dyn Storage> { Arc::new(s.clone()) };

    // One uninterrupted run: how many operations it takes, and what it leaves.
    let probe = base.crash(CrashFill::Drop);
    let report = compaction::compact(dyn_storage(&probe), DIR, options).unwrap();
    let ops = probe.op_count();
    assert!(
        report.snapshot_written && !report.segments_removed.is_empty(),
        "{report:?}"
    );
    assert!(ops >= 8, "{ops} operations");
    let earliest_after = history::earliest_restorable(dyn_storage(&probe), DIR, None)
        .unwrap()
        .unwrap()
        .seq;

    for k in 0..ops {
        let storage = base.crash(CrashFill::Drop);
        storage.crash_after(k);
        let crashed = compaction::compact(dyn_storage(&storage), DIR, options);
        assert!(crashed.is_err(), "crash after {k} of {ops} operations");
        let fill = match k % 3 {
            0 => CrashFill::Drop,
            1 => CrashFill::Zeros,
            _ => CrashFill::Garbage(k),
        };
        let image = dyn_storage(&storage.crash(fill));

        // The writer opens the crashed store, and the state is the same.
        let clock = ManualClock::new(Timestamp::from_unix_nanos(START + 1_000 * SECOND));
        let journal = open(Arc::clone(&image), Path::new(DIR), &clock);
        journal.close().unwrap();
        let point = history::state_at(Arc::clone(&image), DIR, Target::Head).unwrap();
        assert_eq!(
            point.state, expected,
            "head after a crash after {k} of {ops} operations"
        );
        let earliest = history::earliest_restorable(Arc::clone(&image), DIR, None)
            .unwrap()
            .unwrap()
            .seq;
        assert!(
            earliest <= earliest_after,
            "crash after {k}: earliest {earliest}"
        );
        for n in [earliest, (earliest + head) / 2, head] {
            let point = history::state_at(Arc::clone(&image), DIR, Target::Seq(n)).unwrap();
            assert_eq!(
                point.state,
                State::from_envelopes(&envelopes[..n as usize]),
                "seq {n} after a crash after {k}"
            );
        }

        // Rerunning finishes the job exactly as the uninterrupted run did.
        let rerun = compaction::compact(Arc::clone(&image), DIR, options).unwrap();
        assert_eq!(rerun.snapshot_seq, report.snapshot_seq, "rerun after {k}");
        let point = history::state_at(Arc::clone(&image), DIR, Target::Head).unwrap();
        assert_eq!(point.state, expected, "head after the rerun after {k}");
        let earliest = history::earliest_restorable(Arc::clone(&image), DIR, None)
            .unwrap()
            .unwrap()
            .seq;
        assert_eq!(earliest, earliest_after, "rerun after {k}");
    }
}

#[test]
fn a_crash_at_any_operation_of_a_compaction_to_the_head_loses_nothing() {
    crash_at_every_operation(&CompactOptions::default());
}

#[test]
fn a_crash_at_any_operation_of_an_archiving_compaction_loses_nothing() {
    crash_at_every_operation(&CompactOptions {
        retain: Retention::Events(10),
        archive: Some(PathBuf::from(ARCHIVE)),
        ..CompactOptions::default()
    });
}

#[test]
fn a_crash_at_any_operation_of_a_time_retention_compaction_loses_nothing() {
    crash_at_every_operation(&CompactOptions {
        retain: Retention::Duration(Duration::from_secs(15)),
        keep_snapshots: 1,
        ..CompactOptions::default()
    });
}

#[test]
fn archived_segments_restore_history_before_the_live_window() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let archive = tmp.path().join("archive");
    let events = sim_events(13, 5, 90);
    let mut store = Store::real(&dir);
    let options = |retain| CompactOptions {
        retain,
        archive: Some(archive.clone()),
        ..CompactOptions::default()
    };
    store.append(&events[..60]);
    // The first compaction has no previous generation: it writes the snapshot, moves nothing.
    let first = store.compact(&options(Retention::None));
    assert_eq!(first.snapshot_seq, Some(60));
    assert_eq!(first.previous_snapshot_seq, Some(0));
    assert!(first.segments_removed.is_empty(), "{first:?}");
    store.append(&events[60..]);
    // The second moves what the first snapshot covers.
    let second = store.compact(&options(Retention::Events(5)));
    assert_eq!(second.snapshot_seq, Some(85));
    assert_eq!(second.previous_snapshot_seq, Some(60));
    assert_eq!(
        second.segments_removed.len(),
        second.segments_archived.len()
    );
    assert!(!second.segments_archived.is_empty());
    for (removed, archived) in second
        .segments_removed
        .iter()
        .zip(&second.segments_archived)
    {
        assert!(!removed.exists() && archived.exists());
        assert_eq!(removed.file_name(), archived.file_name());
    }
    assert!(store.first_live_seq() <= 61, "the journal continues seq 60");

    // The live window alone starts late…
    let earliest = store.earliest();
    assert!(earliest >= 60, "{earliest}");
    let err = history::state_at(Arc::clone(&store.storage), &dir, Target::Seq(1)).unwrap_err();
    assert!(
        err.to_string().contains("earliest restorable point"),
        "{err}"
    );
    // …but with the archive every point is back, by seq and by time.
    let with_archive = |target| {
        history::state_at_with_archive(Arc::clone(&store.storage), &dir, Some(&archive), target)
    };
    assert_eq!(
        history::earliest_restorable(Arc::clone(&store.storage), &dir, Some(&archive))
            .unwrap()
            .unwrap()
            .seq,
        0
    );
    for n in 0..=store.head() {
        assert_eq!(
            with_archive(Target::Seq(n)).unwrap().state,
            store.fold(n),
            "seq {n}"
        );
    }
    let at = store.envelopes[9].at;
    assert_eq!(with_archive(Target::Time(at)).unwrap().seq, 10);

    // A missing archived segment is a sequence break, not a silently shorter history.
    store.journal.close().unwrap();
    let mut archived: Vec<PathBuf> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    archived.sort();
    assert!(archived.len() >= 3);
    std::fs::remove_file(&archived[1]).unwrap();
    let after_gap: u64 = archived[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(with_archive(Target::Seq(1)).unwrap().state, store.fold(1));
    let err = with_archive(Target::Seq(after_gap)).unwrap_err();
    assert!(err.to_string().contains("sequence break"), "{err}");
}

#[test]
fn compaction_runs_beside_a_live_writer_without_its_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let events = sim_events(17, 6, 160);
    let mut store = Store::real(&dir);
    store.append(&events[..20]);
    let storage = Arc::clone(&store.storage);
    let compactor_dir = dir.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor_done = Arc::clone(&done);
    // Compactions in a loop on another thread while this one appends (and rotates).
    let compactor = std::thread::spawn(move || {
        let mut runs = 0;
        let mut removed = 0;
        while !compactor_done.load(std::sync::atomic::Ordering::SeqCst) || runs < 2 {
            let report = compaction::compact(
                Arc::clone(&storage),
                &compactor_dir,
                &CompactOptions {
                    retain: Retention::Events(10),
                    ..CompactOptions::default()
                },
            )
            .unwrap();
            runs += 1;
            removed += report.segments_removed.len();
        }
        (runs, removed)
    });
    store.append(&events[20..]);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (runs, removed) = compactor.join().unwrap();
    assert!(
        runs >= 2 && removed > 0,
        "{runs} runs removed {removed} segments"
    );

    assert_eq!(store.state_at(Target::Head), store.fold(store.head()));
    let reader = JournalReader::open(&dir).unwrap();
    let first = store.first_live_seq();
    assert!(first > 1);
    let seqs: Vec<u64> = reader
        .events(first)
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(seqs, (first..=store.head()).collect::<Vec<_>>());
    assert_restorable_from(&store, store.earliest());

    // The writer closes and reopens on the compacted journal and carries on.
    store.journal.close().unwrap();
    store.journal = open(Arc::clone(&store.storage), &dir, &store.clock);
    store.append(&sim_events(18, 2, 5));
    assert_eq!(store.state_at(Target::Head), store.fold(store.head()));
    store.journal.close().unwrap();
}

#[test]
fn a_second_compaction_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut store = Store::real(&dir);
    store.append(&sim_events(2, 2, 10));
    let held = RealStorage
        .try_lock(&dir.join(compaction::COMPACT_LOCK_FILE_NAME), 4242)
        .unwrap()
        .unwrap();
    let err = compaction::compact(Arc::clone(&store.storage), &dir, &CompactOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::CompactionRunning {
                pid: Some(4242),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("(pid 4242)"), "{err}");
    drop(held);
    let report = store.compact(&CompactOptions::default());
    assert_eq!(report.snapshot_seq, Some(10));
    // Nothing new: a rerun reuses the snapshot and removes nothing.
    let again = store.compact(&CompactOptions::default());
    assert_eq!(again.snapshot_seq, Some(10));
    assert!(!again.snapshot_written && again.segments_removed.is_empty());
    store.journal.close().unwrap();
}

#[test]
fn the_segment_before_a_torn_last_segment_is_never_removed() {
    let storage = SimStorage::new();
    let mut store = Store::sim(&storage);
    store.append(&sim_events(23, 3, 30));
    store.journal.close().unwrap();
    // A crash while the next segment was being created left a prefix of its header.
    let journal_dir = Path::new(DIR).join("journal");
    let next = journal_dir.join(format!("{:020}.seg", store.head() + 1));
    storage.put_file(&next, b"TJSEG".to_vec());
    let segments_before = JournalReader::with_storage(Arc::clone(&store.storage), DIR)
        .unwrap()
        .segments()
        .unwrap();
    let before_last = segments_before[segments_before.len() - 2].path.clone();

    let result = compaction::compact(Arc::clone(&store.storage), DIR, &CompactOptions::default());
    if let Ok(report) = &result {
        assert!(
            !report.segments_removed.contains(&before_last),
            "{report:?}"
        );
    }
    assert!(storage.exists(&before_last), "{result:?}");

    // The writer's recovery removes the torn segment and continues the one before it.
    store.journal = open(Arc::clone(&store.storage), Path::new(DIR), &store.clock);
    store.append(&sim_events(24, 2, 3));
    assert_eq!(store.state_at(Target::Head), store.fold(store.head()));
    store.compact(&CompactOptions::default());
    assert_eq!(store.state_at(Target::Head), store.fold(store.head()));
    store.journal.close().unwrap();
}

#[test]
fn an_empty_journal_has_nothing_to_compact() {
    let storage = SimStorage::new();
    let store = Store::sim(&storage);
    let report = store.compact(&CompactOptions::default());
    assert_eq!(report.snapshot_seq, None);
    assert!(report.segments_removed.is_empty());
    store.journal.close().unwrap();
}

fn torrent(n: u8, name: &str) -> TorrentState {
    TorrentState::sample(
        InfoHash::V1([n; 20]),
        name,
        Timestamp::from_unix_nanos(START),
    )
}

fn saved(torrent: &TorrentState) -> Event {
    Event::TorrentSaved {
        torrent: Box::new(torrent.clone()),
    }
}

fn hook(event: HookEvent, torrent: &TorrentState) -> Event {
    Event::Hook(HookRecord {
        event,
        torrent: Box::new(torrent.clone()),
        data: serde_json::Map::new(),
        timestamp: Timestamp::from_unix_nanos(START),
    })
}

/// `n` saves of torrent `y`, each with more uploaded.
fn fillers(y: &mut TorrentState, n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| {
            y.uploaded += 1;
            saved(y)
        })
        .collect()
}

#[test]
fn tombstones_undo_a_removal_after_its_event_was_compacted_away_then_expire() {
    let storage = SimStorage::new();
    let mut store = Store::sim(&storage);
    let x = torrent(1, "x");
    let mut y = torrent(2, "y");
    let mut started = x.clone();
    started.status = 4;
    store.append(&[
        saved(&x),
        saved(&y),
        hook(HookEvent::TorrentStarted, &started),
    ]);
    // The removal hook carries an older snapshot: the tombstone keeps the reducer's state.
    store.append(&[hook(HookEvent::TorrentRemoved, &x)]);
    let removed_seq = store.head();
    let before_removal = store.fold(removed_seq - 1).torrents[&x.info_hash].clone();
    assert_eq!(*before_removal, started);
    let filler = fillers(&mut y, 12);
    store.append(&filler);

    // Two compactions: the second removes what the first snapshot covers.
    store.compact(&CompactOptions::default());
    let filler = fillers(&mut y, 12);
    store.append(&filler);
    store.compact(&CompactOptions::default());
    assert!(
        store.first_live_seq() > removed_seq,
        "the removal event is compacted away"
    );
    let find = |store: &Store, hash: &InfoHash| {
        history::find_tombstone(Arc::clone(&store.storage), DIR, hash).unwrap()
    };
    let tombstone = find(&store, &x.info_hash).expect("a tombstone for x");
    assert_eq!(tombstone.removed_seq, removed_seq);
    assert_eq!(tombstone.last, started);
    assert_eq!(
        tombstone.removed_at,
        store.envelopes[removed_seq as usize - 1].at
    );
    assert!(find(&store, &y.info_hash).is_none(), "y is live");

    // It survives the next compaction (inherited from the previous snapshot).
    let filler = fillers(&mut y, 12);
    store.append(&filler);
    let report = store.compact(&CompactOptions::default());
    assert_eq!(report.tombstones, 1);
    let (_, newest) = snapshot::load_newest(&*store.storage, Path::new(DIR), None)
        .unwrap()
        .unwrap();
    assert_eq!(newest.tombstones.len(), 1);
    assert_eq!(find(&store, &x.info_hash), Some(tombstone.clone()));

    // Undelete: append the event it gives; x is back exactly as it was.
    store.append(&[history::undelete_event(&tombstone)]);
    assert_eq!(
        store.state_at(Target::Head).torrents[&x.info_hash],
        before_removal
    );
    assert!(find(&store, &x.info_hash).is_none(), "x is live again");

    // Removed again, then more than the window (7 days) passes before the next compaction:
    // the tombstone expires with its event.
    store.append(&[Event::TorrentDeleted {
        info_hash: x.info_hash,
    }]);
    let deleted_seq = store.head();
    assert!(find(&store, &x.info_hash).is_some());
    let filler = fillers(&mut y, 12);
    store.append_every(&filler, 86_400 * SECOND);
    let report = store.compact(&CompactOptions::default());
    assert_eq!(report.tombstones, 0);
    // The next compaction removes the deletion event itself (the previous snapshot covers it).
    let filler = fillers(&mut y, 12);
    store.append(&filler);
    let report = store.compact(&CompactOptions::default());
    assert!(store.first_live_seq() > deleted_seq);
    assert_eq!(report.tombstones, 0);
    assert!(find(&store, &x.info_hash).is_none());
    assert_eq!(store.state_at(Target::Head), store.fold(store.head()));
    store.journal.close().unwrap();
}

/// Flips one bit in the middle of a file.
fn flip_middle_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn compaction_keeps_two_generations_so_a_damaged_newest_snapshot_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let events = sim_events(31, 5, 120);
    let mut store = Store::real(&dir);
    store.append(&events[..40]);
    let first = store.compact(&CompactOptions::default());
    assert_eq!(
        (first.snapshot_seq, first.previous_snapshot_seq),
        (Some(40), Some(0))
    );
    assert!(first.segments_removed.is_empty(), "{first:?}");
    assert_eq!(store.first_live_seq(), 1);

    // The second removes only what the first snapshot covers — even with keep_snapshots 1, the
    // previous generation stays.
    store.append(&events[40..80]);
    let options = CompactOptions {
        retain: Retention::Events(5),
        keep_snapshots: 1,
        ..CompactOptions::default()
    };
    let second = store.compact(&options);
    assert_eq!(
        (second.snapshot_seq, second.previous_snapshot_seq),
        (Some(75), Some(40))
    );
    assert!(!second.segments_removed.is_empty(), "{second:?}");
    let first_live = store.first_live_seq();
    assert!(
        first_live > 1 && first_live <= 41,
        "first live {first_live}"
    );
    let snapshots: Vec<u64> = snapshot::list_snapshots(&RealStorage, &dir)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(snapshots, [40, 75]);

    // One flipped bit in the newest snapshot: every point from the previous one to the head
    // still restores, from the previous snapshot.
    flip_middle_bit(second.snapshot_path.as_ref().unwrap());
    let head = history::state_at(Arc::clone(&store.storage), &dir, Target::Head).unwrap();
    assert_eq!((head.state, head.snapshot), (store.fold(80), Some(40)));
    assert_eq!(store.earliest(), 40);
    assert_restorable_from(&store, 40);

    // The next compaction does not take the damaged one for the previous generation.
    store.append(&events[80..110]);
    let third = store.compact(&options);
    assert_eq!(
        (third.snapshot_seq, third.previous_snapshot_seq),
        (Some(105), Some(40))
    );
    assert_eq!(store.state_at(Target::Head), store.fold(110));
    // A fourth, once the third's snapshot is the previous generation, moves on past seq 40.
    store.append(&events[110..]);
    let fourth = store.compact(&options);
    assert_eq!(fourth.previous_snapshot_seq, Some(105));
    assert!(store.first_live_seq() > 41 && store.first_live_seq() <= 106);
    flip_middle_bit(fourth.snapshot_path.as_ref().unwrap());
    assert_eq!(store.state_at(Target::Head), store.fold(120));
    store.journal.close().unwrap();
}

#[test]
fn a_rerun_at_the_same_boundary_keeps_the_previous_generation() {
    let storage = SimStorage::new();
    let mut store = Store::sim(&storage);
    let events = sim_events(37, 4, 60);
    store.append(&events[..30]);
    store.compact(&CompactOptions::default());
    store.append(&events[30..]);
    let second = store.compact(&CompactOptions::default());
    assert_eq!(second.previous_snapshot_seq, Some(30));
    let again = store.compact(&CompactOptions::default());
    assert!(!again.snapshot_written && again.segments_removed.is_empty());
    assert_eq!(again.previous_snapshot_seq, Some(30));
    assert!(store.first_live_seq() <= 31);
    store.journal.close().unwrap();
}
