import ExpoModulesCore
import Foundation
#if canImport(Triplite)
import Triplite // as a SwiftPM dependency; the podspec compiles the binding into this module instead
#endif

/// The Expo module over the Swift binding (`bindings/swift`): the `TripliteNativeModule`
/// interface of `src/native.ts`, JSON strings in and out, handles chosen by the TypeScript side.
/// Nothing here decides anything: each function is one call of the binding. Not compiled here
/// (no Swift toolchain on the machine this repository is tested on); see README.md.
public final class TripliteModule: Module {
    private let lock = NSLock()
    private var clients: [Int: Client] = [:]
    private var eventTasks: [Int: Task<Void, Never>] = [:]
    private var subscriptions: [Int: Subscription] = [:]

    public func definition() -> ModuleDefinition {
        Name("Triplite")
        Events("onResult", "onEvent")

        Function("version") { tripliteVersion() }

        AsyncFunction("clientOpen") { (handle: Int, optionsJson: String) in
            try bridged {
                if self.locked({ self.clients[handle] }) != nil { throw misuse("client \(handle) is open already") }
                let client = try Client(clientOptions(try JSONValue(parsing: optionsJson)))
                let events = try client.events()
                let task = Task { [weak self] in
                    for await event in events {
                        self?.sendEvent("onEvent", ["client": handle, "json": try! jsonText(event)])
                    }
                }
                self.locked {
                    self.clients[handle] = client
                    self.eventTasks[handle] = task
                }
            }
        }
        AsyncFunction("clientClose") { (handle: Int) in
            let (client, task) = self.locked { (self.clients.removeValue(forKey: handle), self.eventTasks.removeValue(forKey: handle)) }
            task?.cancel()
            // The binding closes the native client when its last reference goes.
            _ = client
        }

        AsyncFunction("clientInsert") { (handle: Int, collection: String, docJson: String) -> String in
            try bridged { try jsonText(try self.client(handle).insert(collection, try JSONValue(parsing: docJson)).entityAndTxId) }
        }
        AsyncFunction("clientUpdate") { (handle: Int, collection: String, id: String, patchJson: String) in
            try bridged { try self.client(handle).update(collection, id: id, patch: try JSONValue(parsing: patchJson)) }
        }
        AsyncFunction("clientDelete") { (handle: Int, collection: String, id: String) in
            try bridged { try self.client(handle).delete(collection, id: id) }
        }
        AsyncFunction("clientTransact") { (handle: Int, opsJson: String) -> String in
            try bridged { try jsonText(try self.client(handle).transact(try JSONValue(parsing: opsJson))) }
        }
        AsyncFunction("clientFetch") { (handle: Int, queryJson: String, optionsJson: String?) async throws -> String in
            try await bridgedAsync {
                let wire = try optionsJson.map { try JSONValue(parsing: $0) }?["policy"]?.stringValue ?? FetchPolicy.localFirst.rawValue
                guard let policy = FetchPolicy(rawValue: wire) else { throw misuse("unknown fetch policy `\(wire)`") }
                return try jsonText(JSONValue.array(try await self.client(handle).fetch(try JSONValue(parsing: queryJson), policy: policy)))
            }
        }

        AsyncFunction("clientSubscribe") { (handle: Int, subscription: Int, queryJson: String, _: String?) in
            try bridged {
                if self.locked({ self.subscriptions[subscription] }) != nil { throw misuse("subscription \(subscription) exists already") }
                let live = try self.client(handle).subscribe(try JSONValue(parsing: queryJson)) { [weak self] (result: LiveResult<JSONValue>) in
                    self?.sendEvent("onResult", ["subscription": subscription, "json": try! jsonText(result.asJSON)])
                }
                self.locked { self.subscriptions[subscription] = live }
            }
        }
        AsyncFunction("subscriptionFree") { (subscription: Int) in
            self.locked { self.subscriptions.removeValue(forKey: subscription) }?.close()
        }

        AsyncFunction("clientUpdateToken") { (handle: Int, token: String?) async throws in
            try await bridgedAsync { try await self.client(handle).updateToken(token) }
        }
        AsyncFunction("clientConnect") { (handle: Int) async throws in try await bridgedAsync { try await self.client(handle).connect() } }
        AsyncFunction("clientDisconnect") { (handle: Int) async throws in try await bridgedAsync { try await self.client(handle).disconnect() } }
        AsyncFunction("clientReset") { (handle: Int) async throws in try await bridgedAsync { try await self.client(handle).reset() } }
        AsyncFunction("clientStartSession") { (handle: Int, token: String, connect: Bool) async throws in
            try await bridgedAsync { try await self.client(handle).startSession(token, connect: connect) }
        }
        AsyncFunction("clientEndSession") { (handle: Int) async throws in try await bridgedAsync { try await self.client(handle).endSession() } }
        AsyncFunction("clientUpdateSessionToken") { (handle: Int, token: String) async throws in
            try await bridgedAsync { try await self.client(handle).updateSessionToken(token) }
        }
        AsyncFunction("clientStatus") { (handle: Int) -> String in try bridged { try jsonText(try self.client(handle).status()) } }

        OnDestroy {
            self.locked {
                self.subscriptions.values.forEach { $0.close() }
                self.subscriptions.removeAll()
                self.eventTasks.values.forEach { $0.cancel() }
                self.eventTasks.removeAll()
                self.clients.removeAll()
            }
        }
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func client(_ handle: Int) throws -> Client {
        guard let client = locked({ clients[handle] }) else { throw misuse("no open client \(handle)") }
        return client
    }
}

/// A library failure as the TypeScript side reads it back into a `TripliteError`:
/// `code` `TRIPLITE_<STATUS>`, `reason` `"<Name>: <message>"`.
final class TripliteCodedException: Exception, @unchecked Sendable {
    private let status: Int
    private let text: String

