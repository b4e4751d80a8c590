//! A projection of your own: how many live torrents carry each label, kept in its own SQLite
//! database (`labels.db` beside the store's journal), registered on the store with
//! `StoreOptions::with_projection`, and shown surviving a restart and a compaction.
//!
//! Run: `cargo run --example label_counts`. It prints the counts after each phase and checks
//! them against the store's own memory projection (the reducer's state); `cargo test` runs it
//! too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::event::Event;
use torrent_journal::model::{HookContext, HookEvent, InfoHash, Timestamp, TorrentState};
use torrent_journal::projection::Checkpoint;
use torrent_journal::state::{Effect, State, hook_effect};
use torrent_journal::storage::RealStorage;
use torrent_journal::{Envelope, JournalOptions, Projection, StoreOptions, TorrentStore};

/// Per live torrent, its labels (`torrent_labels`), and the checkpoint (`label_checkpoint`),
/// written in one transaction per batch: after a crash both or neither are there.
struct LabelCounts {
    db: Connection,
    checkpoint: Checkpoint,
}

impl LabelCounts {
    fn open(path: &Path) -> rusqlite::Result<LabelCounts> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS torrent_labels (
                 info_hash TEXT NOT NULL, label TEXT NOT NULL, PRIMARY KEY (info_hash, label));
             CREATE TABLE IF NOT EXISTS label_checkpoint (
                 id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, at_nanos INTEGER NOT NULL);",
        )?;
        let checkpoint = db
            .query_row("SELECT seq, at_nanos FROM label_checkpoint", [], |row| {
                Ok(Checkpoint {
                    seq: row.get::<_, i64>(0)? as u64,
                    at: Timestamp::from_unix_nanos(row.get(1)?),
                })
            })
            .unwrap_or_default();
        Ok(LabelCounts { db, checkpoint })
    }

    /// Label → number of live torrents carrying it.
    fn counts(&self) -> rusqlite::Result<BTreeMap<String, u64>> {
        let mut query = self
            .db
            .prepare("SELECT label, COUNT(*) FROM torrent_labels GROUP BY label")?;
        let rows = query.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
        rows.collect()
    }

    /// Runs `write` and stores `checkpoint` in one transaction.
    fn transaction(
        &mut self,
        checkpoint: Checkpoint,
        write: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> torrent_journal::Result<()> {
        let tx = self.db.transaction().map_err(sql)?;
        write(&tx).map_err(sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO label_checkpoint (id, seq, at_nanos) VALUES (1, ?1, ?2)",
            params![checkpoint.seq as i64, checkpoint.at.as_unix_nanos()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.checkpoint = checkpoint;
        Ok(())
    }
}

/// The projection's errors, for the store's log. (Report damage as
/// `Error::ProjectionDamaged` to have the store reset and rebuild the projection.)
fn sql(err: rusqlite::Error) -> torrent_journal::Error {
    torrent_journal::Error::InvalidArgument(format!("labels.db: {err}"))
}

fn put(tx: &rusqlite::Transaction, torrent: &TorrentState) -> rusqlite::Result<()> {
    remove(tx, &torrent.info_hash)?;
    for label in &torrent.labels {
        tx.execute(
            "INSERT OR IGNORE INTO torrent_labels (info_hash, label) VALUES (?1, ?2)",
            params![torrent.info_hash.to_hex(), label],
        )?;
    }
    Ok(())
}

fn remove(tx: &rusqlite::Transaction, info_hash: &InfoHash) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM torrent_labels WHERE info_hash = ?1",
        params![info_hash.to_hex()],
    )?;
    Ok(())
}

/// A metadata or error hook changes neither labels nor liveness of a known torrent; an unknown
/// one is stored as given (the reducer's rule, `state::apply`).
fn amend(tx: &rusqlite::Transaction, torrent: &TorrentState) -> rusqlite::Result<()> {
    let known: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM torrent_labels WHERE info_hash = ?1)",
        params![torrent.info_hash.to_hex()],
        |row| row.get(0),
    )?;
    if known { Ok(()) } else { put(tx, torrent) }
}

/// What one event means for the labels, following the reducer's meaning of each event.
fn apply_event(tx: &rusqlite::Transaction, event: &Event) -> rusqlite::Result<()> {
    match event {
        Event::Hook(hook) => match hook_effect(hook.event) {
            Effect::Put => put(tx, &hook.torrent),
            Effect::Remove => remove(tx, &hook.torrent.info_hash),
            Effect::Amend => amend(tx, &hook.torrent),
        },
        Event::TorrentSaved { torrent } => put(tx, torrent),
        Event::TorrentsSaved { torrents } => torrents.iter().try_for_each(|t| put(tx, t)),
        Event::TorrentDeleted { info_hash } => remove(tx, info_hash),
        // Session configuration and metrics carry no labels (and new kinds may come).
        _ => Ok(()),
    }
}

