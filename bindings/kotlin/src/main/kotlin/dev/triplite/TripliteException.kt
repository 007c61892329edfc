package dev.triplite

/**
 * A call the library refused: `status` is the C ABI's `triplite_status` (stable numbers, see
 * the constants), `name` Triplit's error name (`CollectionNotFoundError`,
 * `WritePermissionError`, ...; the status's name when the library gives none), `message` the
 * explanation.
 */
class TripliteException(val status: Int, val name: String, message: String) : Exception(message) {
    companion object {
        private val named = Regex("^([A-Za-z]+Error): (.*)$", RegexOption.DOT_MATCHES_ALL)

        /** From a status and the library's `out_err` text (`"<Name>Error: <message>"`). */
        fun of(status: Int, text: String): TripliteException {
            val match = named.matchEntire(text)
            return when (match) {
                null -> TripliteException(status, nameOf(status), text)
                else -> TripliteException(status, match.groupValues[1], match.groupValues[2])
            }
        }

        private val names = listOf(
            "OK", "MISUSE", "INVALID_JSON", "SCHEMA", "NOT_FOUND", "PERMISSION",
            "AUTH", "QUERY", "STORAGE", "NETWORK", "INTERNAL", "PANIC",
        )

        const val MISUSE = 1
        const val INVALID_JSON = 2
        const val SCHEMA = 3
        const val NOT_FOUND = 4
        const val PERMISSION = 5
        const val AUTH = 6
        const val QUERY = 7
        const val STORAGE = 8
        const val NETWORK = 9
        const val INTERNAL = 10
        const val PANIC = 11

        /** The C enum's name of a status, without `TRIPLITE_`. */
        fun nameOf(status: Int): String = names.getOrElse(status) { "STATUS_$status" }
    }
}
