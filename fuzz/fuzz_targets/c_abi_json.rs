//! The C ABI's string inputs, passed as a C caller passes them: NUL-terminated bytes that may
//! be NULL, not UTF-8, or not JSON.
//!
//! The input is one call per line; fields are separated by tabs (JSON never needs a raw tab or
//! newline), the first names the export and the others are its string arguments, in order. A
//! missing argument is NULL; an argument holding a NUL byte ends there, as C would read it.
//!
//! ```text
//! insert <collection> <doc_json>         triplite_db_insert         (s_insert: the session's)
//! update <collection> <id> <patch_json>  triplite_db_update         (s_update)
//! delete <collection> <id>               triplite_db_delete         (s_delete)
//! fetch <query_json>                     triplite_db_fetch          (s_fetch)
//! fetch_by_id <collection> <id>          triplite_db_fetch_by_id    (s_fetch_by_id)
//! transact <ops_json>                    triplite_db_transact
//! schema <schema_json>                   triplite_db_set_schema
//! claims <claims_json>                   triplite_db_session_from_claims: the session s_ calls use
//! token <token>                          triplite_db_session: likewise
//! open <options_json>                    triplite_db_open(NULL, …): replaces the database if it opens
//! mint <jwt_secret> <kind>               triplite_token_mint_dev
//! ```
//!
//! Checked, for every call: the status is a documented `triplite_status` and never
//! `TRIPLITE_PANIC`; a failure comes with a UTF-8 message in `out_err` and no result, success
//! with no message; a NULL or non-UTF-8 string argument is `TRIPLITE_MISUSE` and a NULL handle
//! never succeeds; results are JSON of the documented shape. Every string out is freed with
//! `triplite_string_free` and every handle released, so LeakSanitizer sees any leak.
#![no_main]

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value as Json, json};

// The exports live in a private module of `triplite::ffi`, so they are declared here as a C
// caller sees them (include/triplite.h). The status comes back as a plain `c_int`: a value
// outside the enum must be reported, not be undefined behaviour.
use triplite as _; // links the library that defines them

/// `triplite_db` (opaque).
#[repr(C)]
struct Db {
    _opaque: [u8; 0],
}

/// `triplite_session` (opaque).
#[repr(C)]
struct Session {
    _opaque: [u8; 0],
}

type Text = *const c_char;
type Out = *mut *mut c_char;

unsafe extern "C" {
    fn triplite_db_open(path: Text, options_json: Text, out_db: *mut *mut Db, out_err: Out) -> c_int;
    fn triplite_db_close(db: *mut Db);
    fn triplite_db_set_schema(db: *const Db, schema_json: Text, out_change_json: Out, out_err: Out) -> c_int;
    fn triplite_db_insert(db: *const Db, collection: Text, doc_json: Text, out_json: Out, out_err: Out) -> c_int;
    fn triplite_db_update(db: *const Db, collection: Text, id: Text, patch_json: Text, out_err: Out) -> c_int;
    fn triplite_db_delete(db: *const Db, collection: Text, id: Text, out_err: Out) -> c_int;
    fn triplite_db_transact(db: *const Db, ops_json: Text, out_json: Out, out_err: Out) -> c_int;
    fn triplite_db_fetch(db: *const Db, query_json: Text, out_json: Out, out_err: Out) -> c_int;
    fn triplite_db_fetch_by_id(db: *const Db, collection: Text, id: Text, out_json: Out, out_err: Out) -> c_int;
    fn triplite_db_session(db: *const Db, token: Text, out_session: *mut *mut Session, out_err: Out) -> c_int;
    fn triplite_db_session_from_claims(db: *const Db, claims: Text, out: *mut *mut Session, out_err: Out) -> c_int;
    fn triplite_session_free(session: *mut Session);
    fn triplite_session_insert(s: *const Session, collection: Text, doc: Text, out_json: Out, out_err: Out) -> c_int;
    fn triplite_session_update(s: *const Session, collection: Text, id: Text, patch: Text, out_err: Out) -> c_int;
    fn triplite_session_delete(s: *const Session, collection: Text, id: Text, out_err: Out) -> c_int;
    fn triplite_session_fetch(s: *const Session, query_json: Text, out_json: Out, out_err: Out) -> c_int;
    fn triplite_session_fetch_by_id(s: *const Session, collection: Text, id: Text, out: Out, out_err: Out) -> c_int;
    fn triplite_token_mint_dev(jwt_secret: Text, kind: Text, out_token: Out, out_err: Out) -> c_int;
    fn triplite_string_free(text: *mut c_char);
}

