//! The network layer of the sync server (feature `server`): WebSocket and HTTP on tokio/axum.
//! It only moves bytes between sockets and the sans-IO engine in `crate::sync`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Notify, watch};

use crate::sync::http::{self, Body};
use crate::sync::protocol::{CloseType, Outgoing, WireError, close_frames};
use crate::sync::{ConnectRequest, Connection, SyncServer};

/// The read buffer each WebSocket starts with.
const READ_BUFFER_BYTES: usize = 8 * 1024;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[derive(Clone)]
struct AppState {
    server: SyncServer,
    shutdown: watch::Receiver<bool>,
    /// Open WebSockets: shutdown waits for them to close (axum stops tracking a connection
    /// once it is upgraded).
    sockets: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one open WebSocket while alive.
struct OpenSocket(Arc<std::sync::atomic::AtomicUsize>);

impl OpenSocket {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OpenSocket(count.clone())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves `server` on `listener` until `shutdown` completes. On shutdown the server stops
/// accepting, closes every WebSocket (code 1001, so clients reconnect elsewhere) and returns;
/// every write it acknowledged is committed already.
pub async fn serve(
    server: SyncServer,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let sockets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let state = AppState { server, shutdown: stopping, sockets: sockets.clone() };
    let app = Router::new()
        .fallback(route)
        .layer(tower_http::cors::CorsLayer::very_permissive())
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    // Frames are small and often come in pairs (an ack, then the query's data): without
    // `TCP_NODELAY` the second waits for the client's delayed ACK, ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await?;
    // Each socket sends its close frame and leaves the engine; give them a moment.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while sockets.load(std::sync::atomic::Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Threads that run requests and frames (queries, commits): more could not run at once, as
/// reads have a few connections and writes one; requests beyond them wait their turn.
const BLOCKING_THREADS: usize = 32;

/// The runtime a server runs on: `workers` async workers (default: one per core) and a
/// bounded pool for the engine's blocking work, whose idle threads (and the memory they hold)
/// go after a few seconds.
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(3))
        .enable_all()
        .build()
}

/// A server running on its own thread (what the C ABI and tests start).
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl RunningServer {
    /// Binds `addr` (port 0: any free port) and serves on a background thread.
    pub fn start(server: SyncServer, addr: SocketAddr) -> std::io::Result<RunningServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = runtime(Some(2))?;
        let thread = std::thread::Builder::new().name("triplite-server".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve(server, listener, async move {
                    let _ = stopped.await;
                })
                .await
            })
        })?;
        Ok(RunningServer { addr, stop: Some(stop), thread: Some(thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

async fn route(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if parts.method == "GET" && parts.uri.path() == "/" && parts.headers.contains_key(header::UPGRADE) {
        let params = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|query| query.0)
            .unwrap_or_default();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => {
                let limit = state.server.limits().max_message_bytes;
                upgrade
                    .max_message_size(limit)
                    .max_frame_size(limit)
                    // tungstenite's default reserves 128 KiB per socket up front; frames grow
                    // the buffer as they need, so an idle connection costs little.
                    .read_buffer_size(READ_BUFFER_BYTES)
                    .on_upgrade(move |socket| connection(state, socket, params))
            }
            Err(rejection) => rejection.into_response(),
        };
    }
    let limit = state.server.limits().max_message_bytes;
    let declared: Option<usize> = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    // One byte over the limit is enough for the engine to answer 413.
    let bytes = match axum::body::to_bytes(body, limit.saturating_add(1)).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // Over the limit (Triplit's 413), or a body that ended short of its length.
            let too_large = declared.is_none_or(|length| length > limit);
            let (status, message) = if too_large {
                (413, format!("Body too large, max size is {} MB", limit / (1024 * 1024)))
            } else {
                (400, format!("could not read the request body: {error}"))
            };
            let error = WireError::new("TriplitError", message, status);
            return (StatusCode::from_u16(status).expect("a valid status"), axum::Json(error.to_json()))
                .into_response();
        }
    };
    if parts.uri.path() == "/healthcheck" {
        // Answered here, never queued behind requests waiting for the database.
        let request = http::Request { method: parts.method.as_str(), path: "/healthcheck", ..Default::default() };
        return respond(state.server.handle_http(&request));
    }
    let headers: &HeaderMap = &parts.headers;
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (authorization, content_type) = (text(header::AUTHORIZATION), text(header::CONTENT_TYPE));
    let (method, path, query) =
        (parts.method.to_string(), parts.uri.path().to_owned(), parts.uri.query().map(str::to_owned));
    // Queries and commits block: they run on the blocking pool, so one slow request never
    // holds up the runtime's workers (and with them every socket and `/healthcheck`).
    let server = state.server.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let request = http::Request {
            method: &method,
            path: &path,
            query: query.as_deref().unwrap_or(""),
            authorization: authorization.as_deref(),
            content_type: content_type.as_deref(),
            body: &bytes,
        };
        server.handle_http(&request)
    })
    .await;
    // A bug must not take the connection down without an answer (Triplit answers 500 too).
    let answer = answered.unwrap_or_else(|_| {
        let error = WireError::triplit("An unknown error occurred while handling the request");
        http::Response { status: 500, body: Body::Json(error.to_json()) }
    });
    respond(answer)
}

