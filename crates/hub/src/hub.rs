//! The hub API: methods registered by name with typed arguments, lifecycle callbacks, and the
//! context a method runs in (who called, and how to reach other clients).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use hubbub_protocol::{Arg, Headers, Value};
use serde::de::DeserializeOwned;

use crate::connection::Connection;
use crate::router::Scope;
use crate::state::HubState;

/// A boxed future, as handlers return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The items of a server-to-client stream.
pub type ItemStream = Pin<Box<dyn Stream<Item = Result<Arg, HubError>> + Send + 'static>>;

/// What a hub method gives back.
pub enum Reply {
    /// Nothing: the Completion carries no result.
    Void,
    /// A return value.
    Value(Arg),
    /// A stream of items (for methods the client calls with StreamInvocation).
    Stream(ItemStream),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Void => f.write_str("Void"),
            Self::Value(v) => f.debug_tuple("Value").field(v).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl Reply {
    /// A return value serialized from a Rust value.
    pub fn value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, HubError> {
        Arg::serialize(value)
            .map(Self::Value)
            .map_err(|e| HubError::new(e.to_string()))
    }

    /// A stream of items.
    pub fn stream(items: impl Stream<Item = Result<Arg, HubError>> + Send + 'static) -> Self {
        Self::Stream(Box::pin(items))
    }
}

/// An error a hub method reports to its caller (in the Completion's `error`). Classic
/// clients get it as a hub error (`"H":true`, ASP.NET SignalR's `HubException`) with its data
/// in `D`; the Core protocol has no place for the data.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct HubError(pub String, pub(crate) Option<serde_json::Value>);

impl HubError {
    /// An error with this text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into(), None)
    }

    /// An error with this text and data for the caller (a classic client reads it as
    /// `error.data`, from `D`).
    pub fn with_data(text: impl Into<String>, data: serde_json::Value) -> Self {
        Self(text.into(), Some(data))
    }

    /// The error's data, if it has any.
    pub fn data(&self) -> Option<&serde_json::Value> {
        self.1.as_ref()
    }
}

/// Turns a method's return value into a [`Reply`].
pub trait IntoReply {
    /// The reply.
    fn into_reply(self) -> Result<Reply, HubError>;
}

impl IntoReply for () {
    fn into_reply(self) -> Result<Reply, HubError> {
        Ok(Reply::Void)
    }
}

impl IntoReply for Reply {
    fn into_reply(self) -> Result<Reply, HubError> {
        Ok(self)
    }
}

impl IntoReply for Arg {
    fn into_reply(self) -> Result<Reply, HubError> {
        Ok(Reply::Value(self))
    }
}

impl IntoReply for Value {
    fn into_reply(self) -> Result<Reply, HubError> {
        Ok(Reply::Value(Arg::from_value(self)))
    }
}

impl IntoReply for serde_json::Value {
    fn into_reply(self) -> Result<Reply, HubError> {
        Reply::value(&self)
    }
}

/// Reads a method's arguments into a typed tuple.
pub trait FromArgs: Sized {
    /// The arguments as `Self`, or the error text for the caller.
    fn from_args(args: &[Arg]) -> Result<Self, String>;
}

/// All arguments as they came, for methods that take any number.
#[derive(Debug, Clone)]
pub struct RawArgs(pub Vec<Arg>);

impl FromArgs for RawArgs {
    fn from_args(args: &[Arg]) -> Result<Self, String> {
        Ok(Self(args.to_vec()))
    }
}

fn count(args: &[Arg], expected: usize) -> Result<(), String> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(format!(
            "Invocation provides {} argument(s) but target expects {expected}.",
            args.len()
        ))
    }
}