/// The shapes of the exports that take a handle `H` (database or session), by the strings they
/// take and whether they write a result; `out_err` is always last.
enum Export<H> {
    OneIn(unsafe extern "C" fn(*const H, Text, Out, Out) -> c_int),
    TwoIn(unsafe extern "C" fn(*const H, Text, Text, Out, Out) -> c_int),
    TwoInNoResult(unsafe extern "C" fn(*const H, Text, Text, Out) -> c_int),
    ThreeInNoResult(unsafe extern "C" fn(*const H, Text, Text, Text, Out) -> c_int),
}

impl<H> Export<H> {
    /// How many string arguments it takes.
    fn arity(&self) -> usize {
        match self {
            Export::OneIn(_) => 1,
            Export::TwoIn(_) | Export::TwoInNoResult(_) => 2,
            Export::ThreeInNoResult(_) => 3,
        }
    }
}

// The documented statuses (include/triplite.h).
const OK: c_int = 0;
const MISUSE: c_int = 1;
const PANIC: c_int = 11;
const LAST_STATUS: c_int = 11;

fn options() -> CString {
    let own = json!({"filter": [["owner", "=", "$role.userId"]]});
    let empty_set = json!({"func": "Set.empty", "args": null});
    let schema = json!({
        "roles": {"user": {"match": {"sub": "$userId"}}},
        "collections": {"todos": {
            "schema": {"type": "record", "properties": {
                "id": {"type": "string", "config": {"default": {"func": "nanoid", "args": null}}},
                "text": {"type": "string"},
                "owner": {"type": "string"},
                "done": {"type": "boolean", "config": {"default": false}},
                "due": {"type": "date", "config": {"optional": true}},
                "tags": {"type": "set", "items": {"type": "string"}, "config": {"default": empty_set}},
                "details": {"type": "record", "config": {"optional": true}, "properties": {
                    "priority": {"type": "number", "config": {"optional": true}},
                    "note": {"type": "string", "config": {"nullable": true}}}},
                "meta": {"type": "json", "config": {"optional": true}}}},
            "permissions": {"user": {"read": own, "insert": own, "update": own, "postUpdate": own, "delete": own}}
        }}
    });
    CString::new(json!({"schema": schema, "jwt_secret": "fuzz-secret"}).to_string()).expect("no NUL in JSON")
}

/// One string argument as a C caller passes it.
struct Arg {
    /// `None`: NULL.
    text: Option<CString>,
    utf8: bool,
}

impl Arg {
    const NULL: Arg = Arg { text: None, utf8: true };

    fn new(field: &[u8]) -> Arg {
        let bytes = &field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())];
        let utf8 = std::str::from_utf8(bytes).is_ok();
        Arg { text: Some(CString::new(bytes).expect("cut at the first NUL")), utf8 }
    }

    fn ptr(&self) -> Text {
        self.text.as_ref().map_or(ptr::null(), |text| text.as_ptr())
    }

    /// What the ABI must refuse as misuse: NULL, or not UTF-8.
    fn misused(&self) -> bool {
        self.text.is_none() || !self.utf8
    }

    fn json(&self) -> Option<Json> {
        serde_json::from_slice(self.text.as_ref()?.as_bytes()).ok()
    }
}

/// Takes a string the library returned, and frees it.
fn take_string(text: *mut c_char, what: &str) -> String {
    // SAFETY: `text` is non-NULL (checked by the callers) and came from the library, which
    // returns NUL-terminated strings that stay valid until freed.
    let owned = unsafe { CStr::from_ptr(text) }.to_str().map(str::to_owned);
    // SAFETY: a string the library returned, freed once, here, and not used afterwards.
    unsafe { triplite_string_free(text) };
    owned.unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"))
}

