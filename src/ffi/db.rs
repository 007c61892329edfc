//! The database and session handles: open, schema, writes, reads.

use std::ffi::c_char;

use serde_json::{Map, Value as Json};

use super::{Failure, Outcome, guard, handle, json_arg, put_handle, put_json, release, text, triplite_status};
use crate::db::{Database, Session, Transaction};
use crate::error::{Error, Result};
use crate::live::{LiveResult, ResultChange, Subscription};
use crate::query::Query;
use crate::schema::Schema;

/// An open database (`triplite_db_open`), released with `triplite_db_close`.
pub struct triplite_db {
    pub(super) db: Database,
}

/// The database seen through one token, released with `triplite_session_free`.
pub struct triplite_session {
    session: Session,
}

/// Who acts: the database itself, or a session under its rules. The exports of both share
/// every body through this.
pub(super) enum Actor<'a> {
    Db(&'a Database),
    Session(&'a Session),
}

impl Actor<'_> {
    fn insert(&self, collection: &str, doc: Json) -> Result<Json> {
        match self {
            Actor::Db(db) => db.insert(collection, doc),
            Actor::Session(session) => session.insert(collection, doc),
        }
    }

    fn update(&self, collection: &str, id: &str, patch: Json) -> Result<()> {
        match self {
            Actor::Db(db) => db.update(collection, id, patch),
            Actor::Session(session) => session.update(collection, id, patch),
        }
    }

    fn delete(&self, collection: &str, id: &str) -> Result<()> {
        match self {
            Actor::Db(db) => db.delete(collection, id),
            Actor::Session(session) => session.delete(collection, id),
        }
    }

    fn fetch(&self, query: &Query) -> Result<Vec<Json>> {
        match self {
            Actor::Db(db) => db.fetch(query),
            Actor::Session(session) => session.fetch(query),
        }
    }

    fn fetch_by_id(&self, collection: &str, id: &str) -> Result<Option<Json>> {
        match self {
            Actor::Db(db) => db.fetch_by_id(collection, id),
            Actor::Session(session) => session.fetch_by_id(collection, id),
        }
    }

    pub(super) fn subscribe(
        &self,
        query: &Query,
        callback: impl FnMut(LiveResult) + Send + 'static,
    ) -> Result<Subscription> {
        match self {
            Actor::Db(db) => db.subscribe_with(query, callback),
            Actor::Session(session) => session.subscribe_with(query, callback),
        }
    }

    pub(super) fn subscribe_changes(
        &self,
        query: &Query,
        callback: impl FnMut(ResultChange) + Send + 'static,
    ) -> Result<Subscription> {
        match self {
            Actor::Db(db) => db.subscribe_changes(query, callback),
            Actor::Session(session) => session.subscribe_changes(query, callback),
        }
    }
}

/// # Safety
/// `db` is NULL or a live `triplite_db`.
pub(super) unsafe fn db_actor<'a>(db: *const triplite_db) -> std::result::Result<Actor<'a>, Failure> {
    // SAFETY: forwarded contract.
    Ok(Actor::Db(&unsafe { handle(db, "db") }?.db))
}

/// # Safety
/// `session` is NULL or a live `triplite_session`.
pub(super) unsafe fn session_actor<'a>(session: *const triplite_session) -> std::result::Result<Actor<'a>, Failure> {
    // SAFETY: forwarded contract.
    Ok(Actor::Session(&unsafe { handle(session, "session") }?.session))
}

pub(super) fn parse_query(json: Json) -> std::result::Result<Query, Failure> {
    Ok(Query::from_json(&json)?)
}

