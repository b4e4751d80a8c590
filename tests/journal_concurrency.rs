//! Proves group commit keeps order under concurrency: 8 threads × 10 000 appends (and 64 tokio
//! tasks) on a real directory get unique, gap-free, increasing seqs, and everything reads back.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use torrent_journal::storage::RealStorage;
use torrent_journal::{Journal, JournalOptions};

#[test]
fn eight_threads_times_ten_thousand_appends_get_gap_free_seqs() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        segment_size_bytes: 256 * 1024, // several rotations under load
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(tmp.path(), options).unwrap();
    let per_thread: Vec<Vec<(u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let journal = journal.clone();
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let n = t * PER_THREAD + i;
                            (journal.append(&small_event(n)).unwrap().first_seq, n)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    journal.close().unwrap();

    // Each thread saw its own seqs strictly increase.
    for seqs in &per_thread {
        assert!(seqs.windows(2).all(|w| w[0].0 < w[1].0));
    }
    let mut all: Vec<(u64, u64)> = per_thread.into_iter().flatten().collect();
    all.sort();
    let total = THREADS * PER_THREAD;
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "unique and gap-free");

    // Every event reads back at the seq its appender was given.
    let reader = torrent_journal::JournalReader::open(tmp.path()).unwrap();
    assert!(reader.segments().unwrap().len() > 3);
    let read: Vec<_> = reader.events(1).unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(read.len() as u64, total);
    for (envelope, (seq, n)) in read.iter().zip(&all) {
        assert_eq!(envelope.seq, *seq);
        assert_eq!(envelope.event, small_event(*n));
    }
    assert!(
        read.windows(2).all(|w| w[0].at <= w[1].at),
        "commit times never go back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_tasks_append_concurrently() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(tmp.path()).unwrap();
    let mut handles = Vec::new();
    for t in 0..64u64 {
        let journal = journal.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(
                    journal
                        .append_async(&small_event(t * 100 + i))
                        .await
                        .unwrap()
                        .first_seq,
                );
            }
            seqs
        }));
    }
    let mut seqs = HashSet::new();
    for handle in handles {
        seqs.extend(handle.await.unwrap());
    }
    journal.close_async().await.unwrap();
    assert_eq!(seqs.len(), 64 * 50);
    assert_eq!(seqs.iter().max(), Some(&(64 * 50)));
    let read = read_seqs(Arc::new(RealStorage), tmp.path());
    assert_eq!(read, (1..=64 * 50).collect::<Vec<_>>());
}
