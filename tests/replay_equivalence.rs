//! Proves the fast replay (`replay::fold_frames`: peek, keep only what survives, decode at the
//! end) equals folding every event through `state::apply`: for random event sequences over a
//! few colliding info hashes — hooks of every kind (metadata and error on known and unknown
//! torrents), saves, batch saves, deletions, metrics before and after removals, purges, session
//! saves — from an empty state and from a state part-way through (the snapshot path); also
//! through the memory projection's catch-up on a real journal. And: the peek classifies
//! exactly as the decoder + reducer would, long runs of amends stay exact, a surviving payload
//! that does not decode and a sequence break are errors.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::generators::{BASE_NANOS, arb_event, envelopes, hash};
use proptest::prelude::*;
use torrent_journal::event::{self, Envelope, Event, HookRecord};
use torrent_journal::journal::RawFrame;
use torrent_journal::model::{HookEvent, InfoHash, Timestamp, TorrentMetrics, TorrentState};
use torrent_journal::projection::{self, MemoryProjection};
use torrent_journal::replay::{Peek, fold_frames, fold_frames_with_progress, peek};
use torrent_journal::state::{self, Effect, State};
use torrent_journal::{Durability, Error, Journal, JournalOptions, JournalReader};

/// How many info hashes the generated events share.
const HASHES: u8 = 5;

/// The frames a journal would hold for `envelopes` (payloads exactly as `encode` writes them).
fn frames(envelopes: &[Envelope]) -> Vec<RawFrame> {
    let segment = Arc::new(PathBuf::from("/test/00000000000000000001.seg"));
    envelopes
        .iter()
        .map(|e| RawFrame {
            seq: e.seq,
            at: e.at,
            payload: event::encode(&e.event).unwrap(),
            segment: Arc::clone(&segment),
            offset: 64 + e.seq * 10,
        })
        .collect()
}

fn fold(base: State, frames: Vec<RawFrame>) -> torrent_journal::Result<State> {
    fold_frames(base, frames.into_iter().map(Ok))
}

/// What the peek must say about an event, per the reducer.
fn expected_peek(event: &Event) -> Option<(Effect, InfoHash)> {
    match event {
        Event::Hook(h) => Some((state::hook_effect(h.event), h.torrent.info_hash)),
        Event::TorrentSaved { torrent } => Some((Effect::Put, torrent.info_hash)),
        Event::TorrentDeleted { info_hash } => Some((Effect::Remove, *info_hash)),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn fast_replay_equals_the_reducer(
        events in prop::collection::vec(arb_event(HASHES), 0..60),
        cut in 0usize..60,
    ) {
        let envelopes = envelopes(events);
        let expected = State::from_envelopes(&envelopes);
        let all = frames(&envelopes);

        // From the empty state.
        prop_assert_eq!(&fold(State::default(), all.clone()).unwrap(), &expected);

        // From a state part-way through, as after a snapshot.
        let cut = cut.min(envelopes.len());
        let base = State::from_envelopes(&envelopes[..cut]);
        prop_assert_eq!(&fold(base, all[cut..].to_vec()).unwrap(), &expected);
    }

    #[test]
    fn peek_agrees_with_decode_and_reducer(event in arb_event(HASHES)) {
        let payload = event::encode(&event).unwrap();
        match (peek(&payload), expected_peek(&event)) {
            (Peek::Torrent(effect, h), Some(expected)) => prop_assert_eq!((effect, h), expected),
            (Peek::Decode, None) => {}
            (got, want) => prop_assert!(false, "peek {:?}, expected {:?}", got, want),
        }
    }

    #[test]
    fn peek_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = peek(&bytes);
    }
}

#[test]
fn a_long_run_of_amends_between_removals_stays_exact() {
    let mut events = Vec::new();
    for round in 0..3u8 {
        for i in 0..100u8 {
            let mut t = TorrentState::sample(hash(1), "t1", Timestamp::from_unix_nanos(BASE_NANOS));
            t.percent_done = f64::from(i) / 100.0;
            t.files.truncate(usize::from(i % 3));
            let event = if i % 2 == 0 {
                HookEvent::TorrentMetadata
            } else {
                HookEvent::TorrentError
            };
            let mut data = serde_json::Map::new();
            data.insert("error".into(), format!("e{round}-{i}").into());
            events.push(Event::Hook(HookRecord {
                event,
                torrent: Box::new(t),
                data,
                timestamp: Timestamp::from_unix_nanos(BASE_NANOS),
            }));
            if i % 10 == 0 {
                events.push(Event::MetricsRecorded {
                    samples: vec![TorrentMetrics {
                        info_hash: hash(1),
                        timestamp: Timestamp::from_unix_nanos(BASE_NANOS + i64::from(i)),
                        ..TorrentMetrics::default()
                    }],
                });
            }
        }
        if round < 2 {
            events.push(Event::TorrentDeleted { info_hash: hash(1) });
        }
    }
    let envelopes = envelopes(events);
    let expected = State::from_envelopes(&envelopes);
    assert_eq!(expected.torrents.len(), 1);
    assert_eq!(expected.metrics[&hash(1)].len(), 10);
    assert_eq!(
        fold(State::default(), frames(&envelopes)).unwrap(),
        expected
    );
}

