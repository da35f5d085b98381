//! A minimal raw WebSocket broadcast server on Hubbub's stack (axum + tokio-tungstenite, the
//! same buffer sizes): every text message one client sends is sent to every client. No
//! SignalR, no framing, no routing: the practical limit a hub on this stack can approach.
//!
//!     raw-broadcast --listen 127.0.0.1:5100      (serves ws://ADDR/ws)

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
}

type Clients = Arc<Mutex<Vec<mpsc::Sender<Message>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let clients: Clients = Arc::default();
    let app = axum::Router::new()
        .route("/ws", get(upgrade))
        .with_state(clients);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // As the hub does: no Nagle delay on small messages.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

async fn upgrade(ws: WebSocketUpgrade, State(clients): State<Clients>) -> axum::response::Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(socket, clients))
}

async fn serve(socket: WebSocket, clients: Clients) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    clients.lock().unwrap().push(tx);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        if let Message::Text(_) = message {
            let targets: Vec<_> = clients.lock().unwrap().clone();
            for target in targets {
                let _ = target.try_send(message.clone());
            }
        }
    }
    writer.abort();
    let _ = writer.await;
    clients.lock().unwrap().retain(|c| !c.is_closed());
}