macro_rules! tuple_from_args {
    ($n:expr; $($t:ident $i:tt),*) => {
        impl<$($t: DeserializeOwned),*> FromArgs for ($($t,)*) {
            #[allow(unused_variables)]
            fn from_args(args: &[Arg]) -> Result<Self, String> {
                count(args, $n)?;
                Ok(($(args[$i].decode::<$t>().map_err(|e| format!("argument {}: {e}", $i + 1))?,)*))
            }
        }
    };
}
tuple_from_args!(0;);
tuple_from_args!(1; A 0);
tuple_from_args!(2; A 0, B 1);
tuple_from_args!(3; A 0, B 1, C 2);
tuple_from_args!(4; A 0, B 1, C 2, D 3);

pub(crate) type Handler = Arc<
    dyn Fn(Context, &[Arg]) -> Result<BoxFuture<Result<Reply, HubError>>, String> + Send + Sync,
>;
pub(crate) type Lifecycle = Arc<dyn Fn(Context) -> BoxFuture<()> + Send + Sync>;
pub(crate) type LostHook = Arc<dyn Fn(Lost<'_>) + Send + Sync>;

/// A registered method: its handler and how many client-to-server streams it takes.
#[derive(Clone)]
pub(crate) struct Method {
    pub(crate) handler: Handler,
    /// The `streamIds` an invocation of it must carry: exactly this many (ASP.NET Core binds
    /// stream ids to the method's stream parameters and refuses any other count).
    pub(crate) streams: usize,
}

/// A hub: named methods clients can call, and what happens when clients come and go.
///
/// ```
/// use hubbub_hub::{Hub, HubError};
///
/// let hub = Hub::new("echo").method("Echo", |_ctx, (text,): (String,)| async move {
///     Ok::<_, HubError>(serde_json::Value::String(text))
/// });
/// # let _ = hub;
/// ```
#[derive(Clone, Default)]
pub struct Hub {
    pub(crate) name: String,
    pub(crate) classic_name: Option<String>,
    pub(crate) methods: HashMap<String, Method>,
    /// The methods' names as registered (their own casing), for the classic proxy.
    pub(crate) method_names: Vec<String>,
    pub(crate) on_connected: Option<Lifecycle>,
    pub(crate) on_disconnected: Option<Lifecycle>,
    pub(crate) on_lost: Option<LostHook>,
    /// The size of the hub's local history, for `hubbub_history_messages`.
    pub(crate) history_size: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl Hub {
    /// The method named `name`, without regard to case (as ASP.NET Core and 2.x find them).
    /// Names of up to 64 ASCII bytes, as method names are, are folded on the stack: no
    /// allocation per invocation.
    pub(crate) fn method_named(&self, name: &str) -> Option<&Method> {
        let mut folded = [0u8; 64];
        match folded.get_mut(..name.len()) {
            Some(buf) if name.is_ascii() => {
                buf.copy_from_slice(name.as_bytes());
                buf.make_ascii_lowercase();
                // ASCII stays UTF-8.
                std::str::from_utf8(buf)
                    .ok()
                    .and_then(|name| self.methods.get(name))
            }
            _ => self.methods.get(&name.to_lowercase()),
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut methods: Vec<_> = self.methods.keys().collect();
        methods.sort();
        f.debug_struct("Hub")
            .field("name", &self.name)
            .field("methods", &methods)
            .finish()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Registers a method. Names match case-insensitively, as in ASP.NET Core. The arguments
    /// are read into `A` (a tuple of deserializable types, or [`RawArgs`]); a count or type
    /// mismatch is answered with an error Completion. The method takes no client-to-server
    /// stream: an invocation that announces one (`streamIds`) is refused before anything is
    /// opened for it (see [`method_with_streams`](Self::method_with_streams)).
    pub fn method<A, F, Fut, R>(self, name: &str, handler: F) -> Self
    where
        A: FromArgs + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
        R: IntoReply,
    {
        self.method_with_streams(name, 0, handler)
    }

    /// Registers a method that takes `streams` client-to-server streams (read with
    /// [`Context::upload`]). An invocation must announce exactly that many `streamIds`, as
    /// ASP.NET Core binds them to stream parameters; any other count is refused with
    /// "Client sent N stream(s), Hub method expects M." and opens nothing. A connection holds
    /// at most [`MAX_STREAMS_PER_CONNECTION`](crate::MAX_STREAMS_PER_CONNECTION) open at once.
    pub fn method_with_streams<A, F, Fut, R>(
        mut self,
        name: &str,
        streams: usize,
        handler: F,
    ) -> Self
    where
        A: FromArgs + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
        R: IntoReply,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx, args| {
            let typed = A::from_args(args)?;
            let handler = handler.clone();
            Ok(Box::pin(
                async move { handler(ctx, typed).await?.into_reply() },
            ))
        });
        let method = Method {
            handler: erased,
            streams,
        };
        if self.methods.insert(name.to_lowercase(), method).is_none() {
            self.method_names.push(name.to_owned());
        }
        self
    }

    /// The name classic (ASP.NET SignalR 2.x) clients know the hub by: the `H` of their calls,
    /// `$.connection.<camelCase name>` in the generated proxy. By default the hub's name with
    /// a capital first letter and `Hub` appended unless it ends so (`chat` → `ChatHub`).
    pub fn classic_name(mut self, name: impl Into<String>) -> Self {
        self.classic_name = Some(name.into());
        self
    }

    /// The classic name in effect (see [`classic_name`](Self::classic_name)).
    pub(crate) fn classic_name_or_default(&self) -> String {
        if let Some(name) = &self.classic_name {
            return name.clone();
        }
        let mut chars = self.name.chars();
        let mut name: String = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => "Hub".to_owned(),
        };
        if !name.to_lowercase().ends_with("hub") {
            name.push_str("Hub");
        }
        name
    }

    /// Runs when a connection has completed its handshake.
    pub fn on_connected<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connected = Some(Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Runs when a connection has gone.
    pub fn on_disconnected<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnected = Some(Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Runs on every surviving node of a fleet when another node's connections ended without
    /// `on_disconnected` running for them: the node crashed, or was cut off from the backplane
    /// (Redis or PostgreSQL) for longer than its time limit. They are already gone from presence and counts when this
    /// runs. Never runs on a single node (its own connections always get `on_disconnected`).
    pub fn on_connections_lost<F>(mut self, f: F) -> Self
    where
        F: Fn(Lost<'_>) + Send + Sync + 'static,
    {
        self.on_lost = Some(Arc::new(f));
        self
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where a hub method runs: the calling connection, the invocation's headers, and the hub.
#[derive(Clone)]
pub struct Context {
    pub(crate) conn: Arc<Connection>,
    pub(crate) state: Arc<HubState>,
    pub(crate) headers: Arc<Headers>,
    pub(crate) uploads: Arc<std::sync::Mutex<crate::connection::Uploads>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("connection", &self.conn.id)
            .finish()
    }
}

impl Context {
    /// The calling connection's id.
    pub fn connection_id(&self) -> &str {
        &self.conn.id
    }

    /// The calling user: the token's subject, else the `name` the client connected with,
    /// else a name made from the connection id.
    pub fn user(&self) -> &str {
        &self.conn.user
    }

    /// A query parameter of the URL the client connected with.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.conn.query.get(key).map(String::as_str)
    }

    /// The headers of the invocation being handled (empty in lifecycle callbacks).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The `index`-th client-to-server stream of the invocation being handled (in the order of
    /// its `streamIds`), once: its items as the client sends them; an error if the client ended
    /// it with one. `None` if there is no such stream or it was taken already.
    pub fn upload(&self, index: usize) -> Option<ItemStream> {
        let rx = self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(index)?
            .take()?;
        Some(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move {
                let item = rx.recv().await?;
                Some((item.map_err(HubError::new), rx))
            },
        )))
    }

    /// Ways to reach clients.
    pub fn clients(&self) -> Clients<'_> {
        Clients { ctx: self }
    }

    /// Adds a connection to a group. With a backplane the connection may be on any node: the
    /// node that holds it applies the change and acknowledges it, and this waits for that (an
    /// error if no node does within the ack timeout, and at once while the backplane is down).
    /// Without one, an unknown connection is ignored (as in ASP.NET Core).
    pub async fn add_to_group(&self, connection_id: &str, group: &str) -> Result<(), HubError> {
        self.state
            .add_to_group(connection_id, group)
            .await
            .map_err(|e| HubError::new(e.to_string()))
    }

    /// Removes a connection from a group (on any node, as [`add_to_group`](Self::add_to_group)).
    pub async fn remove_from_group(
        &self,
        connection_id: &str,
        group: &str,
    ) -> Result<(), HubError> {
        self.state
            .remove_from_group(connection_id, group)
            .await
            .map_err(|e| HubError::new(e.to_string()))
    }

    /// The users connected to this hub (each once, however many connections they hold), with
    /// their connection counts; with a backplane, on every live node.
    pub fn users_online(&self, group: Option<&str>) -> Vec<(String, usize)> {
        self.state.users(group)
    }

    /// How many connections are open (in `group`, when given); with a backplane, on every live
    /// node.
    pub fn connection_count(&self, group: Option<&str>) -> usize {
        self.state.connection_count(group)
    }

    /// Sends `message` to the caller, waiting while its send queue is full (backpressure)
    /// rather than closing it as too slow at once. The wait is bounded: once the caller has
    /// taken nothing of its queue for `HubOptions::write_stall_timeout` (30 s, plus a second per
    /// 16 KiB of the message) it is closed as too slow (reason label `queue_full`), as ASP.NET
    /// Core closes a client that cannot keep up. `false` once the caller is gone or closed.
    pub async fn send_to_caller_waiting(&self, frame: std::sync::Arc<crate::Frame>) -> bool {
        self.conn
            .enqueue_waiting(
                crate::frame::Outbound::Message(frame),
                self.state.options.write_stall_timeout,
            )
            .await
    }

    /// Invokes a method on the calling client and waits for its result (a client result).
    pub async fn invoke_caller(&self, method: &str, args: Vec<Arg>) -> Result<Arg, HubError> {
        self.conn
            .invoke_client(method, args, self.state.options.client_result_timeout)
            .await
    }

    /// Invokes a method on a connection of this node and waits for its result (client results
    /// do not cross the backplane).
    pub async fn invoke_client(
        &self,
        connection_id: &str,
        method: &str,
        args: Vec<Arg>,
    ) -> Result<Arg, HubError> {
        let conn = self.state.router.connection(connection_id).ok_or_else(|| {
            HubError::new(format!("Connection '{connection_id}' does not exist."))
        })?;
        conn.invoke_client(method, args, self.state.options.client_result_timeout)
            .await
    }
}

/// A connection of another node that ended without a goodbye (see
/// [`Hub::on_connections_lost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostConnection {
    /// Its id.
    pub connection_id: String,
    /// Its user.
    pub user: String,
    /// The groups it was in.
    pub groups: Vec<String>,
}

