//! `hubbub`: the terminal face of Hubbub.
//!
//! - `hubbub hub --listen ADDR` serves the chat hub at `/chathub` (plus `/healthz`, `/metrics`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "hubbub", version, about = "Chat over any SignalR hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the chat hub (at /chathub) until SIGTERM or Ctrl-C.
    Hub(HubArgs),
}

#[derive(Debug, clap::Args)]
struct HubArgs {
    /// Address to listen on: 127.0.0.1:PORT or [::1]:PORT; 0.0.0.0:PORT exposes the hub to the
    /// network and is only used when given here.
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Browser origins allowed to connect (repeatable; `*` for any).
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Most connections served at once.
    #[arg(long, default_value_t = hubbub_hub::HubOptions::default().max_connections)]
    max_connections: usize,
    /// Largest hub message accepted from a client, in bytes.
    #[arg(long, default_value_t = hubbub_hub::HubOptions::default().max_message_size)]
    max_message_size: usize,
    /// Messages per second one connection may send before it is closed.
    #[arg(long, default_value_t = hubbub_hub::HubOptions::default().max_messages_per_second)]
    max_messages_per_second: u32,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubbub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Hub(args) => hub(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hubbub: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn hub(args: HubArgs) -> Result<(), String> {
    let options = hubbub_hub::HubOptions {
        max_connections: args.max_connections,
        max_message_size: args.max_message_size,
        max_messages_per_second: args.max_messages_per_second,
        ..hubbub_hub::HubOptions::default()
    };
    let server = hubbub_hub::ServerBuilder::new()
        .options(options)
        .hub("/chathub", hubbub_hub::chat_hub())
        .cors_origins(args.cors_origins)
        .bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    shutdown_signal().await;
    tracing::info!("shutting down: closing every connection (clients may reconnect)");
    server.shutdown().await.map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
