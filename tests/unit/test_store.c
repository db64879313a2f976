/*
 * test_store.c - persistence and group-commit batches (DESIGN.md §3,
 * twin/store.h), one test per rule.
 *
 * Durability is checked the only way that counts: close the environment,
 * open it again and compare the twin JSON byte for byte. Map growth is
 * driven by real MDB_MAP_FULL conditions on tiny maps, and failures by what
 * the process can do to itself without hooks in the store: a cJSON allocator
 * that fails on demand, and RLIMIT_FSIZE for a disk that refuses to grow.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_support.h"
#include "twin/registry.h"
#include "twin/twin.h"

#define BIG_VALUE 4000 /* one string value, under the 4096-byte limit */
#define BIG_KEYS  5    /* a ~20 KB reported section per device */

static test_db db;
static char *scratch; /* freed by teardown, also when a test fails */

static void create_ok(const char *id)
{
	twin_error err = {0};

	if (twin_device_create(db.s, id, NULL, NULL, &err) != TWIN_OK)
		fail_msg("create %s: %s", id, err.message);
}

static void patch_ok(const char *id, const char *body)
{
	twin_write_result res = {0};
	twin_error err = {0};

	if (twin_patch_reported(db.s, id, body, strlen(body), &res, &err) != TWIN_OK)
		fail_msg("patch %s: %s", id, err.message);
	twin_write_result_clear(&res);
}

static void commit_ok(void)
{
	twin_error err = {0};

	if (twin_store_commit(db.s, &err) != TWIN_OK)
		fail_msg("commit: %s", err.message);
	assert_false(twin_store_batch_open(db.s));
}

static void assert_twin_text(const char *id, const char *want)
{
	char *got = test_twin_text(db.s, id);

	assert_string_equal(got, want);
	free(got);
}

static void assert_body(const char *id, const char *want)
{
	twin_error err = {0};
	char *body = NULL;
	size_t len = 0;

	if (twin_get_device_body(db.s, id, &body, &len, NULL, &err) != TWIN_OK)
		fail_msg("device body %s: %s", id, err.message);
	assert_string_equal(body, want);
	assert_int_equal(len, strlen(want));
	free(body);
}

