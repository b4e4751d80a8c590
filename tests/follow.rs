//! Proves the follower (`src/follow.rs`) on real files with the real writer thread, the reader
//! being another thread: it follows segment rotations from before the first event; resuming
//! after a stored seq sees every event exactly once; it delivers nothing past the durable
//! position (unless reading ahead) and everything when no position is published; a partial
//! frame at the tail waits and is never called corruption; compaction under its feet yields one
//! `Resynced` item from the snapshot and the events after it, ending in the writer's state;
//! removed events with no snapshot are an error naming the seq; damage in the middle of the log
//! (or at a tail the durable position covers) is an error naming segment and offset; and
//! polling alone, without file notifications, keeps up.

mod common;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::{small_event, torrent_event};
use futures_core::Stream as _;
use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::event::{Envelope, Event};
use torrent_journal::follow::{FollowItem, FollowOptions, Follower};
use torrent_journal::journal::{self as journal_mod, JournalOptions};
use torrent_journal::model::Timestamp;
use torrent_journal::projection::{MemoryProjection, Projection};
use torrent_journal::state::State;
use torrent_journal::storage::RealStorage;
use torrent_journal::testing::format::durable::{self, DurablePosition};
use torrent_journal::testing::format::frame::{self, FRAME_HEADER_BYTES};
use torrent_journal::{Error, Journal, JournalReader};

const WAIT: Duration = Duration::from_secs(30);

fn open(dir: &Path, segment_size_bytes: u64) -> Journal {
    Journal::open_with(
        dir,
        JournalOptions {
            segment_size_bytes,
            ..JournalOptions::default()
        },
    )
    .unwrap()
}

fn follow(dir: &Path, options: FollowOptions) -> Follower {
    Follower::start(Arc::new(RealStorage), dir, options).unwrap()
}

/// The next item, failing the test after `WAIT`.
async fn next(follower: &mut Follower) -> torrent_journal::Result<FollowItem> {
    tokio::time::timeout(WAIT, follower.next())
        .await
        .expect("the follower delivered nothing in time")
        .expect("the follower's stream ended")
}

