import CTriplite
import Foundation

/// Triplit's fetch policies.
public enum FetchPolicy: String, Sendable {
    case localFirst = "local-first"
    case localOnly = "local-only"
    case remoteFirst = "remote-first"
    case remoteOnly = "remote-only"
    case localAndRemote = "local-and-remote"
}

/// How a client opens: its server, token, the app's schema and where its local database lives.
public struct ClientOptions: Encodable, Sendable {
    public var serverUrl: String?
    public var token: String?
    public var schema: JSONValue?
    /// A SQLite file (the outbox survives restarts), or nil for memory.
    public var path: String?
    public var autoConnect: Bool?
    /// PEM: trust only these authorities for wss:// and https://.
    public var caCertificates: String?

    public init(serverUrl: String? = nil, token: String? = nil, schema: JSONValue? = nil, path: String? = nil,
                autoConnect: Bool? = nil, caCertificates: String? = nil) {
        self.serverUrl = serverUrl
        self.token = token
        self.schema = schema
        self.path = path
        self.autoConnect = autoConnect
        self.caCertificates = caCertificates
    }
}

/// What an insert through a client returns: the stored entity and its transaction's id.
public struct Written<R: Decodable>: Decodable {
    public let entity: R
    public let txId: String
}

/// A sync client (`triplite_client_*`): a local database that syncs with a triplite or Triplit
/// server. Writes are local and durable at once and go to the server from the outbox; calls
/// that wait for the network are `async` and run off the caller's thread.
public final class Client: @unchecked Sendable {
    let handle: OpaquePointer

    public init(_ options: ClientOptions) throws {
        let json = try encodeJSON(options)
        handle = try checkHandle { out, err in triplite_client_open(json, out, err) }
    }

    deinit { triplite_client_close(handle) }

    public func insert<T: Encodable, R: Decodable>(_ collection: String, _ doc: T, as type: R.Type = JSONValue.self) throws -> Written<R> {
        let json = try encodeJSON(doc)
        return try decodeJSON(Written<R>.self, try checkString { out, err in triplite_client_insert(handle, collection, json, out, err) })
    }

    public func update<T: Encodable>(_ collection: String, id: String, patch: T) throws {
        let json = try encodeJSON(patch)
        try check { err in triplite_client_update(handle, collection, id, json, err) }
    }

    public func delete(_ collection: String, id: String) throws {
        try check { err in triplite_client_delete(handle, collection, id, err) }
    }

    /// Several writes as one local and one server transaction: `{"results": [...], "txId"}`.
    public func transact(_ ops: JSONValue) throws -> JSONValue {
        let json = try encodeJSON(ops)
        return try JSONValue(parsing: try checkString { out, err in triplite_client_transact(handle, json, out, err) })
    }

    /// Runs a query by a fetch policy (policies that wait for the server wait at most 10 s).
    public func fetch<R: Decodable>(_ query: JSONValue, policy: FetchPolicy = .localFirst, as type: R.Type = JSONValue.self) async throws -> [R] {
        let json = try encodeJSON(query)
        let options = "{\"policy\": \"\(policy.rawValue)\"}"
        let text = try await offThread {
            try checkString { out, err in triplite_client_fetch(self.handle, json, options, out, err) }
        }
        return try decodeJSON([R].self, text)
    }

    /// Subscribes: the local result at once, again as local writes and server data change it,
    /// `fulfilled` once the server has answered.
    public func subscribe<R: Decodable>(_ query: JSONValue, as type: R.Type = JSONValue.self,
                                        onResult: @escaping (LiveResult<R>) -> Void) throws -> Subscription {
        let json = try encodeJSON(query)
        return try Subscription.open(type, onResult: onResult) { callback, data, destroy, out, err in
            triplite_client_subscribe(handle, json, nil, callback, data, destroy, out, err)
        }
    }

    public func results<R: Decodable>(_ query: JSONValue, as type: R.Type = JSONValue.self) -> AsyncThrowingStream<LiveResult<R>, Error> {
        Subscription.stream { try self.subscribe(query, as: type, onResult: $0) }
    }