static void assert_absent(const char *id)
{
	twin_identity ident;
	twin_error err = {0};
	cJSON *twin = NULL;
	char *body = NULL;
	size_t len;

	assert_int_equal(twin_device_get(db.s, id, &ident, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_get(db.s, id, &twin, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_get_device_body(db.s, id, &body, &len, NULL, &err), TWIN_E_NOT_FOUND);
}

static int64_t twin_version(const char *id)
{
	twin_error err = {0};
	cJSON *twin = NULL;
	int64_t v;

	assert_int_equal(twin_get(db.s, id, &twin, &err), TWIN_OK);
	v = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(twin, "version"));
	cJSON_Delete(twin);
	return v;
}

/* A ~20 KB reported patch for device number i, and the device GET body it
 * leads to from a new twin. Both malloc'd. */
static void big_patch(int i, char **patch, char **body)
{
	size_t cap = BIG_KEYS * (BIG_VALUE + 16) + 64;
	char *p = malloc(cap), *b = malloc(cap + 64);
	size_t n = 0;

	assert_non_null(p);
	assert_non_null(b);
	p[n++] = '{';
	for (int k = 0; k < BIG_KEYS; k++) {
		n += (size_t)snprintf(p + n, cap - n, "%s\"%c\":\"%05d", k ? "," : "", 'a' + k, i);
		memset(p + n, 'a' + (i + k) % 26, BIG_VALUE - 5);
		n += BIG_VALUE - 5;
		p[n++] = '"';
	}
	p[n++] = '}';
	p[n] = '\0';
	snprintf(b, cap + 64, "{\"desired\":{\"$version\":1},\"reported\":{%.*s,\"$version\":2}}",
	         (int)(n - 2), p + 1);
	*patch = p;
	*body = b;
}

static off_t file_size(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void test_store_open_creates_directory(void **state)
{
	char *base = test_dir_new("store_mkdir"), path[4096], sub[4160];
	twin_store_options o;
	twin_store *s = NULL;
	twin_error err = {0};
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/a/b/db", base);
	assert_int_equal(stat(base, &st), -1);
	twin_store_options_default(&o);
	o.path = path;
	if (twin_store_open(&o, &s, &err) != TWIN_OK)
		fail_msg("open %s: %s", path, err.message);
	assert_non_null(s);
	assert_string_equal(twin_store_path(s), path);
	/* Every created level is private: the database holds device keys. */
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(sub, sizeof(sub), "%s/a", base);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(sub, sizeof(sub), "%s/data.mdb", path);
	assert_int_equal(stat(sub, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(twin_store_map_size(s), TWIN_DEFAULT_MAP_SIZE);
	twin_store_close(s);
	test_dir_free(base);
}

static void test_store_open_fails_with_clear_message(void **state)
{
	char *base = test_dir_new("store_badpath"), file[4096], path[4160];
	twin_store_options o;
	twin_store *s;
	twin_error err = {0};
	FILE *f;

	(void)state;
	assert_int_equal(mkdir(base, 0700), 0);
	snprintf(file, sizeof(file), "%s/file", base);
	f = fopen(file, "w");
	assert_non_null(f);
	fputs("not a directory\n", f);
	fclose(f);
	twin_store_options_default(&o);

	/* A directory below a regular file cannot be created. */
	snprintf(path, sizeof(path), "%s/db", file);
	o.path = path;
	s = (twin_store *)&err;
	assert_int_equal(twin_store_open(&o, &s, &err), TWIN_E_STORAGE);
	assert_null(s);
	assert_int_equal(err.err, TWIN_E_STORAGE);
	assert_non_null(strstr(err.message, path));
	assert_non_null(strstr(err.message, strerror(ENOTDIR)));

	/* A regular file is not a database directory. */
	memset(&err, 0, sizeof(err));
	o.path = file;
	s = (twin_store *)&err;
	assert_int_equal(twin_store_open(&o, &s, &err), TWIN_E_STORAGE);
	assert_null(s);
	assert_non_null(strstr(err.message, file));

	/* No path at all. */
	memset(&err, 0, sizeof(err));
	o.path = NULL;
	assert_int_equal(twin_store_open(&o, &s, &err), TWIN_E_STORAGE);
	assert_null(s);
	assert_true(err.message[0] != '\0');
	test_dir_free(base);
}

static void test_batch_opens_lazily_and_commit_closes_it(void **state)
{
	twin_identity ident;
	twin_error err = {0};

	(void)state;
	test_db_open(&db, "store_lazy", 0);
	assert_false(twin_store_batch_open(db.s));
	/* Reads and an empty commit open nothing. */
	assert_int_equal(twin_device_get(db.s, "dev1", &ident, &err), TWIN_E_NOT_FOUND);
	assert_false(twin_store_batch_open(db.s));
	assert_int_equal(twin_store_commit(db.s, &err), TWIN_OK);
	assert_false(twin_store_batch_open(db.s));
	/* The first write opens the batch, later ones join it. */
	create_ok("dev1");
	assert_true(twin_store_batch_open(db.s));
	create_ok("dev2");
	patch_ok("dev1", "{\"a\":1}");
	assert_true(twin_store_batch_open(db.s));
	commit_ok();
	assert_false(twin_store_batch_open(db.s));
	assert_int_equal(twin_device_get(db.s, "dev2", &ident, &err), TWIN_OK);
	assert_false(twin_store_batch_open(db.s));
	patch_ok("dev2", "{\"b\":2}");
	assert_true(twin_store_batch_open(db.s));
	twin_store_abort(db.s);
	assert_false(twin_store_batch_open(db.s));
	twin_store_abort(db.s); /* no batch: nothing to do */
	assert_body("dev1", "{\"desired\":{\"$version\":1},\"reported\":{\"a\":1,\"$version\":2}}");
	assert_body("dev2", "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
	test_db_close(&db);
}

static void test_reads_see_writes_of_open_batch(void **state)
{
	twin_identity ident;
	twin_error err = {0};
	cJSON *patch;

	(void)state;
	test_db_open(&db, "store_readyourwrites", 0);
	create_ok("dev1");
	assert_true(twin_store_batch_open(db.s));
	assert_int_equal(twin_device_get(db.s, "dev1", &ident, &err), TWIN_OK);
	assert_string_equal(ident.device_id, "dev1");
	assert_int_equal(twin_version("dev1"), 2);
	assert_body("dev1", "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
	patch_ok("dev1", "{\"fw\":\"1.0\"}");
	patch = test_json("{\"tags\":{\"site\":\"north\"},\"properties\":{\"desired\":{\"i\":3}}}");
	assert_int_equal(twin_update(db.s, "dev1", patch, NULL, NULL, &err), TWIN_OK);
	cJSON_Delete(patch);
	assert_true(twin_store_batch_open(db.s));
	assert_int_equal(twin_version("dev1"), 4);
	assert_body("dev1", "{\"desired\":{\"i\":3,\"$version\":2},\"reported\":{\"fw\":\"1.0\","
	                    "\"$version\":2}}");
	commit_ok();
	assert_int_equal(twin_version("dev1"), 4);
	assert_body("dev1", "{\"desired\":{\"i\":3,\"$version\":2},\"reported\":{\"fw\":\"1.0\","
	                    "\"$version\":2}}");
	test_db_close(&db);
}

static void test_abort_leaves_no_trace(void **state)
{
	char *before;

	(void)state;
	test_db_open(&db, "store_abort", 0);
	create_ok("dev0");
	patch_ok("dev0", "{\"kept\":true}");
	commit_ok();
	before = test_twin_text(db.s, "dev0");
	test_now += 10000000;
	create_ok("dev1");
	patch_ok("dev1", "{\"lost\":1}");
	patch_ok("dev0", "{\"kept\":false,\"lost\":2}");
	twin_store_abort(db.s);
	assert_false(twin_store_batch_open(db.s));
	assert_absent("dev1");
	assert_twin_text("dev0", before);
	/* A commit after the abort has nothing to write. */
	commit_ok();
	test_db_reopen(&db);
	assert_absent("dev1");
	assert_twin_text("dev0", before);
	free(before);
	test_db_close(&db);
}

static void test_commit_survives_reopen(void **state)
{
	char *twin_before, *twin_after, *body_before = NULL, *body_after = NULL;
	twin_identity id_before, id_after;
	twin_error err = {0};
	size_t len;
	cJSON *j, *twin;

	(void)state;
	test_db_open(&db, "store_durable", 0);
	create_ok("dev1");
	test_now += 11111111;
	patch_ok("dev1", "{\"fw\":{\"ver\":\"1.2\"},\"n\":5,\"arr\":[1,\"x\",{\"y\":false}]}");
	test_now += 22222222;
	j = test_json("{\"tags\":{\"site\":\"north\"},\"properties\":{\"desired\":{\"interval\":30,"
	              "\"o\":{\"x\":1,\"y\":2}}}}");
	assert_int_equal(twin_update(db.s, "dev1", j, NULL, NULL, &err), TWIN_OK);
	cJSON_Delete(j);
	test_now += 33333333;
	j = test_json("{\"tags\":{\"site\":\"south\",\"floor\":2},\"properties\":{\"desired\":"
	              "{\"interval\":60,\"o\":{\"x\":1}}}}");
	assert_int_equal(twin_replace(db.s, "dev1", j, "*", NULL, &err), TWIN_OK);
	cJSON_Delete(j);
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 1, &err), TWIN_OK);
	commit_ok();
	twin_before = test_twin_text(db.s, "dev1");
	assert_int_equal(twin_get_device_body(db.s, "dev1", &body_before, &len, NULL, &err),
	                 TWIN_OK);
	assert_int_equal(twin_device_get(db.s, "dev1", &id_before, &err), TWIN_OK);
	printf("before reopen: %s\n", twin_before);

	test_now += 44444444; /* nothing may depend on the clock at reopen */
	test_db_reopen(&db);
	twin_after = test_twin_text(db.s, "dev1");
	printf("after reopen:  %s\n", twin_after);
	assert_string_equal(twin_after, twin_before);
	assert_int_equal(twin_get_device_body(db.s, "dev1", &body_after, &len, NULL, &err),
	                 TWIN_OK);
	assert_string_equal(body_after, body_before);
	assert_int_equal(twin_device_get(db.s, "dev1", &id_after, &err), TWIN_OK);
	assert_string_equal(id_after.generation_id, id_before.generation_id);
	assert_string_equal(id_after.primary_key, id_before.primary_key);
	assert_int_equal(id_after.last_activity, id_before.last_activity);
	/* Versions and etags: 2 + reported + update + replace. */
	twin = test_json(twin_after);
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(twin, "version")) == 5.0);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(twin, "etag")),
	                    "AAAAAAAAAAQ=");
	assert_string_equal(
	        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(twin, "connectionState")),
	        "Connected");
	test_assert_json(cJSON_GetObjectItemCaseSensitive(twin, "tags"),
	                 "{\"site\":\"south\",\"floor\":2}");
	cJSON_Delete(twin);
	assert_string_equal(body_after,
	                    "{\"desired\":{\"interval\":60,\"o\":{\"x\":1},\"$version\":3},"
	                    "\"reported\":{\"fw\":{\"ver\":\"1.2\"},\"n\":5,\"arr\":[1,"
	                    "\"x\",{\"y\":false}],\"$version\":2}}");
	free(twin_before);
	free(twin_after);
	free(body_before);
	free(body_after);
	test_db_close(&db);
}