/// Connections another node lost, as one surviving node sees them.
pub struct Lost<'a> {
    pub(crate) state: &'a HubState,
    pub(crate) connections: &'a [LostConnection],
}

impl std::fmt::Debug for Lost<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lost")
            .field("connections", &self.connections)
            .finish()
    }
}

impl Lost<'_> {
    /// The connections that are gone.
    pub fn connections(&self) -> &[LostConnection] {
        self.connections
    }

    /// Users online (in `group`, when given) on every live node, now that these are gone.
    pub fn users_online(&self, group: Option<&str>) -> Vec<(String, usize)> {
        self.state.users(group)
    }

    /// Connections open (in `group`, when given) on every live node, now that these are gone.
    pub fn connection_count(&self, group: Option<&str>) -> usize {
        self.state.connection_count(group)
    }

    /// Invokes `method` on **this node's** connections in `group`. Every surviving node runs
    /// the hook, so each client hears it once, from its own node. Returns how many
    /// connections it was queued for.
    pub fn send_here(&self, group: &str, method: &str, args: Vec<Arg>) -> usize {
        let frame = crate::Frame::new(hubbub_protocol::HubMessage::Invocation(
            hubbub_protocol::Invocation {
                headers: Headers::new(),
                invocation_id: None,
                target: method.to_owned(),
                arguments: args,
                stream_ids: Vec::new(),
            },
        ));
        self.state
            .router
            .deliver(&Scope::Group(group.to_owned()), &frame, &[])
    }
}

