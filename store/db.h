/*
 * db.h - private to store/: the LMDB environment, batches and the write log.
 *
 * Four tables:
 *   devices   deviceId            -> identity record (fixed binary: format tag
 *             and twin_identity, store/registry.c)
 *   twins     deviceId "\0" kind  -> twin records (store/twin_record.c), kind
 *             a TWIN_KIND_* letter (twin_records.h): 'D' desired, 'R'
 *             reported, 'T' tags, 'V' twin version, …
 *   policies  policy name         -> shared access policy record (fixed binary:
 *             format tag and twin_policy, store/policy.c)
 *   connected deviceId            -> "" for every device marked connected, so
 *             start-up resets only those instead of reading every identity
 *             (a full scan of 1M identities took 11 s with a cold cache)
 *   changes   sequence number     -> change log entry (store/changes.c)
 *   meta      name                -> store-wide counters ("changes.floor")
 *   jobs      jobId               -> job record (store/jobs.c)
 * All records of one twin are adjacent and sorted by deviceId, which later
 * lets queries scan the fleet in deviceId order with one cursor.
 *
 * Values returned by db_get point into the map: they are valid until the
 * next write of the batch or db_read_end, so callers copy or parse first.
 */
#ifndef TWIN_STORE_DB_H
#define TWIN_STORE_DB_H

#include <lmdb.h>

#include "changes_log.h"
#include "twin/json.h"
#include "twin/store.h"

typedef enum db_table {
	DB_DEVICES = 0,
	DB_TWINS,
	DB_POLICIES,
	DB_CONNECTED,
	DB_CHANGES,
	DB_META,
	DB_JOBS,
	DB_TABLE_COUNT
} db_table;

/* Write log of the open batch: every put and delete, in order, so a batch
 * can be re-applied after the map is grown. */
typedef struct db_wlog {
	unsigned char *buf;
	size_t len, cap;
} db_wlog;

struct twin_store {
	MDB_env *env;
	MDB_dbi dbi[DB_TABLE_COUNT];
	MDB_txn *wtxn;    /* the open batch, or NULL */
	MDB_txn *rtxn;    /* reusable read-only txn, reset while unused */
	int rtxn_depth;   /* nesting of db_read_begin on rtxn */
	int batch_failed; /* a write failed: the batch is gone, commit must fail */
	db_wlog wlog;
	size_t map_size;
	twin_limits limits;
	struct rec_cache *cache; /* parsed reported sections (section_cache.c) */
	twin_buf scratch;        /* the record being built (twin_record.c) */
	int readers;             /* query runs holding a snapshot (query_run.c) */
	changes_state chg;       /* the change log (changes.c) */
	int jobs_hint;           /* a job may be waiting or running (jobs.c) */
	int drain_changes;       /* twin_store_options.drain_changes */
	twin_clock_fn clock;
	void *clock_ctx;
	char *path;
};

/* Make a transaction available for reads: the open batch if there is one,
 * else the renewed read-only transaction. Pair with db_read_end; pairs
 * nest, so a read operation may call another. */
twin_err db_read_begin(twin_store *s, twin_error *err);
void db_read_end(twin_store *s);

/* The transaction reads go through (valid between db_read_begin/end, or
 * while a batch is open). */
MDB_txn *db_txn(twin_store *s);

/* Look key up in table t. TWIN_E_NOT_FOUND when absent. */
twin_err db_get(twin_store *s, db_table t, const void *key, size_t klen, MDB_val *val,
                twin_error *err);

/* Open the batch if none is open. */
twin_err db_write_begin(twin_store *s, twin_error *err);

/* Abort the batch and make the next twin_store_commit fail, for an
 * operation that fails after some of its writes went in: the batch may
 * hold requests that were already told "success pending commit". */
void db_fail_batch(twin_store *s);

/* Put or delete inside the batch (db_write_begin first). Deleting an absent
 * key succeeds. A full map is grown and the batch re-applied transparently. */
twin_err db_put(twin_store *s, db_table t, const void *key, size_t klen, const void *val,
                size_t vlen, twin_error *err);
twin_err db_del(twin_store *s, db_table t, const void *key, size_t klen, twin_error *err);

/* db_put of a key greater than every key of t (MDB_APPEND): no search, and
 * full pages instead of half-full ones. MDB_KEYEXIST if it is not. */
twin_err db_append(twin_store *s, db_table t, const void *key, size_t klen, const void *val,
                   size_t vlen, twin_error *err);

#endif