static void test_uncommitted_batch_lost_on_close(void **state)
{
	char *before;

	(void)state;
	test_db_open(&db, "store_lost", 0);
	create_ok("dev0");
	commit_ok();
	before = test_twin_text(db.s, "dev0");
	create_ok("dev1");
	patch_ok("dev0", "{\"x\":1}");
	assert_true(twin_store_batch_open(db.s));
	test_db_reopen(&db); /* closes with the batch open */
	assert_false(twin_store_batch_open(db.s));
	assert_absent("dev1");
	assert_twin_text("dev0", before);
	free(before);
	test_db_close(&db);
}

static void test_many_writes_one_batch_one_commit(void **state)
{
	char id[16], patch[64], body[128];

	(void)state;
	test_db_open(&db, "store_many", 0);
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "dev%03d", i);
		snprintf(patch, sizeof(patch), "{\"i\":%d}", i);
		create_ok(id);
		patch_ok(id, patch);
		assert_true(twin_store_batch_open(db.s));
	}
	commit_ok();
	test_db_reopen(&db);
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "dev%03d", i);
		snprintf(body, sizeof(body),
		         "{\"desired\":{\"$version\":1},\"reported\":{\"i\":%d,\"$version\":2}}",
		         i);
		assert_body(id, body);
		assert_int_equal(twin_version(id), 3);
	}
	test_db_close(&db);
}