/// Events until (and including) seq `last`, asserting there is no error or resync.
async fn events_through(follower: &mut Follower, last: u64) -> Vec<Envelope> {
    let mut out = Vec::new();
    while out.last().is_none_or(|e: &Envelope| e.seq < last) {
        match next(follower).await.unwrap() {
            FollowItem::Event(envelope) => out.push(envelope),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// Asserts nothing arrives within `quiet`.
async fn assert_quiet(follower: &mut Follower, quiet: Duration) {
    if let Ok(item) = tokio::time::timeout(quiet, follower.next()).await {
        panic!("expected nothing, got {item:?}");
    }
}

fn seqs(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.seq).collect()
}

/// Every event of the journal, read back with the plain reader.
fn journal_events(dir: &Path) -> Vec<Envelope> {
    JournalReader::open(dir)
        .unwrap()
        .events(1)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn durable_path(dir: &Path) -> PathBuf {
    durable::path(&journal_mod::journal_dir(dir))
}

fn publish_durable(dir: &Path, seq: u64) {
    let position = DurablePosition {
        seq,
        at: Timestamp::default(),
    };
    std::fs::write(durable_path(dir), durable::encode(position)).unwrap();
}

/// Appends `range` from a plain thread, in requests of 1 to 7 events; returns the envelopes.
fn append_in_thread(
    journal: &Journal,
    range: std::ops::RangeInclusive<u64>,
    event: fn(u64) -> Event,
) -> std::thread::JoinHandle<Vec<Envelope>> {
    let journal = journal.clone();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut n = *range.start();
        while n <= *range.end() {
            let count = (n % 7 + 1).min(range.end() - n + 1);
            let events: Vec<Event> = (n..n + count).map(event).collect();
            let receipt = journal.append_all(&events).unwrap();
            for (seq, event) in (receipt.first_seq..).zip(events) {
                out.push(Envelope::new(seq, receipt.at, event));
            }
            n += count;
        }
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_rotations_from_before_the_first_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 8 * 1024);
    let mut follower = follow(dir, FollowOptions::default());
    assert!(follower.is_watching());
    assert_quiet(&mut follower, Duration::from_millis(100)).await;

    let writer = append_in_thread(&journal, 1..=3000, |n| {
        if n % 10 == 0 {
            torrent_event(n)
        } else {
            small_event(n)
        }
    });
    let received = events_through(&mut follower, 3000).await;
    let written = writer.join().unwrap();
    assert_eq!(seqs(&received), (1..=3000).collect::<Vec<_>>());
    assert_eq!(received, written);
    let segments = JournalReader::open(dir).unwrap().segments().unwrap().len();
    assert!(
        segments >= 10,
        "only {segments} segments: no rotation tested"
    );
    assert_quiet(&mut follower, Duration::from_millis(200)).await;
    journal.close_async().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_the_stored_seq_sees_every_event_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 16 * 1024);
    let writer = append_in_thread(&journal, 1..=2000, small_event);

    let mut first = follow(dir, FollowOptions::default());
    let mut received = events_through(&mut first, 700).await;
    drop(first);
    let stored = received.last().unwrap().seq;
    let mut second = follow(dir, FollowOptions::from_seq(stored + 1));
    received.extend(events_through(&mut second, 2000).await);
    let written = writer.join().unwrap();
    assert_eq!(seqs(&received), (1..=2000).collect::<Vec<_>>());
    assert_eq!(received, written);

    // A follower started after the fact, from the middle of a segment, agrees too.
    let mut late = follow(dir, FollowOptions::from_seq(1234));
    assert_eq!(events_through(&mut late, 2000).await, written[1233..]);
    journal.close_async().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_only_up_to_the_durable_position_unless_reading_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 64 * 1024);
    for n in 1..=20 {
        journal.append_async(&small_event(n)).await.unwrap();
    }
    journal.close_async().await.unwrap();
    // The writer published 20 when it closed; pretend only 12 are durable yet.
    publish_durable(dir, 12);

    let mut gated = follow(dir, FollowOptions::default());
    assert_eq!(
        seqs(&events_through(&mut gated, 12).await),
        (1..=12).collect::<Vec<_>>()
    );
    assert_quiet(&mut gated, Duration::from_millis(300)).await;

    let mut ahead = follow(
        dir,
        FollowOptions {
            read_ahead: true,
            ..FollowOptions::default()
        },
    );
    assert_eq!(events_through(&mut ahead, 20).await.len(), 20);

    publish_durable(dir, 20);
    assert_eq!(
        seqs(&events_through(&mut gated, 20).await),
        (13..=20).collect::<Vec<_>>()
    );

    // No published position at all (a journal an older build wrote): everything that verifies.
    std::fs::remove_file(durable_path(dir)).unwrap();
    let mut unpublished = follow(dir, FollowOptions::default());
    assert_eq!(
        events_through(&mut unpublished, 20).await,
        journal_events(dir)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_frame_at_the_tail_waits_and_is_not_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 64 * 1024);
    for n in 1..=10 {
        journal.append_async(&small_event(n)).await.unwrap();
    }
    journal.close_async().await.unwrap();
    let last = journal_events(dir).pop().unwrap();
    let segment = JournalReader::open(dir).unwrap().segments().unwrap()[0]
        .path
        .clone();
    let mut bytes = Vec::new();
    let payload = torrent_journal::event::encode(&torrent_event(11)).unwrap();
    frame::encode(&mut bytes, 11, last.at.as_unix_nanos(), &payload);
    let half = bytes.len() / 2;
    append_bytes(&segment, &bytes[..half]);

    let mut ahead = follow(
        dir,
        FollowOptions {
            read_ahead: true,
            ..FollowOptions::default()
        },
    );
    let mut gated = follow(dir, FollowOptions::default());
    assert_eq!(events_through(&mut ahead, 10).await.len(), 10);
    assert_eq!(events_through(&mut gated, 10).await.len(), 10);
    assert_quiet(&mut ahead, Duration::from_millis(300)).await;
    assert_quiet(&mut gated, Duration::from_millis(50)).await;

    // The rest of the frame arrives: the read-ahead follower delivers it whole...
    append_bytes(&segment, &bytes[half..]);
    let eleventh = events_through(&mut ahead, 11).await;
    assert_eq!(eleventh[0].event, torrent_event(11));
    // ...the durable-gated one once it is published durable.
    assert_quiet(&mut gated, Duration::from_millis(200)).await;
    publish_durable(dir, 11);
    assert_eq!(events_through(&mut gated, 11).await, eleventh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_ahead_follower_stops_with_an_error_when_recovery_takes_events_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 64 * 1024);
    for n in 1..=10 {
        journal.append_async(&small_event(n)).await.unwrap();
    }
    journal.close_async().await.unwrap();
    let frames: Vec<_> = JournalReader::open(dir)
        .unwrap()
        .frames(1)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Events 9 and 10 were seen ahead of durability, then a crash's recovery cut them.
    publish_durable(dir, 8);
    let mut ahead = follow(
        dir,
        FollowOptions {
            read_ahead: true,
            ..FollowOptions::default()
        },
    );
    let mut gated = follow(dir, FollowOptions::default());
    assert_eq!(events_through(&mut ahead, 10).await.len(), 10);
    assert_eq!(events_through(&mut gated, 8).await.len(), 8);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&*frames[8].segment)
        .unwrap();
    file.set_len(frames[8].offset).unwrap();
    match next(&mut ahead).await {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("took back"), "{reason}"),
        other => panic!("expected an error, got {other:?}"),
    }
    // The durable-gated follower never saw them: it just waits for the writer.
    assert_quiet(&mut gated, Duration::from_millis(300)).await;
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_under_a_lagging_follower_resynchronizes_from_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 2 * 1024);
    let mut written = append_in_thread(&journal, 1..=1000, small_event)
        .join()
        .unwrap();
    // A slow consumer: the reader holds at most a few items and one small chunk ahead of it.
    let mut follower = follow(
        dir,
        FollowOptions {
            queue_capacity: 4,
            read_chunk_bytes: 512,
            ..FollowOptions::default()
        },
    );
    let mut replica = MemoryProjection::new();
    let first = events_through(&mut follower, 50).await;
    replica.apply(&first).unwrap();

    // Two compactions: the second removes what the first one's snapshot covers.
    let compact = |n| {
        let options = CompactOptions {
            retain: Retention::Events(n),
            ..CompactOptions::default()
        };
        compaction::compact(Arc::new(RealStorage), dir, &options).unwrap()
    };
    assert!(compact(500).segments_removed.is_empty());
    let report = compact(100);
    assert_eq!(report.snapshot_seq, Some(900));
    assert!(!report.segments_removed.is_empty());
    written.extend(
        append_in_thread(&journal, 1001..=1200, small_event)
            .join()
            .unwrap(),
    );

    let mut resynced = Vec::new();
    while replica.checkpoint().seq < 1200 {
        match next(&mut follower).await.unwrap() {
            FollowItem::Event(envelope) => replica.apply(&[envelope]).unwrap(),
            FollowItem::Resynced { seq, at, state } => {
                assert!(seq >= replica.checkpoint().seq, "resync went backwards");
                assert_eq!((state.last_seq, state.last_at), (seq, at));
                resynced.push(seq);
                replica.install(&state).unwrap();
            }
        }
    }
    assert_eq!(resynced, [900], "exactly one resync, at the snapshot");
    assert_eq!(replica.state(), &State::from_envelopes(&written));
    journal.close_async().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_events_without_a_snapshot_are_an_error_naming_the_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 2 * 1024);
    append_in_thread(&journal, 1..=300, small_event)
        .join()
        .unwrap();
    journal.close_async().await.unwrap();
    let segments = JournalReader::open(dir).unwrap().segments().unwrap();
    std::fs::remove_file(&segments[0].path).unwrap();

    let mut follower = follow(dir, FollowOptions::default());
    match next(&mut follower).await {
        Err(Error::SeqNotRetained {
            requested,
            earliest,
        }) => {
            assert_eq!((requested, earliest), (1, segments[1].first_seq));
        }
        other => panic!("expected SeqNotRetained, got {other:?}"),
    }
    assert!(
        follower.next().await.is_none(),
        "the stream ends after an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_is_an_error_naming_segment_and_offset_but_an_unproven_tail_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 4 * 1024);
    append_in_thread(&journal, 1..=300, small_event)
        .join()
        .unwrap();
    journal.close_async().await.unwrap();
    let frames: Vec<_> = JournalReader::open(dir)
        .unwrap()
        .frames(1)
        .unwrap()
        .map(Result::unwrap)
        .collect();

    // A flipped payload byte of seq 5 (a sealed segment, valid frames after it).
    let fifth = &frames[4];
    flip(&fifth.segment, fifth.offset + FRAME_HEADER_BYTES as u64 + 1);
    let mut follower = follow(dir, FollowOptions::default());
    assert_eq!(events_through(&mut follower, 4).await.len(), 4);
    match next(&mut follower).await {
        Err(err @ Error::ChecksumMismatch { .. }) => {
            let Error::ChecksumMismatch {
                segment,
                offset,
                seq,
                ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(
                (segment, *offset, *seq),
                (&*fifth.segment, fifth.offset, Some(5))
            );
            let text = err.to_string();
            assert!(
                text.contains(&fifth.segment.display().to_string()),
                "{text}"
            );
            assert!(text.contains(&format!("offset {}", fifth.offset)), "{text}");
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(follower.next().await.is_none());
    flip(&fifth.segment, fifth.offset + FRAME_HEADER_BYTES as u64 + 1);

    // A flipped byte in the very last frame: nothing valid follows, but the durable position
    // (300) says it was complete, so it cannot be a write in progress.
    let last = frames.last().unwrap();
    flip(&last.segment, last.offset + FRAME_HEADER_BYTES as u64);
    let mut follower = follow(dir, FollowOptions::default());
    assert_eq!(events_through(&mut follower, 299).await.len(), 299);
    match next(&mut follower).await {
        Err(Error::ChecksumMismatch {
            segment, offset, ..
        }) => {
            assert_eq!((segment, offset), ((*last.segment).clone(), last.offset));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }

    // Without a published position a reader ahead of it cannot tell it from a write in
    // progress: it waits (the next writer's recovery would cut it as a torn tail).
    std::fs::remove_file(durable_path(dir)).unwrap();
    let mut follower = follow(
        dir,
        FollowOptions {
            read_ahead: true,
            ..FollowOptions::default()
        },
    );
    assert_eq!(events_through(&mut follower, 299).await.len(), 299);
    assert_quiet(&mut follower, Duration::from_millis(300)).await;
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[usize::try_from(offset).unwrap()] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_alone_keeps_up_without_file_notifications() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 4 * 1024);
    let mut follower = follow(
        dir,
        FollowOptions {
            watch_files: false,
            poll_interval_ms: 5,
            ..FollowOptions::default()
        },
    );
    assert!(!follower.is_watching());
    let writer = append_in_thread(&journal, 1..=500, small_event);
    // The first ones through the `Stream` impl, the rest through `next`.
    let mut received = Vec::new();
    while received.len() < 10 {
        let item = std::future::poll_fn(|cx| Pin::new(&mut follower).poll_next(cx)).await;
        match item.unwrap().unwrap() {
            FollowItem::Event(envelope) => received.push(envelope),
            other => panic!("unexpected {other:?}"),
        }
    }
    received.extend(events_through(&mut follower, 500).await);
    assert_eq!(received, writer.join().unwrap());
    journal.close_async().await.unwrap();
}

#[test]
fn close_stops_the_reader_thread_promptly_whether_idle_or_blocked_on_a_full_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 4 * 1024);
    append_in_thread(&journal, 1..=200, small_event)
        .join()
        .unwrap();
    // Blocked: 200 events waiting, room for one.
    let blocked = follow(
        dir,
        FollowOptions {
            queue_capacity: 1,
            poll_interval_ms: 60_000,
            ..FollowOptions::default()
        },
    );
    // Idle: nothing to read, a long poll interval.
    let idle = follow(
        dir,
        FollowOptions {
            from_seq: 1_000,
            poll_interval_ms: 60_000,
            ..FollowOptions::default()
        },
    );
    std::thread::sleep(Duration::from_millis(100));
    for follower in [blocked, idle] {
        let started = std::time::Instant::now();
        follower.close();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "close took {:?}",
            started.elapsed()
        );
    }
    journal.close().unwrap();
}

