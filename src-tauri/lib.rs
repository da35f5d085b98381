//! The Hubbub desktop and mobile shell: a window around `hubbub-core`.
//!
//! The shell's whole job: build the core's [`Config`] from the platform (data directory,
//! environment), expose the core's methods as commands (`commands.rs`, listed in `ui/IPC.md`),
//! stream the core's events to the UI through one `tauri::ipc::Channel`, show the desktop
//! notifications the core asks for when the window is not focused, remember the window's size
//! and place (written shortly after each change, not only at exit), and shut the core down on
//! exit, SIGTERM or SIGINT included. [`app`] is generic over the runtime so the commands are tested on the mock runtime.
//!
//! Launch options (all optional), as arguments or environment variables:
//! `--profile DIR` / `HUBBUB_DATA_DIR` (a profile directory; a profile other than the default
//! is a separate instance), `--hub URL` / `HUBBUB_HUB_URL` and `--name NAME` / `HUBBUB_NAME`
//! (the first-run account: a hub and a display name instead of the embedded hub and the OS
//! user name), `HUBBUB_KEYCHAIN=off` (tokens for the session only), `RUST_LOG`.

use std::sync::{Arc, Mutex};

use hubbub_core::{AppEvent, Config, Core, FirstRun, KeychainMode, Notification, Platform};
use tauri::ipc::Channel;
use tauri::{Manager, Runtime};

mod commands;

type Notifier = Arc<dyn Fn(Notification) + Send + Sync>;

/// How long moving or resizing the window must have been quiet before its state is written.
#[cfg(desktop)]
const WINDOW_STATE_QUIET: std::time::Duration = std::time::Duration::from_millis(400);

/// How long a clean exit may spend closing connections and stopping the embedded hub.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long after SIGTERM or SIGINT the process ends even if the clean exit is stuck (a frozen
/// main thread, a step that never returns). A second signal ends it at once.
#[cfg(all(desktop, unix))]
const SIGNAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The shell's state: the core (started once, on first use or at setup), the UI's channel,
/// and how to notify.
pub struct Shell {
    core: tokio::sync::OnceCell<Result<Core, String>>,
    config: Mutex<Option<Config>>,
    channel: Arc<Mutex<Option<Channel<AppEvent>>>>,
    notifier: Mutex<Option<Notifier>>,
    /// Whether the main window has focus, as its last `Focused` event said.
    focused: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("started", &self.core.initialized())
            .finish_non_exhaustive()
    }
}

impl Shell {
    fn new(config: Option<Config>) -> Self {
        Self {
            core: tokio::sync::OnceCell::new(),
            config: Mutex::new(config),
            channel: Arc::default(),
            notifier: Mutex::new(None),
            focused: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The core, started on first use; a failed start is reported to every caller.
    async fn core(&self) -> Result<Core, commands::CommandError> {
        let started = self
            .core
            .get_or_init(|| async {
                let config = self
                    .config
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .ok_or_else(|| "the app was not configured".to_owned())?;
                let core = Core::start(config).await.map_err(|e| e.to_string())?;
                let notifier = self
                    .notifier
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                tauri::async_runtime::spawn(pump(core.clone(), self.channel.clone(), notifier));
                Ok(core)
            })
            .await;
        started.clone().map_err(commands::CommandError::startup)
    }

    fn set_channel(&self, channel: Channel<AppEvent>) {
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(channel);
    }

    /// Closes every connection and stops the embedded hub, giving up after
    /// [`SHUTDOWN_GRACE`]: an app asked to quit always quits.
    async fn shutdown(&self) {
        if let Some(Ok(core)) = self.core.get() {
            if tokio::time::timeout(SHUTDOWN_GRACE, core.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(
                    grace = ?SHUTDOWN_GRACE,
                    "the connections did not close in time; exiting anyway"
                );
            }
        }
    }
}

/// Forwards every core event to the UI's channel, and notifies when the core says so.
async fn pump(
    core: Core,
    channel: Arc<Mutex<Option<Channel<AppEvent>>>>,
    notifier: Option<Notifier>,
) {
    let mut events = core.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the UI fell behind; telling it to reload");
                match core.accounts().await {
                    Ok(accounts) => AppEvent::Accounts { accounts },
                    Err(_) => continue,
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if let Some(notify) = &notifier {
            if let Some(notification) = core.notification_for(&event) {
                notify(notification);
            }
        }
        let current = channel.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(channel) = current {
            if let Err(e) = channel.send(event) {
                tracing::debug!(error = %e, "the UI's channel is gone");
            }
        }
    }
}

/// A launch option: `--flag VALUE` (or `--flag=VALUE`) among the arguments, else `var`.
fn option(flag: &str, var: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == flag {
            return args.next();
        }
        if let Some(value) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            return Some(value.to_owned());
        }
    }
    std::env::var(var).ok()
}

