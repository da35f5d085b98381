//! The listening socket's own limits, before any HTTP: how many TCP connections the hub holds
//! at once, in total and per client address, and how long a connection may take to send a
//! request's headers, and how long a write may wait for a client that takes nothing.
//!
//! Without them, sockets that send their headers one byte a second (or nothing at all) were
//! held for ever, and with a 1,024 open-file limit 1,100 of them locked everyone out,
//! `/healthz` included. Connections are served by `axum-server` (plain and TLS alike), whose
//! acceptor here counts each socket until it closes and refuses (closes at once) one over a
//! cap; hyper's `header_read_timeout` ends a connection whose request headers are not complete
//! in time, which also ends one that stays idle without a request (a fresh socket, or a
//! keep-alive one between requests). An upgraded WebSocket is no longer HTTP and is not timed
//! by it (the hub's handshake and client timeouts apply), but still counts as a connection.
//! Every write to a socket (a response, an event stream, an upgraded WebSocket) fails once the
//! client has taken nothing of it for `TcpLimits::write_stall_timeout`, and hyper closes the
//! connection: a client that never reads cannot hold its socket, or a response body that holds
//! its connection's queue, for ever.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Limits of the listening socket, for every hub the server mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpLimits {
    /// TCP connections held at once, all addresses together; one more is closed as soon as it
    /// is accepted. `None` (the default): the process's open-file limit less a reserve of a
    /// tenth (at least 64) for the hub's own files, so the listener never runs out of file
    /// descriptors and goes on accepting (and refusing) instead of locking everyone out.
    pub max_connections: Option<usize>,
    /// TCP connections held at once from one client IP address; one more is closed as soon as
    /// it is accepted. `None` (the default): half of the total, so one address cannot take
    /// every connection and others (health checks included) still get in.
    pub max_connections_per_address: Option<usize>,
    /// How long a client has to send a request's headers, counted from when the connection
    /// is ready for a request (accepted, or done with the previous request); a connection over
    /// it is closed (30 s, Kestrel's `RequestHeadersTimeout`). This is also how long a
    /// connection may stay idle without a request.
    pub header_read_timeout: Duration,
    /// How long a write to the socket may go without the client taking a byte of it (30 s, the
    /// hub's `HubOptions::write_stall_timeout`); the connection is then closed. Bounds what a
    /// client that never reads holds: a response body (an event stream, a long poll's answer)
    /// hyper would otherwise wait to write for ever, with its request's connection record.
    pub write_stall_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_connections_per_address: None,
            header_read_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(30),
        }
    }
}

impl TcpLimits {
    /// The caps in force: `(total, per address)`, the defaults resolved.
    pub fn resolved(&self) -> (usize, usize) {
        let total = self.max_connections.unwrap_or_else(|| {
            let files = open_file_limit();
            files.saturating_sub((files / 10).max(64)).max(16)
        });
        let per_address = self
            .max_connections_per_address
            .unwrap_or((total / 2).max(1));
        (total, per_address)
    }
}

/// The process's open-file limit (its soft `RLIMIT_NOFILE`); 10,000 where there is none to
/// read.
fn open_file_limit() -> usize {
    #[cfg(unix)]
    {
        use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
        if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
            if soft != RLIM_INFINITY {
                return usize::try_from(soft).unwrap_or(usize::MAX);
            }
        }
    }
    10_000
}

/// Counts the TCP connections the server holds and refuses those over the caps: an
/// `axum-server` acceptor (under the TLS one with TLS).
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct Counts {
    /// `hubbub_tcp_connections` and `hubbub_tcp_connections_refused_total`.
    open: Gauge,
    refused: Family<crate::metrics::ReasonLabel, Counter>,
    total: AtomicUsize,
    max_total: usize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
    /// `TcpLimits::write_stall_timeout`, kept here once rather than in every connection.
    write_stall: Duration,
}

impl Limiter {
    pub(crate) fn new(limits: &TcpLimits) -> Self {
        let (max_total, max_per_address) = limits.resolved();
        Self {
            counts: Arc::new(Counts {
                open: Gauge::default(),
                refused: Family::default(),
                total: AtomicUsize::new(0),
                max_total,
                by_address: Mutex::default(),
                max_per_address,
                write_stall: limits.write_stall_timeout,
            }),
        }
    }

