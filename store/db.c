/*
 * db.c - the LMDB environment, group-commit batches and map growth.
 *
 * Group commit (DESIGN.md §3): one write transaction collects every write of
 * a broker loop iteration and is committed once, so the fsync cost is paid
 * per batch, not per request. The write log costs one memcpy per put; it is
 * what makes MDB_MAP_FULL invisible to callers: LMDB cannot resize under an
 * open transaction, so we abort, grow, and replay the logged puts, which
 * reproduces the batch byte for byte.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "twin_records.h"

enum { WLOG_PUT = 1, WLOG_DEL = 2, WLOG_APPEND = 3 };

/* LMDB named-database slots; more than the tables in use, so adding a table
 * needs no other change. */
#define DB_MAX_TABLES 8
_Static_assert(DB_TABLE_COUNT <= DB_MAX_TABLES, "raise DB_MAX_TABLES");

static const char *table_names[DB_TABLE_COUNT] = {"devices", "twins", "policies", "connected",
                                                  "changes", "meta",  "jobs"};

static twin_err lmdb_error(twin_error *err, const char *what, int rc)
{
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: %s: %s", what, mdb_strerror(rc));
}

static int64_t system_clock(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 10000000 + ts.tv_nsec / 100;
}

void twin_store_options_default(twin_store_options *o)
{
	memset(o, 0, sizeof(*o));
	o->map_size = TWIN_DEFAULT_MAP_SIZE;
	twin_limits_default(&o->limits);
}

/* mkdir -p with mode 0700: the database holds device keys. */
static int make_dirs(const char *path)
{
	char *p = strdup(path);
	int rc = 0;

	if (p == NULL)
		return ENOMEM;
	for (char *c = p + 1; *c && rc == 0; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			rc = errno;
		*c = '/';
	}
	if (rc == 0 && mkdir(p, 0700) != 0 && errno != EEXIST)
		rc = errno;
	free(p);
	return rc;
}

static twin_err open_tables(twin_store *s, twin_error *err)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);

	if (rc != 0)
		return lmdb_error(err, "begin", rc);
	for (int t = 0; t < DB_TABLE_COUNT; t++) {
		rc = mdb_dbi_open(txn, table_names[t], MDB_CREATE, &s->dbi[t]);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return lmdb_error(err, table_names[t], rc);
		}
	}
	rc = mdb_txn_commit(txn);
	return rc == 0 ? TWIN_OK : lmdb_error(err, "commit", rc);
}

