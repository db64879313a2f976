/*
 * query_run.h - private to store/: one run of a fleet query, split over
 * query_run.c (snapshot, scan, pages, tokens), query_row.c (a twin's fields
 * as query values and result rows) and query_group.c (aggregates).
 */
#ifndef TWIN_STORE_QUERY_RUN_H
#define TWIN_STORE_QUERY_RUN_H

#include <stdatomic.h>
#include <stdint.h>

#include <lmdb.h>

#include "query_eval.h"
#include "twin/json.h"
#include "twin/registry.h"

/* The records of one twin, pointing into the run's snapshot. */
enum { ROW_V, ROW_T, ROW_D, ROW_R, ROW_KINDS };

typedef struct q_row {
	MDB_txn *txn;
	MDB_dbi devices;
	char id[TWIN_DEVICE_ID_MAX + 1];
	MDB_val rec[ROW_KINDS];
	int have[ROW_KINDS];
	int ident_state; /* 0 not read, 1 read, -1 missing */
	twin_identity ident;
	int64_t version;
} q_row;

/* Start a row for id (records are added by the scan). */
void q_row_reset(q_row *row, const char *id, size_t id_len);

/* The lookup the evaluator calls (query_eval.h), over a q_row. */
int q_row_lookup(void *row, const q_path *path, q_val *out);

/* The result row of a non-aggregate query: the service view for SELECT *,
 * else one member per defined select item. NULL when out of memory or
 * when the twin's records are unreadable (*bad set). */
cJSON *q_row_output(q_row *row, const twin_query *q, int *bad);

/* Aggregation state (query_group.c). */
typedef struct q_groups q_groups;

q_groups *q_groups_new(const twin_query *q);
void q_groups_free(q_groups *g);

/* Add a row that passed WHERE. 0, or -1 when out of memory. */
int q_groups_add(q_groups *g, q_row *row);

/* The result objects in key order, groups [from, from + max), as a new
 * array; *total is the number of groups. NULL when out of memory. */
cJSON *q_groups_output(q_groups *g, size_t from, size_t max, size_t *total);

struct twin_query_run {
	twin_store *s;
	const twin_query *q;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_dbi devices;
	int cur_valid;     /* the cursor is at a record not yet consumed */
	int started;       /* the cursor has been positioned once */
	int eof;           /* the scan reached the end */
	int done;          /* the page is complete */
	atomic_int cancel; /* twin_query_cancel */
	size_t page_size;
	long long before;                   /* rows (or groups) returned by earlier pages */
	long long limit;                    /* rows this page may return (TOP and page size) */
	char after[TWIN_DEVICE_ID_MAX + 1]; /* resume after this id ("" = start) */
	cJSON *items;                       /* the page's rows (non-aggregate) */
	size_t nitems;
	char last[TWIN_DEVICE_ID_MAX + 1]; /* id of the last row in items */
	int more;                          /* a row beyond the page exists */
	q_groups *groups;                  /* aggregate queries */
	size_t scanned;
	twin_err failed; /* a step failed: the run is over */
};

#endif
