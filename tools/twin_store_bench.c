/*
 * twin_store_bench.c - twin-store-bench: size, start-up and cold-read cost of
 * the twin store at fleet scale, measured on the store alone (no broker).
 *
 *   twin-store-bench load --db DIR -n N [--batch B] [--changes-max-count C] [--no-view]
 *                         [--json FILE]
 *   twin-store-bench open --db DIR [--drop-caches] [--json FILE]
 *   twin-store-bench get  --db DIR -n SAMPLES [--drop-caches] [--seed S] [--json FILE]
 *   twin-store-bench query --db DIR -q QUERY [-n RUNS] [--json FILE]
 *
 * Why: a broker restart with a million twins must not stall (the plugin
 * opens the store and marks every device disconnected before it serves),
 * the database must stay a small multiple of the JSON it holds, and a
 * device's GET after the restart reads pages nobody has touched yet. The
 * three subcommands measure exactly those three things:
 *
 *   load  creates N devices dev-0000001 … with about 1 KB of JSON each
 *         (tags ~150 B and desired ~350 B in one twin_update, reported
 *         ~500 B in one twin_patch_reported), committing every B devices
 *         as the broker's group commit does. Reports twins/s, the bytes of
 *         JSON written, the bytes of the service view (twin_get printed
 *         compactly, $metadata included; a separate pass, not in the load
 *         time), data.mdb's size, LMDB's pages in use, and the bytes per
 *         record kind, so a ratio that misses its goal says what dominates.
 *         The load writes three change-log entries per device; with
 *         --changes-max-count C the log is trimmed to C entries after every
 *         commit, as the broker's retention (plugin_opt_changes_max_count)
 *         keeps it, otherwise all of them stay.
 *   open  times what the plugin does at start (plugin/entry.c):
 *         twin_store_open, twin_registry_reset_connections and a commit.
 *   get   times SAMPLES twin_get_device_body calls (the device GET) on
 *         random devices across the whole id space, cold (page cache
 *         dropped, store reopened) and then warm (the same ids again).
 *   query times RUNS runs of QUERY (PROTOCOL.md §8) over the whole store,
 *         every page followed with the maximum page size, and reports the
 *         fastest and the median run, the rows and the twins scanned. The
 *         runs step in slices of 256 twins, as the plugin's worker does;
 *         the longest slice is what one step costs the thread running it.
 *
 * --drop-caches writes 3 to /proc/sys/vm/drop_caches after sync (root
 * only); without root it falls back to posix_fadvise(DONTNEED) on data.mdb.
 * The method used is reported. Pages a process has mapped survive a drop,
 * so the store is closed around it. --json FILE writes the figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "twin/changes.h"
#include "twin/query.h"
#include "twin/registry.h"
#include "twin/store.h"
#include "twin/twin.h"

#define PROG        "twin-store-bench"
#define ID_FMT      "dev-%07lu"
#define ID_MAX      32
#define DOC_MAX     1024
#define TABLE_COUNT 4

/* "changes" is the change log: three entries per loaded device (create,
 * update, reported patch), kept until the broker's retention trims them. */
static const char *const table_names[TABLE_COUNT] = {"devices", "twins", "policies", "changes"};

typedef struct bench_args {
	const char *db, *json, *query;
	unsigned long n, batch, changes_max;
	uint64_t seed;
	int drop_caches, view;
} bench_args;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fail(const char *what, const twin_error *err)
{
	fprintf(stderr, PROG ": %s: %s\n", what, err->message);
	return 1;
}

/* splitmix64: a tiny deterministic generator, so a device's twin depends
 * only on its index and runs are repeatable. */
