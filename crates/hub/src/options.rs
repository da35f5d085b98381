//! Server settings, with the ASP.NET Core defaults.

use std::time::Duration;

use hubbub_protocol::DEFAULT_MAX_MESSAGE_SIZE;

/// Settings of a hub endpoint. The defaults are the official server's.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// How often the server pings a connection it has sent nothing else to (15 s); not on long
    /// polling, which keeps itself alive (as in ASP.NET Core).
    pub keep_alive_interval: Duration,
    /// How long a connection may stay silent before the server drops it (30 s); not on long
    /// polling, whose clients send no pings: see `reconnect_window`.
    pub client_timeout: Duration,
    /// How long a new connection has to complete its handshake (15 s).
    pub handshake_timeout: Duration,
    /// The largest hub message a client may send (32 KiB).
    pub max_message_size: usize,
    /// How many connections the server accepts at once; more are refused with 503.
    pub max_connections: usize,
    /// How many negotiated connections one client IP address may hold before using them (no
    /// transport request yet); another negotiate from it is refused with 429 (64). A
    /// negotiated connection not used within `handshake_timeout` is dropped, as ASP.NET Core
    /// drops one not used within its timeout.
    pub max_pending_per_address: usize,
    /// How many hub messages a connection may send per second (200; sustained, bursts of
    /// twice that pass). A connection over the limit is slowed down, never closed for it: the
    /// hub handles its next message when the limit allows, and meanwhile reads nothing more
    /// from it, so the sender's writes wait (TCP flow control on a WebSocket; the send POST of
    /// Server-Sent Events and long polling is answered later), as ASP.NET Core's transports stop
    /// reading when a connection's input buffer is full. Other connections are not affected.
    pub max_messages_per_second: u32,
    /// Messages queued for one connection before it counts as too slow and is closed.
    pub send_queue_capacity: usize,
    /// Bytes queued for one connection (its messages as encoded for it, not yet taken by its
    /// transport) before it counts as too slow and is closed (16 MiB); one message larger than
    /// this still goes to an empty queue. Reason label `queue_full`.
    pub send_queue_bytes: usize,
    /// Bytes of client-to-server stream items a connection may have waiting for its hub
    /// methods to read them, all its streams together (1 MiB; each item is charged its size
    /// plus 64 bytes). A client that sends faster than its methods read is closed as too
    /// slow (`queue_full`), where ASP.NET Core would stop reading from it.
    pub stream_buffer_bytes: usize,
    /// How long a long poll is held open without data (90 s).
    pub poll_timeout: Duration,
    /// How long the hub waits for a client's answer to a client-result invocation.
    pub client_result_timeout: Duration,
    /// Grant stateful reconnect to clients that ask for it (WebSockets only).
    pub allow_stateful_reconnect: bool,
    /// Bytes of sent messages kept for replay until acknowledged (100,000); when full, sending
    /// waits for acknowledgements.
    pub stateful_reconnect_buffer: usize,
    /// How long a connection without its transport waits for the client (15 s, ASP.NET Core's
    /// `DisconnectTimeout`): a stateful connection whose socket dropped, or a long-polling
    /// connection with no poll open.
    pub reconnect_window: Duration,
    /// How long a client may take nothing of what the hub writes to it before it is closed as
    /// too slow (30 s; reason label `queue_full`): a write to its socket or event stream, or a
    /// hub method waiting for room in its send queue (`Context::send_to_caller_waiting`), that
    /// sees none of it taken for this long gives up and ends the connection. A write is given a
    /// second more per 16 KiB it carries, so a large message to a slow link is not cut.
    /// ASP.NET Core likewise closes a client that cannot keep up rather than buffering for it
    /// without limit.
    pub write_stall_timeout: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            keep_alive_interval: Duration::from_secs(15),
            client_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(15),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 20_000,
            max_pending_per_address: 64,
            max_messages_per_second: 200,
            send_queue_capacity: 1024,
            send_queue_bytes: 16 << 20,
            stream_buffer_bytes: 1 << 20,
            poll_timeout: Duration::from_secs(90),
            client_result_timeout: Duration::from_secs(30),
            allow_stateful_reconnect: true,
            stateful_reconnect_buffer: 100_000,
            reconnect_window: Duration::from_secs(15),
            write_stall_timeout: Duration::from_secs(30),
        }
    }
}
