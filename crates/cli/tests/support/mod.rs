//! What every test of the `hubbub` binary starts from.

use std::process::Command;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hubbub");

/// A port free on 127.0.0.1 now (bound, read, released).
#[allow(dead_code)] // not every test binary starts servers of its own
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `hubbub` with a data directory of this test process's own (`XDG_DATA_HOME`), never the
/// user's: tests run in parallel, and a real profile may hold another version's database.
#[allow(dead_code)] // not every test binary runs client commands
pub(crate) fn hubbub() -> Command {
    let dir = std::env::temp_dir().join(format!("hubbub-cli-data-{}", std::process::id()));
    let mut command = Command::new(BIN);
    command.env("XDG_DATA_HOME", dir);
    command
}

/// A fresh data directory (`XDG_DATA_HOME`) for one `hubbub hub` process: a hub started
/// without `--history` keeps its history there, and hubs of parallel tests must not share one.
#[allow(dead_code)] // not every test binary starts hubs
pub(crate) fn private_data_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hubbub-hub-data-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