impl Projection for LabelCounts {
    fn name(&self) -> &'static str {
        "label-counts"
    }

    fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    fn apply(&mut self, batch: &[Envelope]) -> torrent_journal::Result<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        self.transaction(Checkpoint::of(last), |tx| {
            batch.iter().try_for_each(|e| apply_event(tx, &e.event))
        })
    }

    fn reset(&mut self) -> torrent_journal::Result<()> {
        self.transaction(Checkpoint::default(), |tx| {
            tx.execute("DELETE FROM torrent_labels", []).map(drop)
        })
    }

    fn install(&mut self, state: &State) -> torrent_journal::Result<()> {
        let checkpoint = Checkpoint {
            seq: state.last_seq,
            at: state.last_at,
        };
        self.transaction(checkpoint, |tx| {
            tx.execute("DELETE FROM torrent_labels", [])?;
            state.torrents.values().try_for_each(|t| put(tx, t))
        })
    }
}

/// The same counts, from the store's memory projection (the reducer's state).
fn expected(store: &TorrentStore) -> BTreeMap<String, u64> {
    store.read_memory(|memory| {
        let mut counts = BTreeMap::new();
        for torrent in memory.state().torrents.values() {
            for label in &torrent.labels {
                *counts.entry(label.clone()).or_insert(0) += 1;
            }
        }
        counts
    })
}

fn options(labels: &Arc<Mutex<LabelCounts>>) -> StoreOptions {
    StoreOptions {
        // Small segments, so that a compaction has sealed segments to remove.
        journal: JournalOptions {
            segment_size_bytes: 16 * 1024,
            ..JournalOptions::default()
        },
        ..StoreOptions::default()
    }
    .with_projection(Arc::clone(labels))
}

fn torrent(n: u8, labels: &[&str]) -> TorrentState {
    let mut torrent =
        TorrentState::sample(InfoHash::V1([n; 20]), &format!("t{n}"), Timestamp::now());
    torrent.labels = labels.iter().map(|l| l.to_string()).collect();
    torrent
}

/// Prints the counts and checks them against the reducer's.
async fn show(phase: &str, store: &TorrentStore, labels: &Arc<Mutex<LabelCounts>>) {
    store.flush_projections().await.expect("flush");
    let (checkpoint, counts) = {
        let labels = labels.lock().expect("labels");
        (labels.checkpoint(), labels.counts().expect("counts"))
    };
    println!("{phase}: checkpoint seq {}: {counts:?}", checkpoint.seq);
    assert_eq!(
        counts,
        expected(store),
        "{phase}: the projection equals the reducer"
    );
}

#[tokio::main]
async fn main() -> torrent_journal::Result<()> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let db = dir.join("labels.db");

    // 1. A first run: torrents come and go.
    let labels = Arc::new(Mutex::new(LabelCounts::open(&db).map_err(sql)?));
    let store = TorrentStore::open(dir, options(&labels)).await?;
    for n in 0..40u8 {
        let kind = if n % 3 == 0 { "iso" } else { "music" };
        store.save_torrent(&torrent(n, &["linux", kind])).await?;
    }
    store.delete_torrent(&InfoHash::V1([3; 20])).await?;
    show("first run", &store, &labels).await;
    store.close().await?;
    drop(labels);
    // A copy of the projection as it is now: a backup we restore after compaction below.
    std::fs::copy(&db, dir.join("labels.old.db")).expect("copy");

    // 2. A restart: a new process opens its database again; it resumes from its checkpoint.
    let labels = Arc::new(Mutex::new(LabelCounts::open(&db).map_err(sql)?));
    let resumed = labels.lock().expect("labels").checkpoint().seq;
    let store = TorrentStore::open(dir, options(&labels)).await?;
    let context = HookContext {
        event: HookEvent::TorrentRemoved,
        torrent: torrent(6, &["linux", "iso"]),
        data: Default::default(),
        timestamp: Timestamp::now(),
    };
    store.record_hook(context).await?;
    for n in 40..80u8 {
        store.save_torrent(&torrent(n, &["video"])).await?;
    }
    show(
        &format!("after restart (resumed at seq {resumed})"),
        &store,
        &labels,
    )
    .await;
    store.close().await?;
    drop(labels);

    // 3. Compaction removes the early segments (the first run's events); the restored backup
    // is behind the retained journal, so the store installs the snapshot's state, then
    // catches up with the events after it.
    let compact = |n| CompactOptions {
        retain: Retention::Events(n),
        ..CompactOptions::default()
    };
    compaction::compact(Arc::new(RealStorage), dir, &compact(20))?;
    let report = compaction::compact(Arc::new(RealStorage), dir, &compact(5))?;
    let first = torrent_journal::JournalReader::open(dir)?.first_retained_seq()?;
    println!(
        "compacted: {} segments removed, the journal now starts at seq {first}",
        report.segments_removed.len()
    );
    std::fs::rename(dir.join("labels.old.db"), &db).expect("restore the backup");
    let labels = Arc::new(Mutex::new(LabelCounts::open(&db).map_err(sql)?));
    let stale = labels.lock().expect("labels").checkpoint().seq;
    let store = TorrentStore::open(dir, options(&labels)).await?;
    show(
        &format!("after compaction (backup at seq {stale}, journal from seq {first})"),
        &store,
        &labels,
    )
    .await;
    store.close().await
}

#[cfg(test)]
mod tests {
    /// The example checks itself against the reducer at every phase; `cargo test` runs it.
    #[test]
    fn survives_a_restart_and_a_compaction() {
        super::main().unwrap();
    }
}
