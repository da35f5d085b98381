//! The commands the UI may call (`ui/IPC.md`): each one awaits the core and calls one of its
//! methods. No rule lives here.

use hubbub_core::{
    Account, AccountId, AppEvent, AppInfo, Conversation, FamilyChoice, MessageView, MethodsView,
    NewAccount,
};
use serde::Serialize;
use tauri::State;
use tauri::ipc::Channel;

use crate::Shell;

/// What a failed command rejects with: a kind the UI can act on and a sentence for the user.
#[derive(Debug, Serialize)]
pub(crate) struct CommandError {
    kind: &'static str,
    message: String,
}

impl CommandError {
    pub(crate) fn startup(message: String) -> Self {
        Self {
            kind: "startup",
            message,
        }
    }
}

impl From<hubbub_core::Error> for CommandError {
    fn from(e: hubbub_core::Error) -> Self {
        Self {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, CommandError>;

#[tauri::command]
pub(crate) async fn app_info(shell: State<'_, Shell>) -> Result<AppInfo> {
    Ok(shell.core().await?.info())
}

#[tauri::command]
pub(crate) async fn subscribe(shell: State<'_, Shell>, on_event: Channel<AppEvent>) -> Result<()> {
    shell.set_channel(on_event);
    Ok(())
}

#[tauri::command]
pub(crate) async fn list_accounts(shell: State<'_, Shell>) -> Result<Vec<Account>> {
    Ok(shell.core().await?.accounts().await?)
}

#[tauri::command]
pub(crate) async fn add_account(shell: State<'_, Shell>, input: NewAccount) -> Result<Account> {
    Ok(shell.core().await?.add_account(input).await?)
}

#[tauri::command]
pub(crate) async fn remove_account(shell: State<'_, Shell>, account: AccountId) -> Result<()> {
    Ok(shell.core().await?.remove_account(account).await?)
}

#[tauri::command]
pub(crate) async fn connect(shell: State<'_, Shell>, account: AccountId) -> Result<()> {
    Ok(shell.core().await?.connect(account).await?)
}

#[tauri::command]
pub(crate) async fn disconnect(shell: State<'_, Shell>, account: AccountId) -> Result<()> {
    Ok(shell.core().await?.disconnect(account).await?)
}

#[tauri::command]
pub(crate) async fn set_token(
    shell: State<'_, Shell>,
    account: AccountId,
    token: Option<String>,
) -> Result<Account> {
    Ok(shell.core().await?.set_token(account, token).await?)
}

#[tauri::command]
pub(crate) async fn conversations(
    shell: State<'_, Shell>,
    account: AccountId,
) -> Result<Vec<Conversation>> {
    Ok(shell.core().await?.conversations(account).await?)
}

#[tauri::command]
pub(crate) async fn history(
    shell: State<'_, Shell>,
    account: AccountId,
    conversation: String,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<MessageView>> {
    Ok(shell
        .core()
        .await?
        .history(account, &conversation, before, limit)
        .await?)
}

#[tauri::command]
pub(crate) async fn send(
    shell: State<'_, Shell>,
    account: AccountId,
    conversation: String,
    text: String,
) -> Result<MessageView> {
    Ok(shell
        .core()
        .await?
        .send(account, &conversation, &text)
        .await?)
}

#[tauri::command]
pub(crate) async fn retry(
    shell: State<'_, Shell>,
    account: AccountId,
    conversation: String,
    id: String,
) -> Result<MessageView> {
    Ok(shell
        .core()
        .await?
        .retry(account, &conversation, &id)
        .await?)
}

#[tauri::command]
pub(crate) async fn discard(
    shell: State<'_, Shell>,
    account: AccountId,
    conversation: String,
    id: String,
) -> Result<()> {
    Ok(shell
        .core()
        .await?
        .discard(account, &conversation, &id)
        .await?)
}

#[tauri::command]
pub(crate) async fn join_room(
    shell: State<'_, Shell>,
    account: AccountId,
    room: String,
) -> Result<Conversation> {
    Ok(shell.core().await?.join_room(account, &room).await?)
}

#[tauri::command]
pub(crate) async fn leave_room(
    shell: State<'_, Shell>,
    account: AccountId,
    room: String,
) -> Result<()> {
    Ok(shell.core().await?.leave_room(account, &room).await?)
}

#[tauri::command]
pub(crate) async fn open_direct(
    shell: State<'_, Shell>,
    account: AccountId,
    user: String,
) -> Result<Conversation> {
    Ok(shell.core().await?.open_direct(account, &user).await?)
}

#[tauri::command]
pub(crate) async fn online(shell: State<'_, Shell>, account: AccountId) -> Result<Vec<String>> {
    Ok(shell.core().await?.online(account)?)
}

#[tauri::command]
pub(crate) async fn search(
    shell: State<'_, Shell>,
    account: AccountId,
    query: String,
    limit: u32,
) -> Result<Vec<MessageView>> {
    Ok(shell.core().await?.search(account, &query, limit).await?)
}

#[tauri::command]
pub(crate) async fn mark_read(
    shell: State<'_, Shell>,
    account: AccountId,
    conversation: String,
    seq: i64,
) -> Result<()> {
    Ok(shell
        .core()
        .await?
        .mark_read(account, &conversation, seq)
        .await?)
}

#[tauri::command]
pub(crate) async fn lifecycle(shell: State<'_, Shell>, foreground: bool) -> Result<()> {
    shell.core().await?.lifecycle(foreground);
    Ok(())
}

#[tauri::command]
pub(crate) async fn set_methods(
    shell: State<'_, Shell>,
    account: AccountId,
    methods: MethodsView,
) -> Result<Account> {
    Ok(shell.core().await?.set_methods(account, methods).await?)
}

#[tauri::command]
pub(crate) async fn set_family(
    shell: State<'_, Shell>,
    account: AccountId,
    family: FamilyChoice,
    hub_name: Option<String>,
) -> Result<Account> {
    Ok(shell
        .core()
        .await?
        .set_family(account, family, hub_name)
        .await?)
}

#[tauri::command]
pub(crate) async fn set_ca(
    shell: State<'_, Shell>,
    account: AccountId,
    ca_pem: Option<String>,
) -> Result<Account> {
    Ok(shell.core().await?.set_ca(account, ca_pem).await?)
}

#[tauri::command]
pub(crate) async fn invoke_hub(
    shell: State<'_, Shell>,
    account: AccountId,
    method: String,
    arguments: Vec<serde_json::Value>,
) -> Result<serde_json::Value> {
    Ok(shell
        .core()
        .await?
        .invoke(account, &method, arguments)
        .await?)
}