/// Checks a call's status and error message against the ABI's conventions (`misused`: it was
/// given a NULL or non-UTF-8 string), frees them, and returns the result string it wrote.
fn finish(name: &str, status: c_int, out: *mut c_char, err: *mut c_char, misused: bool) -> Option<String> {
    assert!((OK..=LAST_STATUS).contains(&status), "{name} returned {status}, which is no triplite_status");
    let message = (!err.is_null()).then(|| take_string(err, "out_err"));
    let result = (!out.is_null()).then(|| take_string(out, "the result"));
    assert_ne!(status, PANIC, "{name} panicked: {message:?}");
    if status == OK {
        assert!(message.is_none(), "{name} succeeded with an error message: {message:?}");
    } else {
        let message = message.unwrap_or_else(|| panic!("{name} failed ({status}) without a message in out_err"));
        assert!(!message.is_empty(), "{name} failed ({status}) with an empty message");
        assert!(result.is_none(), "{name} failed ({status}: {message}) but wrote a result: {result:?}");
    }
    if misused {
        assert_eq!(status, MISUSE, "{name} took a NULL or non-UTF-8 string without TRIPLITE_MISUSE");
    }
    result.filter(|_| status == OK)
}

/// Calls an export that takes a handle, and checks the call and its result.
fn call<H>(name: &str, export: Export<H>, handle: *const H, args: &[Arg]) {
    let arg = |i: usize| args.get(i).map_or(ptr::null(), Arg::ptr);
    let misused = (0..export.arity()).any(|i| args.get(i).is_none_or(Arg::misused));
    let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: `handle` is NULL or a live handle of the export's type (`Handles` owns it); the
    // strings are NULL or NUL-terminated and outlive the call (`args` holds them); the
    // out-pointers point to writable locals.
    let status = unsafe {
        match export {
            Export::OneIn(f) => f(handle, arg(0), &mut out, &mut err),
            Export::TwoIn(f) => f(handle, arg(0), arg(1), &mut out, &mut err),
            Export::TwoInNoResult(f) => f(handle, arg(0), arg(1), &mut err),
            Export::ThreeInNoResult(f) => f(handle, arg(0), arg(1), arg(2), &mut err),
        }
    };
    let result = finish(name, status, out, err, misused);
    if handle.is_null() {
        assert_ne!(status, OK, "{name} succeeded with a NULL handle");
    }
    if status == OK {
        check_result(name, result.as_deref(), args);
    }
}

/// The handles a sequence of calls works on.
struct Handles {
    db: *mut Db,
    session: *mut Session,
}

impl Handles {
    fn open(options: &Arg) -> Option<*mut Db> {
        let (mut db, mut err) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: a NULL path (in memory), a NULL or NUL-terminated options string that outlives
        // the call, and writable out-pointers.
        let status = unsafe { triplite_db_open(ptr::null(), options.ptr(), &mut db, &mut err) };
        // A NULL options string is allowed (no options): only non-UTF-8 is misuse.
        finish("triplite_db_open", status, ptr::null_mut(), err, options.text.is_some() && !options.utf8);
        assert_eq!(status == OK, !db.is_null(), "triplite_db_open's status and handle disagree");
        (status == OK).then_some(db)
    }

    /// A new session from `triplite_db_session` or `_from_claims`; replaces the current one.
    fn start_session(&mut self, from_claims: bool, arg: &Arg) {
        let (name, export): (&str, unsafe extern "C" fn(*const Db, Text, *mut *mut Session, Out) -> c_int) =
            if from_claims {
                ("triplite_db_session_from_claims", triplite_db_session_from_claims)
            } else {
                ("triplite_db_session", triplite_db_session)
            };
        let (mut session, mut err) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: a live database handle, a NULL or NUL-terminated string that outlives the
        // call, and writable out-pointers.
        let status = unsafe { export(self.db, arg.ptr(), &mut session, &mut err) };
        finish(name, status, ptr::null_mut(), err, arg.misused());
        assert_eq!(status == OK, !session.is_null(), "{name}'s status and handle disagree");
        if status == OK {
            // SAFETY: the previous session (or NULL), released once and replaced.
            unsafe { triplite_session_free(self.session) };
            self.session = session;
        }
    }

