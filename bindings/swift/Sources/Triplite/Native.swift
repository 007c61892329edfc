import CTriplite
import Foundation

// The calling conventions of include/triplite.h, once: a status and a trailing `char **out_err`
// per fallible call, strings out freed with triplite_string_free, handles as OpaquePointer.

/// A call the library refused: `status` is the C `triplite_status` (stable numbers), `name`
/// Triplit's error name (`WritePermissionError`, ...; the status's name when the library gives
/// none), `message` the explanation.
public struct TripliteError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let name: String
    public let message: String

    public var description: String { "\(name): \(message)" }

    static let statusNames = [
        "OK", "MISUSE", "INVALID_JSON", "SCHEMA", "NOT_FOUND", "PERMISSION",
        "AUTH", "QUERY", "STORAGE", "NETWORK", "INTERNAL", "PANIC",
    ]

    /// From a status and the library's `out_err` text (`"<Name>Error: <message>"`).
    init(status: Int, text: String) {
        self.status = status
        if let colon = text.range(of: ": "), text[..<colon.lowerBound].hasSuffix("Error"),
           text[..<colon.lowerBound].allSatisfy({ $0.isLetter }) {
            name = String(text[..<colon.lowerBound])
            message = String(text[colon.upperBound...])
        } else {
            name = status < Self.statusNames.count ? Self.statusNames[status] : "STATUS_\(status)"
            message = text
        }
    }
}

/// A string the library returned, copied and freed.
func takeString(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
    guard let pointer else { return nil }
    let text = String(cString: pointer)
    triplite_string_free(pointer)
    return text
}

/// Runs one fallible call: a status other than TRIPLITE_OK throws its error.
func check(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> triplite_status) throws {
    var err: UnsafeMutablePointer<CChar>? = nil
    let status = body(&err)
    let message = takeString(err)
    if status != TRIPLITE_OK {
        throw TripliteError(status: Int(status.rawValue), text: message ?? "")
    }
}

/// A fallible call with one string out (`out_json`).
func checkString(
    _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> triplite_status
) throws -> String {
    var out: UnsafeMutablePointer<CChar>? = nil
    try check { err in body(&out, err) }
    return takeString(out) ?? "null"
}

/// A fallible call with one handle out.
func checkHandle(
    _ body: (UnsafeMutablePointer<OpaquePointer?>, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> triplite_status
) throws -> OpaquePointer {
    var out: OpaquePointer? = nil
    try check { err in body(&out, err) }
    guard let out else { throw TripliteError(status: 10, text: "InternalError: the library returned no handle") }
    return out
}

/// `body` with `text` as a C string, or NULL for nil.
func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) throws -> R) rethrows -> R {
    guard let text else { return try body(nil) }
    return try text.withCString(body)
}

/// `body` with each string as a C string (valid only during the call), for calls through
/// closures, where Swift's implicit String-to-pointer argument conversion is not relied on.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>]) throws -> R) throws -> R {
    func nest(_ index: Int, _ pointers: [UnsafePointer<CChar>]) throws -> R {
        if index == strings.count { return try body(pointers) }
        return try strings[index].withCString { try nest(index + 1, pointers + [$0]) }
    }
    return try nest(0, [])
}

let encoder = JSONEncoder()
let decoder = JSONDecoder()

func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    String(decoding: try encoder.encode(value), as: UTF8.self)
}

func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try decoder.decode(type, from: Data(text.utf8))
}

/// What a callback the library holds carries: the Swift closure, kept alive by `user_data`
/// (retained when registered, released by the library's `destroy` callback).
final class CallbackBox {
    let onJSON: (String) -> Void
    init(_ onJSON: @escaping (String) -> Void) { self.onJSON = onJSON }
}

/// The C callbacks over a CallbackBox: no captures, as C function pointers need.
let resultTrampoline: triplite_result_callback = { userData, json in
    guard let userData, let json else { return }
    Unmanaged<CallbackBox>.fromOpaque(userData).takeUnretainedValue().onJSON(String(cString: json))
}
let releaseBox: triplite_destroy_callback = { userData in
    guard let userData else { return }
    Unmanaged<CallbackBox>.fromOpaque(userData).release()
}

/// The library's version, e.g. "0.1.0".
public func tripliteVersion() -> String { String(cString: triplite_version()) }

/// A development token signed with `secret`: `kind` "anon" or "secret" (a service token).
public func mintDevToken(secret: String, kind: String) throws -> String {
    try checkString { out, err in triplite_token_mint_dev(secret, kind, out, err) }
}
