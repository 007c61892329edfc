package dev.triplite

import com.sun.jna.Pointer
import com.sun.jna.ptr.PointerByReference
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicReference
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.conflate
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.jsonObject

/**
 * A live query. Its callback runs on the library's delivery thread, one result at a time;
 * it may call the library, and may close this subscription. No callback starts after
 * [close] returns (from another thread it waits for one under way).
 */
class Subscription internal constructor() : AutoCloseable {
    private val handle = AtomicReference<Pointer?>(null)
    private val closed = AtomicBoolean(false)

    /** Takes the native handle; a close that came first (from the first callback) frees it now. */
    internal fun attach(native: Pointer) {
        handle.set(native)
        if (closed.get()) free()
    }

    override fun close() {
        closed.set(true)
        free()
    }

    private fun free() {
        handle.getAndSet(null)?.let { lib.triplite_subscription_free(it) }
    }

    internal companion object {
        /**
         * Subscribes through one of the C ABI's subscribe calls: `start` receives the result
         * callback, the user_data and the destroy callback, and the handle to fill in.
         */
        fun open(
            onResult: (JsonObject) -> Unit,
            start: (ResultCallback, Pointer, DestroyCallback, PointerByReference, PointerByReference) -> Int,
        ): Subscription {
            val subscription = Subscription()
            val callback = ResultCallback { _, json ->
                val text = json?.getString(0, "UTF-8") ?: return@ResultCallback
                onResult(Json.parseToJsonElement(text).jsonObject)
            }
            val (userData, destroy) = Held.keep(callback)
            subscription.attach(callForHandle { out, err -> start(callback, userData, destroy, out, err) })
            return subscription
        }

        /**
         * A subscription as a [Flow] of results (`{"results": [...], "added", "removed",
         * "updated", ...}`): collecting subscribes, cancelling frees it. Results are conflated —
         * each carries the whole result, so a slow collector gets the latest.
         */
        fun flow(subscribe: ((JsonObject) -> Unit) -> Subscription): Flow<JsonObject> = callbackFlow {
            val subscription = subscribe { result -> trySend(result) }
            awaitClose { subscription.close() }
        }.conflate()
    }
}
