//! The servers a fleet of hub nodes shares, started by the tests themselves on loopback: a
//! `redis-server` without persistence, or a PostgreSQL cluster from Debian's packages in a
//! private data directory (`initdb`, then `postgres` itself, run as the `postgres` user when
//! the tests run as root: PostgreSQL refuses root). Both on a free port of 127.0.0.1, stopped
//! on drop. The postmaster is a direct child started through `setpriv --pdeathsig KILL` (not
//! `pg_ctl`, which daemonizes it): a test process killed outright takes it along.
//!
//! Included with `#[path = "support/fleet.rs"] mod fleet;` by the tests that need it.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which backplane a fleet shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Redis,
    Postgres,
}

impl Kind {
    /// How the hub names it in its log lines ("… backplane connected").
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Redis => "Redis",
            Self::Postgres => "PostgreSQL",
        }
    }
}

pub(crate) use crate::support::free_port;

/// A Redis server or a PostgreSQL cluster of the test's own.
pub(crate) struct Backend {
    pub(crate) kind: Kind,
    pub(crate) port: u16,
    redis: Option<Child>,
    /// PostgreSQL: the postmaster, while running.
    postgres: Option<Child>,
    /// PostgreSQL: the private directory (cluster in `data`, server log in `log`).
    dir: Option<PathBuf>,
    running: bool,
}

