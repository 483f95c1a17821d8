//! netcode.io packet cost: encrypt + authenticate + decrypt of one 1,000-byte payload packet
//! (ChaCha20-Poly1305), and the bytes each packet adds on the wire.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zone_core::netcode::Key;
use zone_core::netcode::packet::payload_roundtrip;

fn roundtrip(c: &mut Criterion) {
    let key = Key::from_bytes([7; 32]);
    let payload = [0xA5u8; 1_000];
    let mut scratch = [0u8; zone_core::netcode::MAX_PACKET_BYTES];
    for seq in [0u64, 300, 70_000, 1 << 40] {
        let n = payload_roundtrip(&mut scratch, &key, 0x1234, seq, &payload).expect("round trip");
        println!(
            "netcode overhead at sequence {seq}: {} bytes per payload packet",
            n - payload.len()
        );
    }
    let mut group = c.benchmark_group("netcode");
    group.throughput(Throughput::Elements(1));
    let mut seq = 1_000u64;
    group.bench_function("payload_roundtrip/1000B", |b| {
        b.iter(|| {
            seq += 1;
            black_box(payload_roundtrip(
                &mut scratch,
                &key,
                0x1234,
                seq,
                black_box(&payload),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
