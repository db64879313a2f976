/*
 * fault.c - the wrappers behind fault.h. Each __wrap_X is what store/ calls
 * as X; __real_X is the library's X (ld --wrap).
 */
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <execinfo.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_mdb_txn_begin(MDB_env *env, MDB_txn *parent, unsigned int flags, MDB_txn **txn);
int __real_mdb_txn_renew(MDB_txn *txn);
int __real_mdb_txn_commit(MDB_txn *txn);
int __real_mdb_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data);
int __real_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags);
int __real_mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data);
int __real_mdb_cursor_open(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cursor);
int __real_mdb_cursor_get(MDB_cursor *cursor, MDB_val *key, MDB_val *data, MDB_cursor_op op);

static int armed;
static fault_kind kind;
static long target, calls;
static int fired;

/* Whether this call, of kind k, is the one to fail. */
static int fail_now(fault_kind k)
{
	if (!armed || k != kind)
		return 0;
	if (++calls != target)
		return 0;
	fired = 1;
	if (getenv("FAULT_TRACE") != NULL) {
		/* Where the failing call is made, for debugging a failed test. */
		void *frames[16];

		backtrace_symbols_fd(frames, backtrace(frames, 16), STDERR_FILENO);
	}
	return 1;
}

static void *cjson_malloc(size_t n)
{
	return malloc(n); /* the wrapper below: counted like the store's own */
}

void fault_arm(fault_kind k, long n)
{
	cJSON_Hooks hooks = {cjson_malloc, free};

	cJSON_InitHooks(&hooks);
	kind = k;
	target = n;
	calls = 0;
	fired = 0;
	armed = 1;
}

int fault_disarm(void)
{
	armed = 0;
	cJSON_InitHooks(NULL);
	return fired;
}

const char *fault_kind_name(fault_kind k)
{
	switch (k) {
	case FAULT_ALLOC:
		return "allocation";
	case FAULT_IO:
		return "LMDB EIO";
	case FAULT_MAP_FULL:
		return "LMDB MAP_FULL";
	}
	return "?";
}

void *__wrap_malloc(size_t n)
{
	return fail_now(FAULT_ALLOC) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
	return fail_now(FAULT_ALLOC) ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_now(FAULT_ALLOC) ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return fail_now(FAULT_ALLOC) ? NULL : __real_strdup(s);
}

int __wrap_mdb_txn_begin(MDB_env *env, MDB_txn *parent, unsigned int flags, MDB_txn **txn)
{
	return fail_now(FAULT_IO) ? EIO : __real_mdb_txn_begin(env, parent, flags, txn);
}

int __wrap_mdb_txn_renew(MDB_txn *txn)
{
	return fail_now(FAULT_IO) ? EIO : __real_mdb_txn_renew(txn);
}

/* A commit that fails frees its transaction, as LMDB's does. */
int __wrap_mdb_txn_commit(MDB_txn *txn)
{
	if (fail_now(FAULT_IO) || fail_now(FAULT_MAP_FULL)) {
		mdb_txn_abort(txn);
		return kind == FAULT_IO ? EIO : MDB_MAP_FULL;
	}
	return __real_mdb_txn_commit(txn);
}

int __wrap_mdb_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
	return fail_now(FAULT_IO) ? EIO : __real_mdb_get(txn, dbi, key, data);
}

int __wrap_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags)
{
	if (fail_now(FAULT_IO))
		return EIO;
	if (fail_now(FAULT_MAP_FULL))
		return MDB_MAP_FULL;
	return __real_mdb_put(txn, dbi, key, data, flags);
}

int __wrap_mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
	return fail_now(FAULT_IO) ? EIO : __real_mdb_del(txn, dbi, key, data);
}

int __wrap_mdb_cursor_open(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cursor)
{
	return fail_now(FAULT_IO) ? EIO : __real_mdb_cursor_open(txn, dbi, cursor);
}

/* Not a fault: the same bytes every time, so that the reference run and a
 * faulted run of createDevice write the same generationId. */
int __wrap_RAND_bytes(unsigned char *buf, int n)
{
	memset(buf, 0x5a, (size_t)n);
	return 1;
}

int __wrap_mdb_cursor_get(MDB_cursor *cursor, MDB_val *key, MDB_val *data, MDB_cursor_op op)
{
	return fail_now(FAULT_IO) ? EIO : __real_mdb_cursor_get(cursor, key, data, op);
}
