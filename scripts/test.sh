#!/usr/bin/env bash
# Sets up what is missing and runs every test: formatting, lints, unit, property, integration
# and interoperability tests, the fuzz corpora as regression tests, and the benchmarks in their
# short smoke form (they check that each scenario works, not how fast).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh test

step() { printf '\n==> %s\n' "$*"; }

step "interoperability peers: the official SignalR client (npm)"
if [ ! -d tests/interop/node/node_modules/@microsoft/signalr ] || [ tests/interop/node/package-lock.json -nt tests/interop/node/node_modules ]; then
    (cd tests/interop/node && npm ci --no-audit --no-fund)
fi
node --version

step "interoperability peers: aiosignalr, an independent SignalR server (PyPI)"
venv="$HOME/.cache/hubbub/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import aiosignalr' 2>/dev/null; then
    "$venv/bin/pip" install -q -r tests/interop/python/requirements.txt
fi
export HUBBUB_PYTHON="$venv/bin/python"
"$HUBBUB_PYTHON" -c 'import importlib.metadata as m; print("aiosignalr", m.version("aiosignalr"))'

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, property, integration; benches in smoke mode)"
cargo test --workspace --all-targets --locked

step "doc tests"
cargo test --workspace --doc --locked

step "benchmarks, smoke form (each scenario runs and loses nothing; no timing is judged)"
bash scripts/bench.sh --smoke

step "protocol crate has no I/O dependency"
if cargo tree -p hubbub-protocol --edges normal --prefix none --locked | grep -Ei '^(tokio|hyper|reqwest|mio|async-std|tungstenite|tokio-tungstenite) '; then
    echo "error: hubbub-protocol depends on an I/O crate" >&2
    exit 1
fi
echo "ok: no tokio, hyper, reqwest, mio or tungstenite under hubbub-protocol"
