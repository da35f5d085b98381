//! A TCP proxy on loopback that a test can black-hole or cut, to play a network that fails.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PASS: u8 = 0;
const BLACKHOLE: u8 = 1;
/// Client-to-server bytes are not read (TCP backpressure builds up); server-to-client flows.
const PAUSE_UPSTREAM: u8 = 2;

/// Forwards 127.0.0.1:ephemeral to `upstream`.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(PASS));
        let (cut, _) = watch::channel(0u64);
        let task_mode = mode.clone();
        let task_cut = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = task_mode.clone();
                let mut cut = task_cut.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let m1 = mode.clone();
                    let up = async move {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            while m1.load(Ordering::SeqCst) == PAUSE_UPSTREAM {
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            }
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if m1.load(Ordering::SeqCst) != BLACKHOLE
                                && sw.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if mode.load(Ordering::SeqCst) != BLACKHOLE
                                && cw.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            mode,
            cut,
            task,
        }
    }

    /// Traffic is swallowed both ways; sockets stay open (a silent network).
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Stops reading what the client sends (its writes back up); the hub's traffic still flows.
    pub fn pause_upstream(&self) {
        self.mode.store(PAUSE_UPSTREAM, Ordering::SeqCst);
    }

    /// Traffic flows again (for new and old connections).
    pub fn pass(&self) {
        self.mode.store(PASS, Ordering::SeqCst);
    }

    /// Drops every proxied connection at once, without a close handshake.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}
