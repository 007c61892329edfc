package dev.triplite

import com.sun.jna.Pointer
import com.sun.jna.ptr.PointerByReference
import kotlinx.coroutines.flow.Flow
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject

internal fun parse(text: String): JsonElement = Json.parseToJsonElement(text)

/**
 * What a [Database] and a [Session] both do — the same calls, the session's going through its
 * permission rules — written once over the C functions each supplies.
 */
sealed class Entities : AutoCloseable {
    internal abstract fun nativeInsert(collection: String, doc: String, out: PointerByReference, err: PointerByReference): Int
    internal abstract fun nativeUpdate(collection: String, id: String, patch: String, err: PointerByReference): Int
    internal abstract fun nativeDelete(collection: String, id: String, err: PointerByReference): Int
    internal abstract fun nativeFetch(query: String, out: PointerByReference, err: PointerByReference): Int
    internal abstract fun nativeFetchById(collection: String, id: String, out: PointerByReference, err: PointerByReference): Int
    internal abstract fun nativeSubscribe(query: String, callback: ResultCallback, data: Pointer, destroy: DestroyCallback, out: PointerByReference, err: PointerByReference): Int

    /** Inserts a document (API form); returns the stored entity (defaults and id filled in). */
    fun insert(collection: String, doc: JsonObject): JsonObject =
        parse(callForString { out, err -> nativeInsert(collection, doc.toString(), out, err) }).jsonObject

    /** Patches an entity: attributes given replace, records merge, null deletes an optional one. */
    fun update(collection: String, id: String, patch: JsonObject) = call { err -> nativeUpdate(collection, id, patch.toString(), err) }

    fun delete(collection: String, id: String) = call { err -> nativeDelete(collection, id, err) }

    /** Runs a query (Triplit's JSON form); the results in API form. */
    fun fetch(query: JsonObject): JsonArray = parse(callForString { out, err -> nativeFetch(query.toString(), out, err) }).jsonArray

    /** The entity with this id, or null (also when it may not be read). */
    fun fetchById(collection: String, id: String): JsonObject? =
        parse(callForString { out, err -> nativeFetchById(collection, id, out, err) }) as? JsonObject

    /** Subscribes: `onResult` gets the result now and after every commit that changes it. */
    fun subscribe(query: JsonObject, onResult: (JsonObject) -> Unit): Subscription =
        Subscription.open(onResult) { callback, data, destroy, out, err -> nativeSubscribe(query.toString(), callback, data, destroy, out, err) }

    /** [subscribe] as a Flow: collecting subscribes, cancelling frees the subscription. */
    fun results(query: JsonObject): Flow<JsonObject> = Subscription.flow { subscribe(query, it) }
}

/**
 * A local database (`triplite_db_*`): a SQLite file, or in memory when `path` is null.
 * `options`: `{"schema": {...}, "jwt_secret": "...", "external_jwt_secret": "...", ...}`.
 * Every method may be called from any thread.
 */
class Database(path: String? = null, options: JsonObject? = null) : Entities() {
    private val handle: Pointer = callForHandle { out, err -> lib.triplite_db_open(path, options?.toString(), out, err) }

    override fun nativeInsert(collection: String, doc: String, out: PointerByReference, err: PointerByReference) =
        lib.triplite_db_insert(handle, collection, doc, out, err)
    override fun nativeUpdate(collection: String, id: String, patch: String, err: PointerByReference) =
        lib.triplite_db_update(handle, collection, id, patch, err)
    override fun nativeDelete(collection: String, id: String, err: PointerByReference) = lib.triplite_db_delete(handle, collection, id, err)
    override fun nativeFetch(query: String, out: PointerByReference, err: PointerByReference) = lib.triplite_db_fetch(handle, query, out, err)
    override fun nativeFetchById(collection: String, id: String, out: PointerByReference, err: PointerByReference) =
        lib.triplite_db_fetch_by_id(handle, collection, id, out, err)
    override fun nativeSubscribe(query: String, callback: ResultCallback, data: Pointer, destroy: DestroyCallback, out: PointerByReference, err: PointerByReference) =
        lib.triplite_db_subscribe(handle, query, callback, data, destroy, out, err)

    /** Several writes in one transaction (`[{"op": "insert", ...}]`); each insert's entity, else null. */
    fun transact(ops: JsonArray): JsonArray = parse(callForString { out, err -> lib.triplite_db_transact(handle, ops.toString(), out, err) }).jsonArray

    /** Replaces the schema (checked backward compatible); returns Triplit's SchemaChange. */
    fun setSchema(schema: JsonObject): JsonElement =
        parse(callForString { out, err -> lib.triplite_db_set_schema(handle, schema.toString(), out, err) })

    /** A session from a token verified with the database's keys. */
    fun session(token: String?): Session = Session(callForHandle { out, err -> lib.triplite_db_session(handle, token, out, err) })

    /** A session from claims the application vouches for (`{"sub": "alice"}`). */
    fun sessionFromClaims(claims: JsonObject): Session =
        Session(callForHandle { out, err -> lib.triplite_db_session_from_claims(handle, claims.toString(), out, err) })

    override fun close() = lib.triplite_db_close(handle)
}

/** A database seen through a session's permission rules (`triplite_session_*`). */
class Session internal constructor(private val handle: Pointer) : Entities() {
    override fun nativeInsert(collection: String, doc: String, out: PointerByReference, err: PointerByReference) =
        lib.triplite_session_insert(handle, collection, doc, out, err)
    override fun nativeUpdate(collection: String, id: String, patch: String, err: PointerByReference) =
        lib.triplite_session_update(handle, collection, id, patch, err)
    override fun nativeDelete(collection: String, id: String, err: PointerByReference) = lib.triplite_session_delete(handle, collection, id, err)
    override fun nativeFetch(query: String, out: PointerByReference, err: PointerByReference) = lib.triplite_session_fetch(handle, query, out, err)
    override fun nativeFetchById(collection: String, id: String, out: PointerByReference, err: PointerByReference) =
        lib.triplite_session_fetch_by_id(handle, collection, id, out, err)
    override fun nativeSubscribe(query: String, callback: ResultCallback, data: Pointer, destroy: DestroyCallback, out: PointerByReference, err: PointerByReference) =
        lib.triplite_session_subscribe(handle, query, callback, data, destroy, out, err)

    override fun close() = lib.triplite_session_free(handle)
}

/** A development token signed with `secret`: `kind` "anon" or "secret" (a service token). */
fun mintDevToken(secret: String, kind: String): String = callForString { out, err -> lib.triplite_token_mint_dev(secret, kind, out, err) }
