//! Hubbub's load generator: many WebSocket connections from one process, against the hub
//! (SignalR over WebSockets, skip-negotiation) or the raw broadcast server.
//!
//!     loadgen fanout --url ws://127.0.0.1:5000/chathub --mode signalr --receivers 1000 \
//!                    --messages 200 --size 16 --protocol json --server-pid PID
//!     loadgen fanout --url ws://127.0.0.1:5000/signalr --mode classic --receivers 1000 …
//!     loadgen idle   --url ws://127.0.0.1:5000/chathub --mode signalr --connections 10000 --server-pid PID
//!     loadgen idle   --url ws://127.0.0.1:5000/chathub --mode signalr --transport sse …   (or long-polling)
//!     loadgen client --url http://127.0.0.1:5000/signalr --family classic
//!
//! It counts every delivery it expects and fails (exit 1) on any loss. Results are one JSON
//! object on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hubbub_protocol::{HubMessage, MessageReader, Protocol};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One sender broadcasting to many receivers.
    Fanout(Fanout),
    /// Many idle connections: the server's memory per connection.
    Idle(Idle),
    /// Hubbub's client as a receiver: messages/s decoded and dispatched, invoke round trips.
    Client(ClientBench),
    /// Time from a hub restart to the client reconnected, with the default retry policy.
    Reconnect(ReconnectBench),
}

#[derive(clap::Args, Debug)]
struct ReconnectBench {
    /// The `hubbub` binary.
    #[arg(long)]
    hub_bin: std::path::PathBuf,
    /// How long the hub stays down.
    #[arg(long, default_value_t = 500)]
    down_ms: u64,
}

async fn reconnect(args: ReconnectBench) -> Result<serde_json::Value, String> {
    use hubbub_client::{Event, HubConnectionBuilder};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| e.to_string())?
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let spawn = || {
        tokio::process::Command::new(&args.hub_bin)
            .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
            // In memory, as the figures before durable history by default were measured.
            .args(["--history", "memory"])
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())
    };
    let wait_up = || async {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err("the hub did not start".to_owned())
    };
    let mut hub = spawn()?;
    wait_up().await?;
    let conn = HubConnectionBuilder::new(format!("http://127.0.0.1:{port}/chathub"))
        .with_automatic_reconnect()
        .build()
        .map_err(|e| e.to_string())?;
    let mut events = conn.events();
    conn.start().await.map_err(|e| e.to_string())?;
    // The hub dies without a Close (SIGKILL) and comes back on the same port.
    hub.kill().await.map_err(|e| e.to_string())?;
    loop {
        if let Ok(Event::Reconnecting { .. }) = events.recv().await {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(args.down_ms)).await;
    let restarted = Instant::now();
    let mut hub = spawn()?;
    wait_up().await?;
    let up = restarted.elapsed();
    let reconnected = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(Event::Reconnected { .. }) = events.recv().await {
                return restarted.elapsed();
            }
        }
    })
    .await
    .map_err(|_| "no reconnect within 60 s".to_owned())?;
    conn.stop().await;
    let _ = hub.kill().await;
    Ok(serde_json::json!({
        "scenario": "reconnect",
        "downMs": args.down_ms,
        "hubStartMs": up.as_secs_f64() * 1000.0,
        "reconnectedAfterRestartMs": reconnected.as_secs_f64() * 1000.0,
    }))
}

#[derive(clap::Args, Debug)]
struct ClientBench {
    /// The hub URL (http).
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 50_000)]
    messages: u32,
    #[arg(long, default_value_t = 2_000)]
    invokes: u32,
    #[arg(long, value_enum, default_value = "json")]
    protocol: Proto,
    /// The protocol family: `core` (`…/chathub`) or `classic` (`…/signalr`, JSON only).
    #[arg(long, default_value = "core")]
    family: String,
}

