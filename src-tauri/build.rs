//! Generates the app's context (config, embedded UI, ACL). Declaring the app's own commands
//! makes the ACL check them too: the UI may call only those its capability lists
//! (`app.security.capabilities` in `tauri.conf.json`).

const COMMANDS: &[&str] = &[
    "app_info",
    "subscribe",
    "list_accounts",
    "add_account",
    "remove_account",
    "connect",
    "disconnect",
    "set_token",
    "conversations",
    "history",
    "send",
    "retry",
    "discard",
    "join_room",
    "leave_room",
    "open_direct",
    "online",
    "search",
    "mark_read",
    "lifecycle",
    "set_methods",
    "set_family",
    "set_ca",
    "invoke_hub",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("the Tauri build script failed");
}