static void test_map_full_grows_and_reapplies(void **state)
{
	enum { DEVICES = 300 };
	const size_t initial = 128 * 1024; /* room for the first twins and their log entries */
	char id[16], *before, *patch, *body, *first_body = NULL;
	int grown_at = -1, growths = 0;
	size_t size;

	(void)state;
	test_db_open(&db, "store_mapfull", initial);
	assert_int_equal(twin_store_map_size(db.s), initial);
	/* A committed twin from before the growth. */
	create_ok("before");
	patch_ok("before", "{\"keep\":\"me\"}");
	commit_ok();
	assert_int_equal(twin_store_map_size(db.s), initial);
	before = test_twin_text(db.s, "before");

	/* ~6 MB in one batch: the map must double several times under it. */
	size = initial;
	for (int i = 0; i < DEVICES; i++) {
		snprintf(id, sizeof(id), "dev%03d", i);
		big_patch(i, &patch, &body);
		create_ok(id);
		patch_ok(id, patch);
		assert_true(twin_store_batch_open(db.s));
		if (i == 0)
			first_body = strdup(body);
		if (twin_store_map_size(db.s) != size) {
			/* The map doubles (twin/store.h). */
			assert_true(twin_store_map_size(db.s) > size);
			size = twin_store_map_size(db.s);
			assert_int_equal(size % initial, 0);
			assert_int_equal((size / initial) & (size / initial - 1), 0);
			growths++;
			if (grown_at < 0)
				grown_at = i;
			/* The replayed batch still holds its first writes. */
			assert_body("dev000", first_body);
			assert_twin_text("before", before);
		}
		free(patch);
		free(body);
	}
	assert_true(grown_at > 0);
	assert_true(growths >= 5);
	commit_ok();
	assert_true(twin_store_map_size(db.s) >= (size_t)DEVICES * BIG_KEYS * BIG_VALUE);

	test_db_reopen(&db);
	assert_twin_text("before", before);
	for (int i = 0; i < DEVICES; i++) {
		snprintf(id, sizeof(id), "dev%03d", i);
		big_patch(i, &patch, &body);
		assert_body(id, body);
		free(patch);
		free(body);
	}
	free(first_body);
	free(before);
	test_db_close(&db);
}