/// Picks which clients receive a message.
#[derive(Debug, Clone, Copy)]
pub struct Clients<'a> {
    ctx: &'a Context,
}

impl<'a> Clients<'a> {
    fn target(self, scope: Scope, exclude_caller: bool) -> Target<'a> {
        Target {
            ctx: self.ctx,
            scope,
            exclude_caller,
        }
    }

    /// Every connection.
    pub fn all(self) -> Target<'a> {
        self.target(Scope::All, false)
    }

    /// Every connection but the caller.
    pub fn others(self) -> Target<'a> {
        self.target(Scope::All, true)
    }

    /// The caller only.
    pub fn caller(self) -> Target<'a> {
        self.target(Scope::Connection(self.ctx.conn.id.clone()), false)
    }

    /// Every connection in a group.
    pub fn group(self, group: &str) -> Target<'a> {
        self.target(Scope::Group(group.to_owned()), false)
    }

    /// Every connection in a group but the caller.
    pub fn others_in_group(self, group: &str) -> Target<'a> {
        self.target(Scope::Group(group.to_owned()), true)
    }

    /// Every connection of a user.
    pub fn user(self, user: &str) -> Target<'a> {
        self.target(Scope::User(user.to_owned()), false)
    }

    /// One connection.
    pub fn client(self, connection_id: &str) -> Target<'a> {
        self.target(Scope::Connection(connection_id.to_owned()), false)
    }
}