/// Opens a database. `path` NULL or `":memory:"`: in memory; otherwise a SQLite file, created
/// if needed. `options_json` (may be NULL): `{"schema": {...}, "client_id": "...",
/// "jwt_secret": "...", "external_jwt_secret": "...", "claims_path": "..."}`, all optional.
///
/// # Safety
/// Strings are NULL or NUL-terminated; `out_db` points to writable storage; `out_err` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_open(
    path: *const c_char,
    options_json: *const c_char,
    out_db: *mut *mut triplite_db,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let path = if path.is_null() { None } else { Some(unsafe { text(path, "path") }?) };
        let options = if options_json.is_null() {
            Map::new()
        } else {
            match unsafe { json_arg(options_json, "options_json") }? {
                Json::Object(map) => map,
                other => {
                    return Err(
                        Error::invalid_json("options_json", format!("expected an object, found {other}")).into()
                    );
                }
            }
        };
        let mut builder = Database::builder();
        for (key, value) in &options {
            let string = || {
                value.as_str().ok_or_else(|| {
                    Failure::from(Error::invalid_json("options_json", format!("`{key}` must be a string")))
                })
            };
            builder = match key.as_str() {
                "schema" => builder.schema(Schema::from_json(value)?),
                "client_id" => builder.client_id(string()?),
                "jwt_secret" => builder.jwt_secret(string()?),
                "external_jwt_secret" => builder.external_jwt_secret(string()?),
                "claims_path" => builder.claims_path(string()?),
                other => {
                    return Err(Error::invalid_json("options_json", format!("unknown option `{other}`")).into());
                }
            };
        }
        let db = match path {
            None | Some(":memory:") => builder.open_in_memory()?,
            Some(path) => builder.open(path)?,
        };
        unsafe { put_handle(out_db, triplite_db { db }, "out_db") }
    })
}

/// Closes a database handle (NULL is ignored). Sessions and servers made from it stay usable
/// and keep the database open until they are released; a subscription stays valid but receives
/// nothing once nothing else keeps the database open.
///
/// # Safety
/// `db` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_close(db: *mut triplite_db) {
    // SAFETY: forwarded contract.
    unsafe { release(db) }
}

/// Replaces the schema after checking it is backward compatible with the old one and the
/// stored data. `out_change_json` (may be NULL) receives Triplit's `SchemaChange`; a refused
/// change is `TRIPLITE_SCHEMA`, its reasons in `out_err`.
///
/// # Safety
/// `db` is NULL or live; strings NULL or NUL-terminated; out-pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_set_schema(
    db: *const triplite_db,
    schema_json: *const c_char,
    out_change_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let db = &unsafe { handle(db, "db") }?.db;
        let schema = Schema::from_json(&unsafe { json_arg(schema_json, "schema_json") }?)?;
        let change = db.set_schema(schema)?;
        let change = serde_json::to_value(change).expect("schema changes serialize");
        unsafe { put_json(out_change_json, &change, true) }
    })
}

/// # Safety
/// As the exports that call it.
unsafe fn insert(
    actor: std::result::Result<Actor, Failure>,
    collection: *const c_char,
    doc_json: *const c_char,
    out_json: *mut *mut c_char,
) -> Outcome {
    // SAFETY (all blocks): forwarded contract.
    let collection = unsafe { text(collection, "collection") }?;
    let doc = unsafe { json_arg(doc_json, "doc_json") }?;
    let inserted = actor?.insert(collection, doc)?;
    unsafe { put_json(out_json, &inserted, true) }
}

/// # Safety
/// As the exports that call it.
unsafe fn update(
    actor: std::result::Result<Actor, Failure>,
    collection: *const c_char,
    id: *const c_char,
    patch_json: *const c_char,
) -> Outcome {
    // SAFETY (all blocks): forwarded contract.
    let collection = unsafe { text(collection, "collection") }?;
    let id = unsafe { text(id, "id") }?;
    let patch = unsafe { json_arg(patch_json, "patch_json") }?;
    Ok(actor?.update(collection, id, patch)?)
}

/// # Safety
/// As the exports that call it.
unsafe fn delete(actor: std::result::Result<Actor, Failure>, collection: *const c_char, id: *const c_char) -> Outcome {
    // SAFETY (all blocks): forwarded contract.
    let collection = unsafe { text(collection, "collection") }?;
    let id = unsafe { text(id, "id") }?;
    Ok(actor?.delete(collection, id)?)
}

