//! The sync client: an offline-first local database that syncs with a server
//! (`crate::client`).

use std::ffi::{c_char, c_void};

use serde_json::{Value as Json, json};

use super::db::{apply_ops, parse_query};
use super::live::{
    Foreign, Live, subscribe_options, subscribe_with, triplite_destroy_callback, triplite_result_callback,
    triplite_subscription,
};
use super::{Failure, guard, handle, json_arg, options_arg, put_handle, put_json, release, text, triplite_status};
use crate::client::{Client, ClientOptions, Committed, FetchPolicy};
use crate::error::Error;

/// A sync client (`triplite_client_open`), released with `triplite_client_close`.
pub struct triplite_client {
    client: Client,
}

/// # Safety
/// `client` is NULL or a live `triplite_client`.
unsafe fn borrow<'a>(client: *const triplite_client) -> Result<&'a Client, Failure> {
    // SAFETY: forwarded contract.
    Ok(&unsafe { handle(client, "client") }?.client)
}

/// `{"<key>": output, "txId": id-or-null}`.
fn committed_json(key: &str, committed: Committed<Json>) -> Json {
    json!({key: committed.output, "txId": committed.tx_id})
}

/// Opens a client: a local database (`"path"`: a SQLite file, or `":memory:"`, the default)
/// with the app's `"schema"`, syncing with `"serverUrl"` (`http(s)://host[:port]`) as
/// `"token"`. With a token it connects at once unless `"autoConnect"` is false. `https://`
/// servers are trusted through Mozilla's authorities, or only those of `"caCertificates"`
/// (PEM) when given. The client runs two threads of its own: one for the socket, one for
/// callbacks.
///
/// # Safety
/// `options_json` NULL or NUL-terminated; `out_client` writable; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_open(
    options_json: *const c_char,
    out_client: *mut *mut triplite_client,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let options = ClientOptions::from_json(&unsafe { options_arg(options_json, "options_json") }?)?;
        let client = Client::open(options)?;
        unsafe { put_handle(out_client, triplite_client { client }, "out_client") }
    })
}

/// Closes a client (NULL is ignored): its connection ends, its threads stop; pending writes
/// stay in the outbox of a file database for the next open. Do not call it from one of the
/// client's own callbacks. Event `destroy` callbacks run once the client and its last
/// subscription are gone.
///
/// # Safety
/// `client` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_close(client: *mut triplite_client) {
    // SAFETY: forwarded contract.
    unsafe { release(client) }
}

/// Inserts a document locally and queues it for the server. With a token, a write the
/// schema's rules deny for its claims fails at once (`TRIPLITE_PERMISSION`). `out_json` (may
/// be NULL) receives `{"entity": {...}, "txId": "..."}`; events about the transaction carry
/// that `txId`.
///
/// # Safety
/// `client` is NULL or live; strings NULL or NUL-terminated; out-pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_insert(
    client: *const triplite_client,
    collection: *const c_char,
    doc_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        let collection = unsafe { text(collection, "collection") }?;
        let doc = unsafe { json_arg(doc_json, "doc_json") }?;
        let committed = client.insert(collection, doc)?;
        unsafe { put_json(out_json, &committed_json("entity", committed), true) }
    })
}

/// Patches entity `id` locally (as `triplite_db_update`) and queues it for the server.
///
/// # Safety
/// `client` is NULL or live; strings NULL or NUL-terminated; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_update(
    client: *const triplite_client,
    collection: *const c_char,
    id: *const c_char,
    patch_json: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        let (collection, id) = (unsafe { text(collection, "collection") }?, unsafe { text(id, "id") }?);
        client.update(collection, id, unsafe { json_arg(patch_json, "patch_json") }?)?;
        Ok(())
    })
}

/// Deletes entity `id` locally and queues the delete for the server.
///
/// # Safety
/// `client` is NULL or live; strings NULL or NUL-terminated; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_delete(
    client: *const triplite_client,
    collection: *const c_char,
    id: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        client.delete(unsafe { text(collection, "collection") }?, unsafe { text(id, "id") }?)?;
        Ok(())
    })
}