fn respond(answer: http::Response) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer.body {
        Body::Json(json) => {
            (status, [(header::CONTENT_TYPE, "application/json")], AxumBody::from(json.to_string())).into_response()
        }
        Body::Text(text) => (status, [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], text).into_response(),
    }
}

/// One WebSocket: frames in go to the engine; what the engine has for the client goes out
/// whenever it says so (an answer, or data from someone else's commit).
async fn connection(state: AppState, mut socket: WebSocket, params: HashMap<String, String>) {
    let _open = OpenSocket::new(&state.sockets);
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    let request = ConnectRequest { token: params.get("token").cloned(), schema_hash: params.get("schema").cloned() };
    let connection = match state.server.connect(&request, Arc::new(move || waker.notify_one())) {
        Ok(connection) => connection,
        Err(refusal) => {
            let _ = send_all(&mut socket, refusal).await;
            return;
        }
    };
    let mut shutdown = state.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            let close = CloseFrame { code: 1001, reason: "server shutting down".into() };
            let _ = socket.send(Message::Close(Some(close))).await;
            break;
        }
        // What is owed is taken here unless it needs a fresh checkpoint, which may wait for
        // the store: that goes to the blocking pool.
        let owed = match connection.try_drain(now_ms()) {
            Some(owed) => owed,
            None => {
                let engine = connection.clone();
                let owed = tokio::task::spawn_blocking(move || engine.drain(now_ms())).await;
                owed.unwrap_or_else(|_| close_frames(CloseType::InternalError, Some("internal error")))
            }
        };
        if !send_all(&mut socket, owed).await {
            break;
        }
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if !receive(&connection, text.as_str().to_owned(), &mut socket).await {
                        break;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if !receive(&connection, String::from_utf8_lossy(&bytes).into_owned(), &mut socket).await {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    // Completes the closing handshake: without it the client sees an abnormal
                    // close (1006) and reconnects.
                    // The socket queued the reply (the client's code and reason) as it read the
                    // close; it goes out with a flush.
                    let _ = tokio::time::timeout(SEND_TIMEOUT, futures_util::SinkExt::flush(&mut socket)).await;
                    break;
                }
                Some(Err(_)) | None => break,
            },
            _ = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    state.server.disconnect(&connection);
}

/// Hands a frame to the engine, on the blocking pool (a frame may run queries or commit). A
/// bug in it closes this connection with `INTERNAL_ERROR` (1011) and leaves every other
/// connection be; returns false then.
async fn receive(connection: &Arc<Connection>, frame: String, socket: &mut WebSocket) -> bool {
    let engine = connection.clone();
    let handled = tokio::task::spawn_blocking(move || engine.receive(&frame, now_ms())).await;
    if handled.is_err() {
        send_all(socket, close_frames(CloseType::InternalError, Some("internal error"))).await;
        return false;
    }
    true
}

/// How long one frame may wait for a client to take it: a client that stops reading is cut
/// off rather than holding its connection's task (and what the engine owes it) forever.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends frames; returns false once the socket is (or was just) closed, or the client has not
/// read for [`SEND_TIMEOUT`].
async fn send_all(socket: &mut WebSocket, frames: Vec<Outgoing>) -> bool {
    for outgoing in frames {
        let (message, last) = match outgoing {
            Outgoing::Text(text) => (Message::Text(text.into()), false),
            Outgoing::Close { code, reason } => {
                (Message::Close(Some(CloseFrame { code, reason: reason.into() })), true)
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
            Ok(Ok(())) if !last => {}
            _ => return false,
        }
    }
    true
}
