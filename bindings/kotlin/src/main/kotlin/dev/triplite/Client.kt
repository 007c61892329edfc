package dev.triplite

import com.sun.jna.Pointer
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.consumeAsFlow
import kotlinx.coroutines.flow.onCompletion
import kotlinx.coroutines.withContext
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.buildJsonObject
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import java.util.concurrent.atomic.AtomicBoolean

/** Triplit's fetch policies. */
enum class FetchPolicy(val wire: String) {
    LOCAL_FIRST("local-first"),
    LOCAL_ONLY("local-only"),
    REMOTE_FIRST("remote-first"),
    REMOTE_ONLY("remote-only"),
    LOCAL_AND_REMOTE("local-and-remote"),
}

/**
 * A sync client (`triplite_client_*`): a local database that syncs with a triplite or Triplit
 * server. `options`: `{"serverUrl": "http://...", "token": "...", "schema": {...}, "path":
 * "app.db", "autoConnect": true, "caCertificates": "PEM"}`. Writes are local and durable at
 * once and go to the server from the outbox; calls that wait for the network are `suspend`
 * and run on [Dispatchers.IO].
 */
class Client(options: JsonObject) : AutoCloseable {
    private val handle: Pointer = callForHandle { out, err -> lib.triplite_client_open(options.toString(), out, err) }

    /** Inserts locally; returns `{"entity": {...}, "txId": "..."}` (events about it carry the txId). */
    fun insert(collection: String, doc: JsonObject): JsonObject =
        parse(callForString { out, err -> lib.triplite_client_insert(handle, collection, doc.toString(), out, err) }).jsonObject

    fun update(collection: String, id: String, patch: JsonObject) =
        call { err -> lib.triplite_client_update(handle, collection, id, patch.toString(), err) }

    fun delete(collection: String, id: String) = call { err -> lib.triplite_client_delete(handle, collection, id, err) }

    /** Several writes as one local and one server transaction; `{"results": [...], "txId"}`. */
    fun transact(ops: JsonArray): JsonObject =
        parse(callForString { out, err -> lib.triplite_client_transact(handle, ops.toString(), out, err) }).jsonObject

    /** Runs a query by a fetch policy (those that wait for the server suspend, at most 10 s). */
    suspend fun fetch(query: JsonObject, policy: FetchPolicy = FetchPolicy.LOCAL_FIRST): JsonArray =
        withContext(Dispatchers.IO) {
            val options = buildJsonObject { put("policy", JsonPrimitive(policy.wire)) }.toString()
            parse(callForString { out, err -> lib.triplite_client_fetch(handle, query.toString(), options, out, err) }).jsonArray
        }

    /** The first result of a query, or null. */
    suspend fun fetchOne(query: JsonObject, policy: FetchPolicy = FetchPolicy.LOCAL_FIRST): JsonObject? =
        fetch(JsonObject(query + ("limit" to JsonPrimitive(1))), policy).firstOrNull() as? JsonObject

    /**
     * Subscribes: the local result at once, then again as local writes and server data change
     * it, with `"fulfilled": true` once the server has answered. The query is registered with
     * the server while the subscription lives.
     */
    fun subscribe(query: JsonObject, onResult: (JsonObject) -> Unit): Subscription =
        Subscription.open(onResult) { callback, data, destroy, out, err ->
            lib.triplite_client_subscribe(handle, query.toString(), null, callback, data, destroy, out, err)
        }

    /** [subscribe] as a Flow: collecting subscribes, cancelling frees the subscription. */
    fun results(query: JsonObject): Flow<JsonObject> = Subscription.flow { subscribe(query, it) }

    /**
     * The client's events (`{"type": "connection" | "session_error" | "write_acked" |
     * "write_rejected" | "query_fulfilled" | "query_failed", ...}`) from this call on, none
     * dropped (they wait for the collector), collected once. The C ABI has no way to
     * unregister an event callback, so a finished collection leaves a silent one registered
     * until the client closes.
     */
    fun events(): Flow<JsonObject> {
        val channel = Channel<JsonObject>(Channel.UNLIMITED)
        val active = AtomicBoolean(true)
        val callback = ResultCallback { _, json ->
            val text = json?.getString(0, "UTF-8") ?: return@ResultCallback
            if (active.get()) channel.trySend(parse(text).jsonObject)
        }
        val (userData, destroy) = Held.keep(callback)
        call { err -> lib.triplite_client_on_event(handle, callback, userData, destroy, err) }
        return channel.consumeAsFlow().onCompletion {
            active.set(false)
            channel.close()
        }
    }

    /** `{"connection": "OPEN", "pendingTransactions": 0, "clientId": ..., "lastError": ...}`. */
    fun status(): JsonObject = parse(callForString { out, err -> lib.triplite_client_status(handle, out, err) }).jsonObject

    // The token lifecycle. The Clerk guide's flow: disconnect(), updateToken(new), then
    // reset() if there is none, else connect().

    /** Replaces the token (null removes it) for the next connection. */
    suspend fun updateToken(token: String?) = io { err -> lib.triplite_client_update_token(handle, token, err) }

    suspend fun connect() = io { err -> lib.triplite_client_connect(handle, err) }

    suspend fun disconnect() = io { err -> lib.triplite_client_disconnect(handle, err) }

    /** Sign-out: wipes local data, the outbox and the sync checkpoints; keeps the schema. */
    suspend fun reset() = io { err -> lib.triplite_client_reset(handle, err) }

    /**
     * Triplit 1.x's `startSession`. With `refresh`, it is called a second before each token's
     * `exp` (on the client's delivery thread) and its token replaces the session's while the
     * socket stays open; null from it keeps the old token.
     */
    suspend fun startSession(token: String, connect: Boolean = true, refresh: (() -> String?)? = null) =
        io { err ->
            if (refresh == null) {
                lib.triplite_client_start_session(handle, token, connect, err)
            } else {
                val handler = RefreshHandler(refresh)
                val (userData, destroy) = Held.keep(handler, handler.callback)
                lib.triplite_client_start_session_with_refresh(handle, token, connect, handler.callback, userData, destroy, err)
            }
        }

    suspend fun endSession() = io { err -> lib.triplite_client_end_session(handle, err) }

    /** A new token for the open connection, kept open (`POST /update-token`). */
    suspend fun updateSessionToken(token: String) = io { err -> lib.triplite_client_update_session_token(handle, token, err) }

    override fun close() = lib.triplite_client_close(handle)

    private suspend fun io(body: (com.sun.jna.ptr.PointerByReference) -> Int) = withContext(Dispatchers.IO) { call(body) }

    /** The refresh function's token, kept in native memory until the next call replaces it. */
    private class RefreshHandler(private val refresh: () -> String?) {
        @Volatile private var last: com.sun.jna.Memory? = null
        val callback = TokenCallback { _ ->
            val token = runCatching(refresh).getOrNull()
            if (token == null) null else nativeString(token).also { last = it }
        }
    }
}