/// The platform's configuration, from the app's paths, the arguments and the environment.
fn config_for<R: Runtime>(app: &tauri::AppHandle<R>) -> Result<Config, String> {
    let data_dir = match option("--profile", "HUBBUB_DATA_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => app.path().app_data_dir().map_err(|e| e.to_string())?,
    };
    let mut config = Config::desktop(data_dir);
    config.version = app.package_info().version.to_string();
    if cfg!(any(target_os = "android", target_os = "ios")) {
        config.platform = Platform::Mobile;
    }
    if let Some(first) = &mut config.first_run {
        if let Some(url) = option("--hub", "HUBBUB_HUB_URL") {
            first.url = Some(url).filter(|u| !u.is_empty());
        }
        if let Some(name) = option("--name", "HUBBUB_NAME") {
            *first = FirstRun {
                url: first.url.take(),
                display_name: name,
            };
        }
    }
    if std::env::var("HUBBUB_KEYCHAIN").is_ok_and(|v| v == "off") {
        config.keychain = KeychainMode::Off("turned off (HUBBUB_KEYCHAIN=off)".to_owned());
    }
    Ok(config)
}

/// Registers the shell on `builder`: its state, commands and setup. With `config` the core
/// uses it (tests); without, it is built from the platform at setup.
pub fn app<R: Runtime>(builder: tauri::Builder<R>, config: Option<Config>) -> tauri::Builder<R> {
    let configured = config.is_some();
    builder
        .manage(Shell::new(config))
        .invoke_handler(tauri::generate_handler![
            commands::app_info,
            commands::subscribe,
            commands::list_accounts,
            commands::add_account,
            commands::remove_account,
            commands::connect,
            commands::disconnect,
            commands::set_token,
            commands::conversations,
            commands::history,
            commands::send,
            commands::retry,
            commands::discard,
            commands::join_room,
            commands::leave_room,
            commands::open_direct,
            commands::online,
            commands::search,
            commands::mark_read,
            commands::lifecycle,
            commands::set_methods,
            commands::set_family,
            commands::set_ca,
            commands::invoke_hub,
        ])
        .setup(move |app| {
            let shell = app.state::<Shell>();
            if !configured {
                let config = config_for(app.handle())?;
                *shell.config.lock().unwrap_or_else(|e| e.into_inner()) = Some(config);
            }
            let handle = app.handle().clone();
            *shell.notifier.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Arc::new(move |n: Notification| notify(&handle, n)));
            // Start the core now rather than at the UI's first call.
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                if let Err(e) = handle.state::<Shell>().core().await {
                    tracing::error!(error = ?e, "the app core did not start");
                }
            });
            Ok(())
        })
}

/// Shows `n` unless the main window has focus.
///
/// Called from a worker (the event pump): the focus comes from the window's own `Focused`
/// events, never from asking the window, which would block this worker on the main thread.
fn notify<R: Runtime>(app: &tauri::AppHandle<R>, n: Notification) {
    let focused = app
        .state::<Shell>()
        .focused
        .load(std::sync::atomic::Ordering::Relaxed);
    if focused {
        tracing::debug!("the window has focus: no desktop notification");
        return;
    }
    #[cfg(not(test))]
    {
        use tauri_plugin_notification::NotificationExt as _;
        if let Err(e) = app
            .notification()
            .builder()
            .title(n.title)
            .body(n.body)
            .show()
        {
            tracing::debug!(error = %e, "no desktop notification");
        }
    }
    #[cfg(test)]
    let _ = n;
}