static uint64_t rnd(uint64_t *st)
{
	uint64_t z = (*st += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* n draws for one document, made before the snprintf that uses them:
 * C leaves the evaluation order of arguments open. */
static void draw(uint64_t *st, unsigned *v, int n)
{
	for (int k = 0; k < n; k++)
		v[k] = (unsigned)(rnd(st) >> 33);
}

/* ------------------------------------------------------------------ */
/* Synthetic twins: nested objects, arrays, integers, decimals, strings; */
/* every value varies with the device so pages do not compress away.    */

static const char *const sites[] = {"plant-north", "plant-south", "depot-east", "hq-lab"};
static const char *const types[] = {"thermostat", "air-quality", "power-meter", "gateway"};
static const char *const teams[] = {"facilities", "energy", "ops-emea", "ops-apac", "research"};
static const char *const fw_states[] = {"current", "downloading", "applying", "failed"};
static const char *const modes[] = {"eco", "comfort", "boost", "off"};
static const char *const vendors[] = {"Contoso", "Fabrikam", "Northwind", "Tailspin"};

static size_t gen_tags(char *out, uint64_t *st)
{
	unsigned v[7];

	draw(st, v, 7);
	return (size_t)snprintf(out, DOC_MAX,
	                        "{\"location\":{\"site\":\"%s\",\"building\":\"B%u\",\"floor\":%u,"
	                        "\"room\":\"%u-%03u\"},\"owner\":\"%s\",\"deviceType\":\"%s\","
	                        "\"environment\":\"%s\"}",
	                        sites[v[0] % 4], 1 + v[1] % 40, v[2] % 12, v[2] % 12, v[3] % 1000,
	                        teams[v[4] % 5], types[v[5] % 4],
	                        v[6] % 10 ? "production" : "staging");
}

static size_t gen_desired(char *out, uint64_t *st)
{
	unsigned v[12], major, minor, patch;

	draw(st, v, 12);
	major = 1 + v[0] % 3, minor = v[1] % 10, patch = v[2] % 20;
	return (size_t)snprintf(
	        out, DOC_MAX,
	        "{\"telemetry\":{\"intervalSec\":%u,\"batchSize\":%u,"
	        "\"channels\":[\"temperature\",\"humidity\",\"co2\"]},"
	        "\"thresholds\":{\"temperature\":{\"min\":%.1f,\"max\":%.1f},"
	        "\"humidity\":{\"min\":%u,\"max\":%u}},"
	        "\"firmware\":{\"version\":\"%u.%u.%u\","
	        "\"url\":\"https://updates.example.com/fw/%s/%u.%u.%u.bin\","
	        "\"sha256\":\"%08x%08x%08x%08x\"},\"display\":{\"brightness\":%u,\"mode\":\"%s\"}}",
	        5 * (1 + v[3] % 24), 1 + v[4] % 50, -20.0 + v[5] % 100 / 10.0,
	        35.0 + v[6] % 200 / 10.0, 5 + v[7] % 20, 70 + v[8] % 25, major, minor, patch,
	        types[v[9] % 4], major, minor, patch, v[3] * 2654435761u, v[5] * 2246822519u,
	        v[7] * 3266489917u, v[9] * 668265263u, v[10] % 101, modes[v[11] % 4]);
}

static size_t gen_reported(char *out, uint64_t *st)
{
	unsigned v[32];

	draw(st, v, 32);
	return (size_t)snprintf(
	        out, DOC_MAX,
	        "{\"deviceInfo\":{\"manufacturer\":\"%s\",\"model\":\"%s-%u\","
	        "\"serialNumber\":\"SN%09u\",\"osVersion\":\"linux-5.%u.%u\","
	        "\"totalMemoryKB\":%u},"
	        "\"firmware\":{\"version\":\"%u.%u.%u\",\"state\":\"%s\","
	        "\"lastUpdate\":\"2024-%02u-%02uT%02u:%02u:%02uZ\"},"
	        "\"telemetry\":{\"intervalSec\":%u,\"batchSize\":%u},"
	        "\"status\":{\"uptimeSec\":%u,\"temperature\":%.2f,\"humidity\":%.1f,"
	        "\"co2\":%u,\"battery\":%u,\"rssi\":-%u},"
	        "\"network\":{\"ip\":\"10.%u.%u.%u\",\"mac\":\"02:%02x:%02x:%02x:%02x:%02x\","
	        "\"ssid\":\"site-%u\"},"
	        "\"lastErrors\":[{\"code\":%u,\"at\":\"2024-%02u-%02uT%02u:00:00Z\"}]}",
	        vendors[v[0] % 4], types[v[1] % 4], 100 + v[2] % 900, v[3] % 1000000000u, v[4] % 20,
	        v[5] % 200, 65536u << v[6] % 4, 1 + v[7] % 3, v[8] % 10, v[9] % 20,
	        fw_states[v[10] % 4], 1 + v[11] % 12, 1 + v[12] % 28, v[13] % 24, v[14] % 60,
	        v[15] % 60, 5 * (1 + v[16] % 24), 1 + v[17] % 50, v[18] % 4000000,
	        15.0 + v[19] % 2000 / 100.0, 20.0 + v[20] % 600 / 10.0, 400 + v[21] % 1600,
	        v[22] % 101, 30 + v[23] % 70, v[24] % 256, v[25] % 256, v[26] % 256, v[27] % 256,
	        v[28] % 256, v[29] % 256, v[30] % 256, v[31] % 256, v[24] % 100, v[25] % 500,
	        1 + v[26] % 12, 1 + v[27] % 28, v[28] % 24);
}

/* ------------------------------------------------------------------ */
/* Disk usage, read with LMDB directly (the store does not expose its   */
/* environment): pages in use = last page + 1 - pages on the free list. */

typedef struct kind_usage {
	uint64_t count, bytes;
} kind_usage;

typedef struct db_usage {
	uint64_t file_bytes, alloc_bytes; /* data.mdb st_size, st_blocks */
	uint64_t page_size, last_pgno, free_pages;
	uint64_t table_pages[TABLE_COUNT], table_entries[TABLE_COUNT];
	uint64_t overflow_pages[TABLE_COUNT];
	kind_usage kinds[256]; /* twins table, by key's last byte */
	kind_usage devices;    /* identity records */
} db_usage;

static uint64_t free_list_pages(MDB_txn *txn)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t n = 0;

	if (mdb_cursor_open(txn, 0, &cur) != 0)
		return 0;
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		n += *(const size_t *)v.mv_data; /* an IDL: count, then page numbers */
	mdb_cursor_close(cur);
	return n;
}

/* Key + value bytes of every record of table dbi, by record kind (the last
 * key byte) for the twins table. */
static void scan_records(MDB_txn *txn, MDB_dbi dbi, int twins, db_usage *u)
{
	MDB_cursor *cur;
	MDB_val k, v;

	if (mdb_cursor_open(txn, dbi, &cur) != 0)
		return;
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		const unsigned char *key = k.mv_data;
		kind_usage *ku = !twins ? &u->devices
		                 : k.mv_size >= 2 && key[k.mv_size - 2] == '\0'
		                         ? &u->kinds[key[k.mv_size - 1]]
		                         : &u->kinds[0];

		ku->count++;
		ku->bytes += v.mv_size + k.mv_size;
	}
	mdb_cursor_close(cur);
}

