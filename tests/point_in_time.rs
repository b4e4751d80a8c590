//! Point-in-time reads (`src/snapshot/history.rs`): for random event streams, random snapshot points
//! and random targets, `state_at(Seq(n))` equals folding the first `n` events with the reducer,
//! a time target picks the last event committed at or before it (batches share a commit time),
//! and a target before the retained history is an error stating the earliest restorable seq and
//! time. Also: one torrent's history, and parsing targets.
//!
//! How: journals are written on `SimStorage` through the real `Journal` writer, with a
//! `ManualClock` advanced one second before each append (or batch), from the deterministic
//! `Simulation` with a random seed and size; the expected states are folds of the envelopes the
//! receipts describe. Snapshots are written with `testing::format::write_snapshot` at random seqs.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::event::{Envelope, Event};
use torrent_journal::history::{self, RestorePoint, Target};
use torrent_journal::journal::JournalOptions;
use torrent_journal::model::{ManualClock, Timestamp};
use torrent_journal::simulate::Simulation;
use torrent_journal::snapshot::SnapshotBody;
use torrent_journal::state::State;
use torrent_journal::storage::{SimStorage, Storage};
use torrent_journal::{Journal, JournalReader};

const DIR: &str = "/store";
const START: i64 = 1_700_000_000_000_000_000;
const SECOND: i64 = 1_000_000_000;