/// A set of recipients.
#[derive(Debug)]
pub struct Target<'a> {
    ctx: &'a Context,
    scope: Scope,
    exclude_caller: bool,
}

impl Target<'_> {
    /// Invokes `method` on every recipient (fire-and-forget). Returns how many connections of
    /// this node the message was queued for (with a backplane, other nodes get it too).
    pub fn send(&self, method: &str, args: Vec<Arg>) -> usize {
        self.send_with_headers(method, args, Headers::new())
    }

    /// As [`send`](Self::send), with headers on the invocation.
    pub fn send_with_headers(&self, method: &str, args: Vec<Arg>, headers: Headers) -> usize {
        let exclude: &[String] = if self.exclude_caller {
            std::slice::from_ref(&self.ctx.conn.id)
        } else {
            &[]
        };
        let frame = crate::Frame::new(hubbub_protocol::HubMessage::Invocation(
            hubbub_protocol::Invocation {
                headers,
                invocation_id: None,
                target: method.to_owned(),
                arguments: args,
                stream_ids: Vec::new(),
            },
        ));
        self.ctx.state.deliver(&self.scope, &frame, exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_found_without_regard_to_case() {
        let long = format!("Send{}", "x".repeat(80));
        let hub = Hub::new("ChatHub")
            .method("Send", |_ctx: Context, (_m,): (String,)| async { Ok(()) })
            .method("Grüße", |_ctx: Context, (_m,): (String,)| async {
                Ok(())
            })
            .method(&long, |_ctx: Context, (_m,): (String,)| async { Ok(()) });
        for name in ["Send", "send", "SEND", "grüße", "GRÜßE"] {
            assert!(hub.method_named(name).is_some(), "{name}");
        }
        assert!(
            hub.method_named(&long.to_uppercase()).is_some(),
            "a long name"
        );
        assert!(hub.method_named("Sen").is_none());
        assert!(hub.method_named("").is_none());
    }
}