static int db_usage_read(const char *dir, int by_record, db_usage *u)
{
	char path[4096];
	struct stat st;
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_envinfo info;
	MDB_stat ms;
	int rc;

	memset(u, 0, sizeof(*u));
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (stat(path, &st) != 0) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		return 1;
	}
	u->file_bytes = (uint64_t)st.st_size;
	u->alloc_bytes = (uint64_t)st.st_blocks * 512;
	rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(env, 8);
	if (rc == 0)
		rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		goto done;
	mdb_env_info(env, &info);
	mdb_env_stat(env, &ms);
	u->page_size = ms.ms_psize;
	u->last_pgno = info.me_last_pgno;
	u->free_pages = free_list_pages(txn);
	for (int t = 0; t < TABLE_COUNT; t++) {
		MDB_dbi dbi;

		if (mdb_dbi_open(txn, table_names[t], 0, &dbi) != 0 || mdb_stat(txn, dbi, &ms) != 0)
			continue;
		u->table_pages[t] = ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
		u->overflow_pages[t] = ms.ms_overflow_pages;
		u->table_entries[t] = ms.ms_entries;
		if (by_record && t < 2)
			scan_records(txn, dbi, t == 1, u);
	}
done:
	if (rc != 0)
		fprintf(stderr, PROG ": reading %s with LMDB: %s\n", dir, mdb_strerror(rc));
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return rc != 0;
}

static uint64_t used_bytes(const db_usage *u)
{
	return (u->last_pgno + 1 - u->free_pages) * u->page_size;
}

