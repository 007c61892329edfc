//! A real `triplite serve` process and raw-protocol clients for it: what the crash, load and
//! fault tests (and the load bench) drive over loopback.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tungstenite::{Message, WebSocket};

/// How long any socket operation or HTTP request may take before the caller gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `triplite serve`; killed with SIGKILL (and reaped) when dropped, so a failing
/// assertion never leaves it behind.
pub struct ServeProcess {
    pub child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `serve` with `args` and `env` (`PORT=0`, `HOST=127.0.0.1` and `JWT_SECRET` are
    /// set) and waits until it listens: it logs its address once the database is open.
    ///
    /// `TRIPLITE_SERVE_WRAPPER` (e.g. `heaptrack` or `perf record -g --`) runs the server
    /// under a profiler; the figures read from `/proc` are then the wrapper's.
    pub fn start(args: &[&str], env: &[(&str, &Path)], jwt_secret: &str) -> ServeProcess {
        let wrapper = std::env::var("TRIPLITE_SERVE_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(env!("CARGO_BIN_EXE_triplite"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_triplite")),
        };
        command.arg("serve").args(args).env("PORT", "0").env("HOST", "127.0.0.1").env("JWT_SECRET", jwt_secret);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting triplite serve");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let lines = log.clone();
        // Reads stderr until the process is gone, so the pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Json>(&line)
                    && entry["message"] == "listening"
                    && let Some(addr) = entry["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = addr_tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut server = ServeProcess { child, port: 0, log };
        match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.port = addr.port(),
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                panic!("the server did not start (exit: {status:?}); its log:\n{}", server.log_text());
            }
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if std::env::var_os("TRIPLITE_SERVE_WRAPPER").is_some() {
            // A profiler writes its data when the server stops gracefully.
            let pid = self.child.id().to_string();
            let _ = Command::new("pkill").args(["-TERM", "-P", &pid]).status();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while self.child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client whose every request gives up after [`IO_TIMEOUT`], and that returns error
/// statuses as responses.
pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(IO_TIMEOUT)).http_status_as_error(false).build(),
    )
}

/// A WebSocket to the server with timeouts on the socket itself, so nothing waits on a dead
/// server; `None` if it cannot connect.
pub fn ws_connect(port: u16, token: &str) -> Option<WebSocket<TcpStream>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_nodelay(true).ok()?;
    let url = format!("ws://127.0.0.1:{port}/?sync-schema=false&token={token}");
    let (socket, _) = tungstenite::client(url, stream).ok()?;
    Some(socket)
}

/// The next text frame as JSON; `None` once the connection is gone (or timed out).
pub fn ws_next(socket: &mut WebSocket<TcpStream>) -> Option<Json> {
    loop {
        match socket.read().ok()? {
            Message::Text(text) => return serde_json::from_str(text.as_str()).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Sends `{type, payload}`; false if the connection is gone.
pub fn ws_send(socket: &mut WebSocket<TcpStream>, message_type: &str, payload: Json) -> bool {
    let frame = json!({"type": message_type, "payload": payload}).to_string();
    socket.send(Message::text(frame)).is_ok()
}

/// One collection's `CHANGES` payload (SuperJSON envelope) with these sets.
pub fn changes_payload(collection: &str, sets: Vec<(String, Json)>) -> Json {
    let sets: Vec<Json> = sets.into_iter().map(|(id, entity)| json!([id, entity])).collect();
    let meta = json!({format!("{collection}.sets"): ["map"], format!("{collection}.deletes"): ["set"]});
    json!({"changes": {"json": {collection: {"sets": sets, "deletes": []}}, "meta": {"values": meta, "v": 1}}})
}

/// A `/proc/<pid>/status` figure in MB (`VmRSS`, `RssAnon`, `RssFile`).
pub fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}
