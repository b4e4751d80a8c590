//! Proves an embedder can keep its own projection with the public API and the `testing`
//! feature only: registered on the store, it follows a scripted journal; after a compaction
//! removed the early events and a reopen, it still equals a fresh projection replayed from the
//! compacted journal and the counts the reducer's state gives; the counts are pinned with
//! insta (snapshot in the workspace's top-level `snapshots/`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tj_embedder_check::LabelCounts;
use torrent_journal::Target;
use torrent_journal::testing::{Harness, Script};

/// 60 torrents with one of three labels (plus `linux` on some); a third are removed.
fn script() -> Script {
    let mut script = Script::new();
    for n in 0..60 {
        let kind = ["iso", "music", "video"][n % 3];
        let labels: &[&str] = if n % 2 == 0 {
            &[kind, "linux"]
        } else {
            &[kind]
        };
        let t = script.add_labelled(&format!("torrent-{n}"), labels);
        script.metadata(t).start(t).progress(t, 0.5).complete(t);
        if n % 3 == 1 {
            script.remove(t);
        }
    }
    script
}

#[test]
fn label_counts_survive_compaction_and_reopen() {
    let counts = Arc::new(Mutex::new(LabelCounts::default()));
    let harness = Harness::new().unwrap().with_projection(Arc::clone(&counts));
    harness.run(&script()).unwrap();
    harness.compact(20).unwrap();
    let first = harness.first_retained_seq().unwrap();
    assert!(
        first > 1,
        "compaction removed early events (first seq {first})"
    );

    // Reopen: the registered projection resumes; the store's state is the reducer's.
    let state = harness.state().unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for label in state.torrents.values().flat_map(|t| t.labels.iter()) {
        *expected.entry(label.clone()).or_insert(0) += 1;
    }

    // A fresh projection replayed from the compacted journal: installed from the snapshot.
    let mut fresh = LabelCounts::default();
    let done = harness.replay_into(&mut fresh, Target::Head).unwrap();

    let live = counts.lock().unwrap().counts();
    assert_eq!(
        live, expected,
        "the registered projection equals the reducer"
    );
    assert_eq!(
        fresh.counts(),
        expected,
        "the replayed projection equals the reducer"
    );
    assert_eq!(done.checkpoint.seq, state.last_seq);
    insta::with_settings!({ snapshot_path => "../../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!("embedder_label_counts", live);
    });
}
