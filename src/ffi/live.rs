//! Subscriptions: live queries delivered to a C callback.

use std::ffi::{CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;

use super::db::{Actor, db_actor, parse_query, session_actor, triplite_db, triplite_session};
use super::{Failure, Outcome, guard, json_arg, options_arg, put_handle, release, triplite_status};
use crate::live::Subscription;
use crate::query::Query;

/// A live query (of a database, a session or a client), released with
/// `triplite_subscription_free`.
pub struct triplite_subscription {
    _subscription: Live,
}

/// What a subscription handle keeps alive.
pub(super) enum Live {
    Database(#[allow(dead_code)] Subscription),
    #[cfg(feature = "client")]
    Client(#[allow(dead_code)] crate::client::ClientSubscription),
}

impl triplite_subscription {
    pub(super) fn new(live: Live) -> Self {
        triplite_subscription { _subscription: live }
    }
}

/// Called with each result: `user_data` as given, and the result as JSON, valid only during
/// the call: `{"results": [...], "added": [...], "removed": [ids], "updated": [...]}`
/// (without `"results"` for a subscription made with `{"deltas": true}`).
pub type triplite_result_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, result_json: *const c_char)>;

/// Called once with `user_data` when no callback will be made any more.
pub type triplite_destroy_callback = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// The caller's (function, user data, destructor) triple; `F` is the function's type.
pub(super) struct Foreign<F = unsafe extern "C" fn(*mut c_void, *const c_char)> {
    function: F,
    data: UserData,
}

/// The caller's user data, and the destructor that runs once when no call will be made.
struct UserData {
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
}

impl<F: Copy> Foreign<F> {
    /// Takes ownership of a triple: `destroy` runs once, even when `function` is NULL (a
    /// misuse, reported).
    pub(super) fn new(
        function: Option<F>,
        user_data: *mut c_void,
        destroy: triplite_destroy_callback,
        name: &str,
    ) -> Result<Foreign<F>, Failure> {
        let data = UserData { user_data, destroy };
        match function {
            Some(function) => Ok(Foreign { function, data }),
            None => {
                drop(data);
                Err(Failure::misuse(format!("`{name}` is NULL")))
            }
        }
    }
}

impl Foreign {
    /// Calls the function with `value` as JSON, valid during the call; a panic stays on this
    /// side.
    pub(super) fn call(&self, value: &impl Serialize) {
        let json = serde_json::to_string(value).expect("results always serialize");
        let text = CString::new(json).expect("JSON has no NUL");
        // SAFETY: the caller's function with its own user data and a string valid for the call.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { (self.function)(self.data.user_data, text.as_ptr()) }));
    }
}

/// A token refresh handler's function (see `triplite_client_start_session_with_refresh`).
#[cfg(feature = "client")]
pub(super) type TokenFunction = unsafe extern "C" fn(*mut c_void) -> *const c_char;

#[cfg(feature = "client")]
impl Foreign<TokenFunction> {
    /// Asks the function for a token, copied at once (the string stays the caller's); NULL,
    /// text that is not UTF-8, or a panic is no token.
    pub(super) fn token(&self) -> Option<String> {
        // SAFETY: the caller's function with its own user data; what it returns is NULL or a
        // NUL-terminated string valid until its next call, as the header requires.
        catch_unwind(AssertUnwindSafe(|| unsafe {
            let token = (self.function)(self.data.user_data);
            (!token.is_null()).then(|| std::ffi::CStr::from_ptr(token).to_str().ok().map(str::to_owned)).flatten()
        }))
        .ok()
        .flatten()
    }
}

// SAFETY: the header requires user data that may be used from the delivery thread.
unsafe impl<F: Send> Send for Foreign<F> {}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(destroy) = self.destroy {
            // SAFETY: the caller's destructor, called once with its own user data.
            unsafe { destroy(self.user_data) };
        }
    }
}

/// # Safety
/// As the exports that call it.
unsafe fn subscribe(
    actor: Result<Actor, Failure>,
    query_json: *const c_char,
    options: Result<ResultOptions, Failure>,
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
) -> Outcome {
    // SAFETY: forwarded contract.
    unsafe {
        subscribe_with(query_json, on_result, user_data, destroy, out_sub, |query, foreign| {
            let (options, actor) = (options?, actor?);
            // Changes only: the database tracks what each commit changed instead of comparing
            // whole results.
            let subscription = if options.deltas {
                actor.subscribe_changes(&query, move |change| foreign.call(&options.frame(&[], &change)))?
            } else {
                actor.subscribe(&query, move |result| foreign.call(&options.frame(&result.results, &result.change)))?
            };
            Ok(Live::Database(subscription))
        })
    }
}

/// What a subscription's callbacks carry (`options_json` of the subscribe calls).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ResultOptions {
    /// `{"deltas": true}`: only `added`, `removed` and `updated`, never the whole `results`
    /// (the first callback's `added` is the whole first result). A caller that keeps its own
    /// copy then pays per callback for what changed, not for the size of the result.
    deltas: bool,
}

impl ResultOptions {
    /// Reads `options_json` (an object, as `options_arg` reads it: `{}` for the defaults).
    fn from_json(options: &Json) -> Result<Self, Failure> {
        let invalid = |message: String| Failure::from(crate::Error::invalid_json("options_json", message));
        if let Some(key) = options.as_object().into_iter().flat_map(|o| o.keys()).find(|key| *key != "deltas") {
            return Err(invalid(format!("unknown option `{key}`")));
        }
        match options.get("deltas") {
            None | Some(Json::Bool(false)) => Ok(Self { deltas: false }),
            Some(Json::Bool(true)) => Ok(Self { deltas: true }),
            Some(other) => Err(invalid(format!("`deltas` must be a boolean, found {other}"))),
        }
    }

