//! The handle: cheap to clone, talks to the connection's actor through a channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use hubbub_protocol::{Arg, Headers, HubMessage, Invocation, Outcome, StreamInvocation};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{self, Command};
use crate::options::Options;
use crate::{Error, Event, State};

/// A client method: gets the arguments; its return value answers the hub when the hub asked
/// for a result (a client result).
pub type Handler = Arc<dyn Fn(&[Arg]) -> Option<Arg> + Send + Sync>;

/// Sees every invocation from the hub, whatever its method (for logging and tools).
pub type Observer = Arc<dyn Fn(&str, &[Arg], &Headers) + Send + Sync>;

/// What the handle and the actor share. Locks here are only held for a map operation, never
/// across an await.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) connection_id: Mutex<Option<String>>,
    pub(crate) handlers: Mutex<HashMap<String, Vec<(u64, Handler)>>>,
    pub(crate) observers: Mutex<Vec<Observer>>,
    /// Bumped (under the lock) whenever a handler or observer is added or removed, so the
    /// engine's [`Dispatch`] knows when to take its copies again.
    pub(crate) dispatch_generation: AtomicU64,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) next_id: AtomicU64,
    /// Which of the hub's URLs the connection uses (see `fallback_urls`).
    pub(crate) url_index: std::sync::atomic::AtomicUsize,
    pub(crate) urls: Vec<String>,
    /// Classic ASP.NET SignalR caller state (`S`), sent with every call and updated by the hub.
    pub(crate) caller_state: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
}

