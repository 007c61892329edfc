/* Every function of the C ABI, with its error paths: bad JSON, schema violations, NULL
 * handles and arguments, a forged token, a permission-denied write through a session, and a
 * subscription callback fed by writes from another thread. Run by tests/ffi.rs, linked
 * statically and dynamically, under valgrind. */
#include "check.h"

#include <pthread.h>
#include <stdlib.h>

static const char *SCHEMA =
    "{\"roles\": {\"user\": {\"match\": {\"sub\": \"$userId\"}}},"
    " \"collections\": {\"todos\": {"
    "  \"schema\": {\"type\": \"record\", \"properties\": {"
    "    \"id\": {\"type\": \"string\"}, \"text\": {\"type\": \"string\"}, \"owner\": {\"type\": \"string\"},"
    "    \"done\": {\"type\": \"boolean\", \"config\": {\"default\": false}}}},"
    "  \"permissions\": {\"user\": {"
    "    \"read\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]},"
    "    \"insert\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]},"
    "    \"update\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]},"
    "    \"delete\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]}}}}}}";

/* What the subscription callback saw, guarded for the delivery thread. */
typedef struct {
  pthread_mutex_t lock;
  int calls;
  int last_count;
  int destroyed;
} seen_t;

static int count_results(const char *json) {
  /* Count "owner" keys inside "results": enough for these documents. */
  const char *results = strstr(json, "\"results\"");
  const char *added = strstr(json, "\"added\"");
  int n = 0;
  for (const char *p = results; p && (p = strstr(p, "\"owner\"")) && (!added || p < added || added < results); p++) n++;
  return n;
}

static void on_result(void *user_data, const char *result_json) {
  seen_t *seen = user_data;
  pthread_mutex_lock(&seen->lock);
  seen->calls++;
  seen->last_count = count_results(result_json);
  pthread_mutex_unlock(&seen->lock);
}

/* A deltas-only subscription: what its callbacks added up to, and whether one held "results". */
typedef struct {
  pthread_mutex_t lock;
  int added;
  int with_results;
} deltas_t;

static void on_delta(void *user_data, const char *result_json) {
  deltas_t *deltas = user_data;
  pthread_mutex_lock(&deltas->lock);
  if (strstr(result_json, "\"results\"")) deltas->with_results++;
  /* Each added entity carries one "owner" between "added" and "removed". */
  const char *added = strstr(result_json, "\"added\"");
  const char *removed = strstr(result_json, "\"removed\"");
  for (const char *p = added; p && (p = strstr(p, "\"owner\"")) && p < removed; p++) deltas->added++;
  pthread_mutex_unlock(&deltas->lock);
}

static int wait_for_added(deltas_t *deltas, int count) {
  for (int i = 0; i < 500; i++) {
    pthread_mutex_lock(&deltas->lock);
    int got = deltas->added;
    pthread_mutex_unlock(&deltas->lock);
    if (got == count) return 1;
    sleep_ms(10);
  }
  return 0;
}

static void on_destroy(void *user_data) {
  seen_t *seen = user_data;
  pthread_mutex_lock(&seen->lock);
  seen->destroyed++;
  pthread_mutex_unlock(&seen->lock);
}

static void *writer(void *arg) {
  triplite_db *db = arg;
  char doc[128];
  for (int i = 0; i < 5; i++) {
    snprintf(doc, sizeof doc, "{\"id\": \"w%d\", \"text\": \"from a thread\", \"owner\": \"alice\"}", i);
    EXPECT(TRIPLITE_OK, NULL, triplite_db_insert(db, "todos", doc, NULL, &err));
  }
  return NULL;
}


static int wait_for_count(seen_t *seen, int count) {
  for (int i = 0; i < 500; i++) {
    pthread_mutex_lock(&seen->lock);
    int got = seen->last_count;
    pthread_mutex_unlock(&seen->lock);
    if (got == count) return 1;
    sleep_ms(10);
  }
  return 0;
}