/// # Safety
/// As the exports that call it.
unsafe fn fetch(
    actor: std::result::Result<Actor, Failure>,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> Outcome {
    // SAFETY (all blocks): forwarded contract.
    let query = parse_query(unsafe { json_arg(query_json, "query_json") }?)?;
    let results = actor?.fetch(&query)?;
    unsafe { put_json(out_json, &Json::Array(results), false) }
}

/// # Safety
/// As the exports that call it.
unsafe fn fetch_by_id(
    actor: std::result::Result<Actor, Failure>,
    collection: *const c_char,
    id: *const c_char,
    out_json: *mut *mut c_char,
) -> Outcome {
    // SAFETY (all blocks): forwarded contract.
    let collection = unsafe { text(collection, "collection") }?;
    let id = unsafe { text(id, "id") }?;
    let entity = actor?.fetch_by_id(collection, id)?.unwrap_or(Json::Null);
    unsafe { put_json(out_json, &entity, false) }
}

/// Inserts a document (API form: sets as arrays, dates as ISO strings) into `collection`;
/// `out_json` (may be NULL) receives the stored entity, defaults and id filled in.
///
/// # Safety
/// `db` is NULL or live; strings NULL or NUL-terminated; out-pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_insert(
    db: *const triplite_db,
    collection: *const c_char,
    doc_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { insert(db_actor(db), collection, doc_json, out_json) })
}

/// Patches entity `id`: attributes given replace, records merge, `null` deletes an optional
/// attribute. `TRIPLITE_NOT_FOUND` if it does not exist.
///
/// # Safety
/// `db` is NULL or live; strings NULL or NUL-terminated; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_update(
    db: *const triplite_db,
    collection: *const c_char,
    id: *const c_char,
    patch_json: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { update(db_actor(db), collection, id, patch_json) })
}

/// Deletes entity `id` (nothing happens if it does not exist).
///
/// # Safety
/// `db` is NULL or live; strings NULL or NUL-terminated; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_delete(
    db: *const triplite_db,
    collection: *const c_char,
    id: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { delete(db_actor(db), collection, id) })
}

/// Runs several writes in one transaction: all commit, or none. `ops_json` is an array of
/// `{"op": "insert", "collection": c, "doc": {...}}`, `{"op": "update", "collection": c,
/// "id": i, "patch": {...}}` and `{"op": "delete", "collection": c, "id": i}`; `out_json`
/// (may be NULL) receives an array with each insert's entity and `null` for the others.
///
/// # Safety
/// `db` is NULL or live; strings NULL or NUL-terminated; out-pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_transact(
    db: *const triplite_db,
    ops_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let db = &unsafe { handle(db, "db") }?.db;
        let Json::Array(ops) = unsafe { json_arg(ops_json, "ops_json") }? else {
            return Err(Error::invalid_json("ops_json", "expected an array of operations").into());
        };
        let results = db.transact(|tx| apply_ops(tx, &ops))?;
        unsafe { put_json(out_json, &Json::Array(results), true) }
    })
}

/// The writes of a `triplite_*_transact` call, in one transaction; each insert's entity and
/// `null` for the others.
pub(super) fn apply_ops(tx: &mut Transaction, ops: &[Json]) -> Result<Vec<Json>> {
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let field = |key: &str| {
            op.get(key).ok_or_else(|| Error::invalid_json(format!("ops_json[{i}]"), format!("`{key}` is missing")))
        };
        let string = |key: &str| {
            field(key)?
                .as_str()
                .ok_or_else(|| Error::invalid_json(format!("ops_json[{i}]"), format!("`{key}` must be a string")))
        };
        let collection = string("collection")?;
        results.push(match string("op")? {
            "insert" => tx.insert(collection, field("doc")?.clone())?,
            "update" => {
                tx.update(collection, string("id")?, field("patch")?.clone())?;
                Json::Null
            }
            "delete" => {
                tx.delete(collection, string("id")?)?;
                Json::Null
            }
            other => {
                return Err(Error::invalid_json(
                    format!("ops_json[{i}]"),
                    format!("unknown op `{other}` (insert, update or delete)"),
                ));
            }
        });
    }
    Ok(results)
}

