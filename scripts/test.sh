#!/usr/bin/env bash
# Sets up what is missing and runs every test: formatting, lints, unit, property, integration
# and interoperability tests, the fuzz corpora as regression tests, and the benchmarks in their
# short smoke form (they check that each scenario works, not how fast).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh test

step() { printf '\n==> %s\n' "$*"; }

# Nothing in the suite waits without bound: every test runs under cargo-nextest, which kills a
# test still running at its limit (.config/nextest.toml) and reports it TIMEOUT by name; every
# step that nextest does not run (doc tests, bench smoke, builds) has a limit of its own.
bounded() {
    local limit=$1 what=$2; shift 2
    local status=0
    timeout --kill-after=30 "$limit" "$@" || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "error: $what did not finish within $limit" >&2
    fi
    return "$status"
}

step "interoperability peers: the official SignalR client (npm)"
if [ ! -d tests/interop/node/node_modules/@microsoft/signalr ] || [ tests/interop/node/package-lock.json -nt tests/interop/node/node_modules ]; then
    (cd tests/interop/node && npm ci --no-audit --no-fund)
fi
node --version

step "interoperability peers: classic ASP.NET SignalR 2.x clients (npm: jQuery signalR 2.4.3, node-signalr; playwright-core drives the system Chromium)"
if [ ! -d tests/interop/classic/node_modules/signalr ] || [ tests/interop/classic/package-lock.json -nt tests/interop/classic/node_modules ]; then
    (cd tests/interop/classic && npm ci --no-audit --no-fund)
fi

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

step "web UI: type check, build (ui/dist, which the app embeds), Playwright in Chromium at desktop and phone sizes"
(cd ui && bounded 20m "the UI tests" npm test)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests: unit, property, integration, end to end on the debug app (cargo-nextest, each test bounded)"
cargo nextest run --workspace --lib --bins --tests --examples --locked

step "benches in smoke mode (each runs once)"
bounded 15m "cargo test --benches" cargo test --workspace --benches --locked

step "tokens in the real OS keychain: GNOME Keyring unlocked, locked, and no session bus at all"
# (the D-Bus daemon and the keyring's failed prompt are noisy; their lines are dropped)
# Each setup gets keyrings of its own ($XDG_DATA_HOME/keyrings), never the user's.
quiet_dbus() { grep -vE "fd limit|dbus-daemon|SystemPrompter|system prompt|cannot open display|^$" || true; }
keyrings=$(mktemp -d)
XDG_DATA_HOME="$keyrings/unlocked" dbus-run-session -- sh -c 'echo -n hubbub | gnome-keyring-daemon --unlock --components=secrets >/dev/null &&
    HUBBUB_TEST_KEYCHAIN=unlocked cargo nextest run --locked -p hubbub-core --test keychain' 2>&1 | quiet_dbus
XDG_DATA_HOME="$keyrings/locked" dbus-run-session -- env HUBBUB_TEST_KEYCHAIN=locked cargo nextest run --locked -p hubbub-core --test keychain 2>&1 | quiet_dbus
rm -rf "$keyrings"
env -u DBUS_SESSION_BUS_ADDRESS HUBBUB_TEST_KEYCHAIN=absent cargo nextest run --locked -p hubbub-core --test keychain

step "the .deb: built offline by the Tauri CLI (the hubbub command too, scripts/deb-cli.sh), installed with dpkg, the installed app run end to end, the hub's unit verified"
bounded 30m "the .deb build" npx tauri build --debug --bundles deb
deb=$(ls -t "$CARGO_TARGET_DIR"/debug/bundle/deb/*.deb | head -1)
echo "built $deb ($(du -h "$deb" | cut -f1))"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo dpkg -i "$deb"
dpkg -L hubbub | grep -E "bin/|\.desktop$|\.service$"
/usr/bin/hubbub --version
HUBBUB_E2E_APP=/usr/bin/hubbub-app cargo nextest run --locked --test e2e_app
# The hub's unit: systemd's own checks (no systemd runs as PID 1 here, so it is not started:
# `verify` checks the unit's syntax, ExecStart and the rest offline; `security --offline`
# scores its sandbox, 0 to 100, lower is safer). Installed disabled, with its user and config.
unit=/usr/lib/systemd/system/hubbub-hub.service
systemd-analyze verify "$unit"
systemd-analyze security --offline=true --threshold=20 "$unit" | tail -1
getent passwd hubbub
test -f /etc/hubbub/hub.toml
if ls /etc/systemd/system/*.wants/hubbub-hub.service 2>/dev/null; then
    echo "error: the .deb enabled hubbub-hub.service" >&2
    exit 1
fi
# The installed command as the service's user, with the installed config, its history in the
# state directory systemd would make (StateDirectory=hubbub), JSON logs: it serves.
$sudo install -d -o hubbub -g hubbub -m 0750 /var/lib/hubbub
hub_log=$(mktemp)
# (setpriv execs: the SIGTERM reaches timeout, which passes it on)
$sudo setpriv --reuid=hubbub --regid=hubbub --init-groups env XDG_DATA_HOME=/var/lib timeout 60 /usr/bin/hubbub hub \
    --config /etc/hubbub/hub.toml --listen 127.0.0.1:0 --log-format json 2>"$hub_log" &
hub_pid=$!
for _ in $(seq 100); do grep -q "listening on http" "$hub_log" && break; sleep 0.2; done
$sudo kill -TERM "$hub_pid"
wait "$hub_pid" || true
grep -q "listening on http" "$hub_log" || { cat "$hub_log" >&2; echo "error: the installed hub did not serve" >&2; exit 1; }
python3 -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' "$hub_log"
$sudo test -f /var/lib/hubbub/hub-history.sqlite3
rm -f "$hub_log"
# Purged: the config and the state go; nothing of the package stays.
$sudo dpkg -P hubbub
test ! -e /etc/hubbub/hub.toml && test ! -e /var/lib/hubbub && test ! -e /usr/bin/hubbub

step "doc tests"
bounded 15m "the doc tests" cargo test --workspace --doc --locked

step "benchmarks, smoke form (each scenario runs and loses nothing; no timing is judged)"
bounded 20m "the bench smoke run" bash scripts/bench.sh --smoke

step "protocol crate has no I/O dependency"
if cargo tree -p hubbub-protocol --edges normal --prefix none --locked | grep -Ei '^(tokio|hyper|reqwest|mio|async-std|tungstenite|tokio-tungstenite) '; then
    echo "error: hubbub-protocol depends on an I/O crate" >&2
    exit 1
fi
echo "ok: no tokio, hyper, reqwest, mio or tungstenite under hubbub-protocol"

step "docs: every path the Markdown files name exists"
python3 scripts/check-doc-paths.py
echo "ok: every path named in the docs exists"