/* Only the commit needs pages that the puts did not: LMDB rewrites the main
 * database's records of the changed tables and saves the freelist. A batch
 * that leaves the map with fewer free pages than that fails at commit with
 * MDB_MAP_FULL. LMDB is deterministic, so the test looks for such a batch
 * size by replaying the same operations on fresh stores. */
static void test_map_full_at_commit_also_grows(void **state)
{
	const size_t initial = 64 * 1024;
	int found = -1;
	char id[16], patch[64], body[128];

	(void)state;
	for (int n = 1; n < 400 && found < 0; n++) {
		int grew_in_puts = 0;

		test_db_open(&db, "store_commitfull", initial);
		create_ok("old");
		commit_ok();
		for (int i = 0; i < n && !grew_in_puts; i++) {
			snprintf(id, sizeof(id), "d%03d", i);
			snprintf(patch, sizeof(patch), "{\"i\":%d}", i);
			create_ok(id);
			patch_ok(id, patch);
			grew_in_puts = twin_store_map_size(db.s) != initial;
		}
		patch_ok("old", "{\"touched\":1}");
		grew_in_puts = grew_in_puts || twin_store_map_size(db.s) != initial;
		if (grew_in_puts) {
			test_db_close(&db);
			break; /* every larger batch grows in its puts too */
		}
		commit_ok();
		if (twin_store_map_size(db.s) > initial) {
			found = n;
			test_db_reopen(&db);
			for (int i = 0; i < n; i++) {
				snprintf(id, sizeof(id), "d%03d", i);
				snprintf(body, sizeof(body),
				         "{\"desired\":{\"$version\":1},\"reported\":{\"i\":%d,"
				         "\"$version\":2}}",
				         i);
				assert_body(id, body);
			}
			assert_body("old",
			            "{\"desired\":{\"$version\":1},\"reported\":{\"touched\":"
			            "1,\"$version\":2}}");
		}
		test_db_close(&db);
	}
	print_message("map filled at commit with a batch of %d devices\n", found);
	assert_true(found > 0);
}

static void test_maintain_grows_map_ahead_of_need(void **state)
{
	const size_t initial = 1024 * 1024;
	twin_error err = {0};
	char id[16], *patch, *body;
	int quiet = 0, grown = 0;

	(void)state;
	test_db_open(&db, "store_maintain", initial);
	assert_int_equal(twin_store_maintain(db.s, &err), TWIN_OK);
	assert_int_equal(twin_store_map_size(db.s), initial);
	for (int i = 0; i < 64 && !grown; i++) {
		off_t used;

		snprintf(id, sizeof(id), "dev%03d", i);
		big_patch(i, &patch, &body);
		create_ok(id);
		patch_ok(id, patch);
		free(patch);
		free(body);
		commit_ok();
		/* Each batch is far below a quarter of the map: maintain must
		 * act before any write finds the map full. */
		assert_int_equal(twin_store_map_size(db.s), initial);
		used = file_size(db.dir, "data.mdb");
		if ((size_t)used * 4 <= initial * 3) {
			assert_int_equal(twin_store_maintain(db.s, &err), TWIN_OK);
			assert_int_equal(twin_store_map_size(db.s), initial);
			quiet++;
			continue;
		}
		/* Over 3/4: nothing happens while a batch is open… */
		create_ok("pending");
		assert_int_equal(twin_store_maintain(db.s, &err), TWIN_OK);
		assert_int_equal(twin_store_map_size(db.s), initial);
		assert_true(twin_store_batch_open(db.s));
		commit_ok();
		/* …and between batches the map doubles. */
		assert_int_equal(twin_store_maintain(db.s, &err), TWIN_OK);
		assert_int_equal(twin_store_map_size(db.s), 2 * initial);
		grown = i + 1;
	}
	assert_true(quiet >= 10);
	assert_true(grown > 0);
	/* Below 3/4 of the new size again: no further growth. */
	assert_int_equal(twin_store_maintain(db.s, &err), TWIN_OK);
	assert_int_equal(twin_store_map_size(db.s), 2 * initial);
	/* The grown map is used without a full-map retry, and keeps its data. */
	create_ok("after");
	commit_ok();
	test_db_reopen(&db);
	for (int i = 0; i < grown; i++) {
		snprintf(id, sizeof(id), "dev%03d", i);
		big_patch(i, &patch, &body);
		assert_body(id, body);
		free(patch);
		free(body);
	}
	assert_int_equal(twin_version("pending"), 2);
	assert_int_equal(twin_version("after"), 2);
	test_db_close(&db);
}