async fn client(args: ClientBench) -> Result<serde_json::Value, String> {
    use hubbub_client::{Arg, Family, HubConnectionBuilder, TransportKind};
    let family = match args.family.as_str() {
        "core" => Family::Core,
        "classic" => Family::Classic,
        other => return Err(format!("unknown family {other:?}: core or classic")),
    };
    let conn = HubConnectionBuilder::new(&args.url)
        .transports(&[TransportKind::WebSockets])
        .protocol(protocol(args.protocol))
        .family(family)
        .build()
        .map_err(|e| e.to_string())?;
    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (r, l) = (received.clone(), last.clone());
    let expected = u64::from(args.messages);
    conn.on("broadcastMessage", move |args| {
        // Dispatch means the handler has the typed arguments.
        let text: String = args[1].decode().unwrap_or_default();
        std::hint::black_box(text);
        // The clock is read once, at the last message (as the Node clients do).
        if r.fetch_add(1, Ordering::Relaxed) + 1 == expected {
            *l.lock().unwrap() = Instant::now();
        }
        None
    });
    conn.start().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    let cpu_start = process_cpu()?;
    conn.invoke::<()>(
        "Flood",
        vec![
            Arg::from_value(args.messages.into()),
            Arg::from_value(16.into()),
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < u64::from(args.messages) {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} messages arrived",
                received.load(Ordering::Relaxed),
                args.messages
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = process_cpu()?.saturating_sub(cpu_start);
    let elapsed = last.lock().unwrap().duration_since(start).as_secs_f64();
    let mut rtts = Vec::with_capacity(args.invokes as usize);
    for i in 0..args.invokes {
        let t = Instant::now();
        let _: u32 = conn
            .invoke("Echo", vec![Arg::from_value(i.into())])
            .await
            .map_err(|e| e.to_string())?;
        rtts.push(t.elapsed().as_nanos() as u64);
    }
    rtts.sort_unstable();
    conn.stop().await;
    Ok(serde_json::json!({
        "scenario": "client",
        "client": "hubbub-client",
        "family": args.family,
        "protocol": if family == Family::Classic { "classic" } else { protocol(args.protocol).name() },
        "messages": args.messages,
        "messagesPerSecond": f64::from(args.messages) / elapsed,
        "cpuUsPerMessage": cpu.as_secs_f64() * 1e6 / f64::from(args.messages),
        "invokes": args.invokes,
        "invokeP50Ms": percentile(&rtts, 0.5) / 1000.0,
        "invokeP99Ms": percentile(&rtts, 0.99) / 1000.0,
    }))
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Mode {
    /// SignalR (the hub): handshake, Send(name, text) → broadcastMessage(name, text).
    Signalr,
    /// The raw broadcast server: a text frame in, the same text frame out to everyone.
    Raw,
    /// Classic ASP.NET SignalR 2.x over WebSockets (the URL is the endpoint, `…/signalr`):
    /// negotiate, connect, start; `{"H":"chatHub","M":"Send",…}` → envelopes of
    /// `broadcastMessage` items.
    Classic,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Proto {
    Json,
    Msgpack,
}

#[derive(clap::Args, Debug)]
struct Fanout {
    /// The server's URL; repeated for a fleet of hub nodes: receivers are spread over them in
    /// turn and the sender uses the first.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// The scenario name in the results (`scaleout` for runs through several nodes).
    #[arg(long, default_value = "fanout")]
    scenario: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 1000)]
    receivers: usize,
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Text bytes per message.
    #[arg(long, default_value_t = 16)]
    size: usize,
    #[arg(long, value_enum, default_value = "json")]
    protocol: Proto,
    /// Messages in flight (sent, not yet delivered everywhere) at most.
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// The server's process id, to read its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for the server in the results.
    #[arg(long, default_value = "")]
    server: String,
}

#[derive(clap::Args, Debug)]
struct Idle {
    #[arg(long)]
    url: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    #[arg(long, value_enum, default_value = "json")]
    protocol: Proto,
    #[arg(long)]
    server_pid: u32,
    /// The hub's transport (`--mode signalr` only): `websockets` skips negotiation as before;
    /// `sse` and `long-polling` negotiate and connect with hubbub-client.
    #[arg(long, value_enum, default_value = "websockets")]
    transport: IdleTransport,
    /// Seconds the connections stay open after the measurement (time to profile the server).
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum IdleTransport {
    Websockets,
    Sse,
    LongPolling,
}

fn protocol(p: Proto) -> Protocol {
    match p {
        Proto::Json => Protocol::Json,
        Proto::Msgpack => Protocol::MessagePack,
    }
}

/// CPU time (user + system, all threads) this process has used, to the nanosecond
/// (`CLOCK_PROCESS_CPUTIME_ID`; /proc counts in 10 ms ticks, too coarse for a client flood).
fn process_cpu() -> Result<Duration, String> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map_err(|e| format!("process CPU clock: {e}"))?;
    Ok(Duration::from(t))
}

/// CPU seconds (user + system) a process has used, from /proc: the sum of its threads' run
/// times in `/proc/PID/task/*/schedstat` (nanoseconds, so a run of tens of milliseconds is
/// measured to better than 1 %), or, where schedstat is missing, `/proc/PID/stat`'s ticks
/// (10 ms each). Threads that ended during the run are not counted by the first: the servers
/// measured keep their worker threads.
fn cpu_seconds(pid: u32) -> f64 {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut ns = 0u64;
        let mut read = false;
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            if let Some(run) = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                ns += run;
                read = true;
            }
        }
        if read {
            return ns as f64 / 1e9;
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Resident memory of a process in bytes, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a connection; for SignalR also completes the handshake.
async fn open(url: &str, mode: Mode, protocol: Protocol) -> Result<(Ws, Vec<u8>), String> {
    if mode == Mode::Classic {
        return open_classic(url).await;
    }
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| e.to_string())?;
    if mode == Mode::Raw {
        return Ok((ws, Vec::new()));
    }
    let handshake = hubbub_protocol::handshake::HandshakeRequest::new(protocol, 1).encode();
    ws.send(Message::Text(String::from_utf8(handshake).unwrap().into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => buf.extend_from_slice(t.as_bytes()),
            Some(Ok(Message::Binary(b))) => buf.extend_from_slice(&b),
            Some(Ok(_)) => continue,
            other => return Err(format!("handshake failed: {other:?}")),
        }
        if let Some((response, used)) =
            hubbub_protocol::handshake::HandshakeResponse::parse(&buf, 1 << 16)
                .map_err(|e| e.to_string())?
        {
            if let Some(e) = response.error {
                return Err(e);
            }
            return Ok((ws, buf[used..].to_vec()));
        }
    }
}

/// A classic connection over WebSockets to the chat hub at `url` (`ws://…/signalr`, with any
/// query): negotiate, connect (the init message read), start, as the jQuery client does.
async fn open_classic(url: &str) -> Result<(Ws, Vec<u8>), String> {
    use hubbub_protocol::classic::{self, Action, ClassicNegotiation, RequestParams};
    let http_base = hubbub_protocol::negotiate::http_url(url).map_err(|e| e.to_string())?;
    let data = classic::form::encode_connection_data(["chatHub"]);
    let negotiate_url = classic::request_url(
        &http_base,
        Action::Negotiate,
        &RequestParams {
            connection_data: Some(&data),
            ..RequestParams::default()
        },
    );
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http
                .get(&url)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Ok::<_, String>(body)
        }
    };
    let body = get(negotiate_url).await?;
    let ClassicNegotiation::Connect(n) =
        classic::parse_negotiate(&body).map_err(|e| e.to_string())?
    else {
        return Err("the hub redirected the classic negotiate".to_owned());
    };
    let params = RequestParams {
        transport: Some(classic::Transport::WebSockets),
        connection_token: Some(&n.connection_token),
        connection_data: Some(&data),
        ..RequestParams::default()
    };
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        classic::request_url(url, Action::Connect, &params),
        None,
        true,
    )
    .await
    .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"S\":1") => {}
        other => return Err(format!("no init message: {other:?}")),
    }
    get(classic::request_url(&http_base, Action::Start, &params)).await?;
    Ok((ws, Vec::new()))
}

