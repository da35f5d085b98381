//! A minimal raw WebSocket broadcast server on Hubbub's stack (axum + tokio-tungstenite):
//! every text message one client sends is sent to every client. No SignalR, no framing, no
//! routing: the practical limit a hub on this stack can approach, and the baseline of its CPU
//! per delivery (issue 19).
//!
//! As lean as a broadcast on this stack gets: one unbounded queue per connection holding
//! `Message` values that share the received buffer (a broadcast clones the one message into
//! every queue: a reference count, no copy); each connection's writer feeds everything queued,
//! then flushes once (one write for a burst); TCP_NODELAY; a 4 KiB read buffer by default.
//!
//!     raw-broadcast --listen 127.0.0.1:5100 [--read-buffer 4096]     (serves ws://ADDR/ws)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:5100")]
    listen: SocketAddr,
    /// Each socket's read buffer, in bytes (what an idle connection keeps).
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
}

#[derive(Clone)]
struct Shared {
    clients: Arc<Mutex<Vec<mpsc::UnboundedSender<Message>>>>,
    read_buffer: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let shared = Shared {
        clients: Arc::default(),
        read_buffer: args.read_buffer,
    };
    let app = axum::Router::new()
        .route("/ws", get(upgrade))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // As the hub does: no Nagle delay on small messages.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service()).await
}

async fn upgrade(ws: WebSocketUpgrade, State(shared): State<Shared>) -> axum::response::Response {
    let read_buffer = shared.read_buffer;
    ws.read_buffer_size(read_buffer)
        .on_upgrade(move |socket| serve(socket, shared))
}

async fn serve(socket: WebSocket, shared: Shared) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    shared.clients.lock().unwrap().push(tx);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            // Everything queued goes into the write buffer, then one flush writes it.
            if sink.feed(message).await.is_err() {
                return;
            }
            while let Ok(message) = rx.try_recv() {
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        if let Message::Text(_) = message {
            for target in shared.clients.lock().unwrap().iter() {
                let _ = target.send(message.clone());
            }
        }
    }
    writer.abort();
    let _ = writer.await;
    shared.clients.lock().unwrap().retain(|c| !c.is_closed());
}
