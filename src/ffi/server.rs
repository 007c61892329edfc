//! The embedded sync server.

use std::ffi::c_char;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value as Json;

use super::db::triplite_db;
use super::{Failure, guard, handle, json_arg, put_handle, release, triplite_status};
use crate::error::Error;
use crate::net::RunningServer;
use crate::sync::{Limits, SyncServer};

/// A running sync server, stopped with `triplite_server_stop`.
pub struct triplite_server {
    _running: RunningServer,
    port: u16,
}

/// Serves `db` to Triplit clients (WebSocket and HTTP) on a background thread.
/// `options_json` (may be NULL): `{"host": "127.0.0.1", "port": 0, "max_body_mb": 100}` —
/// port 0 picks a free port (see `triplite_server_port`). A port in use is
/// `TRIPLITE_NETWORK`.
///
/// # Safety
/// `db` is NULL or live; `options_json` NULL or NUL-terminated; `out_server` writable;
/// `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_server_start(
    db: *const triplite_db,
    options_json: *const c_char,
    out_server: *mut *mut triplite_server,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let db = &unsafe { handle(db, "db") }?.db;
        let options =
            if options_json.is_null() { Json::Null } else { unsafe { json_arg(options_json, "options_json") }? };
        let bad = |message: String| Failure::from(Error::invalid_json("options_json", message));
        let mut host: IpAddr = [127, 0, 0, 1].into();
        let mut port = 0u16;
        let mut limits = Limits::default();
        if let Some(options) = options.as_object() {
            for (key, value) in options {
                match key.as_str() {
                    "host" => {
                        host = value
                            .as_str()
                            .and_then(|h| h.parse().ok())
                            .ok_or_else(|| bad(format!("`host` must be an IP address, not {value}")))?
                    }
                    "port" => {
                        port = value
                            .as_u64()
                            .and_then(|p| u16::try_from(p).ok())
                            .ok_or_else(|| bad(format!("`port` must be a port number, not {value}")))?
                    }
                    "max_body_mb" => {
                        let mb = value
                            .as_u64()
                            .ok_or_else(|| bad(format!("`max_body_mb` must be a number, not {value}")))?;
                        limits.max_message_bytes =
                            usize::try_from(mb).unwrap_or(usize::MAX / 2).saturating_mul(1024 * 1024);
                    }
                    other => return Err(bad(format!("unknown option `{other}`"))),
                }
            }
        } else if !options.is_null() {
            return Err(bad("expected an object".into()));
        }
        let server = SyncServer::new(db.clone(), limits);
        let running = RunningServer::start(server, SocketAddr::new(host, port))
            .map_err(|e| Failure::network(format!("cannot serve on {host}:{port}: {e}")))?;
        let port = running.port();
        unsafe { put_handle(out_server, triplite_server { _running: running, port }, "out_server") }
    })
}

/// The port the server listens on (0 for a NULL handle).
///
/// # Safety
/// `server` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_server_port(server: *const triplite_server) -> u16 {
    // SAFETY: forwarded contract.
    unsafe { handle(server, "server") }.map(|s| s.port).unwrap_or(0)
}

/// Stops the server: it closes its connections and waits for its thread (NULL is ignored).
/// Every write it acknowledged is committed.
///
/// # Safety
/// `server` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_server_stop(server: *mut triplite_server) {
    // SAFETY: forwarded contract.
    unsafe { release(server) }
}
