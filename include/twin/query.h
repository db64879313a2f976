/*
 * twin/query.h - fleet queries in the IoT Hub query language (PROTOCOL.md §8).
 *
 * A query is parsed once (twin_query_parse) and run in pages. A run reads
 * from its own LMDB snapshot, so it may be stepped from another thread while
 * the store keeps writing: everything committed before twin_query_start is
 * seen (read-your-writes), nothing committed after it is. Long runs are
 * stepped in slices (twin_query_step) so no single call holds the caller
 * for long (DESIGN.md §4).
 */
#ifndef TWIN_QUERY_H
#define TWIN_QUERY_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "twin/error.h"
#include "twin/store.h"

#define TWIN_QUERY_TEXT_MAX     8192 /* characters of query text (§8.2) */
#define TWIN_QUERY_PAGE_DEFAULT 100
#define TWIN_QUERY_PAGE_MAX     1000 /* larger page sizes are clamped (§8.4) */

typedef struct twin_query twin_query;

/* Parse text[0..len) (not necessarily NUL-terminated). On success *out is a
 * query the caller frees with twin_query_free. A syntax or semantic error is
 * TWIN_E_INVALID (400 400004) with a message naming the 0-based character
 * offset and what was expected there; TWIN_E_NOMEM when out of memory. */
twin_err twin_query_parse(const char *text, size_t len, twin_query **out, twin_error *err);

/* NULL is accepted. */
void twin_query_free(twin_query *q);

/* One run of a query: one page of results. */
typedef struct twin_query_run twin_query_run;

/* Start a page of q over the store's committed state. continuation is the
 * token of the previous page (NULL or "" for the first); a token that is not
 * one of this query's is TWIN_E_INVALID. page_size 0 means the default;
 * above TWIN_QUERY_PAGE_MAX it is clamped. q must outlive the run.
 *
 * The run holds an LMDB read transaction: finish it promptly, and never
 * while the store's map must grow (twin_store_readers). Call from the
 * store's thread. */
twin_err twin_query_start(twin_store *s, const twin_query *q, const char *continuation,
                          size_t page_size, twin_query_run **out, twin_error *err);

/* Examine up to max_twins more twins. *done becomes 1 when the page is
 * complete. May be called from any one thread at a time. */
twin_err twin_query_step(twin_query_run *r, size_t max_twins, int *done, twin_error *err);

/* Ask a run stepping on another thread to stop at its next twin: the step
 * returns TWIN_E_STORAGE. Thread-safe. */
void twin_query_cancel(twin_query_run *r);

/* The completed page: *items is a JSON array the caller owns; *continuation
 * is a malloc'd token for the next page, or NULL on the last page. */
twin_err twin_query_page(twin_query_run *r, cJSON **items, char **continuation, twin_error *err);

/* Twins examined so far (for measurements). */
size_t twin_query_scanned(const twin_query_run *r);

/* End the run and release its snapshot. Call from the store's thread.
 * NULL is accepted. */
void twin_query_end(twin_query_run *r);

/* Runs that hold a snapshot now. The map can grow only at zero. */
int twin_store_readers(const twin_store *s);

#endif
