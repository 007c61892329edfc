/* The C side of benches/ffi.rs: write -> callback latency of a subscription to a large result
 * through the C ABI. An in-memory database holds ROWS todos; one subscription covers them all
 * (its callback receives every result as JSON); each measured round inserts one todo and waits
 * for the callback that shows it. `argv[1]` is the subscription's options_json (`{}` for whole
 * results, `{"deltas": true}` for changes only). Prints the median and p99 in microseconds. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "triplite.h"

#define ROWS 10000
#define ROUNDS 200

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t called = PTHREAD_COND_INITIALIZER;
static char awaited[32];
static int seen;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void on_result(void *user_data, const char *json) {
  (void)user_data;
  pthread_mutex_lock(&lock);
  if (awaited[0] && strstr(json, awaited)) {
    seen = 1;
    pthread_cond_signal(&called);
  }
  pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv) {
  const char *options = argc > 1 ? argv[1] : "{}";
  triplite_db *db = NULL;
  if (triplite_db_open(NULL, NULL, &db, NULL) != TRIPLITE_OK) return 1;
  char doc[160];
  for (int i = 0; i < ROWS; i++) {
    snprintf(doc, sizeof doc, "{\"id\": \"t%05d\", \"text\": \"todo %d\", \"owner\": \"user-%d\", \"completed\": false}", i, i, i % 10);
    if (triplite_db_insert(db, "todos", doc, NULL, NULL) != TRIPLITE_OK) return 1;
  }
  triplite_subscription *sub = NULL;
  char *err = NULL;
  if (triplite_db_subscribe_with_options(db, "{\"collectionName\": \"todos\"}", options, on_result, NULL, NULL, &sub, &err) !=
      TRIPLITE_OK) {
    fprintf(stderr, "subscribe: %s\n", err);
    return 1;
  }
  double latency[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    pthread_mutex_lock(&lock);
    snprintf(awaited, sizeof awaited, "\"new%04d\"", r);
    seen = 0;
    pthread_mutex_unlock(&lock);
    snprintf(doc, sizeof doc, "{\"id\": \"new%04d\", \"text\": \"one more\", \"owner\": \"user-0\", \"completed\": false}", r);
    double start = now_us();
    if (triplite_db_insert(db, "todos", doc, NULL, NULL) != TRIPLITE_OK) return 1;
    pthread_mutex_lock(&lock);
    while (!seen) pthread_cond_wait(&called, &lock);
    pthread_mutex_unlock(&lock);
    latency[r] = now_us() - start;
  }
  triplite_subscription_free(sub);
  qsort(latency, ROUNDS, sizeof latency[0], compare);
  printf("%.1f %.1f\n", latency[ROUNDS / 2], latency[ROUNDS * 99 / 100]);
  triplite_db_close(db);
  return 0;
}
