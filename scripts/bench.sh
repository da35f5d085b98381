#!/usr/bin/env bash
# Runs every benchmark scenario side by side on 127.0.0.1 and prints tables of medians and
# ratios (scripts/bench-report.py). BENCHMARKS.md holds the latest tables.
#
#   scripts/bench.sh            full: 3 runs per scenario (a quarter of an hour on 2 cores)
#   scripts/bench.sh --smoke    one short run of each: checks they work and lose nothing (CI)
#
# Scenarios (every server is its own process, started fresh per scenario; CPU and memory are
# read from /proc; the load generator counts every delivery it expects and fails on any loss):
#   fanout     one sender → 10, 100, 1,000, 10,000 receivers; 16 B and 1 KiB messages.
#              Hubbub's hub (JSON, MessagePack), a raw WebSocket broadcast server on the same
#              stack (crates/bench/src/bin/raw-broadcast.rs), aiosignalr (PyPI; JSON,
#              MessagePack), and a raw broadcast server on Node's `ws` (npm); the same hub's
#              classic 2.x endpoint (/signalr, WebSockets) beside its Core one.
#   idle       server memory per idle connection at 1,000 and 10,000: hub vs raw (WebSockets);
#              the hub's SSE and long polling at 2,000
#   client     messages/s decoded and dispatched + invoke round trips: hubbub-client vs the
#              official @microsoft/signalr client (Node), against the same hub; on a classic
#              stream (/signalr), hubbub-client vs node-signalr (npm)
#   reconnect  hub killed and restarted: time until the client is back (default policy)
#   store      the SQLite history: insert rates, page and full-text latency, bytes per message
#   app        the desktop app: launch to interactive, idle memory of all its processes, .deb
#              size, beside the terminal chat (scripts/bench-app.mjs)
#   scaleout   the same fan-out (one sender, receivers spread evenly over the nodes) through one
#              hub without a backplane, and through 1, 2 and 3 `hubbub hub` nodes sharing one
#              redis-server (--redis) or one PostgreSQL (--postgres; a cluster of its own in a
#              temporary directory, fsync off as Redis runs without persistence), in the same
#              run: deliveries/s and latency side by side
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh test

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then
    runs=1; sizes="10 50"; idles="200"; flood=2000; invokes=100; stored=20000; fleet=30
else
    runs=3; sizes="10 100 1000 10000"; idles="1000 10000"; flood=50000; invokes=2000; stored=1000000; fleet=1000
fi
payloads="16 1024"
# Narrow a run: HUBBUB_BENCH_SIZES="10 100" HUBBUB_BENCH_ONLY=fanout|scaleout|app|classic|delivery scripts/bench.sh
# (classic: the classic endpoint's fan-out beside Core's and the raw server's, and the client
# scenario on Core and classic streams; delivery: CPU per delivery of the chat hub and of a
# plain broadcast hub, Core JSON and MessagePack and classic, beside the raw server)
sizes="${HUBBUB_BENCH_SIZES:-$sizes}"
only="${HUBBUB_BENCH_ONLY:-}"

cargo build --release --locked -p hubbub-cli -p hubbub-bench
bin="$CARGO_TARGET_DIR/release"
if [ ! -d tests/interop/node/node_modules/ws ]; then
    (cd tests/interop/node && npm ci --no-audit --no-fund)
fi
if [ ! -d tests/interop/classic/node_modules/node-signalr ]; then
    (cd tests/interop/classic && npm ci --no-audit --no-fund)
fi
python="${HUBBUB_PYTHON:-$HOME/.cache/hubbub/venv/bin/python}"
if ! "$python" -c 'import aiosignalr' 2>/dev/null; then
    python3 -m venv "$HOME/.cache/hubbub/venv"
    "$HOME/.cache/hubbub/venv/bin/pip" install -q -r tests/interop/python/requirements.txt
    python="$HOME/.cache/hubbub/venv/bin/python"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=$(mktemp)
pids=()
pg_dirs=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for d in "${pg_dirs[@]}"; do
        if [ -n "$d" ]; then stop_pg "$d" immediate 2>/dev/null || true; fi
    done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "server on $1 did not start" >&2; return 1; }
