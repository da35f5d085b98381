//! The hub library serving a plain broadcast hub: `Send(name, message)` calls
//! `broadcastMessage(name, message)` on every connection, nothing else. No history, no message
//! ids, no numbering headers, no presence. Beside `hubbub hub` (the chat hub, which does all of
//! that per message) it shows the chat hub's own cost per message apart from the hub
//! machinery's (issue 19, target 2). Core at `/chathub`, classic 2.x at `/signalr` (hub name
//! `ChatHub`), as the chat hub.
//!
//!     plain-hub --listen 127.0.0.1:5200

use std::net::SocketAddr;

use clap::Parser;
use hubbub_hub::{Context, Hub, HubError, HubOptions, ServerBuilder, TcpLimits};
use hubbub_protocol::Arg;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:5200")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let hub = Hub::new("chat").method(
        "Send",
        |ctx: Context, (name, message): (String, String)| async move {
            ctx.clients().all().send(
                "broadcastMessage",
                vec![Arg::from(name), Arg::from(message)],
            );
            Ok::<(), HubError>(())
        },
    );
    // The limits `scripts/bench.sh` gives `hubbub hub`.
    let options = HubOptions {
        max_messages_per_second: 1_000_000,
        max_connections: 30_000,
        ..HubOptions::default()
    };
    let server = ServerBuilder::new()
        .options(options)
        .tcp_limits(TcpLimits {
            max_connections_per_address: Some(30_000),
            ..TcpLimits::default()
        })
        .hub("/chathub", hub)
        .bind(args.listen)
        .await?;
    println!("listening on {}", server.url("/chathub"));
    tokio::signal::ctrl_c().await?;
    server.shutdown().await
}
