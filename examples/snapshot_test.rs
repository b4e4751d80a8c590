//! Snapshot-testing projections with the `testing` feature: a scripted client session runs
//! through a real store keeping every built-in projection plus one of our own; each is rendered
//! stably and pinned with insta (`cargo test --example snapshot_test`; snapshots in the
//! top-level `snapshots/`). `cargo run --example snapshot_test` prints the renderings.
//! The guide: `docs/snapshot-testing.md`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use torrent_journal::model::InfoHash;
use torrent_journal::projection::Checkpoint;
use torrent_journal::state::{self, State};
use torrent_journal::testing::{Harness, Script, render};
use torrent_journal::{Envelope, Projection};

/// Our own projection: the status name of every live torrent.
#[derive(Debug, Default)]
struct Statuses {
    state: State,
}

impl Statuses {
    fn render(&self) -> BTreeMap<InfoHash, &'static str> {
        let torrents = self.state.torrents.iter();
        torrents.map(|(h, t)| (*h, t.status_name())).collect()
    }
}

impl Projection for Statuses {
    fn name(&self) -> &'static str {
        "statuses"
    }
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.state.last_seq,
            at: self.state.last_at,
        }
    }
    fn apply(&mut self, batch: &[Envelope]) -> torrent_journal::Result<()> {
        batch.iter().for_each(|e| state::apply(&mut self.state, e));
        Ok(())
    }
    fn reset(&mut self) -> torrent_journal::Result<()> {
        self.state = State::default();
        Ok(())
    }
    fn install(&mut self, state: &State) -> torrent_journal::Result<()> {
        self.state = state.clone();
        Ok(())
    }
}

/// Two torrents' lives and a session save.
fn script() -> Script {
    let mut script = Script::new();
    let debian = script.add_labelled("debian-12.iso", &["linux"]);
    let album = script.add("album.flac");
    script.metadata(debian).start(debian).progress(debian, 0.4);
    script.metrics(debian).complete(debian);
    script
        .start(album)
        .error(album, "tracker: unregistered torrent");
    script.remove(album).session();
    script
}

/// Every projection's rendering after the script: name → value.
fn renderings() -> torrent_journal::Result<BTreeMap<&'static str, Value>> {
    let statuses = Arc::new(Mutex::new(Statuses::default()));
    let harness = Harness::new()?
        .with_disk_projections()
        .with_projection(Arc::clone(&statuses));
    harness.run(&script())?;
    let mut sqlite = render::sqlite(&harness.dir().join("state.db"))?;
    // Metrics row ids are the SQLite projection's bookkeeping (fresh after an install).
    render::redact(&mut sqlite, &["id", "metric_id"]);
    let ours = statuses.lock().expect("statuses").render();
    Ok(BTreeMap::from([
        ("memory", render::memory(&harness.state()?)?),
        ("files", render::files(&harness.dir().join("files"))?),
        ("sqlite", sqlite),
        ("statuses", serde_json::to_value(ours).expect("json")),
    ]))
}

fn main() -> torrent_journal::Result<()> {
    for (name, value) in renderings()? {
        println!(
            "=== {name}\n{}",
            serde_json::to_string_pretty(&value).expect("json")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_projection_after_the_script() {
        let renderings = super::renderings().unwrap();
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            for (name, value) in &renderings {
                insta::assert_yaml_snapshot!(format!("snapshot_test_{name}"), value);
            }
        });
    }
}
