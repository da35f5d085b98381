//! End to end on the real desktop binary: WebKitGTK under Xvfb, driven through tauri-driver
//! and WebKitWebDriver (the W3C WebDriver protocol, spoken here over plain HTTP), against a
//! real `hubbub hub` process on loopback.
//!
//! Two app instances (two profiles) on one hub exchange broadcasts; Disconnect shows
//! disconnected and Connect restores; the hub is killed (SIGKILL) and restarted, the apps show
//! reconnecting and then connected, and a message typed meanwhile arrives exactly once.
//!
//! Needs `tauri-driver` (`cargo install tauri-driver --locked`), `WebKitWebDriver` (Debian
//! `webkit2gtk-driver`) and `Xvfb`; `scripts/test.sh` installs them. With
//! `HUBBUB_E2E_SCREENSHOTS=1`, screenshots of each step go to `$CARGO_TARGET_DIR/e2e-artifacts/`
//! (a failed wait always tries to take one).
//!
//! The window's size survives a SIGKILL (it is written shortly after each resize, made with
//! xdotool) and a SIGTERM, which ends the app cleanly. A message to an unfocused window is a
//! desktop notification, shown by a real notification server (dunst) on a private session bus.
//!
//! `HUBBUB_E2E_APP` runs the same scenario against another build of the app (the installed
//! `.deb`'s `/usr/bin/hubbub-app`, say).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Kills a child process, and everything it started, when dropped. The child must lead a
/// process group of its own ([`own_group`]): tauri-driver starts WebKitWebDriver, which
/// outlived it before and kept its inherited file descriptors open.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `command` in a process group of its own, so a [`Guard`] can end all of it.
fn own_group(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    command.process_group(0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` to its end, for at most `limit`; on expiry its whole process group is killed
/// and the test fails, naming `what` and showing what it printed so far.
fn output_within(mut command: Command, limit: Duration, what: &str) -> std::process::Output {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // The whole group: the shell and everything it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            let (out, err) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "{what} did not finish within {limit:?}; it printed:\n{}\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Shell helpers for the scripts below. `stop PID NAME` sends SIGTERM and waits at most 10 s
/// (then prints `hung=NAME` and kills it); its status is the process's exit status.
const SH_STOP: &str = r#"
    stop() {
        kill -TERM "$1" 2>/dev/null
        for i in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$1" 2>/dev/null; then echo "hung=$2"; kill -KILL "$1"; fi
        wait "$1"
    }
"#;

fn find_tool(name: &str) -> Option<PathBuf> {
    let home_bin = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin").join(name));
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    on_path.or(home_bin.filter(|p| p.is_file()))
}

fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let found = (
        find_tool("tauri-driver"),
        find_tool("WebKitWebDriver"),
        find_tool("Xvfb"),
    );
    match found {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        missing => {
            assert!(
                std::env::var_os("HUBBUB_SKIP_E2E").is_some(),
                "end-to-end tools missing ({missing:?}): scripts/test.sh installs tauri-driver, webkit2gtk-driver and xvfb (HUBBUB_SKIP_E2E=1 skips)"
            );
            None
        }
    }
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An X server of the test's own.
fn xvfb(binary: &Path) -> (Guard, String) {
    for n in 0..50u32 {
        let display = 200 + (std::process::id() + n * 7) % 700;
        if Path::new(&format!("/tmp/.X{display}-lock")).exists() {
            continue;
        }
        let child = own_group(&mut Command::new(binary))
            .args([
                format!(":{display}"),
                "-screen".into(),
                "0".into(),
                "1280x800x24".into(),
                "-nolisten".into(),
                "tcp".into(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let socket = format!("/tmp/.X11-unix/X{display}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if Path::new(&socket).exists() {
            return (Guard(child), format!(":{display}"));
        }
        drop(Guard(child));
    }
    panic!("no free X display");
}

/// `hubbub hub` on `port` (the CLI binary is built beside this test's app binary).
/// The `hubbub` CLI built beside the app.
fn cli() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_hubbub-app"))
        .parent()
        .unwrap();
    let binary = dir.join("hubbub");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build -p hubbub-cli` (cargo test --workspace does)",
        binary.display()
    );
    binary
}