impl Shared {
    pub(crate) fn observers(&self) -> Vec<Observer> {
        self.observers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn handlers_for(&self, method: &str) -> Vec<Handler> {
        let handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        handlers
            .get(&method.to_lowercase())
            .map(|v| v.iter().map(|(_, h)| h.clone()).collect())
            .unwrap_or_default()
    }

    fn dispatch_changed(&self) {
        self.dispatch_generation.fetch_add(1, Ordering::Release);
    }
}

/// The engine's copies of the observers and of the last invoked method's handlers, taken
/// again only after a handler or observer was added or removed: a flood of invocations of
/// one method takes no lock, allocates nothing and lowercases nothing per message. A change
/// applies from the next invocation on, as when the map was read for each one.
#[derive(Default)]
pub(crate) struct Dispatch {
    generation: Option<u64>,
    observers: Vec<Observer>,
    method: String,
    handlers: Vec<Handler>,
}

impl Dispatch {
    /// The observers, and the handlers of `method` (matched without regard to case).
    pub(crate) fn lookup(&mut self, shared: &Shared, method: &str) -> (&[Observer], &[Handler]) {
        let generation = shared.dispatch_generation.load(Ordering::Acquire);
        if self.generation != Some(generation) {
            self.generation = Some(generation);
            self.observers = shared.observers();
            self.method.clear();
            self.handlers = shared.handlers_for(method);
            self.method.push_str(method);
        } else if self.method != method {
            self.method.clear();
            self.handlers = shared.handlers_for(method);
            self.method.push_str(method);
        }
        (&self.observers, &self.handlers)
    }
}

/// A connection to a hub. Clone it freely: every clone drives the same connection.
#[derive(Clone)]
pub struct HubConnection {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HubConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConnection")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// A client-to-server stream: items, or an error text that ends it as failed.
pub type UploadStream = std::pin::Pin<Box<dyn Stream<Item = Result<Arg, String>> + Send + 'static>>;

/// Removes a handler registered with [`HubConnection::on`] when called.
#[derive(Debug)]
pub struct Subscription {
    shared: std::sync::Weak<Shared>,
    method: String,
    id: u64,
}

impl Subscription {
    /// Unregisters the handler.
    pub fn remove(self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut handlers = shared.handlers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = handlers.get_mut(&self.method) {
                list.retain(|(id, _)| *id != self.id);
            }
            shared.dispatch_changed();
        }
    }
}

impl HubConnection {
    pub(crate) fn new(options: Options) -> Self {
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::Disconnected),
            connection_id: Mutex::new(None),
            handlers: Mutex::default(),
            observers: Mutex::default(),
            dispatch_generation: AtomicU64::new(0),
            events,
            next_id: AtomicU64::new(0),
            url_index: std::sync::atomic::AtomicUsize::new(0),
            urls: std::iter::once(options.url.clone())
                .chain(options.fallback_urls.iter().cloned())
                .collect(),
            caller_state: Arc::default(),
        });
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(engine::run(options, shared.clone(), rx));
        Self { commands, shared }
    }

    fn command(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).map_err(|_| Error::Stopped)
    }

    /// Connects. Resolves once connected, or with the error that made the start fail (after
    /// the retry policy gave up, when retrying the first start is on).
    pub async fn start(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Start(tx))?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Disconnects (and stops any reconnecting). Pending calls fail.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hub URL the connection uses now, or tries next (one of the builder's URL and its
    /// fallbacks).
    pub fn url(&self) -> String {
        let i = self
            .shared
            .url_index
            .load(std::sync::atomic::Ordering::Relaxed);
        self.shared.urls[i % self.shared.urls.len()].clone()
    }

    /// The current connection id (none while disconnected or with skip-negotiation).
    pub fn connection_id(&self) -> Option<String> {
        self.shared
            .connection_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The caller state of a classic ASP.NET SignalR hub (`S`): what this side set with
    /// [`set_caller_state`](Self::set_caller_state), updated by what the hub changed in its
    /// results and calls. Empty on ASP.NET Core hubs, which have none.
    pub fn caller_state(&self) -> serde_json::Map<String, serde_json::Value> {
        self.shared
            .caller_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets one caller-state entry, sent with every later call to a classic hub (the hub reads
    /// it as `Clients.Caller.<key>`). ASP.NET Core hubs ignore it.
    pub fn set_caller_state(&self, key: impl Into<String>, value: serde_json::Value) {
        self.shared
            .caller_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.into(), value);
    }

    /// Every event from now on: state changes, reconnecting, reconnected, slow, recovered,
    /// closed, errors.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Registers a handler for a method the hub invokes (names match case-insensitively).
    pub fn on(
        &self,
        method: &str,
        handler: impl Fn(&[Arg]) -> Option<Arg> + Send + Sync + 'static,
    ) -> Subscription {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let method = method.to_lowercase();
        let mut handlers = self
            .shared
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        handlers
            .entry(method.clone())
            .or_default()
            .push((id, Arc::new(handler)));
        self.shared.dispatch_changed();
        drop(handlers);
        Subscription {
            shared: Arc::downgrade(&self.shared),
            method,
            id,
        }
    }

    /// Registers an observer of every invocation from the hub, with its headers (such as the
    /// message id a hub passes on); it gives no client results.
    pub fn on_any(&self, observer: impl Fn(&str, &[Arg], &Headers) + Send + Sync + 'static) {
        let mut observers = self
            .shared
            .observers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        observers.push(Arc::new(observer));
        self.shared.dispatch_changed();
    }

    fn next_invocation_id(&self) -> String {
        self.shared
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    /// Invokes a hub method without waiting for it to run (fire-and-forget). Resolves once the
    /// message is handed to the transport.
    pub async fn send(&self, method: &str, args: Vec<Arg>) -> Result<(), Error> {
        self.send_with_headers(method, args, Headers::new()).await
    }

    /// As [`send`](Self::send), with headers.
    pub async fn send_with_headers(
        &self,
        method: &str,
        args: Vec<Arg>,
        headers: Headers,
    ) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let message = HubMessage::Invocation(Invocation {
            headers,
            invocation_id: None,
            target: method.to_owned(),
            arguments: args,
            stream_ids: Vec::new(),
        });
        self.command(Command::Send { message, done: tx })?;
        rx.await.map_err(|_| Error::ConnectionClosed)?
    }

    /// Invokes a hub method and waits for its result, read as `T` (use `()` for none).
    pub async fn invoke<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Arg>,
    ) -> Result<T, Error> {
        self.invoke_with_headers(method, args, Headers::new()).await
    }

    /// As [`invoke`](Self::invoke), with headers.
    pub async fn invoke_with_headers<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Arg>,
        headers: Headers,
    ) -> Result<T, Error> {
        let outcome = self.invoke_raw(method, args, headers).await?;
        let value = match outcome {
            Outcome::Void => Arg::from_value(hubbub_protocol::Value::Nil),
            Outcome::Result(value) => value,
            Outcome::Error(e) => return Err(Error::Hub(e)),
        };
        Ok(value.decode()?)
    }

    /// Invokes a hub method with client-to-server streams after its arguments (the hub sees
    /// them in order as its stream parameters), and waits for its result. Each stream's items
    /// are sent as they come, in order; its end (or its error) is sent when it finishes.
    pub async fn invoke_with_streams<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Arg>,
        uploads: Vec<UploadStream>,
    ) -> Result<T, Error> {
        let id = self.next_invocation_id();
        let stream_ids: Vec<String> = uploads.iter().map(|_| self.next_invocation_id()).collect();
        let (tx, rx) = oneshot::channel();
        let message = HubMessage::Invocation(Invocation {
            headers: Headers::new(),
            invocation_id: Some(id.clone()),
            target: method.to_owned(),
            arguments: args,
            stream_ids: stream_ids.clone(),
        });
        self.command(Command::Invoke {
            message,
            id,
            reply: tx,
            bounded: false,
        })?;
        for (stream_id, mut upload) in stream_ids.into_iter().zip(uploads) {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                use futures_util::StreamExt;
                let mut error = None;
                while let Some(item) = upload.next().await {
                    match item {
                        Ok(item) => {
                            let id = stream_id.clone();
                            if commands.send(Command::UploadItem { id, item }).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                let _ = commands.send(Command::UploadEnd {
                    id: stream_id,
                    error,
                });
            });
        }
        let outcome = rx.await.map_err(|_| Error::ConnectionClosed)??;
        let value = match outcome {
            Outcome::Void => Arg::from_value(hubbub_protocol::Value::Nil),
            Outcome::Result(value) => value,
            Outcome::Error(e) => return Err(Error::Hub(e)),
        };
        Ok(value.decode()?)
    }

    /// Invokes a hub method and returns its raw outcome.
    pub async fn invoke_raw(
        &self,
        method: &str,
        args: Vec<Arg>,
        headers: Headers,
    ) -> Result<Outcome, Error> {
        let id = self.next_invocation_id();
        let (tx, rx) = oneshot::channel();
        let message = HubMessage::Invocation(Invocation {
            headers,
            invocation_id: Some(id.clone()),
            target: method.to_owned(),
            arguments: args,
            stream_ids: Vec::new(),
        });
        self.command(Command::Invoke {
            message,
            id,
            reply: tx,
            bounded: true,
        })?;
        rx.await.map_err(|_| Error::ConnectionClosed)?
    }

    /// Calls a streaming hub method. Items arrive as the hub sends them; dropping the stream
    /// before it ends sends CancelInvocation.
    pub fn stream<T: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        args: Vec<Arg>,
    ) -> impl Stream<Item = Result<T, Error>> + Send + 'static {
        let id = self.next_invocation_id();
        let (tx, rx) = mpsc::unbounded_channel();
        let message = HubMessage::StreamInvocation(StreamInvocation {
            headers: Headers::new(),
            invocation_id: id.clone(),
            target: method.to_owned(),
            arguments: args,
            stream_ids: Vec::new(),
        });
        if let Err(e) = self.command(Command::Stream {
            message,
            id: id.clone(),
            items: tx.clone(),
        }) {
            let _ = tx.send(Err(e));
        }
        ItemStream {
            rx,
            cancel: Some((self.commands.clone(), id)),
            _t: std::marker::PhantomData,
        }
    }

    /// Tells the connection the network changed: a pending retry happens now instead of after
    /// its delay, and a live connection is checked by reconnecting at once.
    pub fn notify_network_changed(&self) {
        let _ = self.command(Command::NetworkChanged);
    }

    /// Disconnects for now (a phone app going to the background), keeping handlers and settings.
    pub fn suspend(&self) {
        let _ = self.command(Command::Suspend);
    }

    /// Reconnects after [`suspend`](Self::suspend).
    pub fn resume(&self) {
        let _ = self.command(Command::Resume);
    }
}

struct ItemStream<T> {
    rx: mpsc::UnboundedReceiver<Result<Arg, Error>>,
    cancel: Option<(mpsc::UnboundedSender<Command>, String)>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Stream for ItemStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            std::task::Poll::Ready(None) => {
                // The stream ended: nothing to cancel.
                self.cancel = None;
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Ready(Some(item)) => {
                std::task::Poll::Ready(Some(item.and_then(|arg| arg.decode().map_err(Error::from))))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T> Drop for ItemStream<T> {
    fn drop(&mut self) {
        if let Some((commands, id)) = self.cancel.take() {
            let _ = commands.send(Command::Cancel { id });
        }
    }
}
