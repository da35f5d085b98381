#!/usr/bin/env python3
"""Prints criterion's latest protocol results as a Markdown table: median time per message,
messages/s and MB/s side by side, and the ratio against the serde_json::Value baseline.

    cargo bench -p hubbub-bench --bench protocol
    python3 scripts/bench-table.py [$CARGO_TARGET_DIR/criterion]
"""
import json
import os
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else
            os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion"))


def load(group, function, size):
    d = root / group / function / size / "new"
    try:
        est = json.loads((d / "estimates.json").read_text())
        bench = json.loads((d / "benchmark.json").read_text())
    except FileNotFoundError:
        return None
    median_ns = est["median"]["point_estimate"]
    nbytes = (bench.get("throughput") or {}).get("Bytes", 0)
    return median_ns, nbytes


print("| operation | message | protocol | framed bytes | median | messages/s | MB/s | vs serde_json::Value |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for group in ("encode", "decode"):
    for size in ("small", "1KiB", "16KiB"):
        baseline = load(group, "json-serde_json-Value", size)
        for function in ("json", "json-relay", "messagepack", "messagepack-relay", "json-serde_json-Value"):
            r = load(group, function, size)
            if r is None:
                continue
            ns, nbytes = r
            ratio = ""
            if baseline and function != "json-serde_json-Value":
                ratio = f"{baseline[0] / ns:.2f}× faster"
            print(f"| {group} | {size} | {function} | {nbytes} | {ns / 1000:.3f} µs | "
                  f"{1e9 / ns:,.0f} | {nbytes / ns * 1000:,.1f} | {ratio} |")
