#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench.sh into Markdown tables of medians and ratios."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = defaultdict(list)
store_rows = [r for r in rows if r["scenario"] == "store"]
rows = [r for r in rows if r["scenario"] != "store"]
for r in rows:
    if r["scenario"] == "fanout":
        key = ("fanout", r["mode"], r["protocol"] if r["mode"] == "signalr" else "-")
    elif r["scenario"] == "idle":
        key = ("idle", r["mode"])
    else:
        key = ("client", r["client"].split(" ")[0], r["protocol"].replace("messagepack", "msgpack"))
    groups[key].append(r)

med = lambda rs, k: statistics.median(r[k] for r in rs if r.get(k) is not None)
runs = lambda rs: len(rs)

print("### Fan-out: one sender → %d receivers, %d messages of %d bytes\n" % (
    rows[0]["receivers"], rows[0]["messages"], rows[0]["size"]) if rows and rows[0]["scenario"] == "fanout" else "")
print("| server | protocol | runs | deliveries/s | server CPU µs/delivery | latency p50 ms | latency p99 ms | lost |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
raw = groups.get(("fanout", "raw", "-"))
for key in [("fanout", "signalr", "json"), ("fanout", "signalr", "messagepack"), ("fanout", "raw", "-")]:
    rs = groups.get(key)
    if not rs:
        continue
    name = "Hubbub hub" if key[1] == "signalr" else "raw WebSocket broadcast (same stack)"
    print(f"| {name} | {key[2]} | {runs(rs)} | {med(rs, 'deliveriesPerSecond'):,.0f} | "
          f"{med(rs, 'serverCpuMicrosPerDelivery'):.2f} | {med(rs, 'latencyP50Ms'):.1f} | "
          f"{med(rs, 'latencyP99Ms'):.1f} | {sum(r['lost'] for r in rs)} |")
if raw:
    for p in ("json", "messagepack"):
        rs = groups.get(("fanout", "signalr", p))
        if rs:
            print(f"\nHub ({p}) vs raw: {med(rs, 'deliveriesPerSecond') / med(raw, 'deliveriesPerSecond'):.2f}× the deliveries/s, "
                  f"{med(rs, 'serverCpuMicrosPerDelivery') / med(raw, 'serverCpuMicrosPerDelivery'):.2f}× the server CPU per delivery.", end="")
    print("\n")

print("### Idle connections: server memory\n")
print("| server | connections | runs | RSS per connection (bytes) |")
print("|---|---:|---:|---:|")
for mode, name in [("signalr", "Hubbub hub"), ("raw", "raw WebSocket broadcast (same stack)")]:
    rs = groups.get(("idle", mode))
    if rs:
        print(f"| {name} | {rs[0]['connections']:,} | {runs(rs)} | {med(rs, 'bytesPerConnection'):,.0f} |")
print()

print("### Client: one connection decoding a flood of small broadcasts; invoke round trips\n")
print("| client | protocol | runs | messages/s | invoke p50 ms | invoke p99 ms |")
print("|---|---|---:|---:|---:|---:|")
for key in sorted(k for k in groups if k[0] == "client"):
    rs = groups[key]
    print(f"| {rs[0]['client']} | {key[2]} | {runs(rs)} | {med(rs, 'messagesPerSecond'):,.0f} | "
          f"{med(rs, 'invokeP50Ms'):.3f} | {med(rs, 'invokeP99Ms'):.3f} |")
for p in ("json", "msgpack"):
    ours, theirs = groups.get(("client", "hubbub-client", p)), groups.get(("client", "@microsoft/signalr", p))
    if ours and theirs:
        print(f"\nhubbub-client vs @microsoft/signalr ({p}): {med(ours, 'messagesPerSecond') / med(theirs, 'messagesPerSecond'):.2f}× the messages/s, "
              f"{med(theirs, 'invokeP50Ms') / med(ours, 'invokeP50Ms'):.2f}× faster invoke p50.", end="")
print()

for r in store_rows:
    print(f"\n### History store: {r['messages']:,} messages in one SQLite file\n")
    print("| insert, one per transaction | insert, 1,000 per transaction | newest 100 | 100 deep in history | full-text query (50 newest hits) | bytes per message |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {r['insertSinglePerSecond']:,.0f}/s | {r['insertBatchedPerSecond']:,.0f}/s | {r['newest100MedianMs']:.3f} ms | "
          f"{r['page100DeepMedianMs']:.3f} ms | {r['ftsMedianMs']:.3f} ms | {r['bytesPerMessage']:.0f} |")
