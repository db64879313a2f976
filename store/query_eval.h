/*
 * query_eval.h - private to store/: values and expression evaluation of
 * fleet queries (PROTOCOL.md §8.2), independent of how a row is stored.
 *
 * A value comes from stored JSON text (a span into the LMDB map, valid while
 * the run's snapshot lives), from a literal of the query, or from a field the
 * executor computed. Strings are decoded only when a comparison needs their
 * bytes, and objects are never parsed here.
 */
#ifndef TWIN_STORE_QUERY_EVAL_H
#define TWIN_STORE_QUERY_EVAL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "query_ast.h"

typedef enum q_type { QV_UNDEF = 0, QV_NULL, QV_BOOL, QV_NUM, QV_STR, QV_OBJ, QV_ARR } q_type;

typedef struct q_val {
	q_type t;
	int b;         /* QV_BOOL */
	double n;      /* QV_NUM */
	const char *s; /* QV_STR: slen bytes of UTF-8 (not NUL-terminated) */
	size_t slen;
	const char *json; /* the value's JSON text when it came from text (any type) */
	size_t jlen;
	const cJSON *node; /* the value's tree when it came from one (any type) */
	char *owned;       /* heap bytes behind s (or json), freed by q_val_clear */
} q_val;

/* Supplied by the executor: the value of path in the current row. Returns 0
 * when the value is undefined or was found, -1 when out of memory. */
typedef int (*q_lookup_fn)(void *row, const q_path *path, q_val *out);

/* Evaluate n over a row. Returns 0, or -1 when out of memory. *out must be
 * released with q_val_clear. */
int q_eval(const q_node *n, q_lookup_fn lookup, void *row, q_val *out);

/* The WHERE decision: 1 keep the row (the condition is exactly true), 0 drop
 * it, -1 out of memory. NULL where keeps every row. */
int q_eval_where(const q_node *where, q_lookup_fn lookup, void *row);

/* A value from the JSON text p[0..len) (a span the caller keeps alive). */
void q_val_from_text(const char *p, size_t len, q_val *out);

/* A value from a cJSON item the caller keeps alive (NULL: undefined). */
void q_val_from_node(const cJSON *c, q_val *out);

/* A string value over bytes the caller keeps alive. */
void q_val_from_string(const char *s, size_t len, q_val *out);

/* Decode a string value's bytes if they are still escaped JSON text.
 * 0, or -1 when out of memory. */
int q_val_string_bytes(q_val *v);

/* The value as a new cJSON item for a result row, NULL when out of memory.
 * Objects and arrays from stored text become raw JSON items (printed as
 * they are stored). Undefined values must not be passed. */
cJSON *q_val_to_json(q_val *v);

void q_val_clear(q_val *v);

#endif
