package dev.triplite

import com.sun.jna.Callback
import com.sun.jna.Library
import com.sun.jna.Memory
import com.sun.jna.Native
import com.sun.jna.Pointer
import com.sun.jna.ptr.PointerByReference
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicLong

// The C ABI of include/triplite.h, declared for JNA one function per line, in the header's
// order. Handles are opaque pointers; every `char **` is a PointerByReference whose string this
// binding frees with triplite_string_free.

internal fun interface ResultCallback : Callback {
    fun invoke(userData: Pointer?, json: Pointer?)
}

internal fun interface DestroyCallback : Callback {
    fun invoke(userData: Pointer?)
}

internal fun interface TokenCallback : Callback {
    fun invoke(userData: Pointer?): Pointer?
}

@Suppress("FunctionName")
internal interface TripliteLibrary : Library {
    fun triplite_version(): Pointer
    fun triplite_string_free(text: Pointer?)

    fun triplite_client_open(options: String?, outClient: PointerByReference, outErr: PointerByReference): Int
    fun triplite_client_close(client: Pointer?)
    fun triplite_client_insert(client: Pointer, collection: String, doc: String, outJson: PointerByReference?, outErr: PointerByReference): Int
    fun triplite_client_update(client: Pointer, collection: String, id: String, patch: String, outErr: PointerByReference): Int
    fun triplite_client_delete(client: Pointer, collection: String, id: String, outErr: PointerByReference): Int
    fun triplite_client_transact(client: Pointer, ops: String, outJson: PointerByReference?, outErr: PointerByReference): Int
    fun triplite_client_fetch(client: Pointer, query: String, options: String?, outJson: PointerByReference, outErr: PointerByReference): Int
    fun triplite_client_subscribe(client: Pointer, query: String, options: String?, onResult: ResultCallback, userData: Pointer?, destroy: DestroyCallback?, outSub: PointerByReference, outErr: PointerByReference): Int
    fun triplite_client_update_token(client: Pointer, token: String?, outErr: PointerByReference): Int
    fun triplite_client_connect(client: Pointer, outErr: PointerByReference): Int
    fun triplite_client_disconnect(client: Pointer, outErr: PointerByReference): Int
    fun triplite_client_reset(client: Pointer, outErr: PointerByReference): Int
    fun triplite_client_start_session(client: Pointer, token: String, connect: Boolean, outErr: PointerByReference): Int
    fun triplite_client_start_session_with_refresh(client: Pointer, token: String, connect: Boolean, refresh: TokenCallback, userData: Pointer?, destroy: DestroyCallback?, outErr: PointerByReference): Int
    fun triplite_client_end_session(client: Pointer, outErr: PointerByReference): Int
    fun triplite_client_update_session_token(client: Pointer, token: String, outErr: PointerByReference): Int
    fun triplite_client_on_event(client: Pointer, onEvent: ResultCallback, userData: Pointer?, destroy: DestroyCallback?, outErr: PointerByReference): Int
    fun triplite_client_status(client: Pointer, outJson: PointerByReference, outErr: PointerByReference): Int

