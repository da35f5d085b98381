//! Serving hubs over HTTP: binding, routes, CORS, graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method};
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::auth::{Auth, JwtAuth, UserKeys};
use crate::classic::ClassicOptions;
use crate::hub::Hub;
use crate::options::HubOptions;
use axum::response::IntoResponse;

use crate::state::{Counters, HubState};
use crate::transport;

/// Configures a server: which hubs at which paths, with which options.
#[derive(Debug)]
pub struct ServerBuilder {
    options: HubOptions,
    hubs: Vec<(String, Hub)>,
    cors_origins: Vec<String>,
    auth: Option<Auth>,
    backplane: Option<crate::backplane::BackplaneConfig>,
    classic: Option<ClassicOptions>,
    static_dir: Option<std::path::PathBuf>,
    tls: Option<crate::TlsFiles>,
    tcp_limits: crate::TcpLimits,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            options: HubOptions::default(),
            hubs: Vec::new(),
            cors_origins: Vec::new(),
            auth: None,
            backplane: None,
            classic: Some(ClassicOptions::default()),
            static_dir: None,
            tls: None,
            tcp_limits: crate::TcpLimits::default(),
        }
    }
}

impl ServerBuilder {
    /// A server with default options and no hubs; classic clients are served at `/signalr`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves classic ASP.NET SignalR 2.x clients with these settings (on by default, at
    /// `/signalr`): every hub mounted is also theirs, by its classic name.
    pub fn classic(mut self, options: ClassicOptions) -> Self {
        self.classic = Some(options);
        self
    }

    /// Serves no classic clients.
    pub fn without_classic(mut self) -> Self {
        self.classic = None;
        self
    }

