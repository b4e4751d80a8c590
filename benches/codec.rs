//! Criterion micro-benchmarks of the codec: event payloads (MessagePack) and journal frames
//! (header + CRC32C), on a realistic ~1.2 KB torrent state (5 files, 3 trackers, 2 labels).
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use torrent_journal::event::{self, Event};
use torrent_journal::model::{InfoHash, Timestamp, TorrentState};
use torrent_journal::testing::format::frame;

fn saved_event() -> Event {
    let state = TorrentState::sample(
        InfoHash::V1([0xab; 20]),
        "ubuntu-24.04-desktop-amd64",
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    );
    Event::TorrentSaved {
        torrent: Box::new(state),
    }
}

fn codec(c: &mut Criterion) {
    let event = saved_event();
    let payload = event::encode(&event).expect("encode");
    let mut framed = Vec::new();
    frame::encode(&mut framed, 1, 1_700_000_000_000_000_000, &payload);

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("event_encode", |b| {
        b.iter(|| event::encode(black_box(&event)).expect("encode"))
    });
    group.bench_function("event_encode_into_reused_buffer", |b| {
        let mut buf = Vec::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            event::encode_into(black_box(&event), &mut buf).expect("encode");
            black_box(buf.len())
        })
    });
    group.bench_function("event_decode", |b| {
        b.iter(|| event::decode(black_box(&payload)).expect("decode"))
    });
    group.bench_function("frame_encode_crc", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            frame::encode(&mut out, black_box(7), black_box(42), black_box(&payload));
            black_box(out.len())
        })
    });
    group.bench_function("frame_decode_crc", |b| {
        b.iter(|| frame::decode(black_box(&framed)).expect("frame"))
    });
    group.bench_function("encode_and_frame", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            let payload = event::encode(black_box(&event)).expect("encode");
            frame::encode(&mut out, 7, 42, &payload);
            black_box(out.len())
        })
    });
    group.bench_function("clone_event", |b| {
        b.iter_batched(|| (), |()| black_box(&event).clone(), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
