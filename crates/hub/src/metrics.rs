//! The hub's metrics in the Prometheus text exposition format (version 0.0.4), served at
//! `/metrics` and encoded by the `prometheus-client` crate.
//!
//! Every name starts with `hubbub_` and every series has a `hub` label (the endpoint's path,
//! `/chathub`). Names and units follow Prometheus conventions: counters end in `_total`,
//! durations are in seconds (`_seconds`), sizes in bytes (`_bytes`). Label values use
//! SignalR's terms: `family` is `core` (ASP.NET Core SignalR) or `classic` (ASP.NET SignalR
//! 2.x at `/signalr`), `transport` is `WebSockets`, `ServerSentEvents` or `LongPolling`,
//! `protocol` is `json` or `messagepack` (classic connections speak `json`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hubbub_connections` | gauge | family, transport, protocol |
//! | `hubbub_connects_total` | counter | family, transport, protocol |
//! | `hubbub_disconnects_total` | counter | family, reason |
//! | `hubbub_messages_received_total` | counter | family |
//! | `hubbub_messages_sent_total` (one per recipient) | counter | family |
//!
//! (Messages are hub messages that carry content: invocations, stream items, completions,
//! classic hub requests; pings, acks and handshakes are not counted.)
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hubbub_received_bytes_total` | counter | family, transport, protocol |
//! | `hubbub_sent_bytes_total` | counter | family, transport, protocol |
//! | `hubbub_handshake_failures_total` | counter | reason |
//! | `hubbub_rate_limit_pauses_total` | counter | family |
//! | `hubbub_size_limit_closes_total` | counter | family |
//! | `hubbub_queue_full_closes_total` | counter | family |
//! | `hubbub_negotiations_refused_total` (an address over its pending budget: 429) | counter | |
//! | `hubbub_invocation_duration_seconds` | histogram | family |
//! | `hubbub_backplane_connected` (with `--redis` or `--postgres`) | gauge | |
//! | `hubbub_backplane_publish_duration_seconds` (with `--redis` or `--postgres`) | histogram | |
//! | `hubbub_backplane_large_payloads_total` (with `--postgres`: announcements of payloads too large for a notification) | counter | outcome (`fetched`, `skipped`: no recipient on this node) |
//! | `hubbub_history_messages` (a hub with a local history) | gauge | |
//!
//! The listening socket's, for the whole server (no `hub` label; `crate::listener`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hubbub_tcp_connections` | gauge | |
//! | `hubbub_tcp_connections_refused_total` | counter | reason (`total`, `per_address`) |

use std::sync::Arc;

use hubbub_protocol::Protocol;
use hubbub_protocol::negotiate::TransportKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::state::Counters;

/// The labels of a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnLabels {
    pub(crate) family: &'static str,
    pub(crate) transport: &'static str,
    pub(crate) protocol: &'static str,
}

impl ConnLabels {
    /// An ASP.NET Core SignalR connection.
    pub(crate) fn core(transport: Option<TransportKind>, protocol: Protocol) -> Self {
        Self {
            family: "core",
            transport: transport.map_or("unknown", TransportKind::name),
            protocol: protocol.name(),
        }
    }