    /// Serves the files of `dir` at `/` (`index.html` for a directory), so a page and the hub
    /// share one origin. Hub routes take precedence.
    pub fn static_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.static_dir = Some(dir.into());
        self
    }

    /// Options for every hub.
    pub fn options(mut self, options: HubOptions) -> Self {
        self.options = options;
        self
    }

    /// Mounts `hub` at `path` (such as `/chathub`).
    pub fn hub(mut self, path: &str, hub: Hub) -> Self {
        let path = format!("/{}", path.trim_matches('/'));
        self.hubs.push((path, hub));
        self
    }

    /// Lets browser pages from these origins (`scheme://host[:port]`) connect, besides pages
    /// of the hub's own origin. Every hub request (negotiate and every transport, WebSockets
    /// included, of both families) that carries an `Origin` header naming another origin is
    /// refused with 403; requests without one (clients that are not browsers) are not
    /// concerned. `*` is refused by [`bind`](Self::bind): credentials are allowed, and
    /// ASP.NET Core refuses a wildcard origin with credentials too.
    pub fn cors_origins(mut self, origins: Vec<String>) -> Self {
        self.cors_origins = origins;
        self
    }

    /// Requires a valid JWT on negotiate and on every transport request; the user is its
    /// subject.
    pub fn auth(mut self, auth: JwtAuth) -> Self {
        self.auth = Some(Auth::Jwt(Box::new(auth)));
        self
    }

    /// Requires one of these per-user keys as the bearer token on negotiate and on every
    /// transport request; the user is the key's (instead of [`auth`](Self::auth)).
    pub fn user_keys(mut self, keys: UserKeys) -> Self {
        self.auth = Some(Auth::Keys(keys));
        self
    }

    /// Joins a fleet of nodes through a Redis backplane: messages for any scope reach the
    /// connections of every node, and presence counts them all.
    pub fn redis(mut self, options: crate::RedisOptions) -> Self {
        self.backplane = Some(crate::backplane::BackplaneConfig::Redis(options));
        self
    }

    /// Joins a fleet of nodes through a PostgreSQL backplane instead (LISTEN/NOTIFY for
    /// delivery, tables for presence, ids and histories; the hub creates and migrates its
    /// tables): the same behaviour as [`redis`](Self::redis), scope by scope. The last of the
    /// two called wins.
    pub fn postgres(mut self, options: crate::PostgresOptions) -> Self {
        self.backplane = Some(crate::backplane::BackplaneConfig::Postgres(options));
        self
    }

    /// Serves HTTPS and WSS (every transport, both families) with this certificate and key
    /// instead of plain HTTP, on the same port. A key that does not match the certificate, or
    /// an unreadable file, fails [`bind`](Self::bind) and [`serve`](Self::serve) with
    /// `InvalidInput` and the reason.
    pub fn tls(mut self, files: crate::TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Limits of the listening socket (TCP connections in total and per address, the time to
    /// send a request's headers); see [`TcpLimits`](crate::TcpLimits).
    pub fn tcp_limits(mut self, limits: crate::TcpLimits) -> Self {
        self.tcp_limits = limits;
        self
    }

    /// Binds `addr` and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> io::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener)
    }

    /// Serves on an already bound listener.
    pub fn serve(self, listener: TcpListener) -> io::Result<RunningServer> {
        if self.cors_origins.iter().any(|o| o.trim() == "*") {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, WILDCARD_ORIGIN));
        }
        let addr = listener.local_addr()?;
        let tls = match &self.tls {
            Some(files) => Some((
                files.clone(),
                axum_server::tls_rustls::RustlsConfig::from_config(
                    crate::tls::load(files)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
                ),
            )),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        // The hub's routes (both families): origins checked, answers not cached.
        let mut router = Router::new();
        let mut hubs = Vec::new();
        for (path, hub) in self.hubs {
            let state = HubState::new(
                hub,
                path.clone(),
                self.options.clone(),
                shutdown.clone(),
                tasks.clone(),
                self.auth.clone(),
                self.backplane.as_ref(),
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let hub_router = Router::new()
                .route(&format!("{path}/negotiate"), any(transport::negotiate))
                .route(&path, any(transport::connect))
                .with_state(state.clone());
            router = router.merge(hub_router);
            hubs.push(state);
        }
        if let Some(classic) = self.classic {
            let endpoint = crate::classic::Endpoint::new(
                classic,
                self.options.clone(),
                &hubs,
                self.auth.clone(),
                shutdown.clone(),
                tasks.clone(),
            );
            router = router.merge(endpoint.router());
        }
        let allowed: Arc<[String]> = self
            .cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        router = router.layer(axum::middleware::from_fn(move |request, next| {
            guard(allowed.clone(), request, next)
        }));
        if let Some(dir) = self.static_dir {
            router = router.fallback_service(crate::static_files::service(dir));
        }
        let mut registry = prometheus_client::registry::Registry::with_prefix("hubbub");
        let postgres = matches!(
            self.backplane,
            Some(crate::backplane::BackplaneConfig::Postgres(_))
        );
        for state in &hubs {
            let sub = registry.sub_registry_with_label(("hub".into(), state.path.clone().into()));
            // With a backplane the chat history is the fleet's, in Redis or PostgreSQL, not this one.
            let history = state
                .hub
                .history_size
                .clone()
                .filter(|_| self.backplane.is_none());
            state
                .counters
                .prom
                .register(sub, self.backplane.is_some(), postgres, history);
        }
        let limiter = crate::listener::Limiter::new(&self.tcp_limits);
        limiter.register(&mut registry);
        let registry = Arc::new(registry);
        router = router.route("/healthz", get(|| async { "ok" })).route(
            "/metrics",
            get(move || {
                let mut text = String::new();
                let result =
                    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
                async move {
                    match result {
                        Ok(()) => (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                            )],
                            text,
                        )
                            .into_response(),
                        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        );
        if !self.cors_origins.is_empty() {
            router = router.layer(cors(&self.cors_origins));
        }
        let tls_config = tls.as_ref().map(|(_, config)| config.clone());
        let (max_tcp, max_tcp_per_address) = self.tcp_limits.resolved();
        tracing::debug!(
            max_tcp,
            max_tcp_per_address,
            header_read_timeout = ?self.tcp_limits.header_read_timeout,
            "TCP limits"
        );
        // Plain and TLS alike through axum-server: its acceptor counts and caps the sockets,
        // hyper times the request headers.
        let handle = axum_server::Handle::new();
        // The first request's timeout also bounds hyper's protocol detection, which waits for
        // a new connection's first bytes untimed; the header timeout covers later requests.
        let mut server = axum_server::from_tcp(listener.into_std()?)?
            .handle(handle.clone())
            .first_request_timeout(self.tcp_limits.header_read_timeout);
        server
            .http_builder()
            .http1()
            .header_read_timeout(self.tcp_limits.header_read_timeout);
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let serve_shutdown = shutdown.clone();
        let join = tokio::spawn(async move {
            // Connections have had their Close by the time they finish (see
            // `RunningServer::shutdown`); what is left is cut after 5 s.
            let stop = tokio::spawn(async move {
                serve_shutdown.cancelled().await;
                handle.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let result = match tls_config {
                None => server.acceptor(limiter).serve(service).await,
                Some(config) => {
                    let acceptor =
                        axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(limiter);
                    server.acceptor(acceptor).serve(service).await
                }
            };
            stop.abort();
            result
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{addr}");
        Ok(RunningServer {
            addr,
            tls,
            shutdown,
            tasks,
            join,
            hubs,
        })
    }
}

/// Why `--cors-origin *` is refused (ASP.NET Core's words for the same refusal).
const WILDCARD_ORIGIN: &str = "The CORS protocol does not allow specifying a wildcard (any) origin and credentials at the same time. List the allowed origins instead of '*'.";

/// Whether a browser page of `origin` may use the hub: the hub's own origin (the request's
/// `Host`), or one of `allowed`. `null` (sandboxed frames, files) is never allowed.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let origin = origin.trim().to_ascii_lowercase();
    if origin == "null" {
        return false;
    }
    if allowed.contains(&origin) {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a == h.trim().to_ascii_lowercase())
}

/// Every hub request: refused (403) when a browser sends it from an origin not allowed, as
/// browsers do not apply CORS to WebSockets (nor to the simple POSTs of long polling); and
/// answered with `Cache-Control: no-store` unless it says otherwise (negotiate and long-poll
/// answers carry connection tokens).
async fn guard(
    allowed: Arc<[String]>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let ok = origin
            .to_str()
            .is_ok_and(|origin| origin_allowed(origin, host, &allowed));
        if !ok {
            tracing::debug!(origin = ?origin, path = %request.uri().path(), "request from an origin not allowed refused");
            return (
                axum::http::StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain")],
                "This origin is not allowed to use the hub.",
            )
                .into_response();
        }
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin =
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()));
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
}

/// A server that is serving.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    tls: Option<(crate::TlsFiles, axum_server::tls_rustls::RustlsConfig)>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    join: tokio::task::JoinHandle<io::Result<()>>,
    hubs: Vec<Arc<HubState>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}` (`https://` with TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Reads the TLS certificate and key files again and serves new connections with them;
    /// connections open now keep theirs. On an error the certificate in use stays. Without
    /// TLS, does nothing.
    pub fn reload_tls(&self) -> Result<(), crate::TlsError> {
        if let Some((files, config)) = &self.tls {
            config.reload_from_config(crate::tls::load(files)?);
        }
        Ok(())
    }

    /// The counters of the hub at `path`.
    pub fn counters(&self, path: &str) -> Option<Arc<Counters>> {
        self.hubs
            .iter()
            .find(|h| h.path == path)
            .map(|h| h.counters.clone())
    }

    /// Closes every connection with a Close that allows reconnecting, waits (up to 5 s) for
    /// them to finish, and stops listening.
    pub async fn shutdown(self) -> io::Result<()> {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish closing within 5 s");
        }
        match tokio::time::timeout(Duration::from_secs(5), self.join).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => Ok(()),
        }
    }
}
