//! What every test of the `hubbub` binary starts from.

use std::process::Command;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hubbub");

/// `hubbub` with a data directory of this test process's own (`XDG_DATA_HOME`), never the
/// user's: tests run in parallel, and a real profile may hold another version's database.
#[allow(dead_code)] // not every test binary runs client commands
pub(crate) fn hubbub() -> Command {
    let dir = std::env::temp_dir().join(format!("hubbub-cli-data-{}", std::process::id()));
    let mut command = Command::new(BIN);
    command.env("XDG_DATA_HOME", dir);
    command
}