#[test]
fn the_blocking_iterator_follows_from_a_plain_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 4 * 1024);
    let writer = append_in_thread(&journal, 1..=300, small_event);
    let mut follower = follow(dir, FollowOptions::default());
    let received: Vec<Envelope> = follower
        .blocking_iter()
        .take(300)
        .map(|item| match item.unwrap() {
            FollowItem::Event(envelope) => envelope,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(received, writer.join().unwrap());
    journal.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_frame_seen_before_an_earlier_one_past_the_durable_position_waits() {
    // The writer overwrites a preallocated segment's zeros in place, so a read racing the copy
    // can see frame 9 complete while frame 8 is not yet. Past the published durable position
    // that is a write in progress; once the position covers it, it is damage.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = open(dir, 1 << 20);
    for n in 1..=9 {
        journal.append_async(&small_event(n)).await.unwrap();
    }
    journal.close_async().await.unwrap();
    let frames: Vec<_> = JournalReader::open(dir)
        .unwrap()
        .frames(1)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let eighth = &frames[7];
    flip(
        &eighth.segment,
        eighth.offset + FRAME_HEADER_BYTES as u64 + 1,
    );
    publish_durable(dir, 7);
    let mut ahead = follow(
        dir,
        FollowOptions {
            read_ahead: true,
            ..FollowOptions::default()
        },
    );
    assert_eq!(events_through(&mut ahead, 7).await.len(), 7);
    assert_quiet(&mut ahead, Duration::from_millis(300)).await;

    publish_durable(dir, 9);
    match next(&mut ahead).await {
        Err(Error::ChecksumMismatch { offset, seq, .. }) => {
            assert_eq!((offset, seq), (eighth.offset, Some(8)));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
}
