#!/usr/bin/env bash
# Runs the hub and client benchmarks side by side on 127.0.0.1 and prints a table of medians.
#
#   scripts/bench.sh            full: 3 runs per scenario, 1,000 fan-out receivers, 10,000 idle connections
#   scripts/bench.sh --smoke    one short run of each scenario: checks they work, not how fast
#
# Scenarios (servers are separate processes; their CPU and memory are read from /proc):
#   fanout  one sender → N receivers: Hubbub's hub (JSON, MessagePack) vs a raw WebSocket
#           broadcast server on the same stack (crates/bench/src/bin/raw-broadcast.rs)
#   idle    server RSS per idle connection: Hubbub's hub vs the raw server
#   client  messages/s decoded and dispatched + invoke round trips: hubbub-client vs the official
#           @microsoft/signalr client (Node), against the same hub
#   store   the SQLite history: insert rates, page and full-text latency, bytes per message
# Every scenario counts each delivery it expects and fails on any loss.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh test

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then
    runs=1; receivers=50; messages=50; idle=200; flood=2000; invokes=100; stored=20000
else
    runs=3; receivers=1000; messages=200; idle=10000; flood=50000; invokes=2000; stored=1000000
fi

cargo build --release --locked -p hubbub-cli -p hubbub-bench
bin="$CARGO_TARGET_DIR/release"
if [ ! -d tests/interop/node/node_modules/@microsoft/signalr ]; then
    (cd tests/interop/node && npm ci --no-audit --no-fund)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=$(mktemp)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "server on $1 did not start" >&2; return 1; }
start_hub() { local port; port=$(free_port); "$bin/hubbub" hub --listen "127.0.0.1:$port" --max-messages-per-second 1000000 --max-connections 30000 2>/dev/null & pids+=($!); wait_port "$port"; echo "$! $port"; }
start_raw() { local port; port=$(free_port); "$bin/raw-broadcast" --listen "127.0.0.1:$port" >/dev/null & pids+=($!); wait_port "$port"; echo "$! $port"; }

for run in $(seq "$runs"); do
    echo "== run $run of $runs" >&2
    # Fan-out: fresh servers per scenario, so no run inherits another's memory or queues.
    for proto in json msgpack; do
        read -r pid port < <(start_hub)
        "$bin/loadgen" fanout --url "ws://127.0.0.1:$port/chathub" --mode signalr --protocol "$proto" \
            --receivers "$receivers" --messages "$messages" --server-pid "$pid" >> "$out"
        kill "$pid"
    done
    read -r pid port < <(start_raw)
    "$bin/loadgen" fanout --url "ws://127.0.0.1:$port/ws" --mode raw --receivers "$receivers" --messages "$messages" --server-pid "$pid" >> "$out"
    kill "$pid"
    # Idle connections.
    read -r pid port < <(start_hub)
    "$bin/loadgen" idle --url "ws://127.0.0.1:$port/chathub" --mode signalr --connections "$idle" --server-pid "$pid" >> "$out"
    kill "$pid"
    read -r pid port < <(start_raw)
    "$bin/loadgen" idle --url "ws://127.0.0.1:$port/ws" --mode raw --connections "$idle" --server-pid "$pid" >> "$out"
    kill "$pid"
    # Clients against the same hub.
    read -r pid port < <(start_hub)
    for proto in json msgpack; do
        "$bin/loadgen" client --url "http://127.0.0.1:$port/chathub" --messages "$flood" --invokes "$invokes" --protocol "$proto" >> "$out"
        (cd tests/interop/node && node bench-client.mjs "http://127.0.0.1:$port/chathub" "$flood" "$invokes" "$proto") >> "$out"
    done
    kill "$pid"
done

# The history store, once (it is deterministic enough, and 1,000,000 messages take a minute).
"$bin/store-bench" --messages "$stored" >> "$out"

python3 scripts/bench-report.py "$out"
