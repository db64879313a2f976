/*
 * test_support.c - shared fixtures for the cmocka unit tests.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "test_support.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "twin/twin.h"

int64_t test_now = TEST_T0;

int64_t test_clock(void *ctx)
{
	(void)ctx;
	return test_now;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

char *test_dir_new(const char *name)
{
	const char *base = getenv("TWIN_TEST_TMPDIR");
	char *path = malloc(4096);

	assert_non_null(path);
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	mkdir(base, 0700);
	snprintf(path, 4096, "%s/%s.%ld", base, name, (long)getpid());
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return path;
}

void test_dir_free(char *path)
{
	if (path == NULL)
		return;
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
}

static void open_at(test_db *db, size_t map_size)
{
	twin_store_options o;
	twin_error err;

	twin_store_options_default(&o);
	o.path = db->dir;
	if (map_size)
		o.map_size = map_size;
	o.clock = test_clock;
	o.drain_changes = 1; /* as the plugin: tests see what it would publish */
	assert_int_equal(twin_store_open(&o, &db->s, &err), TWIN_OK);
}

void test_db_open(test_db *db, const char *name, size_t map_size)
{
	test_now = TEST_T0;
	db->dir = test_dir_new(name);
	open_at(db, map_size);
}

void test_db_reopen(test_db *db)
{
	twin_store_close(db->s);
	open_at(db, 0);
}

void test_db_close(test_db *db)
{
	twin_store_close(db->s);
	db->s = NULL;
	test_dir_free(db->dir);
	db->dir = NULL;
}

cJSON *test_json(const char *text)
{
	cJSON *j = cJSON_Parse(text);

	assert_non_null(j);
	return j;
}

void test_assert_json(const cJSON *got, const char *want)
{
	char *text = cJSON_PrintUnformatted(got);

	assert_non_null(text);
	assert_string_equal(text, want);
	free(text);
}

char *test_twin_text(twin_store *s, const char *id)
{
	twin_error err = {0};
	cJSON *twin = NULL;
	char *text;

	if (twin_get(s, id, &twin, &err) != TWIN_OK)
		fail_msg("twin_get %s: %s", id, err.message);
	text = cJSON_PrintUnformatted(twin);
	assert_non_null(text);
	cJSON_Delete(twin);
	return text;
}
