package dev.triplite

import java.io.File
import java.nio.file.Files
import java.util.Base64
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.buildJsonArray
import kotlinx.serialization.json.buildJsonObject
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.put
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows

/** The binding against the real library and a `triplite serve` this test starts on loopback. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TripliteTest {
    private val secret = "kotlin-binding-test-secret-0123456789"
    private val schema: JsonObject = Json.parseToJsonElement(
        """{"collections": {"todos": {"schema": {"type": "record", "properties": {
            "id": {"type": "string", "config": {"default": {"func": "nanoid", "args": null}}},
            "text": {"type": "string"},
            "owner": {"type": "string"}}},
          "permissions": {"user": {
            "read": {"filter": [["owner", "=", "${'$'}role.userId"]]},
            "insert": {"filter": [["owner", "=", "${'$'}role.userId"]]},
            "update": {"filter": [["owner", "=", "${'$'}role.userId"]]},
            "postUpdate": {"filter": [["owner", "=", "${'$'}role.userId"]]},
            "delete": {"filter": [["owner", "=", "${'$'}role.userId"]]}}}}},
          "roles": {"user": {"match": {"sub": "${'$'}userId"}}}}""",
    ).jsonObject
    private lateinit var server: Process
    private lateinit var serverUrl: String

    @BeforeAll
    fun startServer() {
        val schemaFile = Files.createTempFile("triplite-schema", ".json").toFile()
        schemaFile.writeText(schema.toString())
        val binary = System.getProperty("triplite.binary") ?: error("triplite.binary is not set (see pom.xml)")
        val builder = ProcessBuilder(binary, "serve", "--storage", "memory", "--schema", schemaFile.path)
        builder.environment().putAll(mapOf("PORT" to "0", "HOST" to "127.0.0.1", "JWT_SECRET" to secret))
        builder.redirectOutput(ProcessBuilder.Redirect.DISCARD)
        server = builder.start()
        val listening = CountDownLatch(1)
        Thread {
            // Reads the log until the process ends, so the pipe never fills.
            server.errorStream.bufferedReader().forEachLine { line ->
                val entry = runCatching { Json.parseToJsonElement(line).jsonObject }.getOrNull()
                if (entry?.get("message")?.jsonPrimitive?.content == "listening") {
                    serverUrl = "http://" + entry["addr"]!!.jsonPrimitive.content
                    listening.countDown()
                }
            }
        }.apply { isDaemon = true }.start()
        assertTrue(listening.await(60, TimeUnit.SECONDS), "triplite serve started")
    }

    @AfterAll
    fun stopServer() {
        server.destroyForcibly().waitFor()
    }

    /** A user token as an identity provider signs it (HS256 with the server's secret). */
    private fun userToken(user: String): String {
        val encoder = Base64.getUrlEncoder().withoutPadding()
        val header = encoder.encodeToString("""{"alg":"HS256","typ":"JWT"}""".toByteArray())
        val claims = encoder.encodeToString("""{"sub":"$user","exp":4000000000}""".toByteArray())
        val mac = Mac.getInstance("HmacSHA256").apply { init(SecretKeySpec(secret.toByteArray(), "HmacSHA256")) }
        return "$header.$claims." + encoder.encodeToString(mac.doFinal("$header.$claims".toByteArray()))
    }

    private fun client(token: String?, path: String? = null): Client = Client(buildJsonObject {
        put("serverUrl", serverUrl)
        if (token != null) put("token", token)
        put("schema", schema)
        if (path != null) put("path", path)
    })

    private fun todos() = buildJsonObject { put("collectionName", "todos") }

    private fun todo(text: String, owner: String) = buildJsonObject {
        put("text", text)
        put("owner", owner)
    }

    private fun texts(results: JsonObject): Set<String> =
        results["results"]!!.jsonArray.map { it.jsonObject["text"]!!.jsonPrimitive.content }.toSet()

    /** Waits until `condition` holds (the server's answers arrive on the client's threads). */
    private fun eventually(what: String, condition: () -> Boolean) {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
        while (!condition()) {
            check(System.nanoTime() < deadline) { "timed out waiting: $what" }
            Thread.sleep(20)
        }
    }

    @Test
    fun aDatabaseInsertsFetchesAndSubscribesThroughAFlow() = runBlocking {
        Database(null, buildJsonObject { put("schema", schema) }).use { db ->
            val first = db.insert("todos", todo("first", "alice"))
            assertEquals("first", first["text"]!!.jsonPrimitive.content)
            assertTrue(first["id"]!!.jsonPrimitive.content.isNotEmpty(), "the default id is filled in")
            assertEquals(first, db.fetchById("todos", first["id"]!!.jsonPrimitive.content))
            assertNull(db.fetchById("todos", "missing"))
            val results = db.results(todos())
            assertEquals(setOf("first"), texts(withTimeout(10_000) { results.first() }))
            val both = withTimeout(10_000) {
                results.first { result ->
                    if (texts(result) == setOf("first")) db.insert("todos", todo("second", "alice"))
                    texts(result).size == 2
                }
            }
            assertEquals(setOf("first", "second"), texts(both))
            val written = db.transact(buildJsonArray {
                add(buildJsonObject { put("op", "insert"); put("collection", "todos"); put("doc", todo("third", "bob")) })
                add(buildJsonObject { put("op", "delete"); put("collection", "todos"); put("id", first["id"]!!.jsonPrimitive.content) })
            })
            assertEquals(2, written.size)
            assertEquals(setOf("second", "third"), db.fetch(todos()).map { it.jsonObject["text"]!!.jsonPrimitive.content }.toSet())
        }
    }

    @Test
    fun failuresAreExceptionsWithTheStatusAndTriplitsName() {
        Database(null, buildJsonObject { put("schema", schema) }).use { db ->
            val unknown = assertThrows<TripliteException> { db.insert("nope", todo("x", "alice")) }
            assertEquals(TripliteException.SCHEMA, unknown.status)
            assertTrue(unknown.name.endsWith("Error"), unknown.name)
            val missing = assertThrows<TripliteException> { db.update("todos", "missing", todo("x", "alice")) }
            assertEquals(TripliteException.NOT_FOUND, missing.status)
            db.sessionFromClaims(buildJsonObject { put("sub", "alice") }).use { alice ->
                alice.insert("todos", todo("mine", "alice"))
                val denied = assertThrows<TripliteException> { alice.insert("todos", todo("theirs", "bob")) }
                assertEquals(TripliteException.PERMISSION, denied.status)
                assertEquals(1, alice.fetch(todos()).size)
            }
            val forged = assertThrows<TripliteException> { db.session("not.a.token") }
            assertEquals(TripliteException.AUTH, forged.status)
        }
    }

    @Test
    fun aSubscriptionClosedFromInsideItsOwnCallbackEndsCleanly() {
        Database(null, buildJsonObject { put("schema", schema) }).use { db ->
            val held = Held.size
            val calls = AtomicInteger()
            lateinit var subscription: Subscription
            val closed = CountDownLatch(1)
            subscription = db.subscribe(todos()) {
                calls.incrementAndGet()
                subscription.close()
                closed.countDown()
            }
            assertTrue(closed.await(10, TimeUnit.SECONDS))
            repeat(5) { db.insert("todos", todo("after $it", "alice")) }
            Thread.sleep(200)
            assertEquals(1, calls.get(), "no callback after the close")
            eventually("the callback is released") { Held.size == held }
        }
    }

    @Test
    fun aClientSyncsWithTheServerAndFollowsTheClerkGuidesTokenFlow() = runBlocking {
        for (user in listOf("alice", "bob")) {
            client(userToken(user)).use { writer ->
                writer.insert("todos", todo("$user's", user))
                eventually("$user's write is acknowledged") { writer.status()["pendingTransactions"]!!.jsonPrimitive.content == "0" }
            }
        }
        val dir = Files.createTempDirectory("triplite-kotlin").toFile()
        client(userToken("alice"), File(dir, "app.db").path).use { app ->
            // Signed in: the server's rows arrive in the subscription.
            val synced = withTimeout(20_000) { app.results(todos()).first { texts(it) == setOf("alice's") } }
            assertEquals(setOf("alice's"), texts(synced))
            // A new user's token: disconnect, update the token, connect.
            app.disconnect()
            app.updateToken(userToken("bob"))
            app.connect()
            assertTrue(app.fetch(todos(), FetchPolicy.LOCAL_ONLY).none { it.jsonObject["owner"]!!.jsonPrimitive.content == "alice" },
                "the next user never sees the previous user's rows")
            val bobs = withTimeout(20_000) { app.results(todos()).first { texts(it) == setOf("bob's") } }
            assertEquals(setOf("bob's"), texts(bobs))
            // Signed out: disconnect, no token, reset.
            app.disconnect()
            app.updateToken(null)
            app.reset()
            assertEquals(0, app.fetch(todos(), FetchPolicy.LOCAL_ONLY).size)
            assertEquals("CLOSED", app.status()["connection"]!!.jsonPrimitive.content)
        }
    }

    @Test
    fun aWriteTheServerRejectsIsReportedAndTheNextOneLands() = runBlocking {
        // The rules run locally too: a write the client's own rules deny fails at once.
        client(userToken("carol")).use { carol ->
            val denied = assertThrows<TripliteException> { carol.insert("todos", todo("not mine", "dave")) }
            assertEquals(TripliteException.PERMISSION, denied.status)
            val events = carol.events()
            val acked = carol.insert("todos", todo("carol's", "carol"))["txId"]!!.jsonPrimitive.content
            val event = withTimeout(20_000) {
                events.first { it["type"]!!.jsonPrimitive.content == "write_acked" && it["txId"]!!.jsonPrimitive.content == acked }
            }
            assertEquals("write_acked", event["type"]!!.jsonPrimitive.content)
        }
    }

    @Test
    fun theLibraryReportsItsVersion() {
        assertTrue(tripliteVersion().matches(Regex("\\d+\\.\\d+\\.\\d+.*")), tripliteVersion())
    }
}
