/*
 * twin/store.h - the LMDB-backed twin store and its batches.
 *
 * A twin_store owns one LMDB environment in one directory. Writes are
 * batched for group commit (DESIGN.md §3): the first write opens a write
 * transaction, later writes join it, twin_store_commit() makes them durable
 * with a single fsync, twin_store_abort() drops them without a trace. Reads
 * made while a batch is open see its writes.
 *
 * Every put and delete of a batch is also kept in an in-memory write log.
 * When LMDB reports MDB_MAP_FULL (during a write or at commit) the store
 * aborts, doubles the map, re-applies the log and carries on, so callers
 * never see a full map.
 *
 * A store is used from one thread at a time; the store keeps no globals, so
 * tests may open several.
 */
#ifndef TWIN_STORE_H
#define TWIN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "twin/error.h"
#include "twin/limits.h"

typedef struct twin_store twin_store;

/* Returns the current time in 100 ns ticks since the Unix epoch. */
typedef int64_t (*twin_clock_fn)(void *ctx);

#define TWIN_DEFAULT_MAP_SIZE ((size_t)64 << 20)

typedef struct twin_store_options {
	const char *path;    /* database directory; created (mode 0700) if missing */
	size_t map_size;     /* initial LMDB map size in bytes */
	twin_limits limits;  /* validation limits for every write */
	twin_clock_fn clock; /* NULL: the system's real-time clock */
	void *clock_ctx;
	int drain_changes; /* the caller drains committed change log entries
	                      (twin_changes_drain) to publish them; 0: they
	                      are only written to the log (tools, tests) */
} twin_store_options;

/* Defaults: no path, TWIN_DEFAULT_MAP_SIZE, IoT Hub limits, system clock. */
void twin_store_options_default(twin_store_options *o);

/* Open (creating if needed) the store at o->path. On success *out is a store
 * the caller closes with twin_store_close. TWIN_E_STORAGE with a message
 * naming the path and the system error when the directory or environment
 * cannot be created or opened. o is copied; o->path need not outlive the call. */
twin_err twin_store_open(const twin_store_options *o, twin_store **out, twin_error *err);

/* Abort any open batch and close the environment. NULL is accepted. */
void twin_store_close(twin_store *s);

/* The database directory, as given to twin_store_open. */
const char *twin_store_path(const twin_store *s);

const twin_limits *twin_store_limits(const twin_store *s);

/* Current time from the store's clock. */
int64_t twin_store_now(twin_store *s);

/* Non-zero while a batch (write transaction) is open. */
int twin_store_batch_open(const twin_store *s);

/* Commit the open batch, if any, with one durable LMDB commit. A map that
 * fills at commit is grown and the batch re-applied. On failure the batch is
 * aborted (nothing of it remains) and TWIN_E_STORAGE is returned; callers
 * then answer every request of the batch with an error.
 *
 * A write that fails after part of it reached the batch (a storage error,
 * or memory running out between two records of one operation) aborts the
 * batch at once: later writes fail until this call, which then returns
 * TWIN_E_STORAGE. So a batch is either committed whole or not at all. */
twin_err twin_store_commit(twin_store *s, twin_error *err);

/* Drop the open batch, if any. */
void twin_store_abort(twin_store *s);

/* Drop the open batch and make the next twin_store_commit fail with
 * TWIN_E_STORAGE (writes until then are refused the same way): for a
 * caller that cannot answer a request whose writes may be in the batch, so
 * that nothing is applied without its answer. Every request of the batch
 * is then answered with the error, or not at all. */
void twin_store_fail(twin_store *s);

/* Current LMDB map size in bytes. */
size_t twin_store_map_size(const twin_store *s);

/* Grow the map ahead of need when more than 3/4 of it is in use. Only
 * between batches (returns TWIN_OK doing nothing while one is open). */
twin_err twin_store_maintain(twin_store *s, twin_error *err);

#endif
