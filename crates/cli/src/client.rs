//! The client commands: `chat`, `listen`, `send`, `invoke`. All connection rules live in
//! `hubbub-client`; this module parses arguments and renders.

use std::io::Write as _;
use std::time::Duration;

use hubbub_client::methods::{self, HubMethods, Preset, ReceiveMethod, SendMethod, hubbub};
use hubbub_client::{
    Arg, Event, Family, HubConnection, HubConnectionBuilder, Outcome, Protocol, TransportKind,
};
use tokio::io::AsyncBufReadExt;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum TransportArg {
    /// WebSockets.
    Ws,
    /// Server-Sent Events.
    Sse,
    /// Long polling.
    Lp,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ProtocolArg {
    Json,
    Msgpack,
}

/// The SignalR protocol family.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum FamilyArg {
    /// Decided by the hub's negotiate answer.
    Auto,
    /// ASP.NET Core SignalR.
    Core,
    /// Classic ASP.NET SignalR 2.x (a URL such as http://host/signalr, with --hub-name).
    Classic,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// The hub URL, such as http://127.0.0.1:5000/chathub.
    #[arg(long)]
    url: String,
    /// Use only this transport (default: any, in the server's order).
    #[arg(long, value_enum)]
    transport: Option<TransportArg>,
    /// The hub protocol.
    #[arg(long, value_enum, default_value = "json")]
    protocol: ProtocolArg,
    /// A bearer token for the hub (read from HUBBUB_TOKEN when not given).
    #[arg(long, env = "HUBBUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The protocol family (auto: decided by the hub's negotiate answer).
    #[arg(long, value_enum, default_value = "auto")]
    family: FamilyArg,
    /// The hub on a classic ASP.NET SignalR endpoint (its URL names the endpoint, not the hub).
    #[arg(long, default_value = hubbub_client::DEFAULT_CLASSIC_HUB)]
    hub_name: String,
    /// Also trust the CA certificates of this PEM file (a private CA) for https:// and wss://,
    /// besides the system's.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    fn builder(&self, name: Option<&str>) -> Result<HubConnectionBuilder, String> {
        with_ca(
            builder(
                &self.url,
                self.transport,
                self.protocol,
                self.token.clone(),
                name,
                self.family,
                &self.hub_name,
            ),
            self.ca_cert.as_deref(),
        )
    }
}

fn builder(
    url: &str,
    transport: Option<TransportArg>,
    protocol: ProtocolArg,
    token: Option<String>,
    name: Option<&str>,
    family: FamilyArg,
    hub_name: &str,
) -> HubConnectionBuilder {
    let url = match name {
        Some(name) => hubbub_client::with_query(url, "name", name),
        None => url.to_owned(),
    };
    let mut b = HubConnectionBuilder::new(url)
        .protocol(match protocol {
            ProtocolArg::Json => Protocol::Json,
            ProtocolArg::Msgpack => Protocol::MessagePack,
        })
        .family(match family {
            FamilyArg::Auto => Family::Auto,
            FamilyArg::Core => Family::Core,
            FamilyArg::Classic => Family::Classic,
        })
        .hub_name(hub_name);
    if let Some(t) = transport {
        b = b.transports(&[match t {
            TransportArg::Ws => TransportKind::WebSockets,
            TransportArg::Sse => TransportKind::ServerSentEvents,
            TransportArg::Lp => TransportKind::LongPolling,
        }]);
    }
    if let Some(token) = token {
        b = b.access_token(move || {
            let token = token.clone();
            async move { Ok(token) }
        });
    }
    b
}

/// `b` trusting the CA certificates of `--ca-cert`, if given.
fn with_ca(
    b: HubConnectionBuilder,
    ca_cert: Option<&std::path::Path>,
) -> Result<HubConnectionBuilder, String> {
    let Some(path) = ca_cert else { return Ok(b) };
    let pem = std::fs::read(path)
        .map_err(|e| format!("--ca-cert {}: cannot read it: {e}", path.display()))?;
    Ok(b.extra_ca_pem(pem))
}