/// The `broadcastMessage` texts in one classic payload (an envelope's items; results and
/// keep-alives have none).
fn classic_broadcasts(data: &Bytes) -> Vec<String> {
    use hubbub_protocol::classic::{ClientInvocation, Incoming};
    let Ok(Incoming::Envelope(envelope)) = Incoming::decode(data) else {
        return Vec::new();
    };
    envelope
        .messages
        .iter()
        .filter_map(|item| ClientInvocation::decode(item).ok())
        .filter(|call| call.is("chatHub", "broadcastMessage"))
        .filter_map(|call| call.args.get(1)?.decode::<String>().ok())
        .collect()
}

/// Opens `n` connections, 128 at a time. With `own_scope`, each SignalR connection gets a
/// chat scope of its own, so no connection hears another arrive (presence notifications).
async fn open_many(
    url: &str,
    mode: Mode,
    protocol: Protocol,
    n: usize,
    own_scope: bool,
) -> Vec<(Ws, Vec<u8>)> {
    let gate = Arc::new(Semaphore::new(128));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gate = gate.clone();
            let url = if own_scope && mode == Mode::Signalr {
                format!("{url}?scope=idle-{i}")
            } else {
                url.to_owned()
            };
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                open(&url, mode, protocol).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("connect failed: {e}")),
        );
    }
    out
}