/// Where Debian puts PostgreSQL's server programs (the newest major version installed).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup.sh installs the postgresql package)")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/N/bin/postgres")
        .1
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A PostgreSQL program, as the `postgres` user when we are root.
fn pg(program: &str) -> Command {
    let path = pg_bin().join(program);
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str, log: Option<&Path>) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if !output.status.success() {
        let log = log
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        panic!(
            "{what} failed: {}\n{}\n{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Removes the data directories of test processes that no longer run (killed outright: their
/// postmasters died with them, their directories stayed).
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("hubbub-pg-")) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Backend {
    /// Starts a server of `kind` and waits (20 s at most) until it answers.
    pub(crate) fn start(kind: Kind) -> Self {
        let mut backend = Self {
            kind,
            port: free_port(),
            redis: None,
            postgres: None,
            dir: None,
            running: false,
        };
        if kind == Kind::Postgres {
            remove_stale_clusters();
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("hubbub-pg-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            // Set first: a failed initdb leaves no directory behind (removed on drop).
            backend.dir = Some(dir.clone());
            if running_as_root() {
                let mut chown = Command::new("chown");
                chown.args(["-R", "postgres:postgres"]).arg(&dir);
                run(chown, "chown the PostgreSQL directory", None);
            }
            let mut initdb = pg("initdb");
            initdb.arg("-D").arg(dir.join("data")).args([
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
            ]);
            run(initdb, "initdb", None);
        }
        backend.launch();
        backend
    }

    /// Starts the server (again, on the same port: PostgreSQL keeps its data, a restarted
    /// Redis is empty).
    pub(crate) fn launch(&mut self) {
        match self.kind {
            Kind::Redis => {
                let child = Command::new("redis-server")
                    .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server is installed (scripts/setup.sh test installs it)");
                self.redis = Some(child);
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut buf = [0u8; 7];
                        if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() {
                            assert_eq!(&buf, b"+PONG\r\n");
                            break;
                        }
                    }
                    assert!(Instant::now() < deadline, "redis-server did not come up");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Kind::Postgres => {
                let dir = self.dir.clone().unwrap();
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("log"))
                    .unwrap();
                let mut postgres = Command::new("setpriv");
                postgres.args(["--pdeathsig", "KILL"]);
                if running_as_root() {
                    postgres.args([
                        "--reuid",
                        "postgres",
                        "--regid",
                        "postgres",
                        "--init-groups",
                    ]);
                }
                postgres
                    .arg("--")
                    .arg(pg_bin().join("postgres"))
                    .arg("-D")
                    .arg(dir.join("data"))
                    .args(["-p", &self.port.to_string()])
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    .args(["-c", "unix_socket_directories="])
                    .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log);
                let mut child = postgres
                    .spawn()
                    .expect("setpriv (util-linux) and PostgreSQL are installed");
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    if self.answers() {
                        break;
                    }
                    let exited = child.try_wait().unwrap();
                    if exited.is_some() || Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                        panic!("PostgreSQL did not come up within 20 s ({exited:?}):\n{log}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                self.postgres = Some(child);
            }
        }
        self.running = true;
    }

    /// PostgreSQL: whether the server answers a query.
    fn answers(&self) -> bool {
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-Atc", "SELECT 1"])
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server: Redis with SIGKILL (it vanishes with everything it held),
    /// PostgreSQL with SIGINT, its fast shutdown (connections cut, data kept).
    pub(crate) fn stop(&mut self) {
        self.stop_with("fast");
    }

    /// Crashes the server: Redis with SIGKILL, PostgreSQL with SIGQUIT, its immediate shutdown
    /// (crash recovery at the next start, which empties UNLOGGED tables).
    pub(crate) fn crash(&mut self) {
        self.stop_with("immediate");
    }

    /// Fills the chat hub's history of `scope` (a history key such as `scope:S`) with `n`
    /// entries numbered 1..=n, straight in the server, as the hub stores them (hub `chat`,
    /// prefix `hubbub:`): Redis's list and counter, PostgreSQL's rows. A node must have joined
    /// first (PostgreSQL: it creates the tables).
    pub(crate) fn seed_history(&self, scope: &str, n: u32) {
        match self.kind {
            Kind::Redis => {
                let script = "for i = 1, tonumber(ARGV[1]) do \
                    redis.call('RPUSH', KEYS[1], cjson.encode({seq = i, id = 'seed-' .. i, \
                    name = 'seed', message = 'm' .. i})) end \
                    redis.call('SET', KEYS[2], ARGV[1]) return 1";
                let output = Command::new("redis-cli")
                    .args(["-p", &self.port.to_string(), "EVAL", script, "2"])
                    .arg(format!("hubbub:chat:chat:history:{scope}"))
                    .arg(format!("hubbub:chat:chat:seq:{scope}"))
                    .arg(n.to_string())
                    .output()
                    .expect("redis-cli is installed with redis-server");
                let out = String::from_utf8_lossy(&output.stdout);
                assert_eq!(
                    out.trim(),
                    "1",
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Kind::Postgres => {
                self.psql(&format!(
                    "INSERT INTO hubbub_history (hub, scope, seq, id, name, message) \
                     SELECT 'hubbub:chat', '{scope}', g, 'seed-' || g, 'seed', 'm' || g \
                     FROM generate_series(1, {n}) g; \
                     INSERT INTO hubbub_scopes (hub, scope, seq) VALUES ('hubbub:chat', '{scope}', {n})"
                ));
            }
        }
    }

    /// Hangs the server (SIGSTOP to it and, for PostgreSQL, to every process of the cluster:
    /// established connections are served by the postmaster's children) until the guard is
    /// dropped (SIGCONT): connections stay open, nothing answers.
    pub(crate) fn freeze(&self) -> Frozen {
        let server = self
            .redis
            .as_ref()
            .or(self.postgres.as_ref())
            .expect("the server runs")
            .id();
        let children = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
            .unwrap_or_default();
        let mut pids: Vec<u32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        pids.push(server);
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status();
        }
        Frozen(pids)
    }

    /// How many nodes of the chat hub (prefix `hubbub:`) the backplane counts: Redis's set of
    /// nodes, PostgreSQL's liveness rows.
    pub(crate) fn node_count(&self) -> usize {
        let text = match self.kind {
            Kind::Redis => {
                let output = Command::new("redis-cli")
                    .args(["-p", &self.port.to_string(), "SCARD", "hubbub:chat:nodes"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("redis-cli is installed with redis-server");
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
            Kind::Postgres => {
                self.psql("SELECT count(*) FROM hubbub_nodes WHERE hub = 'hubbub:chat'")
            }
        };
        text.parse()
            .unwrap_or_else(|_| panic!("a node count, not {text:?}"))
    }

    /// Redis only: what `redis-cli` prints for the command `args` (run as the `default`
    /// user), trimmed; a panic naming the command if it fails or answers an error.
    pub(crate) fn redis_cli(&self, args: &[&str]) -> String {
        assert_eq!(self.kind, Kind::Redis);
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed with redis-server");
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success() && !text.starts_with("ERR") && !text.starts_with("(error)"),
            "redis-cli {args:?}: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    /// PostgreSQL only: the rows `sql` returns, `|`-separated columns, through `psql`.
    pub(crate) fn psql(&self, sql: &str) -> String {
        assert_eq!(self.kind, Kind::Postgres);
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-At", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql is installed (with the postgresql package)");
        assert!(
            output.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn stop_with(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        self.running = false;
        match self.kind {
            Kind::Redis => {
                if let Some(mut child) = self.redis.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Kind::Postgres => {
                if let Some(mut child) = self.postgres.take() {
                    // PostgreSQL's shutdown modes: SIGINT fast, SIGQUIT immediate.
                    let signal = if mode == "fast" { "INT" } else { "QUIT" };
                    let _ = Command::new("kill")
                        .args([&format!("-{signal}"), &child.id().to_string()])
                        .status();
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while child.try_wait().unwrap().is_none() {
                        if Instant::now() >= deadline {
                            let _ = child.kill();
                            let _ = child.wait();
                            panic!("PostgreSQL did not stop ({mode}) within 20 s");
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }

    /// The URL a hub node is given.
    pub(crate) fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
        }
    }

    /// The `hubbub hub` arguments that join this fleet, with this node TTL (seconds).
    pub(crate) fn hub_args(&self, node_ttl: &str) -> Vec<String> {
        let (flag, ttl) = match self.kind {
            Kind::Redis => ("--redis", "--redis-node-ttl"),
            Kind::Postgres => ("--postgres", "--postgres-node-ttl"),
        };
        vec![flag.into(), self.url(), ttl.into(), node_ttl.into()]
    }

    /// The line a node logs once it has joined the fleet.
    pub(crate) fn connected_line(&self) -> String {
        format!("{} backplane connected", self.kind.name())
    }

    /// The line a node logs when it loses the backplane.
    pub(crate) fn unavailable_line(&self) -> String {
        format!("{} backplane unavailable", self.kind.name())
    }

    /// The line a node logs when it has the backplane back.
    pub(crate) fn back_line(&self) -> String {
        format!("{} backplane back", self.kind.name())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = &self.dir {
                if let Ok(log) = std::fs::read_to_string(dir.join("log")) {
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    eprintln!(
                        "PostgreSQL log (last lines, newest first):\n{}",
                        tail.join("\n")
                    );
                }
            }
        }
        if self.running {
            self.running = false;
            for child in [self.redis.take(), self.postgres.take()]
                .into_iter()
                .flatten()
            {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A hung server (see [`Backend::freeze`]); resumed on drop.
pub(crate) struct Frozen(Vec<u32>);

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}
