/* Checks shared by the C tests (api.c, client.c): a failed check is counted and reported with
 * its line, and a call's status is compared with the expected one, its message freed. */
#ifndef TRIPLITE_TEST_CHECK_H
#define TRIPLITE_TEST_CHECK_H

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "triplite.h"

static int failures = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                                \
    }                                                                            \
  } while (0)

/* Expects `status`; frees the error message, checking it names `needle` when given. */
static void expect_status(triplite_status got, triplite_status want, char *err, const char *needle) {
  if (got != want) {
    fprintf(stderr, "status %d, expected %d (%s)\n", (int)got, (int)want, err ? err : "no message");
    failures++;
  }
  if (want != TRIPLITE_OK) {
    CHECK(err != NULL);
    if (err && needle && !strstr(err, needle)) {
      fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err, needle);
      failures++;
    }
  }
  triplite_string_free(err);
}

/* Runs a call that may write `err` (declared here), then checks its status and message. */
#define EXPECT(want, needle, ...)            \
  do {                                       \
    char *err = NULL;                        \
    triplite_status got_ = (__VA_ARGS__);    \
    expect_status(got_, want, err, needle);  \
  } while (0)

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* The exit status and last line the test runner looks for. */
static int report(void) {
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all passed\n");
  return 0;
}

#endif
