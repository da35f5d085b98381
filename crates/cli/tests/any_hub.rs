//! `hubbub` on a hub it did not write and whose methods it is not told (issue 15): a chat hub
//! written like the ASP.NET Core tutorial (`SendMessage` → `ReceiveMessage`) on the independent
//! `aiosignalr` server (PyPI), run by `tests/interop/python/tutorial_hub.py` on 127.0.0.1.

// Children are reaped with wait() where the test goes on; on a failed assertion the test
// process ends and takes them along.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

mod support;
const LIMIT: Duration = Duration::from_secs(20);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tutorial-style hub; killed when dropped.
struct TutorialHub {
    child: Child,
    url: String,
}

impl TutorialHub {
    fn start(extra: &[&str]) -> Self {
        let python = std::env::var("HUBBUB_PYTHON").unwrap_or_else(|_| {
            format!(
                "{}/.cache/hubbub/venv/bin/python",
                std::env::var("HOME").unwrap()
            )
        });
        assert!(
            std::path::Path::new(&python).exists(),
            "no Python with aiosignalr at {python}: run scripts/test.sh (it creates the venv)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(python)
            .arg(root().join("tests/interop/python/tutorial_hub.py"))
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the tutorial hub starts");
        let lines = lines_of(child.stdout.take().unwrap());
        let line = lines
            .recv_timeout(LIMIT)
            .expect("the tutorial hub says it listens");
        let url = line
            .strip_prefix("listening on ")
            .expect("the listening line")
            .to_owned();
        Self { child, url }
    }
}

impl Drop for TutorialHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(read: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(read).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// A running `hubbub` command with its output read line by line.
struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    seen_out: Vec<String>,
    seen_err: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = support::hubbub()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
            seen_out: Vec::new(),
            seen_err: Vec::new(),
        }
    }

    fn drain(&mut self) {
        self.seen_out.extend(self.stdout.try_iter());
        self.seen_err.extend(self.stderr.try_iter());
    }

    /// Waits (at most [`LIMIT`]) until a line of stdout (`out`) or stderr satisfies `pred`.
    fn wait_for(&mut self, out: bool, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        let mut checked = 0;
        loop {
            self.drain();
            let seen = if out { &self.seen_out } else { &self.seen_err };
            if let Some(line) = seen[checked..].iter().find(|l| pred(l)) {
                return line.clone();
            }
            checked = seen.len();
            assert!(
                Instant::now() < deadline,
                "no {what} within {LIMIT:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.seen_out.join("\n"),
                self.seen_err.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// How many stdout lines equal `line`.
    fn count(&mut self, line: &str) -> usize {
        self.drain();
        self.seen_out.iter().filter(|l| *l == line).count()
    }

    fn stop(mut self) -> (Vec<String>, Vec<String>) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + LIMIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "did not exit within {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        self.drain();
        (
            std::mem::take(&mut self.seen_out),
            std::mem::take(&mut self.seen_err),
        )
    }
}

/// A failed assertion must not leave a command running: it would hold whatever it inherited
/// (the test's pipes, a lock the test runner holds) until someone kills it.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a `hubbub` command to its end (at most [`LIMIT`]).
fn run(args: &[&str]) -> Output {
    let mut child = support::hubbub()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hubbub {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "hubbub {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn temp_db(name: &str) -> String {
    let dir =
        std::env::temp_dir().join(format!("hubbub-anyhub-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite3").display().to_string()
}

fn chat(url: &str, name: &str, extra: &[&str]) -> Running {
    let db = temp_db(&format!("{name}-{}", extra.len()));
    let mut args = vec!["chat", "--url", url, "--name", name, "--db", &db];
    args.extend_from_slice(extra);
    let mut chat = Running::start(&args);
    chat.wait_for(false, "the chat's ready line", |l| {
        l.contains("chatting as")
    });
    chat
}

fn deliveries(url: &str) -> u64 {
    let out = run(&["invoke", "--url", url, "Deliveries"]);
    assert!(out.status.success());
    stdout(&out).parse().expect("a count")
}

fn listen(url: &str, extra: &[&str]) -> Running {
    let mut args = vec!["listen", "--url", url];
    args.extend_from_slice(extra);
    let mut listen = Running::start(&args);
    listen.wait_for(true, "Connected", |l| l.contains("\"new\":\"Connected\""));
    listen
}

/// The `message` of the first invocation line of `listen` for `target` whose text is `text`.
fn listened(listen: &mut Running, target: &str, text: &str) -> serde_json::Value {
    let line = listen.wait_for(true, &format!("{target} with {text}"), |l| {
        l.contains(&format!("\"target\":\"{target}\"")) && l.contains(text)
    });
    serde_json::from_str(&line).unwrap()
}

#[test]
fn send_chat_listen_and_invoke_on_the_tutorial_hub_with_no_setting() {
    let hub = TutorialHub::start(&[]);
    let mut watcher = listen(&hub.url, &[]);
    let mut ann = chat(&hub.url, "ann", &[]);
    let mut bob = chat(&hub.url, "bob", &[]);
    // This hub keeps no history, so a message sent before bob is connected never reaches him.
    // Once connected, each chat looks for the hub's history and says it has none (which is
    // also what a user should be told).
    for chat in [&mut ann, &mut bob] {
        chat.wait_for(false, "the missing history", |l| {
            l.contains("this hub has no history (Unknown hub method 'History')")
        });
    }
    ann.type_line("hello from ann");
    ann.wait_for(false, "the method found", |l| {
        l.contains("takes messages with SendMessage(name,text)")
    });
    bob.type_line("hello from bob");
    let sent = run(&[
        "send",
        "--url",
        &hub.url,
        "--name",
        "carl",
        "hello from carl",
    ]);
    assert!(sent.status.success());
    assert!(
        String::from_utf8_lossy(&sent.stderr).contains("sent with SendMessage(name,text)"),
        "auto says what it found"
    );
    // The hub delivers in order to each connection: once the last message is shown, any
    // repeat of an earlier one would have been shown before it.
    let last = run(&["send", "--url", &hub.url, "--name", "carl", "the end"]);
    assert!(last.status.success());
    for (who, chat) in [("ann", &mut ann), ("bob", &mut bob)] {
        chat.wait_for(true, "the last message", |l| l == "carl: the end");
        for line in [
            "ann: hello from ann",
            "bob: hello from bob",
            "carl: hello from carl",
        ] {
            assert_eq!(chat.count(line), 1, "{who} shows '{line}' once");
        }
    }
    let message = listened(&mut watcher, "ReceiveMessage", "hello from carl");
    assert_eq!(
        message["message"],
        serde_json::json!({"sender": "carl", "text": "hello from carl"})
    );
    assert_eq!(
        message["arguments"],
        serde_json::json!(["carl", "hello from carl"])
    );
    // Four messages, each delivered once although auto tried Send first every time.
    assert_eq!(deliveries(&hub.url), 4);
    ann.stop();
    bob.stop();
    watcher.stop();
}

#[test]
fn auto_never_delivers_twice_and_stops_at_an_answer_that_is_not_a_missing_method() {
    // This hub has a Send that fails (without delivering): auto must not go on to SendMessage.
    let hub = TutorialHub::start(&["--send-fails"]);
    let out = run(&["send", "--url", &hub.url, "--name", "ann", "once"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Send is closed today"));
    let mut ann = chat(&hub.url, "ann", &[]);
    ann.type_line("not delivered");
    ann.wait_for(false, "the refusal", |l| {
        l.contains("not sent: not delivered (Send is closed today)")
    });
    assert_eq!(
        deliveries(&hub.url),
        0,
        "auto tried nothing after Send's answer"
    );
    ann.stop();
    // Naming the method works.
    let out = run(&[
        "send",
        "--url",
        &hub.url,
        "--name",
        "ann",
        "--send-method",
        "SendMessage",
        "named",
    ]);
    assert!(out.status.success());
    assert_eq!(deliveries(&hub.url), 1);

    // On a hub without Send, auto probes for every message, and each is delivered once.
    let hub = TutorialHub::start(&[]);
    let mut watcher = listen(&hub.url, &[]);
    for i in 0..5 {
        let text = format!("probe {i}");
        assert!(
            run(&["send", "--url", &hub.url, "--name", "ann", &text])
                .status
                .success()
        );
    }
    listened(&mut watcher, "ReceiveMessage", "probe 4");
    assert_eq!(deliveries(&hub.url), 5);
    let (out, _) = watcher.stop();
    let received = out
        .iter()
        .filter(|l| l.contains("\"target\":\"ReceiveMessage\""))
        .count();
    assert_eq!(received, 5, "{out:?}");
}

#[test]
fn an_extra_argument_and_an_object_are_shown_under_auto_and_a_custom_mapping() {
    // ReceiveMessage(user, message, timestamp).
    let hub = TutorialHub::start(&["--shape", "timestamp"]);
    let mut auto = chat(&hub.url, "ann", &[]);
    let mut custom = chat(
        &hub.url,
        "bob",
        &["--receive-method", "ReceiveMessage(0,1)"],
    );
    let mut watcher = listen(&hub.url, &["--receive-method", "ReceiveMessage(0,1)"]);
    assert!(
        run(&["send", "--url", &hub.url, "--name", "carl", "with a time"])
            .status
            .success()
    );
    auto.wait_for(true, "the message", |l| l == "carl: with a time");
    custom.wait_for(true, "the message", |l| l == "carl: with a time");
    let line = listened(&mut watcher, "ReceiveMessage", "with a time");
    assert_eq!(line["message"]["sender"], "carl");
    assert_eq!(line["arguments"].as_array().unwrap().len(), 3);
    auto.stop();
    custom.stop();
    watcher.stop();

    // ReceiveMessage({user, message, sentAt}).
    let hub = TutorialHub::start(&["--shape", "object"]);
    let mut auto = chat(&hub.url, "ann", &[]);
    let mut custom = chat(
        &hub.url,
        "bob",
        &["--receive-method", "ReceiveMessage(0.user,0.message)"],
    );
    let mut watcher = listen(&hub.url, &[]);
    assert!(
        run(&["send", "--url", &hub.url, "--name", "carl", "as an object"])
            .status
            .success()
    );
    auto.wait_for(true, "the message", |l| l == "carl: as an object");
    custom.wait_for(true, "the message", |l| l == "carl: as an object");
    // The chat's own message in an object comes back once too.
    auto.type_line("mine");
    auto.wait_for(true, "its own message", |l| l == "ann: mine");
    let line = listened(&mut watcher, "ReceiveMessage", "as an object");
    assert_eq!(
        line["message"],
        serde_json::json!({"sender": "carl", "text": "as an object"})
    );
    // A mapping with no sender: the message is shown from "unknown".
    let mut anonymous = chat(
        &hub.url,
        "dan",
        &["--receive-method", "ReceiveMessage(_,0.message)"],
    );
    assert!(
        run(&["send", "--url", &hub.url, "--name", "carl", "who said it"])
            .status
            .success()
    );
    anonymous.wait_for(true, "the message", |l| l == "unknown: who said it");
    custom.wait_for(true, "the message", |l| l == "carl: who said it");
    assert_eq!(auto.count("ann: mine"), 1);
    auto.stop();
    custom.stop();
    anonymous.stop();
    watcher.stop();
}

#[test]
fn the_inspector_shows_unknown_targets_and_invoke_prints_results_and_errors() {
    let hub = TutorialHub::start(&[]);
    let mut watcher = listen(&hub.url, &[]);
    let mut ann = chat(&hub.url, "ann", &[]);
    let out = run(&["invoke", "--url", &hub.url, "Announce", "\"psst\""]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "null");
    // An invocation no chat knows: listen prints it whole, chat shows it as it came.
    let line = listened(&mut watcher, "Notice", "psst");
    assert_eq!(line["arguments"], serde_json::json!(["psst", 1]));
    assert!(line.get("message").is_none(), "{line}");
    ann.wait_for(false, "the unknown invocation", |l| {
        l.contains("the hub sent Notice(\"psst\", 1)")
    });
    // A method that returns a value, one that fails, and input that is not JSON.
    let out = run(&["invoke", "--url", &hub.url, "Add", "2", "3"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "5");
    let out = run(&[
        "invoke",
        "--url",
        &hub.url,
        "Add",
        "[1]",
        "[2, {\"a\": null}]",
    ]);
    assert_eq!(stdout(&out), "[1,2,{\"a\":null}]");
    let out = run(&["invoke", "--url", &hub.url, "Fail"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Fail failed: nope: Fail always fails"));
    let out = run(&["invoke", "--url", &hub.url, "NoSuchMethod"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown hub method 'NoSuchMethod'"));
    let out = run(&["invoke", "--url", &hub.url, "Add", "two", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("argument 1 is not JSON"));
    ann.stop();
    watcher.stop();
}