/// Runs the app (the desktop binary's `main`, the mobile library's entry point).
// `generate_context!` exits on a broken embedded config, and an app that cannot build its
// window has nothing to return to: both end the process with a message.
#[allow(clippy::exit)]
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();

    let mut builder = tauri::Builder::default();
    #[cfg(desktop)]
    {
        // One window per profile: a second launch of the default profile focuses the first.
        if option("--profile", "HUBBUB_DATA_DIR").is_none() {
            builder = builder.plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
                if let Some(window) = app.get_webview_window("main") {
                    let _ = window.unminimize();
                    let _ = window.show();
                    let _ = window.set_focus();
                }
            }));
        }
        builder = builder.plugin(tauri_plugin_window_state::Builder::default().build());
        // The plugin writes the window's size and place only on a clean exit; a crash, a
        // SIGKILL or a power cut would lose them. Written again once moving or resizing has
        // been quiet for a moment.
        let moves = Arc::new(std::sync::atomic::AtomicU64::new(0));
        builder = builder.on_window_event(move |window, event| {
            if let tauri::WindowEvent::Focused(focused) = event {
                window
                    .state::<Shell>()
                    .focused
                    .store(*focused, std::sync::atomic::Ordering::Relaxed);
            }
            if matches!(
                event,
                tauri::WindowEvent::Resized(_) | tauri::WindowEvent::Moved(_)
            ) {
                use std::sync::atomic::Ordering;
                let this = moves.fetch_add(1, Ordering::SeqCst) + 1;
                let (moves, app) = (moves.clone(), window.app_handle().clone());
                tauri::async_runtime::spawn(async move {
                    tokio::time::sleep(WINDOW_STATE_QUIET).await;
                    if moves.load(Ordering::SeqCst) != this {
                        return;
                    }
                    // On the main thread, never from this worker: the plugin holds its lock
                    // while it asks the window for its state, and a window getter called
                    // from a worker blocks until the main thread answers, while the main
                    // thread may be waiting for that same lock in the plugin's own window
                    // event handler: a deadlock that froze the app for good.
                    // `run_on_main_thread` only queues the closure; nothing here waits.
                    let main = app.clone();
                    if let Err(e) = app.run_on_main_thread(move || {
                        use tauri_plugin_window_state::{AppHandleExt as _, StateFlags};
                        if let Err(e) = main.save_window_state(StateFlags::all()) {
                            tracing::debug!(error = %e, "the window state was not saved");
                        }
                    }) {
                        tracing::debug!(error = %e, "the window state was not saved");
                    }
                });
            }
        });
    }
    builder = builder.plugin(tauri_plugin_notification::init());
    let app = app(builder, None)
        .build(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("hubbub: the app could not start: {e}");
            std::process::exit(1);
        });
    // SIGTERM (a logout, `kill`, a service manager) and SIGINT end the app as closing its
    // window does: the window state is saved and the core closes its connections cleanly.
    #[cfg(all(desktop, unix))]
    {
        let handle = app.handle().clone();
        tauri::async_runtime::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("asked to stop: closing");
            // The clean way out runs on the main thread; if that thread is stuck, or a step
            // of the exit never returns, a plain thread (no runtime, no window, no lock) ends
            // the process anyway.
            std::thread::spawn(|| {
                std::thread::sleep(SIGNAL_DEADLINE);
                eprintln!(
                    "hubbub: still running {} s after being asked to stop; exiting now",
                    SIGNAL_DEADLINE.as_secs()
                );
                std::process::exit(1);
            });
            handle.exit(0);
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("hubbub: asked to stop again; exiting now");
            std::process::exit(1);
        });
    }
    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            tauri::async_runtime::block_on(handle.state::<Shell>().shutdown());
        }
    });
}