    init(status: Int, name: String, message: String) {
        self.status = status
        self.text = "\(name): \(message)"
        super.init()
    }

    convenience init(_ error: TripliteError) {
        self.init(status: error.status, name: error.name, message: error.message)
    }

    override var code: String { "TRIPLITE_" + statusName(status) }
    override var reason: String { text }
}

private let statusNames = ["OK", "MISUSE", "INVALID_JSON", "SCHEMA", "NOT_FOUND", "PERMISSION", "AUTH", "QUERY", "STORAGE", "NETWORK", "INTERNAL", "PANIC"]

private func statusName(_ status: Int) -> String { status < statusNames.count ? statusNames[status] : "INTERNAL" }

private func misuse(_ message: String) -> TripliteCodedException {
    TripliteCodedException(status: 1, name: "MisuseError", message: message)
}

private func bridged<R>(_ body: () throws -> R) throws -> R {
    do { return try body() } catch let error as TripliteError { throw TripliteCodedException(error) }
}

private func bridgedAsync<R>(_ body: () async throws -> R) async throws -> R {
    do { return try await body() } catch let error as TripliteError { throw TripliteCodedException(error) }
}

private func jsonText<T: Encodable>(_ value: T) throws -> String {
    String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
}

/// The options object of `triplite_client_open`, field by field into the binding's struct.
private func clientOptions(_ json: JSONValue) -> ClientOptions {
    ClientOptions(
        serverUrl: json["serverUrl"]?.stringValue,
        token: json["token"]?.stringValue,
        schema: json["schema"],
        path: json["path"]?.stringValue,
        autoConnect: json["autoConnect"]?.boolValue,
        caCertificates: json["caCertificates"]?.stringValue
    )
}

private extension JSONValue {
    var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }
}

private extension Written where R == JSONValue {
    /// `{"entity": ..., "txId": ...}`, as `triplite_client_insert` returns it.
    var entityAndTxId: JSONValue { .object(["entity": entity, "txId": .string(txId)]) }
}

private extension LiveResult where T == JSONValue {
    /// The result as `triplite_client_subscribe` delivers it.
    var asJSON: JSONValue {
        var object: [String: JSONValue] = ["results": .array(results)]
        if let added { object["added"] = .array(added) }
        if let removed { object["removed"] = .array(removed.map(JSONValue.string)) }
        if let updated { object["updated"] = .array(updated) }
        object["fulfilled"] = .bool(fulfilled ?? false)
        if let queryId { object["queryId"] = .string(queryId) }
        return .object(object)
    }
}