fn to_json(args: &[Arg]) -> Vec<serde_json::Value> {
    args.iter()
        .map(|a| {
            a.decode::<serde_json::Value>()
                .unwrap_or_else(|e| serde_json::json!({ "undecodable": e.to_string() }))
        })
        .collect()
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (a pipe whose reader left) is not an error worth a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `--send-method` as clap reads it.
fn parse_send(s: &str) -> Result<SendMethod, String> {
    s.parse().map_err(|e: methods::ParseError| e.to_string())
}

/// `--receive-method` as clap reads it.
fn parse_receive(s: &str) -> Result<ReceiveMethod, String> {
    s.parse().map_err(|e: methods::ParseError| e.to_string())
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReceiveArgs {
    /// The method the hub delivers messages with, and where the sender and the text are:
    /// `NAME` (read as it comes), `NAME(0,1)` (argument positions), `NAME(0.user,0.message)`
    /// (fields of an object argument) or `NAME(_,0)` (no sender). Repeatable. Default: auto
    /// (every known name: broadcastMessage, ReceiveMessage, …).
    #[arg(long = "receive-method", value_name = "NAME", value_parser = parse_receive)]
    receive: Vec<ReceiveMethod>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SendMethodArgs {
    /// The method to send with and its arguments in order: `NAME` (sends name, text),
    /// `NAME(text,name)` or `NAME(text)`. Default: auto (tries Send, then SendMessage; only a
    /// "method does not exist" answer moves on, so nothing is delivered twice).
    #[arg(long = "send-method", value_name = "NAME", value_parser = parse_send)]
    send: Option<SendMethod>,
}

/// The contract the flags name on top of `base`; `base` itself when no flag is given.
fn with_flags(
    mut base: HubMethods,
    send: Option<&SendMethod>,
    receive: &[ReceiveMethod],
) -> HubMethods {
    if let Some(send) = send {
        base.send = Some(send.clone());
        base.preset = Preset::Custom;
    }
    if !receive.is_empty() {
        base.receive = receive.to_vec();
        base.preset = Preset::Custom;
    }
    base
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListenArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The display name to connect with.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    receive: ReceiveArgs,
}

/// What `listen` prints, in the order it happened.
enum Line {
    Event(Event),
    Invocation(serde_json::Value),
    Lagged(u64),
}

/// Moves the connection's events that are waiting into the output queue. The engine emits an
/// event before it hands the hub's next message to observers, so pumping before each
/// invocation puts both in the order they happened.
fn pump(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    out: &tokio::sync::mpsc::UnboundedSender<Line>,
) {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match events.try_recv() {
            Ok(event) => {
                let _ = out.send(Line::Event(event));
            }
            Err(TryRecvError::Lagged(n)) => {
                let _ = out.send(Line::Lagged(n));
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

pub(crate) async fn listen(args: ListenArgs) -> Result<(), String> {
    // One signal listener for the whole run, installed first: SIGTERM and Ctrl-C end the
    // command at every stage, connecting included.
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    let conn = args
        .connect
        .builder(args.name.as_deref())?
        .with_automatic_reconnect()
        .build()
        .map_err(|e| e.to_string())?;
    // Events and invocations reach stdout through one queue, in the order they happened.
    let (out, mut lines) = tokio::sync::mpsc::unbounded_channel::<Line>();
    let events = std::sync::Arc::new(std::sync::Mutex::new(conn.events()));
    // Only wakes the loop up; what is printed comes from `events`.
    let mut wake = conn.events();
    let contract = with_flags(HubMethods::default(), None, &args.receive.receive);
    conn.on_any({
        let events = events.clone();
        let out = out.clone();
        move |target, arguments, headers| {
            let mut line = serde_json::json!({ "type": "invocation", "target": target, "arguments": to_json(arguments) });
            if !headers.is_empty() {
                line["headers"] = serde_json::json!(headers);
            }
            // A chat message (by the hub's contract): who sent what, as a chat would show it.
            if let Some(message) = contract.recognize(target, arguments) {
                line["message"] = serde_json::json!({
                    "sender": message.sender.as_deref().unwrap_or(methods::UNKNOWN_SENDER),
                    "text": message.text,
                });
            }
            let mut events = events.lock().unwrap_or_else(|e| e.into_inner());
            pump(&mut events, &out);
            let _ = out.send(Line::Invocation(line));
        }
    });
    let mut started = std::pin::pin!(conn.start());
    let mut starting = true;
    loop {
        tokio::select! {
            result = &mut started, if starting => {
                starting = false;
                if let Err(e) = result {
                    // The events that led here (and the closed one) first.
                    pump(&mut events.lock().unwrap_or_else(|e| e.into_inner()), &out);
                    while let Ok(line) = lines.try_recv() {
                        print(line);
                    }
                    return Err(e.to_string());
                }
            }
            woken = wake.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = woken {
                    return Ok(());
                }
                pump(&mut events.lock().unwrap_or_else(|e| e.into_inner()), &out);
            }
            Some(line) = lines.recv() => {
                let closed = match &line {
                    Line::Event(Event::Closed { reason }) => Some(reason.clone()),
                    _ => None,
                };
                print(line);
                match closed {
                    // The hub ended the connection cleanly: not a failure.
                    Some(None) => {
                        eprintln!("hubbub: the hub closed the connection");
                        return Ok(());
                    }
                    Some(Some(reason)) => return Err(format!("connection closed: {reason}")),
                    None => {}
                }
            }
            () = &mut shutdown => {
                stop_within(&conn).await;
                return Ok(());
            }
        }
    }
}

fn print(line: Line) {
    let text = match line {
        Line::Event(event) => {
            let mut line = serde_json::to_value(&event).unwrap_or_default();
            line["type"] = "event".into();
            line.to_string()
        }
        Line::Invocation(line) => line.to_string(),
        Line::Lagged(n) => {
            serde_json::json!({ "type": "event", "event": "lagged", "missed": n }).to_string()
        }
    };
    print_line(&text);
}

#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The sender name.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    method: SendMethodArgs,
    /// The message.
    text: String,
}

pub(crate) async fn send(args: SendArgs) -> Result<(), String> {
    // Installed first: SIGTERM and Ctrl-C end the command at every stage.
    let shutdown = crate::shutdown_signal();
    let conn = args
        .connect
        .builder(Some(&args.name))?
        .build()
        .map_err(|e| e.to_string())?;
    let contract = with_flags(HubMethods::default(), args.method.send.as_ref(), &[]);
    let sending = async {
        conn.start()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        methods::send_message(
            &conn,
            &contract,
            &args.name,
            &args.text,
            hubbub_client::Headers::new(),
        )
        .await
        .map_err(|e| format!("send failed: {e}"))
    };
    let result = tokio::select! {
        result = sending => result,
        () = shutdown => Err("interrupted before the hub confirmed the message".to_owned()),
    };
    stop_within(&conn).await;
    let used = result?;
    if contract.send.is_none() {
        eprintln!("hubbub: sent with {used}");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct InvokeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The display name to connect with.
    #[arg(long)]
    name: Option<String>,
    /// The hub method.
    method: String,
    /// Its arguments, each one JSON value (`'"text"'`, `42`, `'{"a":1}'`).
    #[arg(value_name = "JSON_ARG")]
    args: Vec<String>,
}

pub(crate) async fn invoke(args: InvokeArgs) -> Result<(), String> {
    let arguments = args
        .args
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                format!(
                    "argument {} is not JSON ({e}): {text} (a string is written '\"text\"')",
                    i + 1
                )
            })?;
            Arg::serialize(&value).map_err(|e| format!("argument {}: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let conn = args
        .connect
        .builder(args.name.as_deref())?
        .build()
        .map_err(|e| e.to_string())?;
    conn.start()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let outcome = conn
        .invoke_raw(&args.method, arguments, hubbub_client::Headers::new())
        .await;
    stop_within(&conn).await;
    match outcome.map_err(|e| format!("{} failed: {e}", args.method))? {
        Outcome::Void => print_line("null"),
        Outcome::Result(value) => print_line(&to_json(&[value])[0].to_string()),
        Outcome::Error(e) => return Err(format!("{} failed: {e}", args.method)),
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct ChatArgs {
    /// The hub URL; without one, a hub is started here on 127.0.0.1.
    #[arg(long)]
    url: Option<String>,
    /// Your display name.
    #[arg(long, env = "USER", default_value = "me")]
    name: String,
    /// Use only this transport.
    #[arg(long, value_enum)]
    transport: Option<TransportArg>,
    /// The hub protocol.
    #[arg(long, value_enum, default_value = "json")]
    protocol: ProtocolArg,
    /// A bearer token for the hub (read from HUBBUB_TOKEN when not given).
    #[arg(long, env = "HUBBUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The protocol family (auto: decided by the hub's negotiate answer).
    #[arg(long, value_enum, default_value = "auto")]
    family: FamilyArg,
    /// The hub on a classic ASP.NET SignalR endpoint (its URL names the endpoint, not the hub).
    #[arg(long, default_value = hubbub_client::DEFAULT_CLASSIC_HUB)]
    hub_name: String,
    /// Also trust the CA certificates of this PEM file (a private CA) for https:// and wss://,
    /// besides the system's.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<std::path::PathBuf>,
    /// The history database (default: the platform's data directory, profile "terminal").
    #[arg(long)]
    db: Option<std::path::PathBuf>,
    /// If the history database is damaged, move it aside and start a fresh one.
    #[arg(long)]
    recover_db: bool,
    #[command(flatten)]
    method: SendMethodArgs,
    #[command(flatten)]
    receive: ReceiveArgs,
}

pub(crate) async fn chat(args: ChatArgs) -> Result<(), String> {
    use hubbub_client::store::{Error as StoreError, Store};
    use hubbub_client::{Chat, ChatEvent};

    // One signal listener for the whole session, installed first: a fresh one per turn of the
    // loop would miss a SIGTERM that arrives between turns, and one made later would let an
    // early SIGTERM kill us with the default action. A signal that comes while the store or
    // the embedded hub opens ends the session as soon as it starts.
    let shutdown = crate::shutdown_signal();

    let db = args
        .db
        .clone()
        .unwrap_or_else(|| hubbub_client::store::default_path("terminal"));
    let store = match Store::open(&db).await {
        Ok(store) => store,
        Err(StoreError::Corrupt { .. }) if args.recover_db => {
            let (store, aside) = Store::recover(&db).await.map_err(|e| e.to_string())?;
            eprintln!(
                "hubbub: the damaged history was moved to {}; starting fresh",
                aside.display()
            );
            store
        }
        Err(e @ StoreError::Corrupt { .. }) => {
            return Err(format!(
                "{e}\nhubbub: run again with --recover-db to move it aside and start fresh"
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut embedded = None;
    let url = match args.url {
        Some(url) => url,
        None => {
            let server = hubbub_hub::ServerBuilder::new()
                .hub("/chathub", hubbub_hub::chat_hub())
                .bind("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?)
                .await
                .map_err(|e| format!("cannot start the embedded hub: {e}"))?;
            let url = server.url("/chathub");
            eprintln!("hubbub: no --url given, so a hub runs here: {url}");
            eprintln!(
                "hubbub: others on this machine can join with: hubbub chat --url {url} --name NAME"
            );
            embedded = Some(server);
            url
        }
    };
    let conn = with_ca(
        builder(
            &url,
            args.transport,
            args.protocol,
            args.token,
            Some(&args.name),
            args.family,
            &args.hub_name,
        ),
        args.ca_cert.as_deref(),
    )?
    .with_automatic_reconnect()
    .retry_first_start(true)
    .build()
    .map_err(|e| e.to_string())?;
    register_notices(&conn);
    let chat = Chat::open(conn.clone(), store, &url, &args.name)
        .await
        .map_err(|e| e.to_string())?;
    let mut screen = Screen::new(&chat);
    // The flags name the hub's methods for this account from now on (kept in the store).
    let contract = with_flags(
        chat.methods(),
        args.method.send.as_ref(),
        &args.receive.receive,
    );
    if contract != chat.methods() {
        chat.set_methods(contract)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut events = chat.events();
    let pending = chat.pending().await.map_err(|e| e.to_string())?;
    if pending > 0 {
        eprintln!("hubbub: {pending} message(s) from last time are in the outbox; sending them");
    }
    // Typing starts at once: lines go to the outbox whether or not the hub is reachable yet.
    let starting = tokio::spawn({
        let conn = conn.clone();
        async move { conn.start().await }
    });
    eprintln!(
        "hubbub: chatting as {} on {url} (type a line and press Enter; Ctrl-D to quit)",
        args.name
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    tokio::pin!(shutdown);
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            line = lines.next_line(), if input_open => match line {
                Ok(Some(line)) => {
                    if !line.trim().is_empty() {
                        // Durable first: the line is in the outbox before anything is sent.
                        if let Err(e) = chat.send(&line).await {
                            break Err(format!("cannot store the message: {e}"));
                        }
                    }
                }
                Ok(None) => input_open = false,
                Err(e) => break Err(format!("cannot read input: {e}")),
            },
            event = events.recv() => match event {
                Ok(event) => {
                    screen.show(&event).await;
                    match event {
                        ChatEvent::Connection(Event::Closed { reason: Some(reason) }) => {
                            break Err(format!("connection closed: {reason}"));
                        }
                        // The hub ended the session cleanly: not a failure.
                        ChatEvent::Connection(Event::Closed { reason: None }) => {
                            eprintln!("hubbub: the hub closed the connection");
                            break Ok(());
                        }
                        _ => {}
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("hubbub: {n} events skipped"),
                Err(_) => break Ok(()),
            },
            // With the input finished, leave once the outbox is empty.
            () = tokio::time::sleep(Duration::from_millis(100)), if !input_open => {
                if chat.pending().await.map_err(|e| e.to_string())? == 0 {
                    break Ok(());
                }
            }
            () = &mut shutdown => {
                interrupted = true;
                break Ok(());
            }
        }
    };
    // Give the echoes of the last lines a moment to be shown.
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Ok(event)) = tokio::time::timeout_at(until, events.recv()).await {
        screen.show(&event).await;
    }
    stop_within(&conn).await;
    // Stopped by a signal while still connecting is how the user wanted it to end.
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), starting).await {
        if result.is_ok() && !interrupted {
            return Err(format!("cannot connect to {url}: {e}"));
        }
    }
    if let Some(server) = embedded {
        if tokio::time::timeout(Duration::from_secs(10), server.shutdown())
            .await
            .is_err()
        {
            eprintln!("hubbub: the embedded hub did not stop within 10 s; leaving anyway");
        }
    }
    result
}

/// What the terminal chat shows: each stored message once, marked with its conversation.
struct Screen {
    store: hubbub_client::store::Store,
    me: String,
    /// Messages already shown, with the state they were shown in.
    shown: std::collections::HashSet<(String, hubbub_client::store::MessageState)>,
    kinds: std::collections::HashMap<
        hubbub_client::store::ConversationId,
        hubbub_client::store::ConversationKind,
    >,
}

impl Screen {
    fn new(chat: &hubbub_client::Chat) -> Self {
        let mut kinds = std::collections::HashMap::new();
        kinds.insert(
            chat.conversation(),
            hubbub_client::store::ConversationKind::Broadcast,
        );
        Self {
            store: chat.store().clone(),
            me: chat.me().to_owned(),
            shown: std::collections::HashSet::new(),
            kinds,
        }
    }

    /// Shows one chat event: a message on stdout (received ones when stored, our own once the
    /// hub has them), everything else on stderr.
    async fn show(&mut self, event: &hubbub_client::ChatEvent) {
        use hubbub_client::ChatEvent;
        use hubbub_client::store::{ConversationKind, MessageState};
        let message = match event {
            ChatEvent::Stored(m) if !m.outgoing => m,
            ChatEvent::Updated(m) if m.state == MessageState::Sent => m,
            ChatEvent::Updated(m) if m.state == MessageState::Failed => {
                if self.shown.insert((m.msg_id.clone(), m.state)) {
                    eprintln!(
                        "hubbub: not sent: {} ({})",
                        m.body,
                        m.error.as_deref().unwrap_or("refused")
                    );
                }
                return;
            }
            ChatEvent::Connection(event) => {
                if let Some(text) = describe(event) {
                    eprintln!("hubbub: {text}");
                }
                return;
            }
            // Nothing a hub sends is hidden: what is not a chat message (nor shown in another
            // way) is shown as it came.
            ChatEvent::Invocation(call)
                if !call.chat
                    && !SHOWN_ELSEWHERE
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(&call.target)) =>
            {
                let args: Vec<String> = to_json(&call.arguments)
                    .iter()
                    .map(|v| v.to_string())
                    .collect();
                eprintln!("hubbub: the hub sent {}({})", call.target, args.join(", "));
                return;
            }
            ChatEvent::Methods(contract) => {
                if let Some(send) = &contract.send {
                    eprintln!("hubbub: this hub takes messages with {send} (remembered)");
                }
                return;
            }
            ChatEvent::Unavailable { feature, reason } => {
                eprintln!("hubbub: this hub has no {feature} ({reason})");
                return;
            }
            _ => return,
        };
        if !self.shown.insert((message.msg_id.clone(), message.state)) {
            return;
        }
        if !self.kinds.contains_key(&message.conversation) {
            match self.store.conversation_kind(message.conversation).await {
                Ok(kind) => {
                    self.kinds.insert(message.conversation, kind);
                }
                Err(e) => tracing::warn!(error = %e, "a message's conversation is unknown"),
            }
        }
        let (sender, body) = (&message.sender, &message.body);
        print_line(&match self.kinds.get(&message.conversation) {
            Some(ConversationKind::Room(room)) => format!("[{room}] {sender}: {body}"),
            Some(ConversationKind::Direct(peer)) if *sender == self.me => {
                format!("(direct to {peer}) {sender}: {body}")
            }
            Some(ConversationKind::Direct(_)) => format!("(direct) {sender}: {body}"),
            Some(ConversationKind::Broadcast) | None => format!("{sender}: {body}"),
        });
    }
}

/// What the chat shows in its own way: presence (by `register_notices`), room and direct
/// messages (from the store, by [`Screen`]).
const SHOWN_ELSEWHERE: [&str; 4] = [
    hubbub::USER_JOINED,
    hubbub::USER_LEFT,
    hubbub::ROOM_MESSAGE,
    hubbub::DIRECT_MESSAGE,
];

/// Presence notices. Messages (broadcast, room, direct) are shown from the store, once, by
/// [`Screen`].
fn register_notices(conn: &HubConnection) {
    let text = |a: &Arg| a.decode::<String>().unwrap_or_default();
    let count = |a: &Arg| a.decode::<u64>().unwrap_or_default();
    conn.on(hubbub::USER_JOINED, move |args| {
        if let [user, n] = args {
            eprintln!("hubbub: {} joined ({} connected)", text(user), count(n));
        }
        None
    });
    conn.on(hubbub::USER_LEFT, move |args| {
        if let [user, n] = args {
            eprintln!("hubbub: {} left ({} connected)", text(user), count(n));
        }
        None
    });
}

/// Stops the connection, waiting at most 5 s for it to close (then leaving anyway, said).
async fn stop_within(conn: &HubConnection) {
    if tokio::time::timeout(Duration::from_secs(5), conn.stop())
        .await
        .is_err()
    {
        eprintln!("hubbub: the connection did not close within 5 s; leaving anyway");
    }
}

fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::Reconnecting {
            attempt,
            delay,
            reason,
        } => {
            format!(
                "connection lost ({reason}); reconnecting, attempt {attempt} in {:.1} s",
                delay.as_secs_f64()
            )
        }
        Event::Reconnected { .. } => "reconnected".to_owned(),
        Event::Slow { .. } => "the connection is slow".to_owned(),
        Event::Recovered => "the connection recovered".to_owned(),
        // A close with a reason ends the command, which reports it once as it exits.
        Event::Error { message } => format!("error: {message}"),
        _ => return None,
    })
}
