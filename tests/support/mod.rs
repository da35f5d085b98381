//! Helpers shared by the end-to-end tests: real servers on loopback, real peer programs.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the chat hub in this process on an ephemeral loopback port.
pub async fn start_hub() -> hubbub_hub::RunningServer {
    start_hub_with(hubbub_hub::HubOptions::default()).await
}

/// Starts the chat hub with the given options.
pub async fn start_hub_with(options: hubbub_hub::HubOptions) -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .options(options)
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the hub binds a loopback port")
}

/// The Node interop package, installed by `scripts/test.sh` (npm ci).
pub fn node_dir() -> PathBuf {
    let dir = root().join("tests/interop/node");
    assert!(
        dir.join("node_modules/@microsoft/signalr").is_dir(),
        "the official SignalR client is not installed: run scripts/test.sh (or `npm ci` in {})",
        dir.display()
    );
    dir
}

/// Runs a Node script of the interop package with a time limit; returns its output.
pub async fn node(script: &str, args: &[&str], limit: Duration) -> Output {
    let dir = node_dir();
    let child = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("node {script} did not finish within {limit:?}"))
        .expect("node runs (scripts/test.sh installs it)")
}

/// Prints a child's output (shown when the test fails) and returns stdout.
pub fn show(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "--- stdout\n{stdout}--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
