//! Proves a projection of the embedder's own, registered with `StoreOptions::with_projection`,
//! is driven like the built-in ones: fed every committed event (equal to the reducer after
//! `flush_projections`), resumed from its checkpoint at reopen (nothing applied twice), reset
//! and rebuilt when it is ahead of the journal or reports damage, and installed from the
//! newest snapshot's state when compaction removed the events it needs. A scripted journal
//! (`testing::Script`) through a real store (`testing::Harness`), with a folding projection.

mod common;

use std::sync::{Arc, Mutex};

use common::Folding;
use torrent_journal::testing::{Harness, Script};

/// A life per torrent, `count` torrents: about eight events each.
fn script(count: usize) -> Script {
    let mut script = Script::new();
    for n in 0..count {
        let t = script.add_labelled(&format!("torrent-{n}"), &["linux"]);
        script.metadata(t).start(t).progress(t, 0.5).metrics(t);
        if n % 3 == 0 {
            script.remove(t);
        } else {
            script.complete(t).error(t, "tracker: timeout");
        }
    }
    script.session();
    script
}

#[test]
fn fed_after_each_commit_and_resumed_at_reopen() {
    let folding = Arc::new(Mutex::new(Folding::default()));
    let harness = Harness::new()
        .unwrap()
        .with_projection(Arc::clone(&folding));
    let script = script(6);
    harness.run(&script).unwrap();
    let state = harness.state().unwrap();
    let projection = folding.lock().unwrap();
    assert_eq!(projection.state, state, "the projection equals the reducer");
    assert_eq!(projection.applied, script.steps().len() as u64);
    assert_eq!((projection.installs, projection.resets), (0, 0));
}

#[test]
fn a_projection_ahead_of_the_journal_is_rebuilt() {
    let harness = Harness::new().unwrap();
    harness.run(&script(3)).unwrap();
    let state = harness.state().unwrap();
    let mut ahead = state.clone();
    ahead.last_seq += 100;
    let folding = Arc::new(Mutex::new(Folding {
        state: ahead,
        ..Folding::default()
    }));
    let harness = harness.with_projection(Arc::clone(&folding));
    harness.with_store(|_| async { Ok(()) }).unwrap();
    let projection = folding.lock().unwrap();
    assert_eq!(projection.resets, 1, "reset once");
    assert_eq!(projection.state, state, "rebuilt to the reducer's state");
}

#[test]
fn a_damaged_projection_is_reset_and_rebuilt_on_the_projection_thread() {
    let folding = Arc::new(Mutex::new(Folding::default()));
    let harness = Harness::new()
        .unwrap()
        .with_projection(Arc::clone(&folding));
    let first = script(2);
    harness.run(&first).unwrap();
    folding.lock().unwrap().damage_next_apply = true;
    let mut more = first.then();
    let t = more.add("late");
    more.start(t).complete(t);
    harness.run(&more).unwrap();
    let state = harness.state().unwrap();
    let projection = folding.lock().unwrap();
    assert_eq!(projection.resets, 1, "reset once, on the damage");
    assert_eq!(projection.state, state, "rebuilt and fed to the head");
}

#[test]
fn a_projection_behind_a_compacted_journal_is_installed_then_fed() {
    let harness = Harness::new().unwrap();
    harness.run(&script(30)).unwrap();
    harness.compact(10).unwrap();
    let first = harness.first_retained_seq().unwrap();
    assert!(
        first > 1,
        "compaction removed the first segments (first seq {first})"
    );
    let folding = Arc::new(Mutex::new(Folding::default()));
    let harness = harness.with_projection(Arc::clone(&folding));
    harness.with_store(|_| async { Ok(()) }).unwrap();
    let state = harness.state().unwrap();
    let projection = folding.lock().unwrap();
    assert_eq!(
        projection.installs, 1,
        "installed from the snapshot's state"
    );
    assert_eq!(projection.state, state);
}

#[test]
fn a_failing_projection_stops_until_reopen_then_catches_up() {
    let folding = Arc::new(Mutex::new(Folding::default()));
    let harness = Harness::new()
        .unwrap()
        .with_projection(Arc::clone(&folding));
    let first = script(2);
    harness.run(&first).unwrap();
    let before = folding.lock().unwrap().state.last_seq;
    folding.lock().unwrap().fail_next_apply = true;
    let mut more = first.then();
    let t = more.add("late");
    more.start(t).complete(t);
    // The failure stops feeding it (the store logs it); the journal has the events.
    harness
        .with_store(|store| async move {
            for step in more.steps() {
                store.append_event(step.event.clone()).await?;
            }
            store.flush_projections().await?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        folding.lock().unwrap().state.last_seq,
        before,
        "not fed after the failure"
    );
    // The next open catches it up from its checkpoint, without a reset.
    let state = harness.state().unwrap();
    let projection = folding.lock().unwrap();
    assert_eq!(projection.state, state);
    assert_eq!(projection.resets, 0);
}