    /// One callback's JSON, serialized straight from the shared entities.
    pub(super) fn frame<'a>(&self, results: &'a [Arc<Json>], change: &'a crate::live::ResultChange) -> ResultFrame<'a> {
        ResultFrame {
            results: (!self.deltas).then_some(results),
            added: &change.added,
            removed: &change.removed,
            updated: &change.updated,
            fulfilled: None,
            query_id: None,
        }
    }
}

/// `{"results", "added", "removed", "updated"}` (and a client's `"fulfilled"`, `"queryId"`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResultFrame<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<&'a [Arc<Json>]>,
    added: &'a [Arc<Json>],
    removed: &'a [String],
    updated: &'a [Arc<Json>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfilled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_id: Option<&'a str>,
}

/// What every subscribe export shares: it takes the caller's (function, user data,
/// destructor) triple — `destroy` runs once whatever happens — checks `out_sub`, parses the
/// query, and lets `start` subscribe.
///
/// # Safety
/// As the exports that call it.
pub(super) unsafe fn subscribe_with(
    query_json: *const c_char,
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
    start: impl FnOnce(Query, Foreign) -> Result<Live, Failure>,
) -> Outcome {
    let foreign = Foreign::new(on_result, user_data, destroy, "on_result")?;
    if out_sub.is_null() {
        return Err(Failure::misuse("`out_sub` is NULL"));
    }
    // SAFETY (all blocks): forwarded contract.
    let query = parse_query(unsafe { json_arg(query_json, "query_json") }?)?;
    let live = start(query, foreign)?;
    unsafe { put_handle(out_sub, triplite_subscription::new(live), "out_sub") }
}

/// Subscribes to a query: `on_result` receives its result, then a new one after commits that
/// change it. Callbacks run one at a time on the database's delivery thread (never the
/// caller's), in commit order, and never block writers. Results merge: each subscription has
/// at most one result waiting, the latest, and a newer one replaces it until its callback
/// starts. So the first callback may already include writes committed just after subscribing
/// (its `added` lists them with the rest), quick commits may arrive as one result,
/// and the last callback always shows the state after the last commit that changed the
/// result; each one carries the whole result and the net change since the previous callback.
/// A callback may call any function of this library, including
/// writes and `triplite_subscription_free` of its own subscription. `destroy` (may be NULL)
/// is called once with `user_data` after the last callback — also when subscribing fails: by
/// `triplite_subscription_free` itself, or, when a callback frees its own subscription, on the
/// delivery thread once that callback has returned.
///
/// # Safety
/// `db` is NULL or live; `query_json` NULL or NUL-terminated; `user_data` usable from another
/// thread; `out_sub` writable; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_subscribe(
    db: *const triplite_db,
    query_json: *const c_char,
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract; no options are the defaults.
    unsafe {
        triplite_db_subscribe_with_options(
            db,
            query_json,
            std::ptr::null(),
            on_result,
            user_data,
            destroy,
            out_sub,
            out_err,
        )
    }
}

/// `triplite_db_subscribe` with `options_json` (NULL or `{}` for the defaults): `{"deltas":
/// true}` leaves `results` out of every callback — only `added`, `removed` and `updated`, the
/// first callback's `added` being the whole first result, later ones coming only when
/// something changed — for a caller that keeps its own copy: a commit then costs what it
/// changed, not the size of the result (when the result updates in place, as most do). Entities come in the order their rows changed; a
/// caller that shows the query's order places them itself.
///
/// # Safety
/// As `triplite_db_subscribe`; `options_json` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_subscribe_with_options(
    db: *const triplite_db,
    query_json: *const c_char,
    options_json: *const c_char,
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe {
        let options = subscribe_options(options_json);
        subscribe(db_actor(db), query_json, options, on_result, user_data, destroy, out_sub)
    })
}

/// `triplite_db_subscribe` through the session's read rules: an entity that stops being
/// readable leaves the results.
///
/// # Safety
/// As `triplite_db_subscribe`, with a live `session`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_subscribe(
    session: *const triplite_session,
    query_json: *const c_char,
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    unsafe {
        triplite_session_subscribe_with_options(
            session,
            query_json,
            std::ptr::null(),
            on_result,
            user_data,
            destroy,
            out_sub,
            out_err,
        )
    }
}

/// `triplite_session_subscribe` with `options_json`, as `triplite_db_subscribe_with_options`.
///
/// # Safety
/// As `triplite_session_subscribe`; `options_json` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_subscribe_with_options(
    session: *const triplite_session,
    query_json: *const c_char,
    options_json: *const c_char,
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe {
        let options = subscribe_options(options_json);
        subscribe(session_actor(session), query_json, options, on_result, user_data, destroy, out_sub)
    })
}

/// A subscribe call's `options_json`, NULL for the defaults.
///
/// # Safety
/// `options_json` NULL or NUL-terminated.
pub(super) unsafe fn subscribe_options(options_json: *const c_char) -> Result<ResultOptions, Failure> {
    // SAFETY: forwarded contract.
    ResultOptions::from_json(&unsafe { options_arg(options_json, "options_json") }?)
}

/// Ends a subscription (NULL is ignored). No callback starts after this returns: called from
/// another thread, it waits for a callback under way (so do not call it while holding
/// something that callback waits for); `destroy` follows the last callback.
///
/// # Safety
/// `sub` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_subscription_free(sub: *mut triplite_subscription) {
    // SAFETY: forwarded contract.
    unsafe { release(sub) }
}