    fn mint(args: &[Arg]) {
        let arg = |i: usize| args.get(i).map_or(ptr::null(), Arg::ptr);
        let misused = (0..2).any(|i| args.get(i).is_none_or(Arg::misused));
        let (mut token, mut err) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: NULL or NUL-terminated strings that outlive the call, writable out-pointers.
        let status = unsafe { triplite_token_mint_dev(arg(0), arg(1), &mut token, &mut err) };
        if let Some(token) = finish("triplite_token_mint_dev", status, token, err, misused) {
            assert_eq!(token.split('.').count(), 3, "triplite_token_mint_dev returned no JWT: {token}");
        } else {
            assert_ne!(status, OK, "triplite_token_mint_dev succeeded without a token");
        }
    }

    /// Runs one line's call.
    fn run(&mut self, name: &[u8], args: &[Arg]) {
        let (db, session) = (self.db.cast_const(), self.session.cast_const());
        match name {
            b"insert" => call("triplite_db_insert", Export::TwoIn(triplite_db_insert), db, args),
            b"update" => call("triplite_db_update", Export::ThreeInNoResult(triplite_db_update), db, args),
            b"delete" => call("triplite_db_delete", Export::TwoInNoResult(triplite_db_delete), db, args),
            b"fetch" => call("triplite_db_fetch", Export::OneIn(triplite_db_fetch), db, args),
            b"fetch_by_id" => call("triplite_db_fetch_by_id", Export::TwoIn(triplite_db_fetch_by_id), db, args),
            b"transact" => call("triplite_db_transact", Export::OneIn(triplite_db_transact), db, args),
            b"schema" => call("triplite_db_set_schema", Export::OneIn(triplite_db_set_schema), db, args),
            b"s_insert" => call("triplite_session_insert", Export::TwoIn(triplite_session_insert), session, args),
            b"s_update" => {
                call("triplite_session_update", Export::ThreeInNoResult(triplite_session_update), session, args)
            }
            b"s_delete" => {
                call("triplite_session_delete", Export::TwoInNoResult(triplite_session_delete), session, args)
            }
            b"s_fetch" => call("triplite_session_fetch", Export::OneIn(triplite_session_fetch), session, args),
            b"s_fetch_by_id" => {
                call("triplite_session_fetch_by_id", Export::TwoIn(triplite_session_fetch_by_id), session, args)
            }
            b"claims" | b"token" => self.start_session(name == b"claims", args.first().unwrap_or(&Arg::NULL)),
            b"mint" => Self::mint(args),
            b"open" => {
                if let Some(db) = Self::open(args.first().unwrap_or(&Arg::NULL)) {
                    // SAFETY: the previous database, released once and replaced; sessions made
                    // from it stay usable (the header says so).
                    unsafe { triplite_db_close(self.db) };
                    self.db = db;
                }
            }
            _ => {}
        }
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: handles this sequence owns (or NULL), each released once.
        unsafe {
            triplite_session_free(self.session);
            triplite_db_close(self.db);
        }
    }
}

/// A successful call's result has the documented shape.
fn check_result(export: &str, result: Option<&str>, args: &[Arg]) {
    if export.contains("fetch") {
        assert!(result.is_some(), "{export} succeeded without writing out_json");
    }
    let result: Json = match result {
        None => Json::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("{export}: not JSON ({e}): {text}")),
    };
    match export {
        "triplite_db_insert" | "triplite_session_insert" => {
            assert!(result["id"].is_string(), "{export} returned no entity with an id: {result}");
        }
        "triplite_db_fetch" | "triplite_session_fetch" => assert!(result.is_array(), "{export}: {result}"),
        "triplite_db_fetch_by_id" | "triplite_session_fetch_by_id" => {
            assert!(result.is_object() || result.is_null(), "{export}: {result}");
        }
        "triplite_db_transact" => {
            let ops = args[0].json().and_then(|ops| ops.as_array().map(Vec::len));
            assert_eq!(result.as_array().map(Vec::len), ops, "{export}: one result per operation: {result}");
        }
        "triplite_db_set_schema" => assert!(result.is_object(), "{export}: {result}"),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(db) = Handles::open(&Arg { text: Some(options()), utf8: true }) else { panic!("the fuzz options open") };
    let mut handles = Handles { db, session: ptr::null_mut() };
    for line in data.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b'\t');
        let name = fields.next().unwrap_or_default();
        let args: Vec<Arg> = fields.map(Arg::new).collect();
        handles.run(name, &args);
    }
});