fn now_nanos(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// The text each message carries: "SEQ:SENT_NANOS|" then padding up to `size`.
fn payload(seq: usize, sent: u64, size: usize) -> String {
    let mut text = format!("{seq}:{sent}|");
    while text.len() < size {
        text.push('x');
    }
    text
}

fn latency_of(text: &str, origin: Instant) -> Option<u64> {
    let sent: u64 = text.split(['|', ':']).nth(1)?.parse().ok()?;
    Some(now_nanos(origin).saturating_sub(sent))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

async fn fanout(args: Fanout) -> Result<serde_json::Value, String> {
    let protocol = protocol(args.protocol);
    let origin = Instant::now();
    // Receivers share the sender's scope (they must hear its broadcasts), so each arrival is
    // announced to the others; the clock starts once that traffic has been read.
    let nodes = args.urls.len();
    let mut receivers = Vec::with_capacity(args.receivers);
    for (i, url) in args.urls.iter().enumerate() {
        let n = args.receivers / nodes + usize::from(i < args.receivers % nodes);
        receivers.extend(open_many(url, args.mode, protocol, n, false).await);
    }
    let (sender, _) = open(&args.urls[0], args.mode, protocol).await?;
    // The sender hears its own broadcasts too: it reads (and drops) them, or a hub would close
    // it as too slow once more than its send queue's worth were waiting.
    let (mut sender, mut echoes) = sender.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });
    let delivered = Arc::new(AtomicU64::new(0));
    // Wakes the sender when deliveries progress: it waits for its window instead of spinning
    // (a spinning sender would take a core from the server measured on a small machine).
    let progress = Arc::new(tokio::sync::Notify::new());
    let expected = (args.messages * args.receivers) as u64;
    let mut tasks = Vec::new();
    for (mut ws, rest) in receivers {
        let delivered = delivered.clone();
        let progress = progress.clone();
        let mode = args.mode;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut reader = MessageReader::new(protocol, 1 << 20);
            reader.push(&rest);
            let mut count = 0usize;
            while count < args.messages {
                let data: Bytes =
                    match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => Bytes::from(t),
                        Ok(Some(Ok(Message::Binary(b)))) => b,
                        Ok(Some(Ok(_))) => continue,
                        _ => break,
                    };
                if mode == Mode::Classic {
                    for text in classic_broadcasts(&data) {
                        if let Some(l) = latency_of(&text, origin) {
                            latencies.push(l);
                        }
                        count += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    progress.notify_one();
                    continue;
                }
                if mode == Mode::Raw {
                    if let Some(l) = std::str::from_utf8(&data)
                        .ok()
                        .and_then(|t| latency_of(t, origin))
                    {
                        latencies.push(l);
                    }
                    count += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    progress.notify_one();
                    continue;
                }
                reader.push_bytes(data);
                while let Ok(Some(message)) = reader.next_message() {
                    if let HubMessage::Invocation(inv) = message {
                        if inv.target == "broadcastMessage" {
                            if let Ok(text) = inv.arguments[1].decode::<String>() {
                                if let Some(l) = latency_of(&text, origin) {
                                    latencies.push(l);
                                }
                            }
                            count += 1;
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                progress.notify_one();
            }
            (ws, latencies)
        }));
    }
    // Let the receivers drain the arrival announcements before the measured part.
    let settle = Duration::from_millis(500 + 3 * args.receivers as u64).min(Duration::from_secs(5));
    tokio::time::sleep(settle).await;
    let cpu_before = args.server_pid.map(cpu_seconds);
    let start = Instant::now();
    let window = args.window * args.receivers as u64;
    for seq in 0..args.messages {
        while (seq * args.receivers) as u64 > delivered.load(Ordering::Relaxed) + window {
            let _ = tokio::time::timeout(Duration::from_millis(100), progress.notified()).await;
            if start.elapsed() > Duration::from_secs(120) {
                return Err("the run took more than 120 s".to_owned());
            }
        }
        let text = payload(seq, now_nanos(origin), args.size);
        let frame = match args.mode {
            Mode::Raw => Message::Text(text.into()),
            Mode::Classic => {
                let call = hubbub_protocol::classic::HubRequest {
                    hub: "chatHub".to_owned(),
                    method: "Send".to_owned(),
                    args: vec!["bench".into(), text.into()],
                    id: seq.to_string(),
                    state: None,
                };
                let bytes = call.to_vec().map_err(|e| e.to_string())?;
                Message::Text(String::from_utf8(bytes).unwrap().into())
            }
            Mode::Signalr => {
                let call = HubMessage::Invocation(hubbub_protocol::Invocation {
                    target: "Send".to_owned(),
                    arguments: vec!["bench".into(), text.into()],
                    ..Default::default()
                });
                let bytes = protocol.encode_to_vec(&call).map_err(|e| e.to_string())?;
                match protocol {
                    Protocol::Json => Message::Text(String::from_utf8(bytes).unwrap().into()),
                    Protocol::MessagePack => Message::Binary(bytes.into()),
                }
            }
        };
        sender.send(frame).await.map_err(|e| e.to_string())?;
    }
    let mut latencies = Vec::new();
    for t in tasks {
        let (_ws, l) = t.await.unwrap();
        latencies.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    drain.abort();
    let cpu = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid) - before),
        _ => None,
    };
    let got = delivered.load(Ordering::Relaxed);
    latencies.sort_unstable();
    let result = serde_json::json!({
        "scenario": args.scenario,
        "server": args.server,
        "nodes": nodes,
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "protocol": protocol.name(),
        "receivers": args.receivers,
        "messages": args.messages,
        "size": args.size,
        "expected": expected,
        "delivered": got,
        "lost": expected.saturating_sub(got),
        "seconds": elapsed,
        "deliveriesPerSecond": got as f64 / elapsed,
        "serverCpuSeconds": cpu,
        "serverCpuMicrosPerDelivery": cpu.map(|c| c * 1e6 / got.max(1) as f64),
        "latencyP50Ms": percentile(&latencies, 0.5) / 1000.0,
        "latencyP99Ms": percentile(&latencies, 0.99) / 1000.0,
    });
    if got < expected {
        return Err(format!(
            "{} of {expected} deliveries lost: {result}",
            expected - got
        ));
    }
    Ok(result)
}