/* cJSON's allocator, failing once budget allocations have been made. */
static long alloc_budget = -1;

static void *failing_malloc(size_t n)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(n);
}

/* An operation that fails after some of its puts went in must fail the
 * batch: the commit reports an error and nothing of the batch remains,
 * including requests that were accepted before it (DESIGN.md §3). Found by
 * failing each cJSON allocation of a tags+desired update in turn. */
static void test_failed_batch_fails_commit(void **state)
{
	cJSON_Hooks hooks = {failing_malloc, free};
	twin_write_result res = {0};
	twin_error err = {0};
	int failed_batches = 0, kept_batches = 0;
	char *before, pending[32];
	twin_err rc = TWIN_E_NOMEM;
	cJSON *j;

	(void)state;
	test_db_open(&db, "store_failbatch", 0);
	create_ok("dev1");
	j = test_json("{\"tags\":{\"t\":0},\"properties\":{\"desired\":{\"d\":0}}}");
	assert_int_equal(twin_update(db.s, "dev1", j, NULL, NULL, &err), TWIN_OK);
	cJSON_Delete(j);
	commit_ok();
	before = test_twin_text(db.s, "dev1");
	cJSON_InitHooks(&hooks);
	for (long budget = 0; rc != TWIN_OK; budget++) {
		snprintf(pending, sizeof(pending), "pending%ld", budget);
		create_ok(pending); /* an earlier request of the same batch */
		j = test_json("{\"tags\":{\"t\":1,\"u\":{\"v\":2}},\"properties\":{\"desired\":"
		              "{\"d\":1,\"e\":[1,2]}}}");
		alloc_budget = budget;
		rc = twin_update(db.s, "dev1", j, NULL, &res, &err);
		alloc_budget = -1;
		cJSON_Delete(j);
		if (rc == TWIN_OK) {
			twin_write_result_clear(&res);
			commit_ok();
			break;
		}
		/* NOMEM, or STORAGE while a record is parsed (see
		 * test_read_out_of_memory_is_not_corruption): both a 500. */
		if (rc != TWIN_E_NOMEM && rc != TWIN_E_STORAGE)
			fail_msg("allocation %ld: %s", budget, err.message);
		assert_null(res.notification);
		if (twin_store_batch_open(db.s)) {
			/* Failed before its first put: the batch stays good. */
			commit_ok();
			assert_int_equal(twin_version(pending), 2);
			kept_batches++;
		} else {
			/* Writes are refused until the failure is reported. */
			assert_int_equal(twin_device_create(db.s, "other", NULL, NULL, &err),
			                 TWIN_E_STORAGE);
			memset(&err, 0, sizeof(err));
			assert_int_equal(twin_store_commit(db.s, &err), TWIN_E_STORAGE);
			assert_int_equal(err.err, TWIN_E_STORAGE);
			assert_true(err.message[0] != '\0');
			assert_false(twin_store_batch_open(db.s));
			assert_absent(pending);
			assert_absent("other");
			failed_batches++;
		}
		assert_twin_text("dev1", before);
	}
	cJSON_InitHooks(NULL);
	print_message("%d failed batches, %d kept batches\n", failed_batches, kept_batches);
	assert_true(failed_batches > 0);
	assert_true(kept_batches > 0);
	/* After the failures the store works: the last update and the pending
	 * creations of kept batches are durable. */
	test_db_reopen(&db);
	assert_int_equal(twin_version("dev1"), 4);
	assert_body("dev1", "{\"desired\":{\"d\":1,\"e\":[1,2],\"$version\":3},\"reported\":"
	                    "{\"$version\":1}}");
	free(before);
	test_db_close(&db);
}

/* A stored record that cannot be parsed for lack of memory is not a corrupt
 * record: the error is TWIN_E_NOMEM, so that an operator is not sent
 * looking for damage in the database. */