/// Several writes in one local transaction, queued as one server transaction. `ops_json` as
/// `triplite_db_transact`; `out_json` (may be NULL) receives `{"results": [...], "txId": ...}`.
///
/// # Safety
/// `client` is NULL or live; strings NULL or NUL-terminated; out-pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_transact(
    client: *const triplite_client,
    ops_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        let Json::Array(ops) = unsafe { json_arg(ops_json, "ops_json") }? else {
            return Err(Error::invalid_json("ops_json", "expected an array of operations").into());
        };
        let committed = client.transact(|tx| apply_ops(tx, &ops).map(Json::Array))?;
        unsafe { put_json(out_json, &committed_json("results", committed), true) }
    })
}

/// Runs a query by a fetch policy: `options_json` NULL or `{"policy": "local-first"
/// (default) | "local-only" | "remote-first" | "remote-only" | "local-and-remote",
/// "timeout": ms}`. Policies that wait for the server block the calling thread (at most ten
/// seconds; then the local data is read). `out_json` receives the results array.
///
/// # Safety
/// `client` is NULL or live; strings NULL or NUL-terminated; `out_json` writable; `out_err`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_fetch(
    client: *const triplite_client,
    query_json: *const c_char,
    options_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        let query = parse_query(unsafe { json_arg(query_json, "query_json") }?)?;
        let policy = FetchPolicy::from_json(&unsafe { options_arg(options_json, "options_json") }?)?;
        let results = client.fetch(&query, policy)?;
        unsafe { put_json(out_json, &Json::Array(results), false) }
    })
}

/// Subscribes to a query: `on_result` receives the local result at once, then again after
/// every change (local writes, the server's data), as `triplite_db_subscribe` does, with
/// `"fulfilled": true` once the server has answered (the last result is delivered again then,
/// if nothing newer is on its way), and `"queryId"`: the id it is registered under with the
/// server, which `query_fulfilled` and `query_failed` events name. The query is registered
/// with the server while the subscription lives; the same query subscribed twice shares it.
/// `options_json`: NULL, `{}`, or `{"deltas": true}`, which leaves `results` out of every
/// callback. Unlike a database's changes-only subscription, the client still compares whole
/// results: a callback may carry no change (an order change, or `fulfilled`), and its cost
/// grows with the result.
/// Free with `triplite_subscription_free`; `destroy` as `triplite_db_subscribe`.
///
/// # Safety
/// As `triplite_db_subscribe`, with a live `client`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_subscribe(
    client: *const triplite_client,
    query_json: *const c_char,
    options_json: *const c_char,
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        unsafe {
            subscribe_with(query_json, on_result, user_data, destroy, out_sub, |query, foreign| {
                let client = borrow(client)?;
                let options = subscribe_options(options_json)?;
                let query_id = crate::client::query_id(&query);
                let subscription = client.subscribe(&query, move |result| {
                    let mut frame = options.frame(&result.results, &result.change);
                    frame.fulfilled = Some(result.fulfilled);
                    frame.query_id = Some(&query_id);
                    foreign.call(&frame);
                })?;
                Ok(Live::Client(subscription))
            })
        }
    })
}

/// Replaces the token (NULL removes it) for the next connection; the open one keeps its own
/// (the Clerk guide's flow: disconnect, update the token, reset if there is none, else
/// connect). A token for another user first wipes what the previous one synced; their
/// unsent transactions are reported as `write_rejected` (`SessionChangedError`).
///
/// # Safety
/// `client` is NULL or live; `token` NULL or NUL-terminated; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_update_token(
    client: *const triplite_client,
    token: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        let token = if token.is_null() { None } else { Some(unsafe { text(token, "token") }?) };
        Ok(client.update_token(token)?)
    })
}

/// Connects, reconnecting with backoff until `triplite_client_disconnect` (or a close that
/// says not to retry, reported as a `session_error` event). Without a token or a server URL
/// it is `TRIPLITE_AUTH`.
///
/// # Safety
/// `client` is NULL or live; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_connect(
    client: *const triplite_client,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || Ok(unsafe { borrow(client) }?.connect()?))
}

/// Closes the connection; local reads and writes go on, writes wait in the outbox.
///
/// # Safety
/// `client` is NULL or live; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_disconnect(
    client: *const triplite_client,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY: forwarded contract.
        unsafe { borrow(client) }?.disconnect();
        Ok(())
    })
}

/// Sign-out: wipes the local data, the outbox (pending writes are dropped) and the sync
/// checkpoints, keeping the schema.
///
/// # Safety
/// `client` is NULL or live; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_reset(
    client: *const triplite_client,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || Ok(unsafe { borrow(client) }?.reset()?))
}