fn hub(port: u16) -> Guard {
    // Its default history file in a data directory of its own, not the user's.
    let data =
        std::env::temp_dir().join(format!("hubbub-e2e-hub-data-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let child = own_group(&mut Command::new(cli()))
        .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
        .env("XDG_DATA_HOME", &data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "the hub");
    Guard(child)
}

/// A tauri-driver of its own (one app session each).
fn driver(tauri_driver: &Path, native: &Path, display: &str) -> (Guard, u16) {
    let (port, native_port) = (free_port(), free_port());
    let child = own_group(&mut Command::new(tauri_driver))
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native_port.to_string(),
            "--native-driver",
        ])
        .arg(native)
        .env("DISPLAY", display)
        .env("HUBBUB_KEYCHAIN", "off")
        .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_port(port, "tauri-driver");
    (Guard(child), port)
}

/// The two tests each start apps; one at a time keeps a 2-core machine from starving them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Creating a session: tauri-driver drops the request when its native driver is still
/// starting, so a refused or cut request is tried again (three times at most).
async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reply = async {
            http.post(url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).unwrap())
                .send()
                .await?
                .bytes()
                .await
        }
        .await;
        match reply {
            Ok(bytes) => return serde_json::from_slice(&bytes).unwrap(),
            Err(e) if attempt < 3 => {
                eprintln!("e2e: {url}: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{url}: {e}"),
        }
    }
}

/// A WebDriver session: one running app instance.
struct App {
    http: reqwest::Client,
    base: String,
    name: &'static str,
}

