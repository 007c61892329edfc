package dev.triplite.expo

import dev.triplite.Client
import dev.triplite.FetchPolicy
import dev.triplite.Subscription
import dev.triplite.TripliteException
import dev.triplite.tripliteVersion
import expo.modules.kotlin.exception.CodedException
import expo.modules.kotlin.functions.Coroutine
import expo.modules.kotlin.modules.Module
import expo.modules.kotlin.modules.ModuleDefinition
import java.util.concurrent.ConcurrentHashMap
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive

/**
 * The Expo module over the Kotlin binding (`bindings/kotlin`): the `TripliteNativeModule`
 * interface of `src/native.ts`, JSON strings in and out, handles chosen by the TypeScript side.
 * Nothing here decides anything: each function is one call of the binding.
 */
class TripliteModule : Module() {
    private val clients = ConcurrentHashMap<Int, Client>()
    private val eventJobs = ConcurrentHashMap<Int, Job>()
    private val subscriptions = ConcurrentHashMap<Int, Subscription>()
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.IO)

    override fun definition() = ModuleDefinition {
        Name("Triplite")
        Events("onResult", "onEvent")

        Function("version") { tripliteVersion() }

        AsyncFunction("clientOpen") Coroutine { handle: Int, optionsJson: String ->
            bridged {
                if (clients.containsKey(handle)) throw misuse("client $handle is open already")
                val client = Client(Json.parseToJsonElement(optionsJson).jsonObject)
                // Registered here, before the client is handed out (the TypeScript side opens
                // without connecting, then reads the status, then connects): no event is missed.
                val events = try {
                    client.events()
                } catch (error: Throwable) {
                    client.close()
                    throw error
                }
                clients[handle] = client
                eventJobs[handle] = scope.launch {
                    events.collect { event -> sendEvent("onEvent", mapOf("client" to handle, "json" to event.toString())) }
                }
            }
        }
        AsyncFunction("clientClose") Coroutine { handle: Int ->
            val client = clients.remove(handle) ?: return@Coroutine
            eventJobs.remove(handle)?.cancel()
            withContext(Dispatchers.IO) { client.close() }
        }

        AsyncFunction("clientInsert") Coroutine { handle: Int, collection: String, docJson: String ->
            bridged { client(handle).insert(collection, parse(docJson)).toString() }
        }
        AsyncFunction("clientUpdate") Coroutine { handle: Int, collection: String, id: String, patchJson: String ->
            bridged { client(handle).update(collection, id, parse(patchJson)) }
        }
        AsyncFunction("clientDelete") Coroutine { handle: Int, collection: String, id: String ->
            bridged { client(handle).delete(collection, id) }
        }
        AsyncFunction("clientTransact") Coroutine { handle: Int, opsJson: String ->
            bridged { client(handle).transact(Json.parseToJsonElement(opsJson) as JsonArray).toString() }
        }
        AsyncFunction("clientFetch") Coroutine { handle: Int, queryJson: String, optionsJson: String? ->
            bridged {
                val wire = optionsJson?.let { parse(it)["policy"]?.jsonPrimitive?.content } ?: FetchPolicy.LOCAL_FIRST.wire
                val policy = FetchPolicy.entries.firstOrNull { it.wire == wire } ?: throw misuse("unknown fetch policy `$wire`")
                client(handle).fetch(parse(queryJson), policy).toString()
            }
        }

        AsyncFunction("clientSubscribe") Coroutine { handle: Int, subscription: Int, queryJson: String, _: String? ->
            bridged {
                if (subscriptions.containsKey(subscription)) throw misuse("subscription $subscription exists already")
                subscriptions[subscription] = client(handle).subscribe(parse(queryJson)) { result ->
                    sendEvent("onResult", mapOf("subscription" to subscription, "json" to result.toString()))
                }
            }
        }
        AsyncFunction("subscriptionFree") Coroutine { subscription: Int ->
            val live = subscriptions.remove(subscription) ?: return@Coroutine
            withContext(Dispatchers.IO) { live.close() }
        }

        AsyncFunction("clientUpdateToken") Coroutine { handle: Int, token: String? -> bridged { client(handle).updateToken(token) } }
        AsyncFunction("clientConnect") Coroutine { handle: Int -> bridged { client(handle).connect() } }
        AsyncFunction("clientDisconnect") Coroutine { handle: Int -> bridged { client(handle).disconnect() } }
        AsyncFunction("clientReset") Coroutine { handle: Int -> bridged { client(handle).reset() } }
        AsyncFunction("clientStartSession") Coroutine { handle: Int, token: String, connect: Boolean ->
            bridged { client(handle).startSession(token, connect) }
        }
        AsyncFunction("clientEndSession") Coroutine { handle: Int -> bridged { client(handle).endSession() } }
        AsyncFunction("clientUpdateSessionToken") Coroutine { handle: Int, token: String ->
            bridged { client(handle).updateSessionToken(token) }
        }
        AsyncFunction("clientStatus") Coroutine { handle: Int -> bridged { client(handle).status().toString() } }

        OnDestroy {
            subscriptions.values.forEach { it.close() }
            subscriptions.clear()
            clients.values.forEach { it.close() }
            clients.clear()
            scope.cancel()
        }
    }

    private fun client(handle: Int): Client = clients[handle] ?: throw misuse("no open client $handle")

    private fun parse(json: String): JsonObject = Json.parseToJsonElement(json).jsonObject

    /** Runs a binding call off the JS thread; a library failure rejects with its status as `code`. */
    private suspend fun <T> bridged(body: suspend () -> T): T = withContext(Dispatchers.IO) {
        try {
            body()
        } catch (error: TripliteException) {
            throw TripliteCodedException(error)
        }
    }

    private fun misuse(message: String) = TripliteCodedException(TripliteException(TripliteException.MISUSE, "MisuseError", message))
}

/** What the TypeScript side reads back into a `TripliteError`: `TRIPLITE_<STATUS>` and `"<Name>: <message>"`. */
class TripliteCodedException(error: TripliteException) :
    CodedException("TRIPLITE_" + TripliteException.nameOf(error.status), "${error.name}: ${error.message}", error)