/// Triplit 1.x's `startSession`: ends the previous session's connection, takes `token`, and
/// connects if `connect`. (A refresh handler is a Rust-API option; bindings refresh with
/// `triplite_client_update_session_token`.)
///
/// # Safety
/// `client` is NULL or live; `token` NUL-terminated; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_start_session(
    client: *const triplite_client,
    token: *const c_char,
    connect: bool,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        Ok(client.start_session(unsafe { text(token, "token") }?, connect, None)?)
    })
}

/// Returns a fresh token for the session, or NULL for none (then the client stops using the
/// expiring token and asks again in a few seconds). The library copies the string at once: it
/// stays the caller's and need only live until the function is called again.
pub type triplite_token_callback = Option<unsafe extern "C" fn(user_data: *mut c_void) -> *const c_char>;

/// `triplite_client_start_session` with Triplit's refresh handler: `refresh` is called a
/// second before each token's `exp`, on the client's delivery thread, and its token replaces
/// the session's while the socket stays open (as `triplite_client_update_session_token`).
/// One exception to "never the caller's thread": when `token` has expired already, `refresh`
/// is called once before this returns, so the session starts with a live token. `destroy`
/// runs once when the handler is replaced, the session ends, or the client closes.
///
/// # Safety
/// `client` is NULL or live; `token` NUL-terminated; `refresh` and `destroy` NULL or
/// functions that may be called from any thread with `user_data`; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_start_session_with_refresh(
    client: *const triplite_client,
    token: *const c_char,
    connect: bool,
    refresh: triplite_token_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        let handler = Foreign::new(refresh, user_data, destroy, "refresh")?;
        // SAFETY (both blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        let token = unsafe { text(token, "token") }?;
        Ok(client.start_session(token, connect, Some(Box::new(move || handler.token())))?)
    })
}

/// Triplit 1.x's `endSession`: disconnects and forgets the token; local data stays.
///
/// # Safety
/// `client` is NULL or live; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_end_session(
    client: *const triplite_client,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || Ok(unsafe { borrow(client) }?.end_session()?))
}

/// Triplit 1.x's `updateSessionToken`: a new token for the open connection, kept open
/// (`POST /update-token`; blocks for that request). The roles must not change
/// (`TRIPLITE_AUTH`, `SessionRolesMismatchError`); no session is `NoActiveSessionError`.
///
/// # Safety
/// `client` is NULL or live; `token` NUL-terminated; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_update_session_token(
    client: *const triplite_client,
    token: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let client = unsafe { borrow(client) }?;
        Ok(client.update_session_token(unsafe { text(token, "token") }?)?)
    })
}

/// Calls `on_event` with each event as JSON, on the client's event thread, in order:
/// `{"type": "connection", "status": "OPEN"}` (`UNINITIALIZED`, `CONNECTING`, `OPEN`,
/// `CLOSING`, `CLOSED`), `{"type": "session_error", "reason": "TOKEN_EXPIRED", "message"}`,
/// `{"type": "write_acked", "txId"}`, `{"type": "write_rejected", "txId", "error": {"name",
/// "message", "status"}}`, `{"type": "query_fulfilled", "queryId"}`, `{"type":
/// "query_failed", "queryId", "error"}`. A callback may call the client, but not register
/// another event callback. `destroy` runs once the client is gone.
///
/// # Safety
/// `client` is NULL or live; `user_data` usable from another thread; `out_err` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_on_event(
    client: *const triplite_client,
    on_event: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        let foreign = Foreign::new(on_event, user_data, destroy, "on_event")?;
        // SAFETY: forwarded contract.
        let client = unsafe { borrow(client) }?;
        client.on_event(move |event| foreign.call(&event.to_json()));
        Ok(())
    })
}

/// `{"connection": "OPEN", "pendingTransactions": 0, "clientId": "..." | null, "lastError":
/// "..." | null}` (`lastError`: why the last attempt to connect failed or the last connection
/// was lost, until one opens).
///
/// # Safety
/// `client` is NULL or live; `out_json` writable; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_client_status(
    client: *const triplite_client,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let status = unsafe { borrow(client) }?.status();
        unsafe { put_json(out_json, &status.to_json(), false) }
    })
}