    fun triplite_db_open(path: String?, options: String?, outDb: PointerByReference, outErr: PointerByReference): Int
    fun triplite_db_close(db: Pointer?)
    fun triplite_db_set_schema(db: Pointer, schema: String, outChange: PointerByReference?, outErr: PointerByReference): Int
    fun triplite_db_insert(db: Pointer, collection: String, doc: String, outJson: PointerByReference?, outErr: PointerByReference): Int
    fun triplite_db_update(db: Pointer, collection: String, id: String, patch: String, outErr: PointerByReference): Int
    fun triplite_db_delete(db: Pointer, collection: String, id: String, outErr: PointerByReference): Int
    fun triplite_db_transact(db: Pointer, ops: String, outJson: PointerByReference?, outErr: PointerByReference): Int
    fun triplite_db_fetch(db: Pointer, query: String, outJson: PointerByReference, outErr: PointerByReference): Int
    fun triplite_db_fetch_by_id(db: Pointer, collection: String, id: String, outJson: PointerByReference, outErr: PointerByReference): Int
    fun triplite_db_session(db: Pointer, token: String?, outSession: PointerByReference, outErr: PointerByReference): Int
    fun triplite_db_session_from_claims(db: Pointer, claims: String, outSession: PointerByReference, outErr: PointerByReference): Int
    fun triplite_session_free(session: Pointer?)
    fun triplite_session_insert(session: Pointer, collection: String, doc: String, outJson: PointerByReference?, outErr: PointerByReference): Int
    fun triplite_session_update(session: Pointer, collection: String, id: String, patch: String, outErr: PointerByReference): Int
    fun triplite_session_delete(session: Pointer, collection: String, id: String, outErr: PointerByReference): Int
    fun triplite_session_fetch(session: Pointer, query: String, outJson: PointerByReference, outErr: PointerByReference): Int
    fun triplite_session_fetch_by_id(session: Pointer, collection: String, id: String, outJson: PointerByReference, outErr: PointerByReference): Int
    fun triplite_db_subscribe(db: Pointer, query: String, onResult: ResultCallback, userData: Pointer?, destroy: DestroyCallback?, outSub: PointerByReference, outErr: PointerByReference): Int
    fun triplite_session_subscribe(session: Pointer, query: String, onResult: ResultCallback, userData: Pointer?, destroy: DestroyCallback?, outSub: PointerByReference, outErr: PointerByReference): Int
    fun triplite_subscription_free(sub: Pointer?)

    fun triplite_token_mint_dev(secret: String, kind: String, outToken: PointerByReference, outErr: PointerByReference): Int
}

/** The loaded library: from `jna.library.path`, or the JAR's `linux-x86-64/` (Android: `jniLibs/<abi>/`). */
internal val lib: TripliteLibrary by lazy {
    Native.load("triplite", TripliteLibrary::class.java, mapOf(Library.OPTION_STRING_ENCODING to "UTF-8"))
}

/** The library's version, e.g. `0.1.0`. */
fun tripliteVersion(): String = lib.triplite_version().getString(0, "UTF-8")

/** A string the library returned, read and freed. */
internal fun takeString(pointer: Pointer?): String? {
    pointer ?: return null
    val text = pointer.getString(0, "UTF-8")
    lib.triplite_string_free(pointer)
    return text
}

/** Runs one fallible call: its status and error message become a [TripliteException]. */
internal inline fun call(body: (PointerByReference) -> Int) {
    val err = PointerByReference()
    val status = body(err)
    val message = takeString(err.value)
    if (status != 0) throw TripliteException.of(status, message ?: "")
}

/** A fallible call with one string out (`out_json`), returned. */
internal inline fun callForString(body: (PointerByReference, PointerByReference) -> Int): String {
    val out = PointerByReference()
    call { err -> body(out, err) }
    return takeString(out.value) ?: "null"
}

/** A fallible call with one handle out, returned. */
internal inline fun callForHandle(body: (PointerByReference, PointerByReference) -> Int): Pointer {
    val out = PointerByReference()
    call { err -> body(out, err) }
    return out.value ?: throw TripliteException(10, "INTERNAL", "the library returned no handle")
}

/**
 * Callbacks the library holds, kept reachable until it says it is done with them (its
 * `destroy` callback): JNA frees a callback's native stub when the object is collected.
 * `user_data` is the key, so the library never holds a JVM pointer.
 */
internal object Held {
    private val next = AtomicLong(1)
    private val held = ConcurrentHashMap<Long, Any>()

    /** Keeps `callbacks` until the returned destroy callback runs; returns the user_data and it. */
    fun keep(vararg callbacks: Any): Pair<Pointer, DestroyCallback> {
        val key = next.getAndIncrement()
        val destroy = DestroyCallback { data -> held.remove(Pointer.nativeValue(data)) }
        held[key] = listOf(*callbacks, destroy)
        return Pointer(key) to destroy
    }

    /** How many are held (tests check nothing leaks). */
    val size: Int get() = held.size
}

/** A UTF-8, NUL-terminated copy of `text` in native memory. */
internal fun nativeString(text: String): Memory {
    val bytes = text.toByteArray(Charsets.UTF_8)
    val memory = Memory(bytes.size + 1L)
    memory.write(0, bytes, 0, bytes.size)
    memory.setByte(bytes.size.toLong(), 0)
    return memory
}
