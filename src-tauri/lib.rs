//! The Hubbub desktop and mobile shell.
//!
//! Issue 6 turns this package into the Tauri 2 app; until then it holds the workspace's
//! end-to-end tests in `tests/`, which drive the real `hubbub` binary and the hub over loopback.