# Each prints "PID PORT PATH MODE" for the load generator. Hubs keep their history in memory
# (`--history memory`), as before durable history became the default: the fan-out figures stay
# comparable with earlier runs and measure delivery, not SQLite (the store has its own bench).
start_hub() { local p; p=$(free_port); "$bin/hubbub" hub --listen "127.0.0.1:$p" --history memory --max-messages-per-second 1000000 --max-connections 30000 --max-tcp-connections-per-address 30000 2>/dev/null & pids+=($!); wait_port "$p"; echo "$! $p ${1:-/chathub} ${2:-signalr}"; }
start_classic() { start_hub /signalr classic; }
# The hub library with a plain broadcast hub (no history, ids or numbering): the chat hub's own
# cost per message is the difference (crates/bench/src/bin/plain-hub.rs).
start_plain() { local p; p=$(free_port); "$bin/plain-hub" --listen "127.0.0.1:$p" >/dev/null & pids+=($!); wait_port "$p"; echo "$! $p ${1:-/chathub} ${2:-signalr}"; }
start_plain_classic() { start_plain /signalr classic; }
start_raw() { local p; p=$(free_port); "$bin/raw-broadcast" --listen "127.0.0.1:$p" >/dev/null & pids+=($!); wait_port "$p"; echo "$! $p /ws raw"; }
start_node() { local p; p=$(free_port); (cd tests/interop/node && exec node ws-broadcast.mjs "$p") >/dev/null & pids+=($!); wait_port "$p"; echo "$! $p /ws raw"; }
start_aio() { local p; p=$(free_port); "$python" tests/interop/python/aiosignalr_hub.py --port "$p" >/dev/null 2>&1 & pids+=($!); wait_port "$p"; echo "$! $p /chathub signalr"; }

start_redis() { local p; p=$(free_port); redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no >/dev/null & pids+=($!); wait_port "$p"; echo "$! $p"; }
# PostgreSQL from Debian's packages; its programs refuse root, so as the postgres user then.
pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_pg() { # prints "DIR PORT"; the cluster lives in DIR
    local p d; p=$(free_port); d=$(mktemp -d); [ "$(id -u)" = 0 ] && chown postgres:postgres "$d"
    as_pg "$(pg_bin)/initdb" -D "$d/data" --auth=trust -U postgres -E UTF8 --no-locale >/dev/null
    as_pg "$(pg_bin)/pg_ctl" -D "$d/data" -l "$d/log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $p -c unix_socket_directories='' -c fsync=off" start >/dev/null
    echo "$d $p"
}
stop_pg() { as_pg "$(pg_bin)/pg_ctl" -D "$1/data" -m "${2:-fast}" -w -t 30 stop >/dev/null; rm -rf "$1"; }
# A fleet node: "--redis URL" or "--postgres URL"; waits (10 s at most) until it has joined.
start_fleet_node() {
    local p; p=$(free_port)
    "$bin/hubbub" hub --listen "127.0.0.1:$p" "$1" "$2" --max-messages-per-second 1000000 --max-connections 30000 --max-tcp-connections-per-address 30000 2>/dev/null & pids+=($!)
    wait_port "$p"
    for _ in $(seq 200); do
        curl -s "http://127.0.0.1:$p/metrics" | grep -q '^hubbub_backplane_connected{.*} 1$' && { echo "$! $p"; return 0; }
        sleep 0.05
    done
    echo "node on $p did not join its backplane" >&2; return 1
}

scaleout() { # nodes (0: one hub without a backplane) receivers [redis|postgres]
    local urls=() stop=() pid port rpid rport pgdir messages name=hubbub backplane
    messages=$(( 200000 / $2 )); [ $messages -gt 2000 ] && messages=2000
    [ $smoke = 1 ] && messages=20
    if [ "$1" = 0 ]; then
        read -r pid port _ _ < <(start_hub); urls+=(--url "ws://127.0.0.1:$port/chathub"); stop+=("$pid")
    else
        name=hubbub-$3
        if [ "$3" = redis ]; then
            read -r rpid rport < <(start_redis); stop+=("$rpid"); backplane=(--redis "redis://127.0.0.1:$rport")
        else
            read -r pgdir rport < <(start_pg); pg_dirs+=("$pgdir"); backplane=(--postgres "postgres://postgres@127.0.0.1:$rport/postgres")
        fi
        for _ in $(seq "$1"); do
            read -r pid port < <(start_fleet_node "${backplane[@]}"); urls+=(--url "ws://127.0.0.1:$port/chathub"); stop+=("$pid")
        done
        sleep 0.3 # the nodes read each other's presence
    fi
    "$bin/loadgen" fanout "${urls[@]}" --scenario scaleout --mode signalr --protocol json --receivers "$2" \
        --messages "$messages" --size 16 --server "$name" >> "$out"
    kill "${stop[@]}"; for p in "${stop[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${pgdir:-}" ]; then stop_pg "$pgdir"; pg_dirs=("${pg_dirs[@]/$pgdir}"); fi
}