fn events(seed: u64, torrents: usize, count: usize) -> Vec<Event> {
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

/// Writes `events` to a fresh simulated journal in batches of the given sizes (cycled), the
/// clock one second later for each batch; returns the storage and the envelopes.
fn write_journal(events: &[Event], batches: &[usize]) -> (SimStorage, Vec<Envelope>) {
    let storage = SimStorage::new();
    let clock = ManualClock::new(Timestamp::from_unix_nanos(START));
    let journal = Journal::open_with(
        DIR,
        JournalOptions {
            storage: Arc::new(storage.clone()),
            clock: Arc::new(clock.clone()),
            segment_size_bytes: 4096,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    let mut envelopes = Vec::new();
    let mut rest = events;
    let mut sizes = batches.iter().copied().cycle();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(1).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(size);
        clock.advance_nanos(SECOND);
        let receipt = journal.append_all(batch).unwrap();
        for (i, event) in batch.iter().enumerate() {
            envelopes.push(Envelope::new(
                receipt.first_seq + i as u64,
                receipt.at,
                event.clone(),
            ));
        }
        rest = tail;
    }
    journal.close().unwrap();
    (storage, envelopes)
}

fn shared(storage: &SimStorage) -> Arc<dyn Storage> {
    Arc::new(storage.clone())
}

fn fold(envelopes: &[Envelope], n: usize) -> State {
    State::from_envelopes(&envelopes[..n])
}

fn write_snapshot_at(storage: &SimStorage, envelopes: &[Envelope], n: usize) {
    let body = SnapshotBody {
        state: fold(envelopes, n),
        tombstones: Vec::new(),
    };
    torrent_journal::testing::format::write_snapshot(storage, Path::new(DIR), &body).unwrap();
}

/// The seq a time target must resolve to: the last event committed at or before `at`.
fn expected_seq_at(envelopes: &[Envelope], at: Timestamp) -> usize {
    envelopes.iter().take_while(|e| e.at <= at).count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn state_at_seq_and_time_equal_the_fold(
        seed in any::<u64>(),
        torrents in 1usize..8,
        count in 1usize..90,
        batches in proptest::collection::vec(1usize..4, 1..4),
        snapshot_points in proptest::collection::vec(0.0f64..=1.0, 0..4),
        targets in proptest::collection::vec(0.0f64..=1.0, 1..6),
        offsets in proptest::collection::vec(0i64..SECOND, 1..6),
    ) {
        let events = events(seed, torrents, count);
        let (storage, envelopes) = write_journal(&events, &batches);
        let total = envelopes.len();
        let pick = |f: f64| ((f * total as f64).round() as usize).min(total);
        for &p in &snapshot_points {
            let n = pick(p);
            if n > 0 {
                write_snapshot_at(&storage, &envelopes, n);
            }
        }
        let storage = shared(&storage);

        for &t in &targets {
            let n = pick(t);
            let point = history::state_at(Arc::clone(&storage), DIR, Target::Seq(n as u64)).unwrap();
            prop_assert_eq!(point.seq, n as u64);
            prop_assert_eq!(&point.state, &fold(&envelopes, n));
            if let Some(base) = point.snapshot {
                prop_assert!(base <= n as u64);
            }
        }
        let head = history::state_at(Arc::clone(&storage), DIR, Target::Head).unwrap();
        prop_assert_eq!(&head.state, &fold(&envelopes, total));
        prop_assert_eq!(head.at, envelopes[total - 1].at);

        for (&t, &offset) in targets.iter().zip(&offsets) {
            let i = pick(t).min(total - 1);
            let at = Timestamp::from_unix_nanos(envelopes[i].at.as_unix_nanos() + offset);
            let n = expected_seq_at(&envelopes, at);
            let point = history::state_at(Arc::clone(&storage), DIR, Target::Time(at)).unwrap();
            prop_assert_eq!(point.seq, n as u64);
            prop_assert_eq!(&point.state, &fold(&envelopes, n));
        }
        let before = Timestamp::from_unix_nanos(envelopes[0].at.as_unix_nanos() - 1);
        let point = history::state_at(Arc::clone(&storage), DIR, Target::Time(before)).unwrap();
        prop_assert_eq!((point.seq, point.state), (0, State::default()));
    }
}

#[test]
fn a_batch_shares_one_time_and_a_time_target_takes_all_of_it() {
    let events = events(3, 3, 12);
    let (storage, envelopes) = write_journal(&events, &[1, 5, 1]);
    // Seqs 2..=6 were committed together.
    assert_eq!(envelopes[1].at, envelopes[5].at);
    let point = history::state_at(shared(&storage), DIR, Target::Time(envelopes[1].at)).unwrap();
    assert_eq!(point.seq, 6);
    assert_eq!(point.state, fold(&envelopes, 6));
    // But a seq target can stop in the middle of a batch.
    let point = history::state_at(shared(&storage), DIR, Target::Seq(4)).unwrap();
    assert_eq!(point.state, fold(&envelopes, 4));
}

#[test]
fn targets_before_the_retained_history_state_the_earliest_seq_and_time() {
    let events = events(11, 4, 80);
    let (storage, envelopes) = write_journal(&events, &[1]);
    let storage_dyn = shared(&storage);
    assert_eq!(
        history::earliest_restorable(Arc::clone(&storage_dyn), DIR, None).unwrap(),
        Some(RestorePoint { seq: 0, at: None })
    );
    let report = compaction::compact(
        Arc::clone(&storage_dyn),
        DIR,
        &CompactOptions {
            retain: Retention::Events(20),
            ..CompactOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.snapshot_seq, Some(60));
    // The first generation: nothing removed yet; compacting to the head removes what it covers.
    assert!(report.segments_removed.is_empty());
    let report = compaction::compact(
        Arc::clone(&storage_dyn),
        DIR,
        &CompactOptions {
            retain: Retention::None,
            ..CompactOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.snapshot_seq, Some(80));
    assert!(!report.segments_removed.is_empty());
    let earliest = history::earliest_restorable(Arc::clone(&storage_dyn), DIR, None)
        .unwrap()
        .unwrap();
    let earliest_at = envelopes[59].at;
    assert_eq!(
        earliest,
        RestorePoint {
            seq: 60,
            at: Some(earliest_at)
        }
    );

    for target in [
        Target::Seq(0),
        Target::Seq(1),
        Target::Seq(59),
        Target::Time(Timestamp::from_unix_nanos(earliest_at.as_unix_nanos() - 1)),
    ] {
        let err = history::state_at(Arc::clone(&storage_dyn), DIR, target).unwrap_err();
        assert!(
            matches!(
                err,
                torrent_journal::Error::NotRestorable {
                    earliest_seq: Some(60),
                    ..
                }
            ),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("earliest restorable point, seq 60"),
            "{message}"
        );
        assert!(message.contains(&earliest_at.to_rfc3339()), "{message}");
    }
    // Everything from the earliest point on still restores, by seq and by time.
    for n in 60..=80 {
        let point = history::state_at(Arc::clone(&storage_dyn), DIR, Target::Seq(n)).unwrap();
        assert_eq!(point.state, fold(&envelopes, n as usize), "seq {n}");
    }
    let point =
        history::state_at(Arc::clone(&storage_dyn), DIR, Target::Time(earliest_at)).unwrap();
    assert_eq!((point.seq, point.snapshot), (60, Some(60)));

    let err = history::state_at(Arc::clone(&storage_dyn), DIR, Target::Seq(81)).unwrap_err();
    assert!(err.to_string().contains("last event is seq 80"), "{err}");
}

#[test]
fn torrent_history_lists_every_event_touching_the_torrent_in_order() {
    let events = events(21, 3, 60);
    let (storage, envelopes) = write_journal(&events, &[2, 1]);
    let reader = JournalReader::with_storage(shared(&storage), DIR).unwrap();
    let state = fold(&envelopes, envelopes.len());
    let hash = *state.torrents.keys().next().unwrap();
    let history = history::torrent_history(&reader, &hash).unwrap();
    let expected: Vec<Envelope> = envelopes
        .iter()
        .filter(|e| e.event.info_hashes().contains(&hash))
        .cloned()
        .collect();
    assert!(expected.len() > 3);
    assert_eq!(history, expected);
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn targets_parse_from_text() {
    assert_eq!("head".parse::<Target>().unwrap(), Target::Head);
    assert_eq!("42".parse::<Target>().unwrap(), Target::Seq(42));
    assert_eq!(
        "2024-05-01T12:00:00Z".parse::<Target>().unwrap(),
        Target::Time(Timestamp::parse_rfc3339("2024-05-01T12:00:00Z").unwrap())
    );
    assert!("yesterday".parse::<Target>().is_err());
    assert!("".parse::<Target>().is_err());
    assert_eq!(Target::Seq(3).to_string(), "seq 3");
}