static void usage_to_json(cJSON *o, const db_usage *u, int by_record)
{
	cJSON *tables = cJSON_AddObjectToObject(o, "tables");

	cJSON_AddNumberToObject(o, "db_file_bytes", (double)u->file_bytes);
	cJSON_AddNumberToObject(o, "db_allocated_bytes", (double)u->alloc_bytes);
	cJSON_AddNumberToObject(o, "db_used_bytes", (double)used_bytes(u));
	cJSON_AddNumberToObject(o, "page_size", (double)u->page_size);
	cJSON_AddNumberToObject(o, "free_pages", (double)u->free_pages);
	for (int t = 0; t < TABLE_COUNT; t++) {
		cJSON *tj = cJSON_AddObjectToObject(tables, table_names[t]);

		cJSON_AddNumberToObject(tj, "entries", (double)u->table_entries[t]);
		cJSON_AddNumberToObject(tj, "bytes", (double)(u->table_pages[t] * u->page_size));
		cJSON_AddNumberToObject(tj, "overflow_bytes",
		                        (double)(u->overflow_pages[t] * u->page_size));
	}
	if (!by_record)
		return;
	/* Record bytes are key + value as stored, before page overhead. */
	cJSON *rec = cJSON_AddObjectToObject(o, "records");
	cJSON *dj = cJSON_AddObjectToObject(rec, "identity");

	cJSON_AddNumberToObject(dj, "count", (double)u->devices.count);
	cJSON_AddNumberToObject(dj, "bytes", (double)u->devices.bytes);
	for (int k = 0; k < 256; k++) {
		char name[16];
		cJSON *kj;

		if (u->kinds[k].count == 0)
			continue;
		snprintf(name, sizeof(name), k >= 0x21 && k < 0x7f ? "twin:%c" : "twin:0x%02x", k);
		kj = cJSON_AddObjectToObject(rec, name);
		cJSON_AddNumberToObject(kj, "count", (double)u->kinds[k].count);
		cJSON_AddNumberToObject(kj, "bytes", (double)u->kinds[k].bytes);
	}
}

/* ------------------------------------------------------------------ */

static const char *drop_caches(const char *dir)
{
	char path[4096];
	int fd, ok;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	ok = fd >= 0 && write(fd, "3\n", 2) == 2;
	if (fd >= 0)
		close(fd);
	if (ok)
		return "drop_caches";
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	fd = open(path, O_RDONLY);
	ok = fd >= 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
	if (fd >= 0)
		close(fd);
	fprintf(stderr, PROG ": cannot write /proc/sys/vm/drop_caches (not root?)%s\n",
	        ok ? "; used posix_fadvise(DONTNEED) on data.mdb" : "; caches NOT dropped");
	return ok ? "fadvise" : "none";
}

static twin_err store_open(const char *dir, twin_store **s, twin_error *err)
{
	twin_store_options o;

	twin_store_options_default(&o);
	o.path = dir;
	return twin_store_open(&o, s, err);
}

static int write_json(const char *file, cJSON *o)
{
	char *text = cJSON_Print(o);
	FILE *f = file && text ? fopen(file, "w") : NULL;
	int rc = 0;

	if (file != NULL && (f == NULL || fprintf(f, "%s\n", text) < 0)) {
		fprintf(stderr, PROG ": cannot write %s\n", file);
		rc = 1;
	}
	if (f != NULL && fclose(f) != 0)
		rc = 1;
	free(text);
	cJSON_Delete(o);
	return rc;
}

/* ------------------------------------------------------------------ */
/* load */

/* Create device i and write its twin; written[0..2] += bytes of the tags,
 * desired and reported JSON. */
static twin_err load_device(twin_store *s, unsigned long i, uint64_t written[3], twin_error *err)
{
	char id[ID_MAX], tags[DOC_MAX], desired[DOC_MAX], reported[DOC_MAX], patch[3 * DOC_MAX];
	uint64_t st = i;
	size_t tl = gen_tags(tags, &st), dl = gen_desired(desired, &st),
	       rl = gen_reported(reported, &st);
	twin_write_result res = {0};
	cJSON *pj;
	twin_err rc;

	snprintf(id, sizeof(id), ID_FMT, i);
	snprintf(patch, sizeof(patch), "{\"tags\":%s,\"properties\":{\"desired\":%s}}", tags,
	         desired);
	rc = twin_device_create(s, id, NULL, NULL, err);
	if (rc != TWIN_OK)
		return rc;
	pj = cJSON_Parse(patch);
	if (pj == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "generated patch does not parse");
	rc = twin_update(s, id, pj, NULL, &res, err);
	cJSON_Delete(pj);
	twin_write_result_clear(&res);
	if (rc == TWIN_OK)
		rc = twin_patch_reported(s, id, reported, rl, &res, err);
	twin_write_result_clear(&res);
	written[0] += tl;
	written[1] += dl;
	written[2] += rl;
	return rc;
}

/* Bytes of the service view (twin_get, printed compactly) and of the
 * device GET body of devices 1…n. */
