/* The sync client through the C ABI: two clients through an embedded server, a subscription
 * callback fed by the other client, events, a write the rules deny locally, the Clerk-guide
 * token flow, an expired token, and the error paths (NULL handles, bad JSON). Tokens come from
 * tests/ffi.rs in the environment. Run linked statically and dynamically, under valgrind. */
#include "check.h"

#include <pthread.h>
#include <stdlib.h>

static const char *SCHEMA =
    "{\"roles\": {\"user\": {\"match\": {\"sub\": \"$userId\"}}},"
    " \"collections\": {\"todos\": {"
    "  \"schema\": {\"type\": \"record\", \"properties\": {"
    "    \"id\": {\"type\": \"string\"}, \"text\": {\"type\": \"string\"}, \"owner\": {\"type\": \"string\"}}},"
    "  \"permissions\": {\"user\": {"
    "    \"read\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]},"
    "    \"insert\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]},"
    "    \"update\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]},"
    "    \"delete\": {\"filter\": [[\"owner\", \"=\", \"$role.userId\"]]}}}}}}";

/* What callbacks saw, guarded: they run on the clients' own threads. */
typedef struct {
  pthread_mutex_t lock;
  int results;
  int fulfilled_with_row;
  int open;
  int acked;
  int session_errors;
  int destroyed;
} seen_t;

static void on_result(void *user_data, const char *json) {
  seen_t *seen = user_data;
  pthread_mutex_lock(&seen->lock);
  seen->results++;
  if (strstr(json, "\"fulfilled\":true") && strstr(json, "from-a")) seen->fulfilled_with_row++;
  pthread_mutex_unlock(&seen->lock);
}

static void on_event(void *user_data, const char *json) {
  seen_t *seen = user_data;
  pthread_mutex_lock(&seen->lock);
  if (strstr(json, "\"status\":\"OPEN\"")) seen->open++;
  if (strstr(json, "\"type\":\"write_acked\"")) seen->acked++;
  if (strstr(json, "\"type\":\"session_error\"")) seen->session_errors++;
  pthread_mutex_unlock(&seen->lock);
}

static void on_destroy(void *user_data) {
  seen_t *seen = user_data;
  pthread_mutex_lock(&seen->lock);
  seen->destroyed++;
  pthread_mutex_unlock(&seen->lock);
}


/* A refresh handler: counts its calls (in `results`) and hands out the token it holds. */
typedef struct {
  seen_t seen;
  const char *token;
} refresher_t;

static const char *refresh(void *user_data) {
  refresher_t *refresher = user_data;
  pthread_mutex_lock(&refresher->seen.lock);
  refresher->seen.results++;
  pthread_mutex_unlock(&refresher->seen.lock);
  return refresher->token;
}

/* Waits (up to 30 s: valgrind is slow) until `*field` reaches `at_least`. */
static int wait_for(seen_t *seen, int *field, int at_least) {
  for (int i = 0; i < 3000; i++) {
    pthread_mutex_lock(&seen->lock);
    int got = *field;
    pthread_mutex_unlock(&seen->lock);
    if (got >= at_least) return 1;
    sleep_ms(10);
  }
  return 0;
}

static int status_has(triplite_client *client, const char *needle) {
  for (int i = 0; i < 3000; i++) {
    char *json = NULL;
    if (triplite_client_status(client, &json, NULL) == TRIPLITE_OK) {
      int found = strstr(json, needle) != NULL;
      triplite_string_free(json);
      if (found) return 1;
    }
    sleep_ms(10);
  }
  return 0;
}

/* Fetches by `policy` (up to 30 s) until the results hold `must` and not `must_not`. */
static int fetch_until(triplite_client *client, const char *policy, const char *must, const char *must_not) {
  char options[64];
  snprintf(options, sizeof options, "{\"policy\": \"%s\"}", policy);
  for (int i = 0; i < 3000; i++) {
    char *json = NULL;
    if (triplite_client_fetch(client, "{\"collectionName\": \"todos\"}", options, &json, NULL) == TRIPLITE_OK) {
      int found = strstr(json, must) && !strstr(json, must_not);
      triplite_string_free(json);
      if (found) return 1;
    }
    sleep_ms(10);
  }
  return 0;
}

