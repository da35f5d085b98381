//! What a connection tells its observers: one closed enum.

use std::fmt;
use std::time::Duration;

use crate::Family;

/// The connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum State {
    /// Not connected and not trying.
    Disconnected,
    /// Starting (negotiate, transport, handshake).
    Connecting,
    /// Connected.
    Connected,
    /// Lost the connection; waiting to try again or trying.
    Reconnecting,
    /// Suspended by the app (a phone in the background); `resume` reconnects.
    Suspended,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Suspended => "suspended",
        };
        f.write_str(name)
    }
}

/// Why the connection counts as slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SlowReason {
    /// Nothing arrived from the hub for longer than the warning threshold.
    HubSilent,
    /// Messages handed to the transport have not been written for longer than the threshold.
    SendsStalled,
}

/// Everything a shell observes about a connection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// The state changed.
    StateChanged {
        /// Before.
        old: State,
        /// After.
        new: State,
    },
    /// The connection was lost (or a start failed) and the next attempt is scheduled.
    Reconnecting {
        /// 1 for the first retry.
        attempt: u32,
        /// How long until that attempt.
        #[serde(rename = "delayMs", serialize_with = "millis")]
        delay: Duration,
        /// Why the connection was lost.
        reason: String,
    },
    /// Connected again, with a new connection id.
    Reconnected {
        /// The new id (none with skip-negotiation).
        #[serde(rename = "connectionId")]
        connection_id: Option<String>,
    },
    /// Connected for the first time (after `start`).
    Connected {
        /// The connection id (none with skip-negotiation).
        #[serde(rename = "connectionId")]
        connection_id: Option<String>,
        /// The transport in use.
        transport: String,
        /// The protocol family spoken ([`Family::Core`] or [`Family::Classic`], never
        /// [`Family::Auto`]): what the negotiate response showed, or what was forced.
        family: Family,
    },
    /// The connection became slow.
    Slow {
        /// Why.
        reason: SlowReason,
    },
    /// Traffic resumed after a [`Event::Slow`].
    Recovered,
    /// The connection closed for good (no more retries).
    Closed {
        /// Why, if it ended in an error; none after a plain stop, and when the hub closed it
        /// with a Close message without an error that does not allow reconnecting (a clean end,
        /// as the official clients report it: `onclose` without an error).
        reason: Option<String>,
    },
    /// Something went wrong that did not close the connection.
    Error {
        /// What.
        message: String,
    },
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}