static int view_pass(twin_store *s, unsigned long n, uint64_t *view, uint64_t *body)
{
	twin_error err;

	for (unsigned long i = 1; i <= n; i++) {
		char id[ID_MAX], *text, *b = NULL;
		size_t blen = 0;
		cJSON *tw = NULL;

		snprintf(id, sizeof(id), ID_FMT, i);
		if (twin_get(s, id, &tw, &err) != TWIN_OK ||
		    twin_get_device_body(s, id, &b, &blen, NULL, &err) != TWIN_OK) {
			cJSON_Delete(tw);
			return fail(id, &err);
		}
		text = cJSON_PrintUnformatted(tw);
		*view += text ? strlen(text) : 0;
		*body += blen;
		free(text);
		free(b);
		cJSON_Delete(tw);
	}
	return 0;
}

/* Keep at most max change-log entries (0: all), in one committed batch. */
static int trim_log(twin_store *s, unsigned long max, twin_error *err)
{
	if (max == 0)
		return 0;
	return twin_changes_trim(s, max, 0, SIZE_MAX, NULL, err) != TWIN_OK ||
	       twin_store_commit(s, err) != TWIN_OK;
}

static int cmd_load(const bench_args *a)
{
	char path[4096];
	uint64_t sections[3] = {0}, written, view = 0, body = 0;
	twin_store *s;
	twin_error err;
	db_usage u;
	double t0, ms;
	cJSON *o;

	snprintf(path, sizeof(path), "%s/data.mdb", a->db);
	if (access(path, F_OK) == 0) {
		fprintf(stderr, PROG ": %s exists; load wants a fresh directory\n", path);
		return 1;
	}
	if (store_open(a->db, &s, &err) != TWIN_OK)
		return fail(a->db, &err);
	t0 = now_ms();
	for (unsigned long i = 1; i <= a->n; i++) {
		if (load_device(s, i, sections, &err) != TWIN_OK ||
		    ((i % a->batch == 0 || i == a->n) &&
		     (twin_store_commit(s, &err) != TWIN_OK || trim_log(s, a->changes_max, &err) ||
		      twin_store_maintain(s, &err) != TWIN_OK))) {
			twin_store_close(s);
			return fail("load", &err);
		}
	}
	ms = now_ms() - t0;
	written = sections[0] + sections[1] + sections[2];
	if (a->view && view_pass(s, a->n, &view, &body) != 0) {
		twin_store_close(s);
		return 1;
	}
	twin_store_close(s);
	if (db_usage_read(a->db, 1, &u) != 0)
		return 1;

	printf("load: %lu twins in %.1f s (%.0f twins/s, batch %lu)\n", a->n, ms / 1e3,
	       a->n / (ms / 1e3), a->batch);
	printf("  JSON written %.1f MB (%.0f B/twin: tags %.0f, desired %.0f, reported %.0f)",
	       written / 1e6, (double)written / a->n, (double)sections[0] / a->n,
	       (double)sections[1] / a->n, (double)sections[2] / a->n);
	if (a->view)
		printf("; service view %.1f MB (%.0f B/twin); device GET body %.0f B/twin",
		       view / 1e6, (double)view / a->n, (double)body / a->n);
	printf("\n  data.mdb %.1f MB, LMDB pages in use %.1f MB\n", u.file_bytes / 1e6,
	       used_bytes(&u) / 1e6);
	printf("  ratio data.mdb / JSON written %.2f", (double)u.file_bytes / written);
	printf(" (identities and twins alone %.2f)",
	       (double)((u.table_pages[0] + u.table_pages[1]) * u.page_size) / written);
	if (a->view)
		printf(", / service view %.2f", (double)u.file_bytes / view);
	printf("\n");

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "command", "load");
	cJSON_AddNumberToObject(o, "twins", (double)a->n);
	cJSON_AddNumberToObject(o, "batch", (double)a->batch);
	cJSON_AddNumberToObject(o, "changes_max_count", (double)a->changes_max);
	cJSON_AddNumberToObject(o, "load_ms", ms);
	cJSON_AddNumberToObject(o, "twins_per_s", a->n / (ms / 1e3));
	cJSON_AddNumberToObject(o, "json_written_bytes", (double)written);
	cJSON_AddNumberToObject(o, "tags_written_bytes", (double)sections[0]);
	cJSON_AddNumberToObject(o, "desired_written_bytes", (double)sections[1]);
	cJSON_AddNumberToObject(o, "reported_written_bytes", (double)sections[2]);
	cJSON_AddNumberToObject(o, "ratio_file_to_written", (double)u.file_bytes / written);
	cJSON_AddNumberToObject(o, "ratio_used_to_written", (double)used_bytes(&u) / written);
	if (a->view) {
		cJSON_AddNumberToObject(o, "service_view_bytes", (double)view);
		cJSON_AddNumberToObject(o, "device_body_bytes", (double)body);
		cJSON_AddNumberToObject(o, "ratio_file_to_view", (double)u.file_bytes / view);
		cJSON_AddNumberToObject(o, "ratio_used_to_view", (double)used_bytes(&u) / view);
	}
	usage_to_json(o, &u, 1);
	return write_json(a->json, o);
}

