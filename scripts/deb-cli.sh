#!/usr/bin/env bash
# Run by `tauri build` before it bundles (build.beforeBundleCommand in tauri.linux.conf.json):
# builds the `hubbub` command with the app's profile and stages it, stripped as the app is, at
# target/deb/hubbub, where bundle.linux.deb.files in tauri.conf.json takes /usr/bin/hubbub from.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
args=(--release)
if [ "${TAURI_ENV_DEBUG:-}" = true ]; then
    profile=debug
    args=()
fi
cargo build --locked -p hubbub-cli "${args[@]}"
mkdir -p target/deb
strip -o target/deb/hubbub "${CARGO_TARGET_DIR:-target}/$profile/hubbub"
target/deb/hubbub --version
