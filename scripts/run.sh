#!/usr/bin/env bash
# Sets up what is missing, builds the Hubbub desktop app (the web UI and the Tauri shell, in
# release mode), and runs it.
#
#   scripts/run.sh                        the app, on a hub it runs itself on 127.0.0.1
#   scripts/run.sh --hub URL [--name N]   the app on any SignalR hub (e.g. …/chathub) on its
#                                         first run; accounts are remembered, more are added
#                                         in the app
#   scripts/run.sh --profile DIR …        a separate profile (its own history and accounts)
#   scripts/run.sh --terminal [ARGS]      the terminal chat instead (`hubbub chat ARGS`)
#
# Without a display (no DISPLAY or WAYLAND_DISPLAY) the terminal chat runs instead, on the
# same embedded hub or the --hub given.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh app

terminal() {
    cargo build --release --locked -p hubbub-cli
    exec "$CARGO_TARGET_DIR/release/hubbub" chat "$@"
}

if [ "${1:-}" = --terminal ]; then
    shift
    terminal "$@"
fi
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    echo "run: no display here, so the terminal chat starts instead (scripts/run.sh --terminal)." >&2
    args=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --hub) args+=(--url "$2"); shift 2 ;;
            --name) args+=(--name "$2"); shift 2 ;;
            --profile) args+=(--db "$2/terminal.sqlite3"); shift 2 ;;
            *) args+=("$1"); shift ;;
        esac
    done
    terminal "${args[@]}"
fi

(cd ui && npm run build)
cargo build --release --locked -p hubbub-app
exec "$CARGO_TARGET_DIR/release/hubbub-app" "$@"