twin_err twin_store_open(const twin_store_options *o, twin_store **out, twin_error *err)
{
	twin_store *s;
	MDB_envinfo info;
	int rc;

	*out = NULL;
	if (o->path == NULL || o->path[0] == '\0')
		return twin_error_set(err, TWIN_E_STORAGE, "No database path given.");
	rc = make_dirs(o->path);
	if (rc != 0)
		return twin_error_set(
		        err, TWIN_E_STORAGE,
		        "Cannot create database directory '%s': %s (running as uid %ld)", o->path,
		        strerror(rc), (long)geteuid());
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->path = strdup(o->path)) == NULL) {
		free(s);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	s->limits = o->limits;
	s->clock = o->clock ? o->clock : system_clock;
	s->clock_ctx = o->clock_ctx;
	s->jobs_hint = 1; /* look once */
	s->drain_changes = o->drain_changes;
	rc = mdb_env_create(&s->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(s->env, DB_MAX_TABLES);
	if (rc == 0)
		rc = mdb_env_set_mapsize(s->env, o->map_size ? o->map_size : TWIN_DEFAULT_MAP_SIZE);
	/* MDB_NOTLS: read transactions belong to their MDB_txn, not the thread,
	 * so a worker thread may own one (DESIGN.md §4). */
	if (rc == 0)
		rc = mdb_env_open(s->env, o->path, MDB_NOTLS | MDB_NORDAHEAD, 0600);
	if (rc != 0) {
		twin_error_set(err, TWIN_E_STORAGE,
		               "Cannot open database '%s': %s (running as uid %ld)", o->path,
		               mdb_strerror(rc), (long)geteuid());
		twin_store_close(s);
		return TWIN_E_STORAGE;
	}
	if (open_tables(s, err) != TWIN_OK || changes_open(s, err) != TWIN_OK) {
		twin_store_close(s);
		return TWIN_E_STORAGE;
	}
	/* An existing environment may be larger than asked for. */
	mdb_env_info(s->env, &info);
	s->map_size = info.me_mapsize;
	*out = s;
	return TWIN_OK;
}

void twin_store_close(twin_store *s)
{
	if (s == NULL)
		return;
	twin_store_abort(s);
	rec_cache_free(s);
	changes_free(s);
	if (s->rtxn != NULL)
		mdb_txn_abort(s->rtxn);
	if (s->env != NULL)
		mdb_env_close(s->env);
	free(s->wlog.buf);
	cJSON_free(s->scratch.data);
	free(s->path);
	free(s);
}

const char *twin_store_path(const twin_store *s)
{
	return s->path;
}

const twin_limits *twin_store_limits(const twin_store *s)
{
	return &s->limits;
}

int64_t twin_store_now(twin_store *s)
{
	return s->clock(s->clock_ctx);
}

int twin_store_batch_open(const twin_store *s)
{
	return s->wtxn != NULL;
}

size_t twin_store_map_size(const twin_store *s)
{
	return s->map_size;
}

MDB_txn *db_txn(twin_store *s)
{
	return s->wtxn ? s->wtxn : s->rtxn;
}

twin_err db_read_begin(twin_store *s, twin_error *err)
{
	int rc;

	if (s->wtxn != NULL)
		return TWIN_OK;
	if (s->rtxn_depth > 0) {
		s->rtxn_depth++;
		return TWIN_OK;
	}
	if (s->rtxn == NULL)
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
	else
		rc = mdb_txn_renew(s->rtxn);
	if (rc != 0) {
		if (s->rtxn != NULL) {
			mdb_txn_abort(s->rtxn);
			s->rtxn = NULL;
		}
		return lmdb_error(err, "read", rc);
	}
	s->rtxn_depth = 1;
	return TWIN_OK;
}

void db_read_end(twin_store *s)
{
	/* Readers never hold a snapshot across callbacks (DESIGN.md §3): an old
	 * snapshot pins pages and makes the file grow. */
	if (s->rtxn_depth > 0 && --s->rtxn_depth == 0)
		mdb_txn_reset(s->rtxn);
}

twin_err db_get(twin_store *s, db_table t, const void *key, size_t klen, MDB_val *val,
                twin_error *err)
{
	MDB_val k = {klen, (void *)key};
	int rc = mdb_get(db_txn(s), s->dbi[t], &k, val);

	if (rc == MDB_NOTFOUND)
		return twin_error_set(err, TWIN_E_NOT_FOUND, "Not found.");
	return rc == 0 ? TWIN_OK : lmdb_error(err, "get", rc);
}

twin_err db_write_begin(twin_store *s, twin_error *err)
{
	int rc;

	if (s->batch_failed)
		return twin_error_set(
		        err, TWIN_E_STORAGE,
		        "Storage error: the batch failed and awaits commit or abort.");
	if (s->wtxn != NULL)
		return TWIN_OK;
	rc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
	if (rc != 0) {
		s->wtxn = NULL;
		return lmdb_error(err, "begin", rc);
	}
	s->wlog.len = 0;
	changes_batch_begin(s);
	return TWIN_OK;
}

static int wlog_append(db_wlog *w, int op, db_table t, const void *key, uint32_t klen,
                       const void *val, uint32_t vlen)
{
	size_t need = 2 + 2 * sizeof(uint32_t) + klen + vlen;
	unsigned char *p;

	if (w->len + need > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;

		while (cap < w->len + need)
			cap *= 2;
		p = realloc(w->buf, cap);
		if (p == NULL)
			return 0;
		w->buf = p;
		w->cap = cap;
	}
	p = w->buf + w->len;
	*p++ = (unsigned char)op;
	*p++ = (unsigned char)t;
	memcpy(p, &klen, sizeof(klen));
	p += sizeof(klen);
	memcpy(p, &vlen, sizeof(vlen));
	p += sizeof(vlen);
	memcpy(p, key, klen);
	if (vlen)
		memcpy(p + klen, val, vlen);
	w->len += need;
	return 1;
}

static int apply_one(twin_store *s, int op, db_table t, MDB_val *k, MDB_val *v)
{
	int rc;

	if (op == WLOG_PUT || op == WLOG_APPEND)
		return mdb_put(s->wtxn, s->dbi[t], k, v, op == WLOG_APPEND ? MDB_APPEND : 0);
	rc = mdb_del(s->wtxn, s->dbi[t], k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Re-apply the whole log to a fresh write transaction. */
static int wlog_replay(twin_store *s)
{
	size_t off = 0;
	int rc = 0;

	while (off < s->wlog.len && rc == 0) {
		unsigned char *p = s->wlog.buf + off;
		uint32_t klen, vlen;
		MDB_val k, v;

		memcpy(&klen, p + 2, sizeof(klen));
		memcpy(&vlen, p + 2 + sizeof(klen), sizeof(vlen));
		k.mv_size = klen;
		k.mv_data = p + 2 + 2 * sizeof(uint32_t);
		v.mv_size = vlen;
		v.mv_data = (unsigned char *)k.mv_data + klen;
		rc = apply_one(s, p[0], (db_table)p[1], &k, &v);
		off += 2 + 2 * sizeof(uint32_t) + klen + vlen;
	}
	return rc;
}

/* Double the map and rebuild the batch in a new transaction. The failed
 * transaction must already be gone (aborted, or freed by a failed commit).
 * On failure no transaction is left open, so callers may simply retry. */
static int grow_and_replay(twin_store *s)
{
	size_t size = s->map_size * 2;
	int rc;

	/* No transaction of this process may be live across a resize, and a
	 * query's snapshot cannot be closed from here: the batch fails. TICK
	 * grows the map ahead of need (twin_store_maintain), so this takes a
	 * batch that fills a quarter of the map while a query runs. */
	if (s->readers > 0)
		return EBUSY;
	if (s->rtxn != NULL) {
		mdb_txn_abort(s->rtxn);
		s->rtxn = NULL;
		s->rtxn_depth = 0;
	}
	rc = mdb_env_set_mapsize(s->env, size);
	if (rc != 0)
		return rc;
	s->map_size = size;
	rc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
	if (rc != 0) {
		s->wtxn = NULL;
		return rc;
	}
	rc = wlog_replay(s);
	if (rc != 0) {
		mdb_txn_abort(s->wtxn);
		s->wtxn = NULL;
	}
	return rc;
}

static twin_err db_write(twin_store *s, int op, db_table t, const void *key, size_t klen,
                         const void *val, size_t vlen, twin_error *err)
{
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
	int rc;

	if (s->wtxn == NULL)
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: no open batch.");
	if (klen > UINT32_MAX || vlen > UINT32_MAX ||
	    !wlog_append(&s->wlog, op, t, key, (uint32_t)klen, val, (uint32_t)vlen)) {
		/* Earlier writes of the same operation may be in: fail it all. */
		db_fail_batch(s);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	rc = apply_one(s, op, t, &k, &v);
	while (rc == MDB_MAP_FULL) {
		/* The log already holds this write, so the replay includes it. */
		mdb_txn_abort(s->wtxn);
		s->wtxn = NULL;
		rc = grow_and_replay(s);
	}
	if (rc != 0) {
		db_fail_batch(s);
		return lmdb_error(err, op == WLOG_DEL ? "del" : "put", rc);
	}
	return TWIN_OK;
}

void db_fail_batch(twin_store *s)
{
	twin_store_abort(s);
	s->batch_failed = 1;
}

void twin_store_fail(twin_store *s)
{
	db_fail_batch(s);
}

twin_err db_put(twin_store *s, db_table t, const void *key, size_t klen, const void *val,
                size_t vlen, twin_error *err)
{
	return db_write(s, WLOG_PUT, t, key, klen, val, vlen, err);
}

twin_err db_append(twin_store *s, db_table t, const void *key, size_t klen, const void *val,
                   size_t vlen, twin_error *err)
{
	return db_write(s, WLOG_APPEND, t, key, klen, val, vlen, err);
}

twin_err db_del(twin_store *s, db_table t, const void *key, size_t klen, twin_error *err)
{
	return db_write(s, WLOG_DEL, t, key, klen, NULL, 0, err);
}

twin_err twin_store_commit(twin_store *s, twin_error *err)
{
	int rc;

	if (s->batch_failed) {
		s->batch_failed = 0;
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: the batch was aborted.");
	}
	if (s->wtxn == NULL)
		return TWIN_OK;
	rc = mdb_txn_commit(s->wtxn);
	s->wtxn = NULL;
	while (rc == MDB_MAP_FULL) {
		rc = grow_and_replay(s);
		if (rc == 0) {
			rc = mdb_txn_commit(s->wtxn);
			s->wtxn = NULL;
		}
	}
	if (rc != 0) {
		twin_store_abort(s);
		return lmdb_error(err, "commit", rc);
	}
	s->wlog.len = 0;
	changes_committed(s);
	return TWIN_OK;
}

void twin_store_abort(twin_store *s)
{
	/* Cached sections may hold writes of this batch. */
	rec_cache_clear(s);
	if (s->wtxn != NULL)
		mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
	s->wlog.len = 0;
	s->batch_failed = 0;
	s->jobs_hint = 1; /* the batch may have finished a job: look again */
	changes_aborted(s);
}

twin_err twin_store_maintain(twin_store *s, twin_error *err)
{
	MDB_envinfo info;
	MDB_stat st;
	size_t used;
	int rc;

	if (s->wtxn != NULL)
		return TWIN_OK;
	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &st);
	used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
	if (used * 4 <= s->map_size * 3 || s->readers > 0)
		return TWIN_OK; /* with queries running: at a later call */
	if (s->rtxn != NULL) {
		mdb_txn_abort(s->rtxn);
		s->rtxn = NULL;
		s->rtxn_depth = 0;
	}
	rc = mdb_env_set_mapsize(s->env, s->map_size * 2);
	if (rc != 0)
		return lmdb_error(err, "resize", rc);
	s->map_size *= 2;
	return TWIN_OK;
}