    /// Registers `hubbub_tcp_connections` and `hubbub_tcp_connections_refused_total` in the
    /// server's registry.
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "tcp_connections",
            "TCP connections the server holds now",
            self.counts.open.clone(),
        );
        registry.register(
            "tcp_connections_refused",
            "TCP connections closed as accepted, over the cap in total or for their address",
            self.counts.refused.clone(),
        );
    }

    /// A slot for a connection from `ip`, or why there is none.
    fn admit(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let counts = &self.counts;
        let mut by_address = counts.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let refuse = |reason| {
            counts
                .refused
                .get_or_create(&crate::metrics::ReasonLabel { reason })
                .inc();
        };
        if counts.total.load(Ordering::Acquire) >= counts.max_total {
            refuse("total");
            return Err("the server holds its maximum of TCP connections");
        }
        let held = by_address.entry(ip).or_insert(0);
        if *held >= counts.max_per_address {
            refuse("per_address");
            return Err("this address holds its maximum of TCP connections");
        }
        *held += 1;
        counts.open.inc();
        counts.total.fetch_add(1, Ordering::AcqRel);
        Ok(Slot {
            counts: counts.clone(),
            ip,
        })
    }
}

/// One connection counted until it is dropped.
#[derive(Debug)]
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_address = self
            .counts
            .by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(held) = by_address.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                by_address.remove(&self.ip);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
        self.counts.open.dec();
    }
}

/// A client's IP address as one key: an IPv4 address mapped into IPv6 is the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for Limiter {
    type Stream = Counted;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let ip = match stream.peer_addr() {
            Ok(addr) => canonical(addr.ip()),
            Err(e) => return std::future::ready(Err(e)),
        };
        std::future::ready(match self.admit(ip) {
            Ok(slot) => {
                // Chat messages are small: send each at once instead of letting Nagle's
                // algorithm wait for the peer's delayed ACK (up to 40 ms a message).
                let _ = stream.set_nodelay(true);
                Ok((
                    Counted {
                        stream,
                        slot,
                        stall: None,
                    },
                    service,
                ))
            }
            Err(reason) => {
                tracing::debug!(%ip, reason, "TCP connection refused");
                Err(io::Error::other(reason))
            }
        })
    }
}

/// The error a [`Counted`] stream's write fails with (inside an `io::Error` of kind
/// `TimedOut`) once the client has taken nothing for the write stall limit, given here.
#[derive(Debug, thiserror::Error)]
#[error("the client took nothing of what was written to it for {} s", .0.as_secs_f64())]
pub(crate) struct WriteStalled(Duration);

/// Whether `error`, or an error it wraps (a WebSocket's or HTTP body's write error wraps the
/// socket's `io::Error`), is a [`Counted`] stream's [`WriteStalled`]: the client reads nothing,
/// as opposed to a socket that failed.
pub(crate) fn is_write_stall(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<WriteStalled>())
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// A TCP stream counted among the server's connections while it lives, whose writes fail once
/// the client has taken nothing for the write stall limit (`TcpLimits::write_stall_timeout`).
#[derive(Debug)]
pub(crate) struct Counted {
    stream: TcpStream,
    slot: Slot,
    /// Made at the first write that waits and kept after (boxed: one pointer in every
    /// connection until then).
    stall: Option<Box<Stall>>,
}

/// The write stall timer of a [`Counted`] stream.
#[derive(Debug)]
struct Stall {
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The timer runs: the writes since it was set have all waited.
    armed: bool,
}

impl Counted {
    /// A write's (or flush's) outcome, timed: one that made progress disarms the stall timer;
    /// one that waits arms it, and fails with `TimedOut` once it has run out.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            if let Some(stall) = &mut self.stall {
                stall.armed = false;
            }
            return polled;
        }
        let limit = self.slot.counts.write_stall;
        let stall = self.stall.get_or_insert_with(|| {
            Box::new(Stall {
                timer: Box::pin(tokio::time::sleep(limit)),
                armed: true,
            })
        });
        if !stall.armed {
            stall
                .timer
                .as_mut()
                .reset(tokio::time::Instant::now() + limit);
            stall.armed = true;
        }
        match stall.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                WriteStalled(limit),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.timed(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.timed(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.timed(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_total_and_per_address() {
        let limiter = Limiter::new(&TcpLimits {
            max_connections: Some(3),
            max_connections_per_address: Some(2),
            ..TcpLimits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limiter.admit(a).unwrap();
        let _a2 = limiter.admit(a).unwrap();
        assert!(limiter.admit(a).is_err(), "per address");
        let _b1 = limiter.admit(b).unwrap();
        assert!(limiter.admit(b).is_err(), "in total");
        drop(a1);
        let _b2 = limiter.admit(b).unwrap();
        assert_eq!(
            canonical("::ffff:10.0.0.1".parse().unwrap()),
            a,
            "IPv4 mapped into IPv6 is the IPv4 address"
        );
    }

    #[test]
    fn defaults_follow_the_open_file_limit() {
        let (total, per_address) = TcpLimits::default().resolved();
        let files = open_file_limit();
        assert!(total < files, "{total} < {files}");
        assert_eq!(per_address, total / 2);
    }
}