/* ------------------------------------------------------------------ */
/* open */

static int cmd_open(const bench_args *a)
{
	const char *dropped = a->drop_caches ? drop_caches(a->db) : "none";
	twin_store *s;
	twin_error err;
	size_t stale = 0;
	double t0 = now_ms(), t_open, t_reset;
	cJSON *o;

	if (store_open(a->db, &s, &err) != TWIN_OK)
		return fail(a->db, &err);
	t_open = now_ms() - t0;
	if (twin_registry_reset_connections(s, &stale, &err) != TWIN_OK ||
	    twin_store_commit(s, &err) != TWIN_OK) {
		twin_store_close(s);
		return fail("reset connections", &err);
	}
	t_reset = now_ms() - t0 - t_open;
	twin_store_close(s);

	printf("open: %.1f ms (twin_store_open %.1f ms, reset connections + commit %.1f ms, "
	       "%zu marked disconnected; caches dropped: %s)\n",
	       t_open + t_reset, t_open, t_reset, stale, dropped);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "command", "open");
	cJSON_AddStringToObject(o, "caches_dropped", dropped);
	cJSON_AddNumberToObject(o, "open_ms", t_open + t_reset);
	cJSON_AddNumberToObject(o, "store_open_ms", t_open);
	cJSON_AddNumberToObject(o, "reset_connections_ms", t_reset);
	cJSON_AddNumberToObject(o, "stale_connections", (double)stale);
	return write_json(a->json, o);
}

/* ------------------------------------------------------------------ */
/* get */

/* Highest n with dev-n present, for ids loaded as 1…N: exponential then
 * binary search, a few dozen point reads. */