    /// The client's events (`{"type": "connection" | "session_error" | "write_acked" |
    /// "write_rejected" | "query_fulfilled" | "query_failed", ...}`) from this call on. The C ABI
    /// cannot unregister an event callback: an ended stream leaves a silent one until the
    /// client closes.
    public func events() throws -> AsyncStream<JSONValue> {
        var continuation: AsyncStream<JSONValue>.Continuation!
        let stream = AsyncStream<JSONValue>(bufferingPolicy: .unbounded) { continuation = $0 }
        let events = continuation!
        let box = CallbackBox { json in
            if let event = try? JSONValue(parsing: json) { events.yield(event) }
        }
        let userData = Unmanaged.passRetained(box).toOpaque()
        try check { err in triplite_client_on_event(handle, resultTrampoline, userData, releaseBox, err) }
        return stream
    }

    /// `{"connection": "OPEN", "pendingTransactions": 0, "clientId": ..., "lastError": ...}`.
    public func status() throws -> JSONValue {
        try JSONValue(parsing: try checkString { out, err in triplite_client_status(handle, out, err) })
    }

    // The token lifecycle. The Clerk guide's flow: disconnect(), updateToken(new), then
    // reset() if there is none, else connect().

    /// Replaces the token (nil removes it) for the next connection.
    public func updateToken(_ token: String?) async throws {
        try await offThread { try withOptionalCString(token) { token in try check { err in triplite_client_update_token(self.handle, token, err) } } }
    }

    public func connect() async throws {
        try await offThread { try check { err in triplite_client_connect(self.handle, err) } }
    }

    public func disconnect() async throws {
        try await offThread { try check { err in triplite_client_disconnect(self.handle, err) } }
    }

    /// Sign-out: wipes local data, the outbox and the sync checkpoints; keeps the schema.
    public func reset() async throws {
        try await offThread { try check { err in triplite_client_reset(self.handle, err) } }
    }

    /// Triplit 1.x's `startSession`. With `refresh`, it is called a second before each token's
    /// `exp` (on the client's delivery thread); its token replaces the session's while the
    /// socket stays open, nil keeps the old one.
    public func startSession(_ token: String, connect: Bool = true, refresh: (@Sendable () -> String?)? = nil) async throws {
        guard let refresh else {
            return try await offThread { try check { err in triplite_client_start_session(self.handle, token, connect, err) } }
        }
        let userData = Unmanaged.passRetained(RefreshBox(refresh)).toOpaque()
        try await offThread {
            try check { err in
                triplite_client_start_session_with_refresh(self.handle, token, connect, refreshTrampoline, userData, releaseRefresh, err)
            }
        }
    }

    public func endSession() async throws {
        try await offThread { try check { err in triplite_client_end_session(self.handle, err) } }
    }

    /// A new token for the open connection, kept open (`POST /update-token`).
    public func updateSessionToken(_ token: String) async throws {
        try await offThread { try check { err in triplite_client_update_session_token(self.handle, token, err) } }
    }
}

/// Runs a blocking library call on a global queue.
func offThread<R>(_ body: @escaping () throws -> R) async throws -> R {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            continuation.resume(with: Result(catching: body))
        }
    }
}

/// The refresh handler and the last token it returned, kept as a C string until the next call.
final class RefreshBox {
    let refresh: @Sendable () -> String?
    var last: UnsafeMutablePointer<CChar>?
    init(_ refresh: @escaping @Sendable () -> String?) { self.refresh = refresh }
    deinit { free(last) }
}

let refreshTrampoline: triplite_token_callback = { userData in
    guard let userData else { return nil }
    let box = Unmanaged<RefreshBox>.fromOpaque(userData).takeUnretainedValue()
    guard let token = box.refresh() else { return nil }
    free(box.last)
    box.last = strdup(token)
    return UnsafePointer(box.last)
}
let releaseRefresh: triplite_destroy_callback = { userData in
    guard let userData else { return }
    Unmanaged<RefreshBox>.fromOpaque(userData).release()
}
