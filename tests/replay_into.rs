//! Proves `replay_into` brings any projection to the state the reducer gives for the journal
//! prefix asked for: the head, a seq, a time; that it resets a projection past the target,
//! installs the newest snapshot's state when compaction removed the events it needs, reports
//! progress up to the target, and refuses a seq past the head. A scripted journal in a real
//! store (`testing::Harness`), replayed into a folding projection.

mod common;

use common::Folding;
use torrent_journal::testing::{Harness, Script};
use torrent_journal::{JournalReader, Target, replay_into};

fn harness(torrents: usize) -> (Harness, Script) {
    let mut script = Script::new();
    for n in 0..torrents {
        let t = script.add(&format!("t{n}"));
        script.metadata(t).start(t).progress(t, 0.3).complete(t);
        if n % 2 == 0 {
            script.remove(t);
        }
    }
    let harness = Harness::new().unwrap();
    harness.run(&script).unwrap();
    (harness, script)
}

/// The reducer's state after the events the predicate keeps (a prefix of the journal).
fn expected(
    harness: &Harness,
    keep: impl Fn(&torrent_journal::Envelope) -> bool,
) -> torrent_journal::state::State {
    let reader = JournalReader::open(harness.dir()).unwrap();
    let events: Vec<_> = reader
        .events(1)
        .unwrap()
        .map(Result::unwrap)
        .take_while(keep)
        .collect();
    torrent_journal::state::State::from_envelopes(&events)
}

#[test]
fn head_seq_and_time_targets_equal_the_reducer() {
    let (harness, script) = harness(4);
    let mut projection = Folding::default();
    let mut seen = Vec::new();
    let reader = JournalReader::open(harness.dir()).unwrap();
    replay_into(&reader, &mut projection, Target::Seq(7), &mut |seq| {
        seen.push(seq)
    })
    .unwrap();
    assert_eq!(projection.state, expected(&harness, |e| e.seq <= 7));
    assert_eq!(seen.last(), Some(&7), "progress reaches the target");

    // Forward from the checkpoint: nothing applied twice.
    replay_into(&reader, &mut projection, Target::Head, &mut |_| {}).unwrap();
    assert_eq!(projection.state, harness.state().unwrap());
    assert_eq!(projection.applied, script.steps().len() as u64);

    // Back in time: past the target, so reset and replayed.
    let at = script.steps()[9].at;
    let done = replay_into(&reader, &mut projection, Target::Time(at), &mut |_| {}).unwrap();
    assert!(done.rebuilt);
    assert_eq!(projection.resets, 1);
    assert_eq!(projection.state, expected(&harness, |e| e.at <= at));
    assert_eq!(done.checkpoint.seq, 10);
}

#[test]
fn a_seq_past_the_head_is_an_error() {
    let (harness, script) = harness(1);
    let reader = JournalReader::open(harness.dir()).unwrap();
    let past = script.steps().len() as u64 + 1;
    let err = replay_into(
        &reader,
        &mut Folding::default(),
        Target::Seq(past),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("past the journal's head"), "{err}");
}

#[test]
fn a_compacted_journal_installs_the_snapshot_state() {
    let (harness, _) = harness(40);
    harness.compact(10).unwrap();
    let first = harness.first_retained_seq().unwrap();
    assert!(first > 1, "the journal no longer starts at seq 1");
    let reader = JournalReader::open(harness.dir()).unwrap();
    let mut projection = Folding::default();
    replay_into(&reader, &mut projection, Target::Head, &mut |_| {}).unwrap();
    assert_eq!(projection.installs, 1);
    assert_eq!(projection.state, harness.state().unwrap());

    // A seq after the earliest restorable point (the oldest snapshot the journal continues):
    // materialized from it; one before it is refused, naming that point.
    let earliest = torrent_journal::history::earliest_restorable(
        std::sync::Arc::new(torrent_journal::storage::RealStorage),
        harness.dir(),
        None,
    )
    .unwrap()
    .unwrap()
    .seq;
    let err = replay_into(
        &reader,
        &mut Folding::default(),
        Target::Seq(earliest - 1),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, torrent_journal::Error::NotRestorable { .. }),
        "{err}"
    );
    let mut projection = Folding::default();
    let target = earliest + 2;
    replay_into(&reader, &mut projection, Target::Seq(target), &mut |_| {}).unwrap();
    assert_eq!(projection.state.last_seq, target);
    let head = harness.state().unwrap();
    assert!(projection.state.last_seq < head.last_seq);
    assert_eq!(projection.installs, 1);
}