static unsigned long device_count(twin_store *s)
{
	unsigned long lo = 0, hi = 1;
	twin_identity idn;
	twin_error err;
	char id[ID_MAX];

	for (;;) {
		snprintf(id, sizeof(id), ID_FMT, hi);
		if (twin_device_get(s, id, &idn, &err) != TWIN_OK)
			break;
		lo = hi;
		hi *= 2;
	}
	while (hi - lo > 1) {
		unsigned long mid = lo + (hi - lo) / 2;

		snprintf(id, sizeof(id), ID_FMT, mid);
		if (twin_device_get(s, id, &idn, &err) == TWIN_OK)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

typedef struct lat_stats {
	double p50, p90, p99, max, mean;
} lat_stats;

/* Time one device GET per id; us[] receives the latencies, sorted. */
static int timed_gets(twin_store *s, const unsigned long *ids, size_t n, double *us, lat_stats *ls)
{
	double sum = 0;
	twin_error err;

	for (size_t i = 0; i < n; i++) {
		char id[ID_MAX], *body = NULL;
		size_t len;
		double t0;

		snprintf(id, sizeof(id), ID_FMT, ids[i]);
		t0 = now_ms();
		if (twin_get_device_body(s, id, &body, &len, NULL, &err) != TWIN_OK)
			return fail(id, &err);
		us[i] = (now_ms() - t0) * 1e3;
		sum += us[i];
		free(body);
	}
	qsort(us, n, sizeof(*us), cmp_double);
	ls->p50 = us[(n - 1) / 2];
	ls->p90 = us[(size_t)((n - 1) * 0.90)];
	ls->p99 = us[(size_t)((n - 1) * 0.99)];
	ls->max = us[n - 1];
	ls->mean = sum / n;
	return 0;
}

static void lat_to_json(cJSON *o, const char *name, const lat_stats *ls)
{
	cJSON *j = cJSON_AddObjectToObject(o, name);

	cJSON_AddNumberToObject(j, "p50_us", ls->p50);
	cJSON_AddNumberToObject(j, "p90_us", ls->p90);
	cJSON_AddNumberToObject(j, "p99_us", ls->p99);
	cJSON_AddNumberToObject(j, "max_us", ls->max);
	cJSON_AddNumberToObject(j, "mean_us", ls->mean);
}

static int cmd_get(const bench_args *a)
{
	unsigned long *ids = calloc(a->n, sizeof(*ids)), count;
	double *us = calloc(a->n, sizeof(*us));
	const char *dropped = "none";
	lat_stats cold, warm;
	uint64_t st = a->seed;
	twin_store *s = NULL;
	twin_error err;
	int rc = 1;
	cJSON *o;

	if (ids == NULL || us == NULL)
		goto out;
	if (store_open(a->db, &s, &err) != TWIN_OK) {
		rc = fail(a->db, &err);
		goto out;
	}
	count = device_count(s);
	twin_store_close(s);
	s = NULL;
	if (count == 0) {
		fprintf(stderr, PROG ": no device " ID_FMT " in %s\n", 1UL, a->db);
		goto out;
	}
	for (unsigned long i = 0; i < a->n; i++)
		ids[i] = 1 + rnd(&st) % count;
	if (a->drop_caches)
		dropped = drop_caches(a->db);
	if (store_open(a->db, &s, &err) != TWIN_OK) {
		rc = fail(a->db, &err);
		goto out;
	}
	if (timed_gets(s, ids, a->n, us, &cold) != 0 || timed_gets(s, ids, a->n, us, &warm) != 0)
		goto out;

	printf("get: %lu device GETs over %lu devices (caches dropped: %s)\n", a->n, count,
	       dropped);
	printf("  cold p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us, total %.0f ms\n",
	       cold.p50, cold.p90, cold.p99, cold.max, cold.mean * a->n / 1e3);
	printf("  warm p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us, total %.0f ms\n",
	       warm.p50, warm.p90, warm.p99, warm.max, warm.mean * a->n / 1e3);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "command", "get");
	cJSON_AddStringToObject(o, "caches_dropped", dropped);
	cJSON_AddNumberToObject(o, "samples", (double)a->n);
	cJSON_AddNumberToObject(o, "devices", (double)count);
	lat_to_json(o, "cold", &cold);
	lat_to_json(o, "warm", &warm);
	rc = write_json(a->json, o);
out:
	twin_store_close(s);
	free(ids);
	free(us);
	return rc;
}

/* One run of q over every page: its time, rows, twins scanned and the
 * longest step, in ms. */
static int query_once(twin_store *s, const twin_query *q, double *ms, size_t *rows, size_t *scanned,
                      double *max_step)
{
	char *token = NULL;
	double t0 = now_ms();
	twin_error err;

	*rows = *scanned = 0;
	*max_step = 0;
	do {
		twin_query_run *r = NULL;
		cJSON *items = NULL;
		char *next = NULL;
		int done = 0;
		twin_err rc = twin_query_start(s, q, token, TWIN_QUERY_PAGE_MAX, &r, &err);

		while (rc == TWIN_OK && !done) {
			double t = now_ms();

			rc = twin_query_step(r, 256, &done, &err);
			if (now_ms() - t > *max_step)
				*max_step = now_ms() - t;
		}
		if (rc == TWIN_OK)
			rc = twin_query_page(r, &items, &next, &err);
		if (rc == TWIN_OK) {
			*rows += (size_t)cJSON_GetArraySize(items);
			*scanned += twin_query_scanned(r);
		}
		cJSON_Delete(items);
		twin_query_end(r);
		free(token);
		token = next;
		if (rc != TWIN_OK) {
			free(token);
			return fail("query", &err);
		}
	} while (token != NULL);
	*ms = now_ms() - t0;
	return 0;
}

static int cmd_query(const bench_args *a)
{
	unsigned long runs = a->n ? a->n : 5;
	double *ms = calloc(runs, sizeof(*ms)), max_step = 0, step;
	size_t rows = 0, scanned = 0;
	twin_query *q = NULL;
	twin_store *s = NULL;
	twin_error err;
	int rc = 1;
	cJSON *o;

	if (ms == NULL)
		return 1;
	if (twin_query_parse(a->query, strlen(a->query), &q, &err) != TWIN_OK) {
		rc = fail("query", &err);
		goto out;
	}
	if (store_open(a->db, &s, &err) != TWIN_OK) {
		rc = fail(a->db, &err);
		goto out;
	}
	for (unsigned long i = 0; i < runs; i++) {
		if (query_once(s, q, &ms[i], &rows, &scanned, &step) != 0)
			goto out;
		max_step = step > max_step ? step : max_step;
	}
	qsort(ms, runs, sizeof(*ms), cmp_double);
	printf("query: %s\n  %lu runs: fastest %.1f ms, median %.1f ms; %zu rows, %zu twins "
	       "scanned; longest 256-twin step %.2f ms\n",
	       a->query, runs, ms[0], ms[runs / 2], rows, scanned, max_step);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "command", "query");
	cJSON_AddStringToObject(o, "query", a->query);
	cJSON_AddNumberToObject(o, "runs", (double)runs);
	cJSON_AddNumberToObject(o, "fastest_ms", ms[0]);
	cJSON_AddNumberToObject(o, "median_ms", ms[runs / 2]);
	cJSON_AddNumberToObject(o, "rows", (double)rows);
	cJSON_AddNumberToObject(o, "scanned", (double)scanned);
	cJSON_AddNumberToObject(o, "longest_step_ms", max_step);
	rc = write_json(a->json, o);
out:
	twin_query_free(q);
	twin_store_close(s);
	free(ms);
	return rc;
}