/// Opens `n` hubbub-client connections over SSE or long polling, 128 at a time, each in a
/// chat scope of its own (as [`open_many`] does).
async fn open_clients(
    url: &str,
    transport: IdleTransport,
    protocol: Protocol,
    n: usize,
) -> Result<Vec<hubbub_client::HubConnection>, String> {
    use hubbub_client::{HubConnectionBuilder, TransportKind};
    let kind = match transport {
        IdleTransport::Sse => TransportKind::ServerSentEvents,
        IdleTransport::LongPolling => TransportKind::LongPolling,
        IdleTransport::Websockets => TransportKind::WebSockets,
    };
    let base = url
        .replacen("ws://", "http://", 1)
        .replacen("wss://", "https://", 1);
    let gate = Arc::new(Semaphore::new(128));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gate = gate.clone();
            let url = format!("{base}?scope=idle-{i}");
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let conn = HubConnectionBuilder::new(&url)
                    .transports(&[kind])
                    .protocol(protocol)
                    .build()
                    .map_err(|e| e.to_string())?;
                tokio::time::timeout(Duration::from_secs(30), conn.start())
                    .await
                    .map_err(|_| "start took over 30 s".to_owned())?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(conn)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

async fn idle(args: Idle) -> Result<serde_json::Value, String> {
    let protocol = protocol(args.protocol);
    let before = rss_bytes(args.server_pid);
    let (sockets, clients) = if args.transport == IdleTransport::Websockets
        || args.mode != Mode::Signalr
    {
        let sockets = open_many(&args.url, args.mode, protocol, args.connections, true).await;
        (sockets, Vec::new())
    } else {
        let clients = open_clients(&args.url, args.transport, protocol, args.connections).await?;
        (Vec::new(), clients)
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(args.server_pid);
    let per = (after.saturating_sub(before)) as f64 / args.connections as f64;
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    drop(sockets);
    futures_util::future::join_all(
        clients
            .iter()
            .map(|c| tokio::time::timeout(Duration::from_secs(5), c.stop())),
    )
    .await;
    Ok(serde_json::json!({
        "scenario": "idle",
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "transport": format!("{:?}", args.transport).to_lowercase(),
        "connections": args.connections,
        "rssBeforeBytes": before,
        "rssAfterBytes": after,
        "bytesPerConnection": per,
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fanout(a) => fanout(a).await,
        Command::Idle(a) => idle(a).await,
        Command::Client(a) => client(a).await,
        Command::Reconnect(a) => reconnect(a).await,
    };
    match result {
        Ok(v) => {
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
