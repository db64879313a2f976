/*
 * test_support.h - what every store unit test needs: a private database
 * directory, a clock the test controls, and a store opened on both.
 */
#ifndef TWIN_TEST_SUPPORT_H
#define TWIN_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "twin/store.h"

/* The controllable clock: ticks of 100 ns; starts at 2024-05-01T08:15:30.1234567Z. */
extern int64_t test_now;
#define TEST_T0 ((int64_t)17145513301234567LL)
int64_t test_clock(void *ctx);

/* A fresh, empty directory for one test (malloc'd path). */
char *test_dir_new(const char *name);

/* rm -rf path and free it. */
void test_dir_free(char *path);

/* A store in a fresh directory with default limits and test_clock.
 * map_size 0 = default. */
typedef struct test_db {
	char *dir;
	twin_store *s;
} test_db;

void test_db_open(test_db *db, const char *name, size_t map_size);
/* Close and reopen the same directory (persistence tests). */
void test_db_reopen(test_db *db);
void test_db_close(test_db *db);

/* Parse JSON text that the test itself wrote (asserts it is valid). */
cJSON *test_json(const char *text);

/* Assert that a cJSON tree prints exactly as want (compact form). */
void test_assert_json(const cJSON *got, const char *want);

/* The service view of device id in s, printed compactly (malloc'd); fails
 * the test if there is no such twin. */
char *test_twin_text(twin_store *s, const char *id);

#endif
