import CTriplite
import Foundation

typealias CString = UnsafePointer<CChar>
typealias OutString = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

/// What a `Database` and a `Session` both do — the same calls, the session's through its
/// permission rules — written once over the C functions each supplies.
public class Entities: @unchecked Sendable {
    struct Native {
        let insert: (CString, CString, OutString, OutString) -> triplite_status
        let update: (CString, CString, CString, OutString) -> triplite_status
        let delete: (CString, CString, OutString) -> triplite_status
        let fetch: (CString, OutString, OutString) -> triplite_status
        let fetchById: (CString, CString, OutString, OutString) -> triplite_status
        let subscribe: (CString, triplite_result_callback, UnsafeMutableRawPointer, triplite_destroy_callback,
                        UnsafeMutablePointer<OpaquePointer?>, OutString) -> triplite_status
    }

    let native: Native

    init(_ native: Native) { self.native = native }

    /// Inserts a document (API form); returns the stored entity (defaults and id filled in).
    public func insert<T: Encodable, R: Decodable>(_ collection: String, _ doc: T, as type: R.Type = JSONValue.self) throws -> R {
        let json = try encodeJSON(doc)
        let text = try withCStrings([collection, json]) { s in try checkString { out, err in native.insert(s[0], s[1], out, err) } }
        return try decodeJSON(type, text)
    }

    /// Patches an entity: attributes given replace, records merge, null deletes an optional one.
    public func update<T: Encodable>(_ collection: String, id: String, patch: T) throws {
        let json = try encodeJSON(patch)
        try withCStrings([collection, id, json]) { s in try check { err in native.update(s[0], s[1], s[2], err) } }
    }

    public func delete(_ collection: String, id: String) throws {
        try withCStrings([collection, id]) { s in try check { err in native.delete(s[0], s[1], err) } }
    }

    /// Runs a query (Triplit's JSON form); the results in API form.
    public func fetch<R: Decodable>(_ query: JSONValue, as type: R.Type = JSONValue.self) throws -> [R] {
        let json = try encodeJSON(query)
        let text = try withCStrings([json]) { s in try checkString { out, err in native.fetch(s[0], out, err) } }
        return try decodeJSON([R].self, text)
    }

    /// The entity with this id, or nil (also when it may not be read).
    public func fetchById<R: Decodable>(_ collection: String, id: String, as type: R.Type = JSONValue.self) throws -> R? {
        let text = try withCStrings([collection, id]) { s in try checkString { out, err in native.fetchById(s[0], s[1], out, err) } }
        return try decodeJSON(R?.self, text)
    }

    /// Subscribes: `onResult` gets the result now and after every commit that changes it.
    public func subscribe<R: Decodable>(_ query: JSONValue, as type: R.Type = JSONValue.self,
                                        onResult: @escaping (LiveResult<R>) -> Void) throws -> Subscription {
        let json = try encodeJSON(query)
        return try withCStrings([json]) { s in
            try Subscription.open(type, onResult: onResult) { callback, data, destroy, out, err in
                native.subscribe(s[0], callback, data, destroy, out, err)
            }
        }
    }

    /// `subscribe` as an AsyncThrowingStream: iterating subscribes, ending it frees the subscription.
    public func results<R: Decodable>(_ query: JSONValue, as type: R.Type = JSONValue.self) -> AsyncThrowingStream<LiveResult<R>, Error> {
        Subscription.stream { try self.subscribe(query, as: type, onResult: $0) }
    }
}

/// A local database (`triplite_db_*`): a SQLite file, or in memory when `path` is nil.
/// `options`: `{"schema": {...}, "jwt_secret": "...", ...}`. Usable from any thread.
public final class Database: Entities {
    let handle: OpaquePointer

    public init(path: String? = nil, options: JSONValue? = nil) throws {
        let optionsJSON = try options.map(encodeJSON)
        let db = try withOptionalCString(path) { path in
            try withOptionalCString(optionsJSON) { options in
                try checkHandle { out, err in triplite_db_open(path, options, out, err) }
            }
        }
        handle = db
        super.init(Native(
            insert: { triplite_db_insert(db, $0, $1, $2, $3) },
            update: { triplite_db_update(db, $0, $1, $2, $3) },
            delete: { triplite_db_delete(db, $0, $1, $2) },
            fetch: { triplite_db_fetch(db, $0, $1, $2) },
            fetchById: { triplite_db_fetch_by_id(db, $0, $1, $2, $3) },
            subscribe: { triplite_db_subscribe(db, $0, $1, $2, $3, $4, $5) }
        ))
    }

    deinit { triplite_db_close(handle) }

    /// Several writes in one transaction: `[{"op": "insert", "collection", "doc"}, ...]`.
    public func transact(_ ops: JSONValue) throws -> JSONValue {
        let json = try encodeJSON(ops)
        return try JSONValue(parsing: try checkString { out, err in triplite_db_transact(handle, json, out, err) })
    }

    /// A session from a token verified with the database's keys.
    public func session(token: String?) throws -> Session {
        Session(try withOptionalCString(token) { token in
            try checkHandle { out, err in triplite_db_session(handle, token, out, err) }
        })
    }

    /// A session from claims the application vouches for (`{"sub": "alice"}`).
    public func session(claims: JSONValue) throws -> Session {
        let json = try encodeJSON(claims)
        return Session(try checkHandle { out, err in triplite_db_session_from_claims(handle, json, out, err) })
    }
}

/// A database seen through a session's permission rules (`triplite_session_*`).
public final class Session: Entities {
    let handle: OpaquePointer

    init(_ session: OpaquePointer) {
        handle = session
        super.init(Native(
            insert: { triplite_session_insert(session, $0, $1, $2, $3) },
            update: { triplite_session_update(session, $0, $1, $2, $3) },
            delete: { triplite_session_delete(session, $0, $1, $2) },
            fetch: { triplite_session_fetch(session, $0, $1, $2) },
            fetchById: { triplite_session_fetch_by_id(session, $0, $1, $2, $3) },
            subscribe: { triplite_session_subscribe(session, $0, $1, $2, $3, $4, $5) }
        ))
    }

    deinit { triplite_session_free(handle) }
}