/* A client that connects only when asked, so an event callback registered first sees every
 * event. */
static triplite_client *open_client(const char *url, const char *token) {
  char options[4096];
  snprintf(options, sizeof options,
           "{\"serverUrl\": \"%s\", \"token\": \"%s\", \"schema\": %s, \"path\": \":memory:\", \"autoConnect\": false}",
           url, token, SCHEMA);
  triplite_client *client = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_client_open(options, &client, &err));
  return client;
}

static const char *env(const char *name) {
  const char *value = getenv(name);
  if (!value) {
    fprintf(stderr, "%s is not set (tests/ffi.rs sets it)\n", name);
    exit(2);
  }
  return value;
}

int main(void) {
  const char *alice = env("TRIPLITE_ALICE_TOKEN"), *bob = env("TRIPLITE_BOB_TOKEN");
  const char *expired = env("TRIPLITE_EXPIRED_TOKEN");
  char *json = NULL;

  /* The server: a database with the schema, served on a free loopback port. */
  triplite_db *db = NULL;
  char db_options[4096];
  snprintf(db_options, sizeof db_options, "{\"schema\": %s, \"jwt_secret\": \"c-client-secret\"}", SCHEMA);
  EXPECT(TRIPLITE_OK, NULL, triplite_db_open(":memory:", db_options, &db, &err));
  triplite_server *server = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_server_start(db, "{\"host\": \"127.0.0.1\", \"port\": 0}", &server, &err));
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)triplite_server_port(server));

  /* Bad input. */
  triplite_client *bad = NULL;
  EXPECT(TRIPLITE_INVALID_JSON, "options_json", triplite_client_open("{nope", &bad, &err));
  EXPECT(TRIPLITE_INVALID_JSON, "autoConnect", triplite_client_open("{\"autoConnect\": 3}", &bad, &err));
  EXPECT(TRIPLITE_MISUSE, "out_client", triplite_client_open(NULL, NULL, &err));
  EXPECT(TRIPLITE_MISUSE, "client", triplite_client_insert(NULL, "todos", "{}", NULL, &err));
  EXPECT(TRIPLITE_MISUSE, "client", triplite_client_connect(NULL, &err));
  CHECK(bad == NULL);

  /* Two clients of one user. */
  triplite_client *a = open_client(url, alice), *b = open_client(url, alice);
  seen_t seen_a = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0};
  seen_t seen_b = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0};
  EXPECT(TRIPLITE_OK, NULL, triplite_client_on_event(a, on_event, &seen_a, on_destroy, &err));
  CHECK(status_has(a, "\"connection\":\"UNINITIALIZED\""));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_connect(a, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_connect(b, &err));
  CHECK(wait_for(&seen_a, &seen_a.open, 1));
  CHECK(status_has(a, "\"connection\":\"OPEN\""));
  triplite_subscription *sub = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_client_subscribe(b, "{\"collectionName\": \"todos\"}", NULL, on_result, &seen_b, on_destroy, &sub, &err));
  EXPECT(TRIPLITE_INVALID_JSON, "colour", triplite_client_subscribe(b, "{\"collectionName\": \"todos\"}", "{\"colour\": 1}", on_result, &seen_b, NULL, &sub, &err));

  EXPECT(TRIPLITE_OK, NULL, triplite_client_insert(a, "todos", "{\"id\": \"from-a\", \"text\": \"hi\", \"owner\": \"alice\"}", &json, &err));
  CHECK(json && strstr(json, "\"txId\":\"") && strstr(json, "\"entity\""));
  triplite_string_free(json);
  json = NULL;
  CHECK(wait_for(&seen_a, &seen_a.acked, 1));
  CHECK(wait_for(&seen_b, &seen_b.fulfilled_with_row, 1)); /* b's subscription got a's row, fulfilled */
  EXPECT(TRIPLITE_PERMISSION, "WritePermissionError", triplite_client_insert(a, "todos", "{\"id\": \"x\", \"text\": \"no\", \"owner\": \"bob\"}", NULL, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_update(a, "todos", "from-a", "{\"text\": \"edited\"}", &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_transact(a, "[{\"op\": \"insert\", \"collection\": \"todos\", \"doc\": {\"id\": \"t2\", \"text\": \"two\", \"owner\": \"alice\"}}]", &json, &err));
  CHECK(json && strstr(json, "\"results\"") && strstr(json, "\"txId\""));
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_client_delete(a, "todos", "t2", &err));
  CHECK(wait_for(&seen_a, &seen_a.acked, 4));
  CHECK(fetch_until(b, "remote-only", "edited", "\"t2\"")); /* the server has a's writes */
  CHECK(fetch_until(b, "local-first", "edited", "\"t2\"")); /* and b's cache follows */
  EXPECT(TRIPLITE_INVALID_JSON, "policy", triplite_client_fetch(b, "{\"collectionName\": \"todos\"}", "{\"policy\": \"sometimes\"}", &json, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_status(a, &json, &err));
  CHECK(json && strstr(json, "\"pendingTransactions\":0") && strstr(json, "\"clientId\":\""));
  triplite_string_free(json);
  json = NULL;

  /* The Clerk guide's flow on a: another user, then signed out. */
  EXPECT(TRIPLITE_OK, NULL, triplite_client_disconnect(a, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_update_token(a, bob, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_fetch(a, "{\"collectionName\": \"todos\"}", "{\"policy\": \"local-only\"}", &json, &err));
  CHECK(json && strcmp(json, "[]") == 0); /* bob never sees alice's rows */
  triplite_string_free(json);
  json = NULL;
  EXPECT(TRIPLITE_OK, NULL, triplite_client_connect(a, &err));
  CHECK(wait_for(&seen_a, &seen_a.open, 2));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_disconnect(a, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_update_token(a, NULL, &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_reset(a, &err));
  EXPECT(TRIPLITE_AUTH, "NoActiveSessionError", triplite_client_connect(a, &err));

  /* Sessions: an expired token is one session error; a valid one connects again. */
  EXPECT(TRIPLITE_OK, NULL, triplite_client_start_session(a, expired, true, &err));
  CHECK(wait_for(&seen_a, &seen_a.session_errors, 1));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_start_session(a, alice, true, &err));
  CHECK(wait_for(&seen_a, &seen_a.open, 3));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_update_session_token(a, alice, &err));
  EXPECT(TRIPLITE_AUTH, "SessionRolesMismatchError", triplite_client_update_session_token(a, "eyJhbGciOiJIUzI1NiJ9.eyJmb28iOiJiYXIifQ.x", &err));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_end_session(a, &err));
  EXPECT(TRIPLITE_AUTH, "NoActiveSessionError", triplite_client_update_session_token(a, alice, &err));
  pthread_mutex_lock(&seen_a.lock);
  CHECK(seen_a.session_errors == 1);
  pthread_mutex_unlock(&seen_a.lock);

  /* A refresh handler: an expired token is refreshed before the session starts, so it opens
     with no session error; the handler's destroy runs once when the session ends. */
  refresher_t refresher = {{PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0}, alice};
  int opened = seen_a.open;
  EXPECT(TRIPLITE_MISUSE, "refresh", triplite_client_start_session_with_refresh(a, expired, true, NULL, &refresher.seen, on_destroy, &err));
  CHECK(refresher.seen.destroyed == 1); /* a refused handler's user data is released too */
  EXPECT(TRIPLITE_OK, NULL, triplite_client_start_session_with_refresh(a, expired, true, refresh, &refresher, on_destroy, &err));
  CHECK(refresher.seen.results == 1);
  CHECK(wait_for(&seen_a, &seen_a.open, opened + 1));
  EXPECT(TRIPLITE_OK, NULL, triplite_client_end_session(a, &err));
  CHECK(refresher.seen.destroyed == 2);
  pthread_mutex_lock(&seen_a.lock);
  CHECK(seen_a.session_errors == 1);
  pthread_mutex_unlock(&seen_a.lock);

  /* Releasing. */
  triplite_subscription_free(sub);
  CHECK(seen_b.destroyed == 1);
  triplite_client_close(a);
  CHECK(seen_a.destroyed == 1);
  triplite_client_close(b);
  triplite_client_close(NULL);
  triplite_server_stop(server);
  triplite_db_close(db);

  return report();
}