/// Runs a query (Triplit's JSON form); `out_json` receives the results array (API form,
/// includes nested).
///
/// # Safety
/// `db` is NULL or live; strings NULL or NUL-terminated; out-pointers writable (`out_err`
/// may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_fetch(
    db: *const triplite_db,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { fetch(db_actor(db), query_json, out_json) })
}

/// The entity with this id (API form), or `null` when there is none.
///
/// # Safety
/// `db` is NULL or live; strings NULL or NUL-terminated; out-pointers writable (`out_err`
/// may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_fetch_by_id(
    db: *const triplite_db,
    collection: *const c_char,
    id: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { fetch_by_id(db_actor(db), collection, id, out_json) })
}

/// A session from a token, verified with the database's keys (`jwt_secret`,
/// `external_jwt_secret`): its reads and writes go through the schema's rules for its roles.
/// A token that does not verify is `TRIPLITE_AUTH`.
///
/// # Safety
/// `db` is NULL or live; `token` NULL or NUL-terminated; `out_session` writable; `out_err`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_session(
    db: *const triplite_db,
    token: *const c_char,
    out_session: *mut *mut triplite_session,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let db = &unsafe { handle(db, "db") }?.db;
        let session = db.session(unsafe { text(token, "token") }?)?;
        unsafe { put_handle(out_session, triplite_session { session }, "out_session") }
    })
}

/// A session from claims the application vouches for (a JSON object, e.g. `{"sub": "alice"}`),
/// so the same rules run locally; claims never grant a service token's bypass here.
///
/// # Safety
/// As `triplite_db_session`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_db_session_from_claims(
    db: *const triplite_db,
    claims_json: *const c_char,
    out_session: *mut *mut triplite_session,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let db = &unsafe { handle(db, "db") }?.db;
        let session = db.session_from_claims(unsafe { json_arg(claims_json, "claims_json") }?)?;
        unsafe { put_handle(out_session, triplite_session { session }, "out_session") }
    })
}

/// Releases a session (NULL is ignored).
///
/// # Safety
/// `session` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_free(session: *mut triplite_session) {
    // SAFETY: forwarded contract.
    unsafe { release(session) }
}

/// `triplite_db_insert` through the session's rules (`TRIPLITE_PERMISSION` when denied).
///
/// # Safety
/// As `triplite_db_insert`, with a live `session`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_insert(
    session: *const triplite_session,
    collection: *const c_char,
    doc_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { insert(session_actor(session), collection, doc_json, out_json) })
}

/// `triplite_db_update` through the session's rules.
///
/// # Safety
/// As `triplite_db_update`, with a live `session`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_update(
    session: *const triplite_session,
    collection: *const c_char,
    id: *const c_char,
    patch_json: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { update(session_actor(session), collection, id, patch_json) })
}

/// `triplite_db_delete` through the session's rules.
///
/// # Safety
/// As `triplite_db_delete`, with a live `session`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_delete(
    session: *const triplite_session,
    collection: *const c_char,
    id: *const c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { delete(session_actor(session), collection, id) })
}

/// `triplite_db_fetch` through the session's read rules.
///
/// # Safety
/// As `triplite_db_fetch`, with a live `session`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_fetch(
    session: *const triplite_session,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { fetch(session_actor(session), query_json, out_json) })
}

/// `triplite_db_fetch_by_id` through the session's read rules (`null` when not readable).
///
/// # Safety
/// As `triplite_db_fetch_by_id`, with a live `session`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_session_fetch_by_id(
    session: *const triplite_session,
    collection: *const c_char,
    id: *const c_char,
    out_json: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    // SAFETY: forwarded contract.
    guard(out_err, || unsafe { fetch_by_id(session_actor(session), collection, id, out_json) })
}
