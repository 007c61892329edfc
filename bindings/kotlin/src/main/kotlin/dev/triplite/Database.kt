package dev.triplite

import com.sun.jna.Pointer
import kotlinx.coroutines.flow.Flow
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject

internal fun parse(text: String): JsonElement = Json.parseToJsonElement(text)

/**
 * A local database (`triplite_db_*`): a SQLite file, or in memory when `path` is null.
 * `options`: `{"schema": {...}, "jwt_secret": "...", "external_jwt_secret": "...", ...}`.
 * Every method may be called from any thread.
 */
class Database(path: String? = null, options: JsonObject? = null) : AutoCloseable {
    internal val handle: Pointer =
        callForHandle { out, err -> lib.triplite_db_open(path, options?.toString(), out, err) }

    /** Inserts a document (API form); returns the stored entity (defaults and id filled in). */
    fun insert(collection: String, doc: JsonObject): JsonObject =
        parse(callForString { out, err -> lib.triplite_db_insert(handle, collection, doc.toString(), out, err) }).jsonObject

    fun update(collection: String, id: String, patch: JsonObject) =
        call { err -> lib.triplite_db_update(handle, collection, id, patch.toString(), err) }

    fun delete(collection: String, id: String) = call { err -> lib.triplite_db_delete(handle, collection, id, err) }

    /** Several writes in one transaction (`[{"op": "insert", ...}]`); each insert's entity, else null. */
    fun transact(ops: JsonArray): JsonArray =
        parse(callForString { out, err -> lib.triplite_db_transact(handle, ops.toString(), out, err) }).jsonArray

    /** Runs a query (Triplit's JSON form); the results in API form. */
    fun fetch(query: JsonObject): JsonArray =
        parse(callForString { out, err -> lib.triplite_db_fetch(handle, query.toString(), out, err) }).jsonArray

    fun fetchById(collection: String, id: String): JsonObject? =
        parse(callForString { out, err -> lib.triplite_db_fetch_by_id(handle, collection, id, out, err) }) as? JsonObject

    /** Replaces the schema (checked backward compatible); returns Triplit's SchemaChange. */
    fun setSchema(schema: JsonObject): JsonElement =
        parse(callForString { out, err -> lib.triplite_db_set_schema(handle, schema.toString(), out, err) })

    /** A session from a token verified with the database's keys. */
    fun session(token: String?): Session = Session(callForHandle { out, err -> lib.triplite_db_session(handle, token, out, err) })

    /** A session from claims the application vouches for (`{"sub": "alice"}`). */
    fun sessionFromClaims(claims: JsonObject): Session =
        Session(callForHandle { out, err -> lib.triplite_db_session_from_claims(handle, claims.toString(), out, err) })

    /** Subscribes: `onResult` gets the result now and after every commit that changes it. */
    fun subscribe(query: JsonObject, onResult: (JsonObject) -> Unit): Subscription =
        Subscription.open(onResult) { callback, data, destroy, out, err ->
            lib.triplite_db_subscribe(handle, query.toString(), callback, data, destroy, out, err)
        }

    /** [subscribe] as a Flow: collecting subscribes, cancelling frees the subscription. */
    fun results(query: JsonObject): Flow<JsonObject> = Subscription.flow { subscribe(query, it) }

    override fun close() = lib.triplite_db_close(handle)
}

/** A database seen through a session's permission rules (`triplite_session_*`). */
class Session internal constructor(private val handle: Pointer) : AutoCloseable {
    fun insert(collection: String, doc: JsonObject): JsonObject =
        parse(callForString { out, err -> lib.triplite_session_insert(handle, collection, doc.toString(), out, err) }).jsonObject

    fun update(collection: String, id: String, patch: JsonObject) =
        call { err -> lib.triplite_session_update(handle, collection, id, patch.toString(), err) }

    fun delete(collection: String, id: String) = call { err -> lib.triplite_session_delete(handle, collection, id, err) }

    fun fetch(query: JsonObject): JsonArray =
        parse(callForString { out, err -> lib.triplite_session_fetch(handle, query.toString(), out, err) }).jsonArray

    fun fetchById(collection: String, id: String): JsonObject? =
        parse(callForString { out, err -> lib.triplite_session_fetch_by_id(handle, collection, id, out, err) }) as? JsonObject

    fun subscribe(query: JsonObject, onResult: (JsonObject) -> Unit): Subscription =
        Subscription.open(onResult) { callback, data, destroy, out, err ->
            lib.triplite_session_subscribe(handle, query.toString(), callback, data, destroy, out, err)
        }

    fun results(query: JsonObject): Flow<JsonObject> = Subscription.flow { subscribe(query, it) }

    override fun close() = lib.triplite_session_free(handle)
}

/** A development token signed with `secret`: `kind` "anon" or "secret" (a service token). */
fun mintDevToken(secret: String, kind: String): String =
    callForString { out, err -> lib.triplite_token_mint_dev(secret, kind, out, err) }

internal val JsonNullText: String = JsonNull.toString()
