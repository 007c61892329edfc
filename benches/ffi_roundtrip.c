/* The C side of benches/ffi.rs: fetch by id through the C ABI (the JSON result included,
 * freed each time), on the same data as the Rust side. Prints the median per call of 25
 * batches of 20,000 calls, in nanoseconds. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "triplite.h"

#define ENTITIES 1000
#define BATCHES 25
#define CALLS 20000

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(void) {
  triplite_db *db = NULL;
  if (triplite_db_open(NULL, NULL, &db, NULL) != TRIPLITE_OK) return 1;
  char doc[128], id[32];
  for (int i = 0; i < ENTITIES; i++) {
    snprintf(doc, sizeof doc, "{\"id\": \"t%04d\", \"text\": \"todo %d\", \"owner\": \"user-%d\", \"completed\": false}", i, i, i % 10);
    if (triplite_db_insert(db, "todos", doc, NULL, NULL) != TRIPLITE_OK) return 1;
  }
  double per_call[BATCHES];
  unsigned seed = 7;
  for (int b = 0; b < BATCHES; b++) {
    double start = now_ns();
    for (int c = 0; c < CALLS; c++) {
      seed = seed * 1103515245u + 12345u;
      snprintf(id, sizeof id, "t%04u", (seed >> 8) % ENTITIES);
      char *json = NULL;
      if (triplite_db_fetch_by_id(db, "todos", id, &json, NULL) != TRIPLITE_OK) return 1;
      triplite_string_free(json);
    }
    per_call[b] = (now_ns() - start) / CALLS;
  }
  qsort(per_call, BATCHES, sizeof per_call[0], compare);
  printf("%.1f\n", per_call[BATCHES / 2]);
  triplite_db_close(db);
  return 0;
}