static void test_read_out_of_memory_is_not_corruption(void **state)
{
	cJSON_Hooks hooks = {failing_malloc, free};
	twin_error err = {0};
	twin_err rc = TWIN_E_NOMEM;
	cJSON *twin = NULL, *j;
	char *want;
	long budget;

	(void)state;
	test_db_open(&db, "store_readnomem", 0);
	create_ok("dev1");
	patch_ok("dev1", "{\"a\":{\"b\":[1,2,3]},\"c\":\"d\"}");
	j = test_json("{\"tags\":{\"t\":{\"u\":1}},\"properties\":{\"desired\":{\"d\":[0]}}}");
	assert_int_equal(twin_update(db.s, "dev1", j, NULL, NULL, &err), TWIN_OK);
	cJSON_Delete(j);
	commit_ok();
	want = scratch = test_twin_text(db.s, "dev1");
	cJSON_InitHooks(&hooks);
	for (budget = 0; rc != TWIN_OK; budget++) {
		memset(&err, 0, sizeof(err));
		alloc_budget = budget;
		rc = twin_get(db.s, "dev1", &twin, &err);
		alloc_budget = -1;
		if (rc != TWIN_OK && rc != TWIN_E_NOMEM)
			fail_msg("allocation %ld: %d %s", budget, rc, err.message);
		if (rc != TWIN_OK)
			assert_null(twin);
		else
			test_assert_json(twin, want); /* complete, or not at all */
	}
	cJSON_InitHooks(NULL);
	assert_true(budget > 10);
	cJSON_Delete(twin);
	test_db_close(&db);
}

/* A commit the disk refuses (here: RLIMIT_FSIZE, as a full disk would)
 * returns TWIN_E_STORAGE and leaves nothing of the batch, and the store goes
 * on working. */
static void test_failed_commit_drops_the_batch(void **state)
{
	struct rlimit old, lim;
	void (*old_handler)(int);
	twin_error err = {0};
	char id[16], *patch, *body, *before;
	twin_err rc;

	(void)state;
	test_db_open(&db, "store_efbig", 0);
	create_ok("keep");
	patch_ok("keep", "{\"k\":1}");
	commit_ok();
	before = test_twin_text(db.s, "keep");
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "big%02d", i);
		big_patch(i, &patch, &body);
		create_ok(id);
		patch_ok(id, patch);
		free(patch);
		free(body);
	}
	patch_ok("keep", "{\"k\":2}");

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)file_size(db.dir, "data.mdb");
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rc = twin_store_commit(db.s, &err);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);

	assert_int_equal(rc, TWIN_E_STORAGE);
	assert_int_equal(err.err, TWIN_E_STORAGE);
	print_message("commit error: %s\n", err.message);
	assert_false(twin_store_batch_open(db.s));
	assert_absent("big00");
	assert_absent("big19");
	assert_twin_text("keep", before);
	/* The store goes on: a new batch commits. */
	create_ok("after");
	commit_ok();
	test_db_reopen(&db);
	assert_absent("big00");
	assert_twin_text("keep", before);
	assert_int_equal(twin_version("after"), 2);
	free(before);
	test_db_close(&db);
}

/* Closes what a failed test left open and restores cJSON's allocator. */
static int teardown(void **state)
{
	(void)state;
	alloc_budget = -1;
	cJSON_InitHooks(NULL);
	test_db_close(&db);
	free(scratch);
	scratch = NULL;
	return 0;
}

static void test_store_close_null_is_ok(void **state)
{
	(void)state;
	twin_store_close(NULL);
}

#define T(name) cmocka_unit_test_teardown(name, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_store_open_creates_directory),
	        T(test_store_open_fails_with_clear_message),
	        T(test_batch_opens_lazily_and_commit_closes_it),
	        T(test_reads_see_writes_of_open_batch),
	        T(test_abort_leaves_no_trace),
	        T(test_commit_survives_reopen),
	        T(test_uncommitted_batch_lost_on_close),
	        T(test_many_writes_one_batch_one_commit),
	        T(test_map_full_grows_and_reapplies),
	        T(test_map_full_at_commit_also_grows),
	        T(test_maintain_grows_map_ahead_of_need),
	        T(test_failed_batch_fails_commit),
	        T(test_read_out_of_memory_is_not_corruption),
	        T(test_failed_commit_drops_the_batch),
	        T(test_store_close_null_is_ok),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
