//! Pins down what each built-in projection looks like after a fixed script that covers every
//! event kind, built with the public test kit only (`testing::Script` through a real store in
//! `testing::Harness`, rendered by `testing::render`): insta snapshots (in the top-level
//! `snapshots/` folder) of the memory state, the file tree with its contents, and every SQLite
//! table. A change to any projection's output shows up as a snapshot diff to review.

use std::collections::BTreeSet;
use std::time::Duration;

use torrent_journal::event::Event;
use torrent_journal::testing::{Harness, Script, render};

/// Four torrents' lives and the explicit operations: every event kind at least once, and
/// live torrents with metrics samples left at the end.
fn script() -> Script {
    let mut script = Script::new();
    let debian = script.add_labelled("debian-12.iso", &["linux", "iso"]);
    let album = script.add("album.flac");
    let ubuntu = script.add_labelled("ubuntu-24.04.iso", &["linux"]);
    let old = script.add("old.iso");
    script.session();
    script.metadata(debian).start(debian).progress(debian, 0.25);
    script
        .metrics(debian)
        .progress(debian, 0.75)
        .metrics(debian);
    script.complete(debian).stop(debian);
    script.metadata(album).start(album).metrics(album);
    script
        .error(album, "tracker: unregistered torrent")
        .delete(album);
    script.start(old).remove(old);
    script.start(ubuntu).progress(ubuntu, 0.5).metrics(ubuntu);
    // An hour later: the samples from before it are purged, the later ones stay.
    script.wait(Duration::from_secs(3600));
    script.metrics(ubuntu).metrics(debian);
    script.purge_metrics(Duration::from_secs(1800));
    script
        .error(ubuntu, "disk full")
        .save_all(&[debian, ubuntu]);
    let kinds: BTreeSet<&str> = script.steps().iter().map(|s| s.event.kind()).collect();
    assert_eq!(
        kinds.len(),
        Event::KINDS.len(),
        "the script covers every kind: {kinds:?}"
    );
    script
}

/// The script run through a store keeping every built-in projection.
fn harness() -> Harness {
    let harness = Harness::new().unwrap().with_disk_projections();
    harness.run(&script()).unwrap();
    harness
}

fn snapshot(name: &str, value: &serde_json::Value) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!(name, value);
    });
}

#[test]
fn memory_projection_snapshot() {
    let state = harness().state().unwrap();
    snapshot("projection_memory", &render::memory(&state).unwrap());
}

#[test]
fn file_projection_snapshot() {
    let harness = harness();
    let files = render::files(&harness.dir().join("files")).unwrap();
    snapshot("projection_files", &files);
}

#[test]
fn sqlite_projection_snapshot() {
    let harness = harness();
    let tables = render::sqlite(&harness.dir().join("state.db")).unwrap();
    snapshot("projection_sqlite", &tables);
}
