#!/usr/bin/env bash
# Sets up what is missing, builds Hubbub, and runs it.
#
#   scripts/run.sh                       a chat hub on 127.0.0.1 plus the terminal chat on it
#   scripts/run.sh --url URL [--name N]  the terminal chat on any SignalR hub (e.g. …/chathub)
#
# Until the desktop app lands (issue 6) "the app" is the terminal chat (`hubbub chat`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh app

cargo build --release --locked -p hubbub-cli
exec "$CARGO_TARGET_DIR/release/hubbub" chat "$@"
