import CTriplite
import Foundation

/// A live query's result: the whole result, and the net change since the previous one.
public struct LiveResult<T: Decodable>: Decodable {
    public let results: [T]
    public let added: [T]?
    public let removed: [String]?
    public let updated: [T]?
    /// Set by a client's subscription once the server has answered.
    public let fulfilled: Bool?
    /// A client's subscription: the id its query is registered under (events name it).
    public let queryId: String?
}

/// A live query. Its callback runs on the library's delivery thread, one result at a time; it
/// may call the library, and may close its own subscription. No callback starts after
/// `close()` returns (from another thread it waits for one under way).
public final class Subscription: @unchecked Sendable {
    private let lock = NSLock()
    private var handle: OpaquePointer?
    private var closed = false

    init() {}

    /// Takes the handle; a close that came first (from the first callback) frees it now.
    func attach(_ native: OpaquePointer) {
        lock.lock()
        let freeNow = closed
        if !freeNow { handle = native }
        lock.unlock()
        if freeNow { triplite_subscription_free(native) }
    }

    public func close() {
        lock.lock()
        closed = true
        let native = handle
        handle = nil
        lock.unlock()
        if let native { triplite_subscription_free(native) }
    }

    deinit { close() }

    /// Subscribes through one of the C subscribe calls; `start` gets the callback, its
    /// user_data and destroy callback, and the handle and error to fill in.
    static func open<T: Decodable>(
        _ type: T.Type,
        onResult: @escaping (LiveResult<T>) -> Void,
        start: (triplite_result_callback, UnsafeMutableRawPointer, triplite_destroy_callback,
                UnsafeMutablePointer<OpaquePointer?>, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> triplite_status
    ) throws -> Subscription {
        let subscription = Subscription()
        let box = CallbackBox { json in
            if let result = try? decodeJSON(LiveResult<T>.self, json) { onResult(result) }
        }
        // Retained for the library; its destroy callback releases it (also when subscribing fails).
        let userData = Unmanaged.passRetained(box).toOpaque()
        let native = try checkHandle { out, err in start(resultTrampoline, userData, releaseBox, out, err) }
        subscription.attach(native)
        return subscription
    }

    /// A subscription as an AsyncStream: iterating subscribes, ending the iteration frees it.
    /// Results are buffered newest-only: each carries the whole result.
    static func stream<T: Decodable>(
        _ subscribe: @escaping (@escaping (LiveResult<T>) -> Void) throws -> Subscription
    ) -> AsyncThrowingStream<LiveResult<T>, Error> {
        AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            do {
                let subscription = try subscribe { continuation.yield($0) }
                continuation.onTermination = { _ in subscription.close() }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }
}
