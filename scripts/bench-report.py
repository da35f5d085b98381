#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench.sh into Markdown tables of medians and ratios."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(list)
for r in rows:
    by[r["scenario"]].append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs if r.get(k) is not None)

fan = defaultdict(list)
for r in by["fanout"]:
    fan[(r["size"], r["receivers"], r["server"], r["protocol"])].append(r)
names = {"plain-hub": "plain broadcast hub (library)", "plain-hub-classic": "plain broadcast hub, classic", "hubbub": "Hubbub hub", "hubbub-classic": "Hubbub hub, classic 2.x (/signalr)", "raw-rust": "raw WebSocket, same stack (Rust)", "node-ws": "raw WebSocket, Node ws", "aiosignalr": "aiosignalr (Python)"}
order = [("hubbub", "json"), ("hubbub", "messagepack"), ("hubbub-classic", "json"), ("plain-hub", "json"), ("plain-hub", "messagepack"), ("plain-hub-classic", "json"), ("raw-rust", "json"), ("node-ws", "json"), ("aiosignalr", "json"), ("aiosignalr", "messagepack")]
for size in sorted({k[0] for k in fan}):
    print(f"### Fan-out, {size}-byte messages: one sender → N receivers\n")
    print("| server | protocol | N | runs | deliveries/s | server CPU µs/delivery | latency p50 ms | latency p99 ms | lost |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted({k[1] for k in fan if k[0] == size}):
        for server, proto in order:
            rs = fan.get((size, n, server, proto))
            if not rs:
                continue
            label = "raw" if server in ("raw-rust", "node-ws") else "classic json" if server == "hubbub-classic" else proto
            print(f"| {names[server]} | {label} | {n:,} | {len(rs)} | {med(rs, 'deliveriesPerSecond'):,.0f} | "
                  f"{med(rs, 'serverCpuMicrosPerDelivery'):.2f} | {med(rs, 'latencyP50Ms'):.1f} | {med(rs, 'latencyP99Ms'):.1f} | "
                  f"{sum(r['lost'] for r in rs)} |")
    print()
    # How cost grows with N, and the ratio to the practical limit.
    print(f"Server CPU per delivery as N grows ({size}-byte messages), and Hubbub (JSON) against the raw server on the same stack:\n")
    ns = sorted({k[1] for k in fan if k[0] == size})
    print("| server | " + " | ".join(f"N={n:,}" for n in ns) + " |")
    print("|---|" + "---:|" * len(ns))
    for server, proto in order:
        cells = []
        for n in ns:
            rs = fan.get((size, n, server, proto))
            cells.append(f"{med(rs, 'serverCpuMicrosPerDelivery'):.2f} µs" if rs else "–")
        if any(c != "–" for c in cells):
            print(f"| {names[server]} ({'raw' if server in ('raw-rust', 'node-ws') else proto}) | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        a, b = fan.get((size, n, "hubbub", "json")), fan.get((size, n, "raw-rust", "json"))
        cells.append(f"{med(a, 'serverCpuMicrosPerDelivery') / max(med(b, 'serverCpuMicrosPerDelivery'), 1e-9):.2f}×" if a and b else "–")
    print("| hub ÷ raw (CPU per delivery) | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        a, b = fan.get((size, n, "hubbub-classic", "json")), fan.get((size, n, "hubbub", "json"))
        cells.append(f"{med(a, 'serverCpuMicrosPerDelivery') / max(med(b, 'serverCpuMicrosPerDelivery'), 1e-9):.2f}×" if a and b else "–")
    if any(c != "–" for c in cells):
        print("| classic ÷ Core, same hub (CPU per delivery) | " + " | ".join(cells) + " |")
    print()

# Issue 19, target 2: CPU per delivery against the lean raw server, every N, both sizes; the
# chat hub's own work per message is the chat hub less the plain broadcast hub, times N.
if any(k[2] == "plain-hub" for k in fan):
    cpu = lambda size, n, server, proto: (med(fan[(size, n, server, proto)], "serverCpuMicrosPerDelivery")
                                          if fan.get((size, n, server, proto)) else None)
    cols = [("chat hub, JSON", "hubbub", "json", "plain-hub"), ("chat hub, MessagePack", "hubbub", "messagepack", "plain-hub"),
            ("chat hub, classic", "hubbub-classic", "json", "plain-hub-classic")]
    print("### CPU per delivery ÷ the lean raw server (issue 19, target 2)\n")
    print("Server CPU µs per delivery (medians), each hub ÷ the raw server of the same N and size, and the chat hub's "
          "own work per message (chat hub − plain broadcast hub, × N, in µs):\n")
    print("| size | N | raw µs | " + " | ".join(f"{c[0]} µs (÷ raw) | plain µs (÷ raw) | chat's own µs/message" for c in cols) + " |")
    print("|---:|---:|---:|" + "---:|---:|---:|" * len(cols))
    for size in sorted({k[0] for k in fan}):
        for n in sorted({k[1] for k in fan if k[0] == size}):
            raw = cpu(size, n, "raw-rust", "json")
            if raw is None:
                continue
            cells = []
            for _, server, proto, plain in cols:
                a, b = cpu(size, n, server, proto), cpu(size, n, plain, proto)
                cells.append(f"{a:.2f} ({a / max(raw, 1e-9):.2f}×)" if a is not None else "–")
                cells.append(f"{b:.2f} ({b / max(raw, 1e-9):.2f}×)" if b is not None else "–")
                cells.append(f"{(a - b) * n:.1f}" if a is not None and b is not None else "–")
            print(f"| {size} | {n:,} | {raw:.2f} | " + " | ".join(cells) + " |")
    print()

scale = defaultdict(list)
for r in by["scaleout"]:
    scale[(r["server"], r["nodes"], r["receivers"])].append(r)
if scale:
    print("### Scale-out: the same fan-out through one hub, and through 1, 2, 3 nodes sharing Redis or PostgreSQL\n")
    print("One sender on the first node, receivers spread evenly over the nodes, 16-byte JSON messages; everything on this machine (nodes, redis-server or PostgreSQL, load generator share its cores). Redis and PostgreSQL rows of the same node count are from the same run, same load.\n")
    print("| setup | nodes | receivers | runs | deliveries/s | latency p50 ms | latency p99 ms | lost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    labels = {"hubbub": "one hub, no backplane", "hubbub-redis": "hub nodes + Redis",
              "hubbub-postgres": "hub nodes + PostgreSQL"}
    order = {"hubbub": 0, "hubbub-redis": 1, "hubbub-postgres": 2}
    for key in sorted(scale, key=lambda k: (k[2], k[0] != "hubbub", k[1], order.get(k[0], 3))):
        rs = scale[key]
        server, nodes, n = key
        label = labels.get(server, server)
        print(f"| {label} | {nodes} | {n:,} | {len(rs)} | {med(rs, 'deliveriesPerSecond'):,.0f} | "
              f"{med(rs, 'latencyP50Ms'):.2f} | {med(rs, 'latencyP99Ms'):.2f} | {sum(r['lost'] for r in rs)} |")
    print()
    ratios = []
    for (server, nodes, n), rs in sorted(scale.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if server != "hubbub-postgres":
            continue
        redis = scale.get(("hubbub-redis", nodes, n))
        if redis:
            ratios.append(f"{nodes} node{'s' if nodes > 1 else ''}: "
                          f"{med(rs, 'deliveriesPerSecond') / max(med(redis, 'deliveriesPerSecond'), 1e-9):.2f}×")
    if ratios:
        print("PostgreSQL ÷ Redis, deliveries/s: " + ", ".join(ratios) + "\n")

idle = defaultdict(list)
for r in by["idle"]:
    transport = r.get("transport", "websockets")
    mode = r["mode"] if transport == "websockets" else f'{r["mode"]}-{transport}'
    idle[(mode, r["connections"])].append(r)
if idle:
    print("### Idle connections: server memory (RSS) per connection\n")
    ns = sorted({k[1] for k in idle})
    print("| server | " + " | ".join(f"{n:,} connections" for n in ns) + " |")
    print("|---|" + "---:|" * len(ns))
    for mode, name in [("signalr", "Hubbub hub"), ("raw", "raw WebSocket, same stack"),
                       ("signalr-sse", "Hubbub hub, SSE (hubbub-client: 2 HTTP connections each)"),
                       ("signalr-longpolling", "Hubbub hub, long polling (the same)")]:
        if not any(k[0] == mode for k in idle):
            continue
        print(f"| {name} | " + " | ".join(f"{med(idle[(mode, n)], 'bytesPerConnection'):,.0f} B" if idle.get((mode, n)) else "–" for n in ns) + " |")
    print()

cl = defaultdict(list)
for r in by["client"]:
    cl[(r["client"].split(" ")[0], r["protocol"].replace("messagepack", "msgpack"))].append(r)
# A classic stream: hubbub-client on /signalr, node-signalr (npm) as the independent baseline.
if cl:
    print("### Client: one connection decoding a flood of small broadcasts; invoke round trips\n")
    print("| client | protocol | runs | messages/s | client CPU µs/message | invoke p50 ms | invoke p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in sorted(cl):
        rs = cl[key]
        cpu = med(rs, 'cpuUsPerMessage') if all('cpuUsPerMessage' in r for r in rs) else None
        print(f"| {rs[0]['client']} | {key[1]} | {len(rs)} | {med(rs, 'messagesPerSecond'):,.0f} | "
              f"{'–' if cpu is None else f'{cpu:.3f}'} | {med(rs, 'invokeP50Ms'):.3f} | {med(rs, 'invokeP99Ms'):.3f} |")

    def ratios(ours, theirs):
        text = f"{med(ours, 'messagesPerSecond') / med(theirs, 'messagesPerSecond'):.2f}× the messages/s"
        if all('cpuUsPerMessage' in r for r in ours + theirs):
            text += f", {med(theirs, 'cpuUsPerMessage') / med(ours, 'cpuUsPerMessage'):.2f}× less CPU per message"
        return text
    for p in ("json", "msgpack"):
        ours, theirs = cl.get(("hubbub-client", p)), cl.get(("@microsoft/signalr", p))
        if ours and theirs:
            print(f"\nhubbub-client vs @microsoft/signalr ({p}): {ratios(ours, theirs)}, "
                  f"{med(theirs, 'invokeP50Ms') / med(ours, 'invokeP50Ms'):.2f}× faster invoke p50.", end="")
    ours, theirs, core = cl.get(("hubbub-client", "classic")), cl.get(("node-signalr", "classic")), cl.get(("hubbub-client", "json"))
    if ours and theirs:
        print(f"\nhubbub-client vs node-signalr (classic stream): {ratios(ours, theirs)}, "
              f"{med(theirs, 'invokeP50Ms') / med(ours, 'invokeP50Ms'):.2f}× faster invoke p50.", end="")
    if ours and core:
        cpu = ""
        if all('cpuUsPerMessage' in r for r in ours + core):
            cpu = f", {med(ours, 'cpuUsPerMessage') / med(core, 'cpuUsPerMessage'):.2f}× the CPU per message"
        print(f"\nhubbub-client, classic stream ÷ Core JSON stream: {med(ours, 'messagesPerSecond') / med(core, 'messagesPerSecond'):.2f}× the messages/s{cpu}.", end="")
    print("\n")

if by["reconnect"]:
    rs = by["reconnect"]
    print("### Reconnect: hub killed, down for {} ms, restarted; default policy (0, 2, 10, 30 s)\n".format(rs[0]["downMs"]))
    print("| runs | hub start ms | client reconnected, ms after the restart began |")
    print("|---:|---:|---:|")
    print(f"| {len(rs)} | {med(rs, 'hubStartMs'):.0f} | {med(rs, 'reconnectedAfterRestartMs'):.0f} |\n")

for r in by["store"]:
    print(f"### History store: {r['messages']:,} messages in one SQLite file\n")
    print("| insert, one per transaction | insert, 1,000 per transaction | newest 100 | 100 deep in history | full-text query (50 newest hits) | bytes per message |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {r['insertSinglePerSecond']:,.0f}/s | {r['insertBatchedPerSecond']:,.0f}/s | {r['newest100MedianMs']:.3f} ms | "
          f"{r['page100DeepMedianMs']:.3f} ms | {r['ftsMedianMs']:.3f} ms | {r['bytesPerMessage']:.0f} |")