fanout() { # server-name starter protocol receivers payload
    local pid port path mode messages
    read -r pid port path mode < <("$2")
    # About 200,000 deliveries per run (20 messages at least, 2,000 at most).
    # (delivery: up to 20,000 messages, so that N = 10 has as many deliveries as the others)
    local cap=2000; [ "$only" = delivery ] && cap=20000
    messages=$(( 200000 / $4 )); [ $messages -gt $cap ] && messages=$cap; [ $messages -lt 20 ] && messages=20
    [ $smoke = 1 ] && messages=20
    "$bin/loadgen" fanout --url "ws://127.0.0.1:$port$path" --mode "$mode" --protocol "$3" --receivers "$4" \
        --messages "$messages" --size "$5" --server-pid "$pid" --server "$1" >> "$out"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

for run in $(seq "$runs"); do
    echo "== run $run of $runs" >&2
    [ "$only" = app ] && break
    if [ -z "$only" ] || [ "$only" = scaleout ]; then
        scaleout 0 "$fleet"
        for nodes in 1 2 3; do
            scaleout "$nodes" "$fleet" redis
            scaleout "$nodes" "$fleet" postgres
        done
    fi
    [ "$only" = scaleout ] && continue
    for n in $sizes; do
        for size in $payloads; do
            if [ "$only" = delivery ]; then
                fanout raw-rust start_raw json "$n" "$size"
                for proto in json msgpack; do
                    fanout hubbub start_hub "$proto" "$n" "$size"
                    fanout plain-hub start_plain "$proto" "$n" "$size"
                done
                fanout hubbub-classic start_classic json "$n" "$size"
                fanout plain-hub-classic start_plain_classic json "$n" "$size"
                continue
            fi
            fanout hubbub start_hub json "$n" "$size"
            [ "$only" = classic ] || fanout hubbub start_hub msgpack "$n" "$size"
            fanout hubbub-classic start_classic json "$n" "$size"
            fanout raw-rust start_raw json "$n" "$size"
            [ "$only" = classic ] && continue
            fanout node-ws start_node json "$n" "$size"
            fanout aiosignalr start_aio json "$n" "$size"
            fanout aiosignalr start_aio msgpack "$n" "$size"
        done
    done
    [ "$only" = fanout ] || [ "$only" = delivery ] && continue
    for n in $idles; do
        [ "$only" = classic ] && break
        read -r pid port path mode < <(start_hub)
        "$bin/loadgen" idle --url "ws://127.0.0.1:$port$path" --mode signalr --connections "$n" --server-pid "$pid" >> "$out"
        kill "$pid"; wait "$pid" 2>/dev/null || true
        read -r pid port path mode < <(start_raw)
        "$bin/loadgen" idle --url "ws://127.0.0.1:$port$path" --mode raw --connections "$n" --server-pid "$pid" >> "$out"
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
    # Long polling and SSE idle (hubbub-client connections: each holds two HTTP connections).
    for transport in sse long-polling; do
        [ "$only" = classic ] && break
        read -r pid port path mode < <(start_hub)
        "$bin/loadgen" idle --url "ws://127.0.0.1:$port$path" --mode signalr --transport "$transport" \
            --connections "$([ $smoke = 1 ] && echo 50 || echo 2000)" --server-pid "$pid" >> "$out"
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
    read -r pid port path mode < <(start_hub)
    for proto in json msgpack; do
        "$bin/loadgen" client --url "http://127.0.0.1:$port/chathub" --messages "$flood" --invokes "$invokes" --protocol "$proto" >> "$out"
        (cd tests/interop/node && node bench-client.mjs "http://127.0.0.1:$port/chathub" "$flood" "$invokes" "$proto") >> "$out"
    done
    "$bin/loadgen" client --url "http://127.0.0.1:$port/signalr" --family classic --messages "$flood" --invokes "$invokes" >> "$out"
    (cd tests/interop/classic && node bench-client.mjs "http://127.0.0.1:$port" "$flood" "$invokes") >> "$out"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    [ "$only" = classic ] || "$bin/loadgen" reconnect --hub-bin "$bin/hubbub" >> "$out"
done
# The history store, once (1,000,000 messages take about a minute).
[ -n "$only" ] || "$bin/store-bench" --messages "$stored" >> "$out"

[ "$only" = app ] || python3 scripts/bench-report.py "$out"

# The desktop app: launch to interactive, idle memory of all its processes (the app and
# WebKit's), the .deb's size; the terminal chat beside it as the baseline. Full: the release
# build and its .deb, 5 launches; smoke: the debug build the tests use, one launch.
if [ -z "$only" ] || [ "$only" = app ]; then
    echo
    echo "== the desktop app"
    if [ $smoke = 1 ]; then
        (cd ui && npm run build >/dev/null)
        cargo build --locked -p hubbub-app
        node scripts/bench-app.mjs --app "$CARGO_TARGET_DIR/debug/hubbub-app" --cli "$bin/hubbub" --runs 1 --idle 1
    else
        npx tauri build --bundles deb
        deb=$(ls -t "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb | head -1)
        node scripts/bench-app.mjs --app "$CARGO_TARGET_DIR/release/hubbub-app" --cli "$bin/hubbub" --deb "$deb" --runs 5 --idle 5
    fi
fi