int main(void) {
  char *json = NULL;
  CHECK(strlen(triplite_version()) > 0);
  triplite_string_free(NULL);

  /* Opening: bad options, then a good in-memory database. */
  triplite_db *db = NULL;
  EXPECT(TRIPLITE_INVALID_JSON, "options_json", triplite_db_open(NULL, "{not json", &db, &err));
  EXPECT(TRIPLITE_INVALID_JSON, "colour", triplite_db_open(NULL, "{\"colour\": 1}", &db, &err));
  EXPECT(TRIPLITE_MISUSE, "out_db", triplite_db_open(NULL, NULL, NULL, &err));
  char options[2048];
  snprintf(options, sizeof options, "{\"schema\": %s, \"jwt_secret\": \"c-test-secret\", \"client_id\": \"c\"}", SCHEMA);
  EXPECT(TRIPLITE_OK, NULL, triplite_db_open(":memory:", options, &db, &err));
  CHECK(db != NULL);

  /* A file database, and set_schema with its change. */
  triplite_db *file_db = NULL;
  char path[] = "/tmp/triplite-c-test-XXXXXX";
  CHECK(mkdtemp(path) != NULL);
  char file[300];
  snprintf(file, sizeof file, "%s/app.db", path);
  EXPECT(TRIPLITE_OK, NULL, triplite_db_open(file, NULL, &file_db, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_db_set_schema(file_db, SCHEMA, &json, &err));
  CHECK(json && strstr(json, "\"successful\":true"));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_SCHEMA, NULL, triplite_db_set_schema(file_db, "{\"collections\": 5}", NULL, &err));
  triplite_db_close(file_db);

  /* Writes and their errors. */
  EXPECT(TRIPLITE_OK, NULL, triplite_db_insert(db, "todos", "{\"id\": \"t1\", \"text\": \"milk\", \"owner\": \"alice\"}", &json, &err));
  CHECK(json && strstr(json, "\"done\":false"));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_SCHEMA, "text", triplite_db_insert(db, "todos", "{\"id\": \"t2\", \"text\": 5, \"owner\": \"a\"}", NULL, &err));
  EXPECT(TRIPLITE_SCHEMA, "nope", triplite_db_insert(db, "nope", "{}", NULL, &err));
  EXPECT(TRIPLITE_INVALID_JSON, "doc_json", triplite_db_insert(db, "todos", "{oops", NULL, &err));
  EXPECT(TRIPLITE_MISUSE, "db", triplite_db_insert(NULL, "todos", "{}", NULL, &err));
  EXPECT(TRIPLITE_MISUSE, "collection", triplite_db_insert(db, NULL, "{}", NULL, &err));
  EXPECT(TRIPLITE_MISUSE, "UTF-8", triplite_db_insert(db, "todos", "{\"id\": \"\xff\"}", NULL, &err));
  CHECK(triplite_db_insert(db, "todos", NULL, NULL, NULL) == TRIPLITE_MISUSE); /* out_err may be NULL */
  EXPECT(TRIPLITE_OK, NULL, triplite_db_update(db, "todos", "t1", "{\"done\": true}", &err));
  EXPECT(TRIPLITE_NOT_FOUND, NULL, triplite_db_update(db, "todos", "missing", "{\"done\": true}", &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_db_transact(db,
                              "[{\"op\": \"insert\", \"collection\": \"todos\", \"doc\": {\"id\": \"t3\", \"text\": \"x\", \"owner\": \"bob\"}},"
                              " {\"op\": \"update\", \"collection\": \"todos\", \"id\": \"t3\", \"patch\": {\"text\": \"y\"}},"
                              " {\"op\": \"delete\", \"collection\": \"todos\", \"id\": \"t3\"}]",
                              &json, &err));
  CHECK(json && strstr(json, "\"t3\"") && strstr(json, "null"));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_INVALID_JSON, "explode", triplite_db_transact(db,
                              "[{\"op\": \"insert\", \"collection\": \"todos\", \"doc\": {\"id\": \"t4\", \"text\": \"x\", \"owner\": \"bob\"}},"
                              " {\"op\": \"explode\", \"collection\": \"todos\"}]",
                              NULL, &err));

  /* Reads. */
  EXPECT(TRIPLITE_OK, NULL, triplite_db_fetch_by_id(db, "todos", "t4", &json, &err));
  CHECK(json && strcmp(json, "null") == 0); /* the failed transaction left nothing */
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_db_fetch_by_id(db, "todos", "t1", &json, &err));
  CHECK(json && strstr(json, "\"done\":true"));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_db_fetch(db, "{\"collectionName\": \"todos\", \"where\": [[\"done\", \"=\", true]]}", &json, &err));
  CHECK(json && strstr(json, "\"t1\""));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_QUERY, NULL, triplite_db_fetch(db, "{\"collectionName\": \"todos\", \"where\": [[\"done\", \"like\", 1]]}", &json, &err));
  EXPECT(TRIPLITE_MISUSE, "out_json", triplite_db_fetch(db, "{\"collectionName\": \"todos\"}", NULL, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_db_delete(db, "todos", "t1", &err));

  /* Sessions: a forged token, then claims; a denied write. */
  triplite_session *alice = NULL;
  EXPECT(TRIPLITE_AUTH, NULL, triplite_db_session(db, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", &alice, &err));
  CHECK(alice == NULL);
  char *secret_token = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_token_mint_dev("c-test-secret", "secret", &secret_token, &err));
  EXPECT(TRIPLITE_MISUSE, "kind", triplite_token_mint_dev("c-test-secret", "root", &json, &err));
  triplite_session *service = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_db_session(db, secret_token, &service, &err));
  triplite_string_free(secret_token);
  EXPECT(TRIPLITE_OK, NULL, triplite_session_insert(service, "todos", "{\"id\": \"s1\", \"text\": \"admin\", \"owner\": \"bob\"}", NULL, &err));
  triplite_session_free(service);
  EXPECT(TRIPLITE_OK, NULL, triplite_db_session_from_claims(db, "{\"sub\": \"alice\"}", &alice, &err));
  EXPECT(TRIPLITE_INVALID_JSON, NULL, triplite_db_session_from_claims(db, "[1]", &alice, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_session_insert(alice, "todos", "{\"id\": \"a1\", \"text\": \"mine\", \"owner\": \"alice\"}", NULL, &err));
  EXPECT(TRIPLITE_PERMISSION, "WritePermissionError", triplite_session_insert(alice, "todos", "{\"id\": \"a2\", \"text\": \"forged\", \"owner\": \"bob\"}", NULL, &err));
  /* A denied write to a row alice cannot read is answered as one to a missing row. */
  EXPECT(TRIPLITE_NOT_FOUND, "EntityNotFoundError", triplite_session_update(alice, "todos", "s1", "{\"text\": \"taken\"}", &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_session_update(alice, "todos", "a1", "{\"text\": \"edited\"}", &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_session_fetch_by_id(alice, "todos", "s1", &json, &err));
  CHECK(json && strcmp(json, "null") == 0); /* bob's row is invisible to alice */
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_session_fetch(alice, "{\"collectionName\": \"todos\"}", &json, &err));
  CHECK(json && strstr(json, "\"a1\"") && !strstr(json, "\"s1\""));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_session_delete(alice, "todos", "s1", &err)); /* as a missing row: nothing */
  EXPECT(TRIPLITE_OK, NULL, triplite_db_fetch_by_id(db, "todos", "s1", &json, &err));
  CHECK(json && strstr(json, "\"s1\""));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_MISUSE, "session", triplite_session_delete(NULL, "todos", "s1", &err));

  /* A subscription fed by writes from another thread. */
  seen_t seen = {PTHREAD_MUTEX_INITIALIZER, 0, -1, 0};
  triplite_subscription *sub = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_session_subscribe(alice, "{\"collectionName\": \"todos\"}", on_result, &seen, on_destroy, &sub, &err));
  CHECK(wait_for_count(&seen, 1)); /* a1 */
  pthread_t thread;
  pthread_create(&thread, NULL, writer, db);
  pthread_join(thread, NULL);
  CHECK(wait_for_count(&seen, 6)); /* a1 and w0..w4, through alice's rules */
  triplite_subscription_free(sub);
  pthread_mutex_lock(&seen.lock);
  int calls = seen.calls;
  pthread_mutex_unlock(&seen.lock);
  CHECK(calls >= 2);
  EXPECT(TRIPLITE_OK, NULL, triplite_db_insert(db, "todos", "{\"id\": \"late\", \"text\": \"after\", \"owner\": \"alice\"}", NULL, &err));
  sleep_ms(100);
  pthread_mutex_lock(&seen.lock);
  CHECK(seen.calls == calls); /* nothing after free */
  CHECK(seen.destroyed == 1);
  pthread_mutex_unlock(&seen.lock);
  /* Subscribing with a NULL callback still runs the destructor once. */
  seen_t unused = {PTHREAD_MUTEX_INITIALIZER, 0, -1, 0};
  EXPECT(TRIPLITE_MISUSE, "on_result", triplite_db_subscribe(db, "{\"collectionName\": \"todos\"}", NULL, &unused, on_destroy, &sub, &err));
  CHECK(unused.destroyed == 1);
  triplite_subscription *db_sub = NULL;
  seen_t all = {PTHREAD_MUTEX_INITIALIZER, 0, -1, 0};
  EXPECT(TRIPLITE_OK, NULL, triplite_db_subscribe(db, "{\"collectionName\": \"todos\"}", on_result, &all, NULL, &db_sub, &err));
  CHECK(wait_for_count(&all, 8)); /* a1, s1, w0..w4, late */
  triplite_subscription_free(db_sub);
  /* Deltas only: the first callback adds the whole result, later ones what changed; none
   * carries "results". Bad options are refused, and the destructor still runs. */
  deltas_t deltas = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
  triplite_subscription *delta_sub = NULL;
  EXPECT(TRIPLITE_OK, NULL,
         triplite_db_subscribe_with_options(db, "{\"collectionName\": \"todos\"}", "{\"deltas\": true}", on_delta, &deltas, NULL, &delta_sub, &err));
  CHECK(wait_for_added(&deltas, 8));
  EXPECT(TRIPLITE_OK, NULL, triplite_db_insert(db, "todos", "{\"id\": \"delta\", \"text\": \"one more\", \"owner\": \"bob\"}", NULL, &err));
  CHECK(wait_for_added(&deltas, 9));
  triplite_subscription_free(delta_sub);
  CHECK(deltas.with_results == 0);
  seen_t refused = {PTHREAD_MUTEX_INITIALIZER, 0, -1, 0};
  EXPECT(TRIPLITE_INVALID_JSON, "deltas",
         triplite_db_subscribe_with_options(db, "{\"collectionName\": \"todos\"}", "{\"deltas\": 1}", on_result, &refused, on_destroy, &sub, &err));
  EXPECT(TRIPLITE_INVALID_JSON, "unknown option",
         triplite_db_subscribe_with_options(db, "{\"collectionName\": \"todos\"}", "{\"full\": true}", on_result, &refused, on_destroy, &sub, &err));
  CHECK(refused.destroyed == 2);
  triplite_session_free(alice);

  /* The embedded server. */
  triplite_server *server = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_server_start(db, "{\"host\": \"127.0.0.1\", \"port\": 0}", &server, &err));
  CHECK(triplite_server_port(server) > 0);
  CHECK(triplite_server_port(NULL) == 0);
  triplite_server *second = NULL;
  char taken[64];
  snprintf(taken, sizeof taken, "{\"port\": %u}", (unsigned)triplite_server_port(server));
  EXPECT(TRIPLITE_NETWORK, NULL, triplite_server_start(db, taken, &second, &err));
  EXPECT(TRIPLITE_INVALID_JSON, "port", triplite_server_start(db, "{\"port\": \"x\"}", &second, &err));
  triplite_server_stop(server);
  triplite_server_stop(NULL);

  /* Releasing NULL is fine everywhere. */
  triplite_db_close(NULL);
  triplite_session_free(NULL);
  triplite_subscription_free(NULL);
  triplite_db_close(db);

  return report();
}
