//! Encode and decode throughput of chat messages in both hub protocols.
//!
//! Each case sets the throughput to the framed message size, so criterion prints MB/s (bytes) —
//! messages/s is 1 / time per iteration, and `scripts/bench-table.py` prints both side by side.
//! The `serde_json::Value` rows decode the same JSON into a full dynamic tree, as a naive
//! decoder would: the baseline that parsing the envelope once with raw arguments is against.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hubbub_bench::{CHAT_SIZES, broadcast};
use hubbub_protocol::{DEFAULT_MAX_MESSAGE_SIZE, HubMessage, MessageReader, Protocol};

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (label, size) in CHAT_SIZES {
        let message = broadcast(size);
        for protocol in Protocol::ALL {
            let framed = protocol.encode_to_vec(&message).unwrap();
            group.throughput(Throughput::Bytes(framed.len() as u64));
            let mut out = Vec::with_capacity(framed.len());
            group.bench_function(BenchmarkId::new(protocol.name(), label), |b| {
                b.iter(|| {
                    out.clear();
                    protocol.encode(black_box(&message), &mut out).unwrap();
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (label, size) in CHAT_SIZES {
        let message = broadcast(size);
        for protocol in Protocol::ALL {
            let framed = protocol.encode_to_vec(&message).unwrap();
            group.throughput(Throughput::Bytes(framed.len() as u64));
            // Through the incremental reader, as a connection receives a read: take the message
            // and read its text argument as a String.
            let read = Bytes::from(framed.clone());
            let mut reader = MessageReader::new(protocol, DEFAULT_MAX_MESSAGE_SIZE);
            group.bench_function(BenchmarkId::new(protocol.name(), label), |b| {
                b.iter(|| {
                    reader.push_bytes(black_box(read.clone()));
                    let Some(HubMessage::Invocation(inv)) = reader.next_message().unwrap() else {
                        unreachable!()
                    };
                    let text: String = inv.arguments[1].decode().unwrap();
                    black_box(text.len())
                })
            });
            // What a hub does to relay a message: the envelope only; arguments stay raw.
            let mut reader = MessageReader::new(protocol, DEFAULT_MAX_MESSAGE_SIZE);
            group.bench_function(
                BenchmarkId::new(format!("{}-relay", protocol.name()), label),
                |b| {
                    b.iter(|| {
                        reader.push_bytes(black_box(read.clone()));
                        let Some(HubMessage::Invocation(inv)) = reader.next_message().unwrap()
                        else {
                            unreachable!()
                        };
                        black_box(inv.arguments.len())
                    })
                },
            );
            if protocol == Protocol::Json {
                let body = Bytes::copy_from_slice(&framed[..framed.len() - 1]);
                group.bench_function(BenchmarkId::new("json-serde_json-Value", label), |b| {
                    b.iter(|| {
                        let v: serde_json::Value =
                            serde_json::from_slice(black_box(&body)).unwrap();
                        let text = v["arguments"][1].as_str().unwrap().to_owned();
                        black_box(text.len())
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
