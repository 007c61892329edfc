//! Subscriptions: live queries delivered to a C callback.

use std::ffi::{CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value as Json, json};

use super::db::{Actor, db_actor, parse_query, session_actor, triplite_db, triplite_session};
use super::{Failure, Outcome, guard, json_arg, put_handle, release, triplite_status};
use crate::live::{LiveResult, Subscription};
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
/// the call: `{"results": [...], "added": [...], "removed": [ids], "updated": [...]}`.
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
    /// Calls the function with JSON valid during the call; a panic stays on this side.
    pub(super) fn call(&self, json: &Json) {
        let text = CString::new(json.to_string()).expect("JSON has no NUL");
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
    on_result: triplite_result_callback,
    user_data: *mut c_void,
    destroy: triplite_destroy_callback,
    out_sub: *mut *mut triplite_subscription,
) -> Outcome {
    // SAFETY: forwarded contract.
    unsafe {
        subscribe_with(query_json, on_result, user_data, destroy, out_sub, |query, foreign| {
            let subscription = actor?.subscribe(&query, move |result| foreign.call(&live_result_json(&result)))?;
            Ok(Live::Database(subscription))
        })
    }
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
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { subscribe(db_actor(db), query_json, on_result, user_data, destroy, out_sub) })
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
    guard(out_err, || unsafe { subscribe(session_actor(session), query_json, on_result, user_data, destroy, out_sub) })
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

/// The JSON a subscription callback receives.
fn live_result_json(result: &LiveResult) -> Json {
    result_json(&result.results, &result.change)
}

/// `{"results", "added", "removed", "updated"}`.
pub(super) fn result_json(results: &[std::sync::Arc<Json>], change: &crate::live::ResultChange) -> Json {
    let list = |entities: &[std::sync::Arc<Json>]| Json::Array(entities.iter().map(|e| (**e).clone()).collect());
    json!({
        "results": list(results),
        "added": list(&change.added),
        "removed": change.removed,
        "updated": list(&change.updated),
    })
}