/* ------------------------------------------------------------------ */

static int usage(FILE *f)
{
	fprintf(f, "usage: " PROG " load --db DIR -n N [--batch B] [--changes-max-count C] "
	           "[--no-view] [--json FILE]\n"
	           "       " PROG " open --db DIR [--drop-caches] [--json FILE]\n"
	           "       " PROG " get  --db DIR -n SAMPLES [--drop-caches] [--seed S] "
	           "[--json FILE]\n"
	           "       " PROG " query --db DIR -q QUERY [-n RUNS] [--json FILE]\n");
	return f == stdout ? 0 : 2;
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && *out > 0 && s[0] != '-';
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"db", required_argument, NULL, 'd'},
	        {"batch", required_argument, NULL, 'b'},
	        {"json", required_argument, NULL, 'j'},
	        {"seed", required_argument, NULL, 's'},
	        {"drop-caches", no_argument, NULL, 'C'},
	        {"no-view", no_argument, NULL, 'V'},
	        {"changes-max-count", required_argument, NULL, 'm'},
	        {"help", no_argument, NULL, 'h'},
	        {"query", required_argument, NULL, 'q'},
	        {NULL, 0, NULL, 0}};
	bench_args a = {.batch = 1000, .seed = 1, .view = 1};
	char path[4096];
	unsigned long seed;
	const char *cmd;
	int c;

	if (argc < 2)
		return usage(stderr);
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
		return usage(stdout);
	optind = 2;
	while ((c = getopt_long(argc, argv, "n:q:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			a.db = optarg;
			break;
		case 'n':
			if (!parse_ulong(optarg, &a.n))
				return usage(stderr);
			break;
		case 'b':
			if (!parse_ulong(optarg, &a.batch))
				return usage(stderr);
			break;
		case 's':
			if (!parse_ulong(optarg, &seed))
				return usage(stderr);
			a.seed = seed;
			break;
		case 'j':
			a.json = optarg;
			break;
		case 'C':
			a.drop_caches = 1;
			break;
		case 'q':
			a.query = optarg;
			break;
		case 'V':
			a.view = 0;
			break;
		case 'm':
			if (!parse_ulong(optarg, &a.changes_max))
				return usage(stderr);
			break;
		case 'h':
			return usage(stdout);
		default:
			return usage(stderr);
		}
	}
	if (optind != argc || a.db == NULL)
		return usage(stderr);
	if (strcmp(cmd, "load") == 0 && a.n > 0 && a.n <= 9999999)
		return cmd_load(&a);
	if (strcmp(cmd, "open") != 0 && (strcmp(cmd, "get") != 0 || a.n == 0) &&
	    (strcmp(cmd, "query") != 0 || a.query == NULL))
		return usage(stderr);
	/* twin_store_open would create an empty store: not what we measure. */
	snprintf(path, sizeof(path), "%s/data.mdb", a.db);
	if (access(path, R_OK) != 0) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (strcmp(cmd, "query") == 0)
		return cmd_query(&a);
	return strcmp(cmd, "open") == 0 ? cmd_open(&a) : cmd_get(&a);
}