#[test]
fn payloads_in_another_field_order_are_decoded_not_misread() {
    // A hook written with its fields in another order (as another encoder might): the peek
    // walks past the others or leaves it to the decoder; either way the result is exact.
    #[derive(serde::Serialize)]
    struct Reordered<'a> {
        timestamp: i64,
        data: serde_json::Map<String, serde_json::Value>,
        torrent: &'a TorrentState,
        event: HookEvent,
    }
    #[derive(serde::Serialize)]
    enum Wire<'a> {
        Hook(Reordered<'a>),
    }
    let t = TorrentState::sample(hash(2), "t2", Timestamp::from_unix_nanos(BASE_NANOS));
    let payload = rmp_serde::to_vec_named(&Wire::Hook(Reordered {
        timestamp: BASE_NANOS,
        data: serde_json::Map::new(),
        torrent: &t,
        event: HookEvent::TorrentStarted,
    }))
    .unwrap();
    assert_eq!(peek(&payload), Peek::Torrent(Effect::Put, hash(2)));
    let decoded = event::decode(&payload).unwrap();
    let envelopes = envelopes(vec![decoded]);
    let mut raw = frames(&envelopes);
    raw[0].payload = payload;
    assert_eq!(
        fold(State::default(), raw).unwrap(),
        State::from_envelopes(&envelopes)
    );
}

#[test]
fn a_surviving_payload_that_does_not_decode_is_an_error() {
    let t = TorrentState::sample(hash(1), "t1", Timestamp::from_unix_nanos(BASE_NANOS));
    let envelopes = envelopes(vec![Event::TorrentSaved {
        torrent: Box::new(t),
    }]);
    let mut raw = frames(&envelopes);
    // Trailing bytes: the peek classifies it (a save of hash 1), the decode must refuse it.
    raw[0].payload.extend_from_slice(&[0xc0, 0xc0]);
    match fold(State::default(), raw) {
        Err(Error::Decode { seq, reason, .. }) => {
            assert_eq!(seq, 1);
            assert!(reason.contains("2 trailing bytes"), "{reason}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn a_sequence_break_is_an_error() {
    let envelopes = envelopes(vec![
        Event::TorrentDeleted { info_hash: hash(1) },
        Event::TorrentDeleted { info_hash: hash(2) },
    ]);
    let mut raw = frames(&envelopes);
    raw.remove(0);
    match fold(State::default(), raw) {
        Err(Error::SequenceBreak {
            expected, found, ..
        }) => assert_eq!((expected, found), (1, 2)),
        other => panic!("expected a sequence break, got {other:?}"),
    }
}

#[test]
fn memory_catch_up_on_a_journal_equals_the_reducer() {
    let dir = tempfile::tempdir().unwrap();
    let sim = torrent_journal::simulate::Simulation {
        seed: 7,
        torrents: 60,
        events: 3_000,
        tasks: 4,
        start: Timestamp::from_unix_nanos(BASE_NANOS),
    };
    let options = JournalOptions {
        durability: Durability::Never,
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(dir.path(), options).unwrap();
    let events: Vec<Event> = (0..sim.tasks).flat_map(|i| sim.task(i)).collect();
    journal.append_all(&events[..1_000]).unwrap();
    let reader = JournalReader::open(dir.path()).unwrap();

    // Catch up part-way, then the rest (the fold starts from the projection's state).
    let mut memory = MemoryProjection::new();
    let first = projection::catch_up(&mut memory, &reader, &mut |_| {}).unwrap();
    assert_eq!(first.applied, 1_000);
    journal.append_all(&events[1_000..]).unwrap();
    let second = projection::catch_up(&mut memory, &reader, &mut |_| {}).unwrap();
    assert_eq!(second.applied, 2_000);
    journal.close().unwrap();

    let expected: Vec<Envelope> = reader.events(1).unwrap().map(|e| e.unwrap()).collect();
    let expected = State::from_envelopes(&expected);
    assert_eq!(memory.state(), &expected);
    assert!(!expected.metrics.is_empty());
    for (hash, torrent) in &expected.torrents {
        assert_eq!(memory.get(hash).as_ref(), Some(torrent));
    }
}

#[test]
fn progress_is_reported_while_folding_and_ends_at_the_last_frame() {
    let events: Vec<Event> = (0..1000u32)
        .map(|i| {
            let n = u8::try_from(i % 50).unwrap();
            let t = TorrentState::sample(hash(n), "t", Timestamp::from_unix_nanos(BASE_NANOS));
            Event::TorrentSaved {
                torrent: Box::new(t),
            }
        })
        .collect();
    let envelopes = envelopes(events);
    let mut seen = Vec::new();
    let folded = fold_frames_with_progress(
        State::default(),
        frames(&envelopes).into_iter().map(Ok),
        &mut |seq| seen.push(seq),
    )
    .unwrap();
    assert_eq!(folded, State::from_envelopes(&envelopes));
    assert!(
        seen.len() >= 2,
        "progress during the fold, not only at the end: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&1000));
}