    /// A classic ASP.NET SignalR 2.x connection, by its transport's classic name.
    pub(crate) fn classic(transport: &str) -> Self {
        Self {
            family: "classic",
            transport: match transport {
                "webSockets" => "WebSockets",
                "serverSentEvents" => "ServerSentEvents",
                "longPolling" => "LongPolling",
                _ => "unknown",
            },
            protocol: "json",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FamilyLabel {
    pub(crate) family: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CloseLabels {
    pub(crate) family: &'static str,
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

/// Why a connection ended (the `reason` label of `hubbub_disconnects_total`).
pub(crate) mod reason {
    /// The client closed it (a WebSocket close, a DELETE, `abort`, a dropped request).
    pub(crate) const CLIENT_CLOSED: &str = "client_closed";
    /// Nothing arrived from the client within the client timeout, or (long polling, classic)
    /// no transport came back within the disconnect timeout.
    pub(crate) const CLIENT_TIMEOUT: &str = "client_timeout";
    /// A stateful-reconnect client did not come back within the reconnect window.
    pub(crate) const RECONNECT_TIMEOUT: &str = "reconnect_timeout";
    /// A message larger than the maximum message size.
    pub(crate) const MESSAGE_TOO_LARGE: &str = "message_too_large";
    /// Bytes that are not the protocol.
    pub(crate) const PROTOCOL_ERROR: &str = "protocol_error";
    /// Its send queue was full: the client does not read fast enough.
    pub(crate) const QUEUE_FULL: &str = "queue_full";
    /// A hub method closed it.
    pub(crate) const CLOSED_BY_HUB: &str = "closed_by_hub";
    /// The server shut down.
    pub(crate) const SERVER_SHUTDOWN: &str = "server_shutdown";
}

fn duration_buckets() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// The Prometheus metrics of one hub endpoint.
#[derive(Debug)]
pub(crate) struct Prom {
    pub(crate) connections: Family<ConnLabels, Gauge>,
    pub(crate) connects: Family<ConnLabels, Counter>,
    pub(crate) disconnects: Family<CloseLabels, Counter>,
    pub(crate) messages_received: Family<FamilyLabel, Counter>,
    pub(crate) messages_sent: Family<FamilyLabel, Counter>,
    pub(crate) received_bytes: Family<ConnLabels, Counter>,
    pub(crate) sent_bytes: Family<ConnLabels, Counter>,
    pub(crate) handshake_failures: Family<ReasonLabel, Counter>,
    pub(crate) rate_limit_pauses: Family<FamilyLabel, Counter>,
    pub(crate) size_limit_closes: Family<FamilyLabel, Counter>,
    pub(crate) queue_full_closes: Family<FamilyLabel, Counter>,
    pub(crate) negotiations_refused: Counter,
    pub(crate) invocation_duration: Family<FamilyLabel, Histogram, fn() -> Histogram>,
    pub(crate) backplane_connected: Gauge,
    pub(crate) backplane_publish_duration: Histogram,
    /// PostgreSQL: large payloads announced by other nodes, `fetched` or `skipped`.
    pub(crate) backplane_large_payloads: Family<OutcomeLabel, Counter>,
}

impl Default for Prom {
    fn default() -> Self {
        Self {
            connections: Family::default(),
            connects: Family::default(),
            disconnects: Family::default(),
            messages_received: Family::default(),
            messages_sent: Family::default(),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            handshake_failures: Family::default(),
            rate_limit_pauses: Family::default(),
            size_limit_closes: Family::default(),
            queue_full_closes: Family::default(),
            negotiations_refused: Counter::default(),
            invocation_duration: Family::new_with_constructor(duration_buckets),
            backplane_connected: Gauge::default(),
            backplane_publish_duration: duration_buckets(),
            backplane_large_payloads: Family::default(),
        }
    }
}

impl Prom {
    /// Registers every metric in `registry` (a hub's sub-registry, labelled with its path).
    /// `backplane`: a Redis or PostgreSQL backplane is set up (`postgres`: PostgreSQL);
    /// `history`: the hub's local history size.
    pub(crate) fn register(
        &self,
        registry: &mut Registry,
        backplane: bool,
        postgres: bool,
        history: Option<Gauge>,
    ) {
        registry.register(
            "connections",
            "Connections open now",
            self.connections.clone(),
        );
        registry.register(
            "connects",
            "Connections that completed their handshake (Core) or started (classic)",
            self.connects.clone(),
        );
        registry.register(
            "disconnects",
            "Connections that ended, by reason",
            self.disconnects.clone(),
        );
        registry.register(
            "messages_received",
            "Hub messages received from clients (classic: hub requests)",
            self.messages_received.clone(),
        );
        registry.register(
            "messages_sent",
            "Hub messages queued for clients, one per recipient",
            self.messages_sent.clone(),
        );
        registry.register_with_unit(
            "received",
            "Bytes of hub messages received from clients (handshake excluded)",
            Unit::Bytes,
            self.received_bytes.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Bytes of hub messages queued for clients (classic: the items in their envelopes)",
            Unit::Bytes,
            self.sent_bytes.clone(),
        );
        registry.register(
            "handshake_failures",
            "Handshakes refused or abandoned, by reason",
            self.handshake_failures.clone(),
        );
        registry.register(
            "rate_limit_pauses",
            "Times a connection reached its rate limit and was slowed",
            self.rate_limit_pauses.clone(),
        );
        registry.register(
            "size_limit_closes",
            "Connections closed for a message over the maximum message size",
            self.size_limit_closes.clone(),
        );
        registry.register(
            "queue_full_closes",
            "Connections closed because their send queue was full (a client too slow to read)",
            self.queue_full_closes.clone(),
        );
        registry.register(
            "negotiations_refused",
            "Negotiations refused (429) because their address held its maximum of negotiated connections not yet used",
            self.negotiations_refused.clone(),
        );
        registry.register_with_unit(
            "invocation_duration",
            "Time a hub method took, from its start to its result (a streaming method: to its stream)",
            Unit::Seconds,
            self.invocation_duration.clone(),
        );
        if backplane {
            registry.register(
                "backplane_connected",
                "1 while the backplane (Redis or PostgreSQL) is connected and publishing works, else 0",
                self.backplane_connected.clone(),
            );
            registry.register_with_unit(
                "backplane_publish_duration",
                "Time one pipelined batch of backplane commands took to publish",
                Unit::Seconds,
                self.backplane_publish_duration.clone(),
            );
        }
        if postgres {
            registry.register(
                "backplane_large_payloads",
                "Payloads too large for a notification announced by other nodes: fetched from the database, or skipped (no recipient on this node)",
                self.backplane_large_payloads.clone(),
            );
        }
        if let Some(history) = history {
            registry.register(
                "history_messages",
                "Chat messages kept in this node's history (every scope, room and inbox)",
                history,
            );
        }
    }
}

/// What one connection counts, with its label values resolved once.
#[derive(Debug)]
pub(crate) struct ConnMetrics {
    pub(crate) counters: Arc<Counters>,
    pub(crate) labels: ConnLabels,
    /// Core: the protocol whose bytes it is sent in (classic counts its items itself).
    pub(crate) protocol: Option<Protocol>,
    pub(crate) sent: Counter,
    pub(crate) sent_bytes: Counter,
    pub(crate) received: Counter,
    pub(crate) received_bytes: Counter,
    /// The invocation histogram of this connection's family, resolved at its first invocation
    /// (so a connection that invokes nothing adds no series), then reused.
    invocations: std::sync::OnceLock<Histogram>,
}

impl ConnMetrics {
    pub(crate) fn new(
        counters: Arc<Counters>,
        labels: ConnLabels,
        protocol: Option<Protocol>,
    ) -> Self {
        let family = FamilyLabel {
            family: labels.family,
        };
        let prom = &counters.prom;
        Self {
            sent: prom.messages_sent.get_or_create_owned(&family),
            received: prom.messages_received.get_or_create_owned(&family),
            sent_bytes: prom.sent_bytes.get_or_create_owned(&labels),
            received_bytes: prom.received_bytes.get_or_create_owned(&labels),
            invocations: std::sync::OnceLock::new(),
            counters,
            labels,
            protocol,
        }
    }

    pub(crate) fn family(&self) -> FamilyLabel {
        FamilyLabel {
            family: self.labels.family,
        }
    }

    /// A connection opened.
    pub(crate) fn opened(&self) {
        let prom = &self.counters.prom;
        prom.connections.get_or_create(&self.labels).inc();
        prom.connects.get_or_create(&self.labels).inc();
    }

    /// A connection ended for `reason` (see [`reason`]).
    pub(crate) fn closed(&self, reason: &'static str) {
        let prom = &self.counters.prom;
        prom.connections.get_or_create(&self.labels).dec();
        prom.disconnects
            .get_or_create(&CloseLabels {
                family: self.labels.family,
                reason,
            })
            .inc();
        let family = self.family();
        match reason {
            reason::MESSAGE_TOO_LARGE => {
                prom.size_limit_closes.get_or_create(&family).inc();
            }
            reason::QUEUE_FULL => {
                prom.queue_full_closes.get_or_create(&family).inc();
            }
            _ => {}
        }
    }

    /// A hub message was received.
    pub(crate) fn received_message(&self) {
        self.received.inc();
    }

    /// The connection was slowed for its rate limit.
    pub(crate) fn paused(&self) {
        self.counters
            .prom
            .rate_limit_pauses
            .get_or_create(&self.family())
            .inc();
    }

    /// The histogram of this connection's invocations.
    pub(crate) fn invocation_duration(&self) -> Histogram {
        self.invocations
            .get_or_init(|| {
                self.counters
                    .prom
                    .invocation_duration
                    .get_or_create_owned(&self.family())
            })
            .clone()
    }
}