impl App {
    async fn launch(port: u16, app: &Path, args: &[&str], name: &'static str) -> Self {
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "tauri:options": {"application": app, "args": args}
        }}});
        let started = Instant::now();
        let reply = post_json(&http, &format!("http://127.0.0.1:{port}/session"), &caps).await;
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        eprintln!("e2e: {name} launched in {:?}", started.elapsed());
        Self {
            http,
            base: format!("http://127.0.0.1:{port}/session/{session}"),
            name,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap());
        }
        let sent = tokio::time::timeout(Duration::from_secs(30), async {
            request.send().await.unwrap().bytes().await.unwrap()
        })
        .await;
        let Ok(bytes) = sent else {
            panic!("{}: WebDriver {path} did not answer in 30 s", self.name);
        };
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        if reply["value"]["error"].is_string() {
            panic!("{}: WebDriver {path}: {}", self.name, reply["value"]);
        }
        reply["value"].clone()
    }

    /// Runs `script` (a function body) in the page.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Waits (at most `secs`) until `script` returns something truthy; returns it.
    async fn until(&self, what: &str, secs: u64, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let value = self.js(script, args.clone()).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                let status = self
                    .js(
                        "const s = document.querySelector('#status'); return s && (s.dataset.state + ': ' + s.textContent);",
                        json!([]),
                    )
                    .await;
                panic!(
                    "{}: timed out waiting for {what} (status {status})",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn state_is(&self, state: &str, secs: u64) {
        self.until(
            &format!("state {state}"),
            secs,
            "const s = document.querySelector('#status'); return s && s.dataset.state === arguments[0];",
            json!([state]),
        )
        .await;
    }

    /// The state of the first message with `body`, once it is shown.
    async fn message_state(&self, body: &str, secs: u64) -> String {
        self.until(
            &format!("message {body:?}"),
            secs,
            "for (const li of document.querySelectorAll('#messages li.message')) { const b = li.querySelector('.body'); if (b && b.textContent === arguments[0]) return li.dataset.state; } return null;",
            json!([body]),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Waits until the first message with `body` is shown in `state`.
    async fn message_reaches(&self, body: &str, state: &str, secs: u64) {
        self.until(
            &format!("message {body:?} {state}"),
            secs,
            "for (const li of document.querySelectorAll('#messages li.message')) { const b = li.querySelector('.body'); if (b && b.textContent === arguments[0]) return li.dataset.state === arguments[1]; } return false;",
            json!([body, state]),
        )
        .await;
    }

    async fn count(&self, body: &str) -> u64 {
        self.js(
            "return [...document.querySelectorAll('#messages li.message .body')].filter(b => b.textContent === arguments[0]).length;",
            json!([body]),
        )
        .await
        .as_u64()
        .unwrap()
    }

    /// A screenshot of each step when `HUBBUB_E2E_SCREENSHOTS` is set (and of a failure),
    /// best effort: WebKitWebDriver can stall on screenshots of a window nobody composites,
    /// so this never waits long and never fails the test.
    async fn screenshot(&self, step: &str) {
        if std::env::var_os("HUBBUB_E2E_SCREENSHOTS").is_none() && !step.starts_with("timeout") {
            return;
        }
        let request = self.http.get(format!("{}/screenshot", self.base)).send();
        let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(5), request).await else {
            return;
        };
        let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(5), reply.bytes()).await
        else {
            return;
        };
        let png: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if let Some(b64) = png["value"].as_str() {
            use base64::Engine as _;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                let path = artifacts().join(format!("{}-{step}.png", self.name));
                let _ = std::fs::write(path, bytes);
            }
        }
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

/// A desktop session of its own for an app launched straight from a test: the test's X
/// display, a private home with its data and config under it, no keychain.
fn desktop(display: &str, home: &Path) -> [(&'static str, std::ffi::OsString); 6] {
    [
        ("DISPLAY", display.into()),
        ("HOME", home.into()),
        ("XDG_DATA_HOME", home.join("data").into()),
        ("XDG_CONFIG_HOME", home.join("config").into()),
        ("HUBBUB_KEYCHAIN", "off".into()),
        ("WEBKIT_DISABLE_DMABUF_RENDERER", "1".into()),
    ]
}

fn profile(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("hubbub-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

fn app_binary() -> PathBuf {
    std::env::var_os("HUBBUB_E2E_APP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hubbub-app")))
}

// The lock only makes the two tests take turns; nothing else waits on it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread")]
async fn two_apps_chat_disconnect_reconnect_and_survive_a_hub_restart() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((tauri_driver, native, xvfb_bin)) = tools() else {
        return;
    };
    let (_x, display) = xvfb(&xvfb_bin);
    let hub_port = free_port();
    let mut hub_process = hub(hub_port);
    let url = format!("http://127.0.0.1:{hub_port}/chathub");
    let (_driver_a, port_a) = driver(&tauri_driver, &native, &display);
    let (_driver_b, port_b) = driver(&tauri_driver, &native, &display);
    let app = app_binary();
    let (dir_a, dir_b) = (profile("ann"), profile("bob"));
    let ann = App::launch(
        port_a,
        &app,
        &["--profile", &dir_a, "--hub", &url, "--name", "ann"],
        "ann",
    )
    .await;
    let bob = App::launch(
        port_b,
        &app,
        &["--profile", &dir_b, "--hub", &url, "--name", "bob"],
        "bob",
    )
    .await;
    ann.state_is("connected", 30).await;
    bob.state_is("connected", 30).await;
    ann.screenshot("1-connected").await;

    // A broadcast with the button, one with Enter.
    ann.type_into("#composer", "hello from ann").await;
    ann.click("#broadcast").await;
    assert_eq!(bob.message_state("hello from ann", 15).await, "received");
    ann.message_reaches("hello from ann", "sent", 15).await;
    bob.type_into("#composer", "hi ann\u{E007}").await;
    assert_eq!(ann.message_state("hi ann", 15).await, "received");
    bob.message_reaches("hi ann", "sent", 15).await;
    // Markup in a message is shown as text.
    ann.type_into("#composer", "<img src=x onerror=alert(1)>\u{E007}")
        .await;
    assert_eq!(
        bob.message_state("<img src=x onerror=alert(1)>", 15).await,
        "received"
    );
    assert_eq!(
        bob.js(
            "return document.querySelectorAll('#messages img').length;",
            json!([])
        )
        .await,
        json!(0)
    );
    bob.screenshot("2-received").await;

    // Disconnect shows disconnected; Connect restores.
    ann.click("#toggle-connection").await;
    ann.state_is("disconnected", 10).await;
    let label = ann
        .js(
            "return document.querySelector('#toggle-connection').textContent.trim();",
            json!([]),
        )
        .await;
    assert_eq!(label, json!("Connect"));
    ann.screenshot("3-disconnected").await;
    ann.click("#toggle-connection").await;
    ann.state_is("connected", 15).await;

    // The hub is killed: both show reconnecting; a message typed meanwhile waits, then arrives.
    let _ = hub_process.0.kill();
    let _ = hub_process.0.wait();
    ann.state_is("reconnecting", 20).await;
    bob.state_is("reconnecting", 20).await;
    ann.type_into("#composer", "typed while the hub was down\u{E007}")
        .await;
    assert_eq!(
        ann.message_state("typed while the hub was down", 10).await,
        "sending"
    );
    ann.screenshot("4-reconnecting").await;
    hub_process = hub(hub_port);
    ann.state_is("connected", 30).await;
    bob.state_is("connected", 30).await;
    assert_eq!(
        bob.message_state("typed while the hub was down", 20).await,
        "received"
    );
    ann.message_reaches("typed while the hub was down", "sent", 20)
        .await;
    assert_eq!(bob.count("typed while the hub was down").await, 1);
    bob.screenshot("5-after-restart").await;

    ann.quit().await;
    bob.quit().await;
    drop(hub_process);
}

/// A second launch of the default profile hands over to the first (which stays) and exits.
#[test]
fn a_second_launch_of_the_default_profile_hands_over_to_the_first() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((_, _, xvfb_bin)) = tools() else {
        return;
    };
    let (_x, display) = xvfb(&xvfb_bin);
    let home = std::env::temp_dir().join(format!("hubbub-e2e-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    // One private session bus for both launches: the single-instance lock lives on it.
    let script = r#"
        "$APP" >/dev/null 2>&1 & first=$!
        for i in $(seq 1 200); do [ -f "$XDG_DATA_HOME/app.hubbub.chat/history.sqlite3" ] && break; sleep 0.1; done
        start=$(date +%s%N)
        timeout 30 "$APP" >/dev/null 2>&1; second=$?
        took=$(( ($(date +%s%N) - start) / 1000000 ))
        if kill -0 $first 2>/dev/null; then alive=yes; else alive=no; fi
        stop $first first
        echo "second=$second alive=$alive ms=$took"
    "#;
    let mut command = Command::new("dbus-run-session");
    command
        .args(["--", "sh", "-c", &format!("{SH_STOP}{script}")])
        .env("APP", app_binary())
        .envs(desktop(&display, &home))
        .env_remove("HUBBUB_DATA_DIR");
    let output = output_within(
        command,
        Duration::from_secs(90),
        "the single-instance script",
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        !report.contains("hung="),
        "an app ignored SIGTERM: {report}"
    );
    let line = report.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("second=0 alive=yes"),
        "the second launch should hand over and exit at once, the first stay: {line:?}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// The window's size is remembered across launches: written shortly after a resize (so even a
/// SIGKILL keeps it), and at once when the app is asked to stop with SIGTERM, which ends it
/// cleanly (exit status 0). The window is resized from outside with xdotool, as a window
/// manager would.
#[test]
fn the_window_size_survives_a_sigkill_and_a_sigterm_ends_the_app_cleanly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((_, _, xvfb_bin)) = tools() else {
        return;
    };
    let Some(xdotool) = find_tool("xdotool") else {
        assert!(
            std::env::var_os("HUBBUB_SKIP_E2E").is_some(),
            "xdotool is missing: scripts/test.sh installs it (HUBBUB_SKIP_E2E=1 skips)"
        );
        return;
    };
    let (_x, display) = xvfb(&xvfb_bin);
    let home = std::env::temp_dir().join(format!("hubbub-e2e-win-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let script = r#"
        win() {
            for i in $(seq 1 300); do
                w=$("$XDOTOOL" search --onlyvisible --pid "$1" --name '^Hubbub$' 2>/dev/null | head -1)
                [ -n "$w" ] && { echo "$w"; return; }
                sleep 0.1
            done
        }
        size() { "$XDOTOOL" getwindowgeometry "$1" | sed -n 's/.*Geometry: //p'; }
        launch() { "$APP" --profile "$PROFILE" >>"$HOME/app.log" 2>&1 & pid=$!; w=$(win $pid); sleep 1; }

        launch; echo "default=$(size $w)"
        "$XDOTOOL" windowsize "$w" 900 640; sleep 2
        kill -KILL $pid; wait $pid 2>/dev/null
        launch; echo "after_sigkill=$(size $w)"
        "$XDOTOOL" windowsize "$w" 1100 700; sleep 0.2
        stop $pid app; echo "sigterm_status=$?"
        launch; echo "after_sigterm=$(size $w)"
        stop $pid app
    "#;
    let mut command = Command::new("sh");
    command
        .args(["-c", &format!("{SH_STOP}{script}")])
        .env("APP", app_binary())
        .env("XDOTOOL", &xdotool)
        .env("PROFILE", home.join("profile"))
        .envs(desktop(&display, &home))
        .env_remove("HUBBUB_DATA_DIR");
    let output = output_within(command, Duration::from_secs(120), "the window-size script");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let log = std::fs::read_to_string(home.join("app.log")).unwrap_or_default();
    let get = |key: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let context = format!("report:\n{report}\napp log:\n{log}");
    assert_eq!(get("default"), "1024x720", "{context}");
    assert_eq!(get("after_sigkill"), "900x640", "{context}");
    assert_eq!(get("sigterm_status"), "0", "{context}");
    assert_eq!(get("after_sigterm"), "1100x700", "{context}");
    let _ = std::fs::remove_dir_all(&home);
}

/// A message that arrives while the window does not have focus is shown as a desktop
/// notification by a real notification server (dunst, on a private session bus); a second one
/// in the same conversation within 5 s is not; nor is one that arrives while the window has
/// focus. Focus is moved with xdotool (no window manager under Xvfb).
#[test]
fn a_message_to_an_unfocused_window_is_a_desktop_notification() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((_, _, xvfb_bin)) = tools() else {
        return;
    };
    let (Some(xdotool), Some(dunst)) = (find_tool("xdotool"), find_tool("dunst")) else {
        assert!(
            std::env::var_os("HUBBUB_SKIP_E2E").is_some(),
            "xdotool or dunst is missing: scripts/test.sh installs them (HUBBUB_SKIP_E2E=1 skips)"
        );
        return;
    };
    let (_x, display) = xvfb(&xvfb_bin);
    let port = free_port();
    let _hub = hub(port);
    let url = format!("http://127.0.0.1:{port}/chathub");
    let home = std::env::temp_dir().join(format!("hubbub-e2e-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let script = r#"
        "$DUNST" >"$HOME/dunst.log" 2>&1 & dunst=$!
        RUST_LOG=hubbub_app=debug,info "$APP" --profile "$HOME/profile" --hub "$URL" --name ann >"$HOME/app.log" 2>&1 & app=$!
        # (the log is coloured: escapes sit between "new=" and the state)
        for i in $(seq 1 300); do grep -q "new[^ ]*=[^ ]*connected" "$HOME/app.log" && break; sleep 0.1; done
        w=$("$XDOTOOL" search --onlyvisible --pid $app --name '^Hubbub$' | head -1)
        sleep 1
        shown() { dunstctl count displayed; }
        bob() { "$CLI" send --url "$URL" --name bob "$1" >/dev/null 2>&1; sleep 1.5; }

        # Focus away: to the root window, the pointer outside ours.
        "$XDOTOOL" mousemove 1270 790
        "$XDOTOOL" windowfocus --sync "$("$XDOTOOL" search --maxdepth 0 --name '')"
        bob "hello ann"
        echo "unfocused=$(shown)"
        bob "again within 5 s"
        echo "throttled=$(shown)"
        # Focus back; once the 5 s have passed, a message is still not a notification.
        "$XDOTOOL" mousemove --window "$w" 100 100
        "$XDOTOOL" windowfocus --sync "$w"
        sleep 4
        bob "while focused"
        echo "focused=$(shown)"
        dunstctl close-all; sleep 0.3
        dunstctl history | python3 -c 'import json, sys
for n in json.load(sys.stdin)["data"][0]:
    print("shown=" + n["summary"]["data"] + ": " + n["body"]["data"])'
        stop $app app; stop $dunst dunst
    "#;
    let mut command = Command::new("dbus-run-session");
    command
        .args(["--", "sh", "-c", &format!("{SH_STOP}{script}")])
        .env("APP", app_binary())
        .env("CLI", cli())
        .env("URL", &url)
        .env("XDOTOOL", &xdotool)
        .env("DUNST", &dunst)
        .envs(desktop(&display, &home))
        .env_remove("HUBBUB_DATA_DIR");
    let output = output_within(command, Duration::from_secs(120), "the notification script");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let log = std::fs::read_to_string(home.join("app.log")).unwrap_or_default();
    let get = |key: &str| -> Vec<String> {
        report
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    let context = format!("report:\n{report}\napp log:\n{log}");
    assert_eq!(get("unfocused"), ["1"], "{context}");
    assert_eq!(get("throttled"), ["1"], "{context}");
    assert_eq!(get("focused"), ["1"], "{context}");
    assert_eq!(get("shown"), ["bob to everyone: hello ann"], "{context}");
    let _ = std::fs::remove_dir_all(&home);
}

/// Moving the window while its state is being saved never freezes the app (issue 12.1: the
/// debounced save, run from a worker, held the window-state plugin's lock while waiting for
/// the main thread, which was waiting for that lock to record a move; the app hung for good
/// and ignored SIGTERM). Moves come about every 400 ms, the save's own delay, so saves and
/// moves meet many times; then SIGTERM must end the app cleanly (status 0: not the forced
/// exit, status 1) within a few seconds.
#[test]
fn moving_the_window_while_its_state_is_saved_never_freezes_the_app() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((_, _, xvfb_bin)) = tools() else {
        return;
    };
    let Some(xdotool) = find_tool("xdotool") else {
        assert!(
            std::env::var_os("HUBBUB_SKIP_E2E").is_some(),
            "xdotool is missing: scripts/test.sh installs it (HUBBUB_SKIP_E2E=1 skips)"
        );
        return;
    };
    let (_x, display) = xvfb(&xvfb_bin);
    let home = std::env::temp_dir().join(format!("hubbub-e2e-moves-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let script = r#"
        "$APP" --profile "$HOME/profile" >"$HOME/app.log" 2>&1 & pid=$!
        for i in $(seq 1 300); do
            w=$("$XDOTOOL" search --onlyvisible --pid $pid --name '^Hubbub$' 2>/dev/null | head -1)
            [ -n "$w" ] && break
            sleep 0.1
        done
        sleep 1
        # 60 moves, each 390-414 ms after the last (about 25 s); a move the app cannot take
        # (xdotool waits for it) counts as stuck.
        stuck=0
        for n in $(seq 1 60); do
            timeout 5 "$XDOTOOL" windowmove "$w" $((100 + n % 50)) $((100 + n % 30)) || stuck=$((stuck + 1))
            sleep 0.$(( 390 + $(od -An -N1 -tu1 /dev/urandom) % 25 ))
        done
        echo "stuck=$stuck"
        stop $pid app; echo "status=$?"
    "#;
    let mut command = Command::new("sh");
    command
        .args(["-c", &format!("{SH_STOP}{script}")])
        .env("APP", app_binary())
        .env("XDOTOOL", &xdotool)
        .envs(desktop(&display, &home))
        .env_remove("HUBBUB_DATA_DIR");
    let output = output_within(command, Duration::from_secs(120), "the window-moves script");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let log = std::fs::read_to_string(home.join("app.log")).unwrap_or_default();
    let context = format!("report:\n{report}\napp log:\n{log}");
    assert!(!report.contains("hung="), "the app froze: {context}");
    assert!(
        report.contains("status=0"),
        "the app did not end cleanly: {context}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// `tests/interop/python/tutorial_hub.py` (a hub written like the ASP.NET Core tutorial, on
/// aiosignalr) on `port`.
fn tutorial_hub(port: u16) -> Guard {
    let python = std::env::var("HUBBUB_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/hubbub/venv/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    assert!(
        Path::new(&python).exists(),
        "no Python with aiosignalr at {python}: run scripts/test.sh (it creates the venv)"
    );
    let child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python/tutorial_hub.py"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_port(port, "the tutorial hub");
    Guard(child)
}

/// Issue 15: two apps chat on a hub whose methods are `SendMessage`/`ReceiveMessage` with no
/// setting; each message is shown once; the inspector lists what the hub sent, and the hub
/// settings show the method auto found and that the hub keeps no history.
// The lock only makes the desktop tests take turns; nothing else waits on it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread")]
async fn two_apps_chat_on_the_core_tutorial_hub_with_no_setting() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((tauri_driver, native, xvfb_bin)) = tools() else {
        return;
    };
    let (_x, display) = xvfb(&xvfb_bin);
    let hub_port = free_port();
    let _hub = tutorial_hub(hub_port);
    let url = format!("http://127.0.0.1:{hub_port}/chatHub");
    let (_driver_a, port_a) = driver(&tauri_driver, &native, &display);
    let (_driver_b, port_b) = driver(&tauri_driver, &native, &display);
    let app = app_binary();
    let (dir_a, dir_b) = (profile("tut-ann"), profile("tut-bob"));
    let ann = App::launch(
        port_a,
        &app,
        &["--profile", &dir_a, "--hub", &url, "--name", "ann"],
        "tut-ann",
    )
    .await;
    let bob = App::launch(
        port_b,
        &app,
        &["--profile", &dir_b, "--hub", &url, "--name", "bob"],
        "tut-bob",
    )
    .await;
    ann.state_is("connected", 30).await;
    bob.state_is("connected", 30).await;

    ann.type_into("#composer", "hello tutorial\u{E007}").await;
    assert_eq!(bob.message_state("hello tutorial", 20).await, "received");
    ann.message_reaches("hello tutorial", "sent", 20).await;
    bob.type_into("#composer", "hi ann\u{E007}").await;
    assert_eq!(ann.message_state("hi ann", 20).await, "received");
    bob.message_reaches("hi ann", "sent", 20).await;
    for app in [&ann, &bob] {
        assert_eq!(app.count("hello tutorial").await, 1, "{}", app.name);
        assert_eq!(app.count("hi ann").await, 1, "{}", app.name);
    }

    // The inspector shows the invocations the hub sent.
    ann.click("#open-inspector").await;
    ann.until(
        "ReceiveMessage in the inspector",
        10,
        "return document.querySelectorAll('#inspector-log [data-target=\"ReceiveMessage\"]').length >= 2;",
        json!([]),
    )
    .await;
    ann.screenshot("tut-inspector").await;
    ann.click("#inspector-close").await;
    // The hub settings: what auto found, and what this hub lacks.
    ann.click("#open-account").await;
    let found = ann
        .until(
            "the method auto found",
            10,
            "const v = document.querySelector('#send-method').value; return v || null;",
            json!([]),
        )
        .await;
    assert_eq!(found, json!("SendMessage(name,text)"));
    let lacks = ann
        .js(
            "return document.querySelector('#unavailable').textContent;",
            json!([]),
        )
        .await;
    assert!(lacks.as_str().unwrap().contains("no history"), "{lacks}");
    ann.quit().await;
    bob.quit().await;
}

/// Issue 14: an app given only a classic hub URL (`hubbub hub`'s `/signalr`, no family, no hub
/// name) finds the classic family, says so, and chats with an app on the same hub's ASP.NET
/// Core endpoint (`/chathub`), both ways, each message once.
// The lock only makes the desktop tests take turns; nothing else waits on it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread")]
async fn an_app_chats_on_a_classic_hub_url_with_no_setting() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((tauri_driver, native, xvfb_bin)) = tools() else {
        return;
    };
    let (_x, display) = xvfb(&xvfb_bin);
    let hub_port = free_port();
    let _hub = hub(hub_port);
    let classic = format!("http://127.0.0.1:{hub_port}/signalr");
    let core = format!("http://127.0.0.1:{hub_port}/chathub");
    let (_driver_a, port_a) = driver(&tauri_driver, &native, &display);
    let (_driver_b, port_b) = driver(&tauri_driver, &native, &display);
    let app = app_binary();
    let (dir_a, dir_b) = (profile("classic-ann"), profile("classic-bob"));
    let ann = App::launch(
        port_a,
        &app,
        &["--profile", &dir_a, "--hub", &classic, "--name", "ann"],
        "classic-ann",
    )
    .await;
    let bob = App::launch(
        port_b,
        &app,
        &["--profile", &dir_b, "--hub", &core, "--name", "bob"],
        "classic-bob",
    )
    .await;
    ann.state_is("connected", 30).await;
    bob.state_is("connected", 30).await;
    // What auto found is shown: the status pill, then the hub settings.
    let pill = ann
        .until(
            "the classic family in the status",
            10,
            "const t = document.querySelector('#status').textContent; return t.includes('classic') ? t : null;",
            json!([]),
        )
        .await;
    assert!(pill.as_str().unwrap().starts_with("Connected"), "{pill}");
    let bob_pill = bob
        .js(
            "return document.querySelector('#status').textContent;",
            json!([]),
        )
        .await;
    assert!(
        !bob_pill.as_str().unwrap().contains("classic"),
        "{bob_pill}"
    );
    ann.screenshot("classic-connected").await;

    ann.type_into("#composer", "hello from classic\u{E007}")
        .await;
    assert_eq!(
        bob.message_state("hello from classic", 20).await,
        "received"
    );
    ann.message_reaches("hello from classic", "sent", 20).await;
    bob.type_into("#composer", "hi from core\u{E007}").await;
    assert_eq!(ann.message_state("hi from core", 20).await, "received");
    bob.message_reaches("hi from core", "sent", 20).await;
    for app in [&ann, &bob] {
        assert_eq!(app.count("hello from classic").await, 1, "{}", app.name);
        assert_eq!(app.count("hi from core").await, 1, "{}", app.name);
    }

    // Presence across the families: each app lists both.
    for app in [&ann, &bob] {
        app.until(
            "both online",
            15,
            "return document.querySelectorAll('#online li').length === 2;",
            json!([]),
        )
        .await;
    }

    ann.click("#open-account").await;
    let family = ann
        .until(
            "the family in the hub settings",
            10,
            "const d = document.querySelector('#account-details').textContent; return d.includes('Classic ASP.NET SignalR 2.x') ? d : null;",
            json!([]),
        )
        .await;
    assert!(family.as_str().unwrap().contains("hub chatHub"), "{family}");
    let setting = ann
        .js(
            "return [document.querySelector('#hub-family').value, document.querySelector('#hub-name').value];",
            json!([]),
        )
        .await;
    assert_eq!(setting, json!(["auto", ""]), "the setting stays auto");
    ann.screenshot("classic-settings").await;
    ann.quit().await;
    bob.quit().await;
}
