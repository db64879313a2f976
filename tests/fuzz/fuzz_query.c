/*
 * fuzz_query.c - libFuzzer target for the query parser (twin_query_parse).
 *
 * Query text arrives from any back end with the right to query, so the
 * parser must survive every input: no crash, leak or undefined behaviour
 * (the sanitizers watch those), and its two outcomes must be what
 * include/twin/query.h promises. Beyond that, an accepted query must hold
 * the shape query_ast.h documents, because the executor trusts it without
 * checking again; this target checks that shape and aborts when it is off.
 *
 * Build and run with tools/run-fuzz.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "query_ast.h"
#include "twin/json.h"
#include "twin/query.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static void check_path(const q_path *p, int may_be_empty)
{
	CHECK(p->n > 0 || may_be_empty);
	for (size_t i = 0; i < p->n; i++)
		CHECK(p->seg[i] != NULL && p->seg[i][0] != '\0');
}

/* Walks the left spine in a loop, as the free does: it may be thousands of
 * nodes long. */
static void check_node(const q_node *n)
{
	for (; n != NULL; n = n->a) {
		switch (n->kind) {
		case Q_LITERAL:
			CHECK(n->a == NULL && n->b == NULL && n->nargs == 0);
			return;
		case Q_PATH:
			CHECK(n->a == NULL && n->lit == NULL);
			check_path(&n->path, 0);
			return;
		case Q_FUNC:
			CHECK(n->op >= Q_IS_DEFINED && n->op <= Q_CONTAINS && n->a == NULL);
			CHECK(n->nargs == (n->op >= Q_STARTSWITH ? 2u : 1u));
			for (size_t i = 0; i < n->nargs; i++)
				check_node(n->args[i]);
			return;
		case Q_NEG:
		case Q_NOT:
			CHECK(n->a != NULL && n->b == NULL);
			break;
		case Q_IN:
		case Q_NIN:
			CHECK(n->b != NULL && n->b->kind == Q_LITERAL && cJSON_IsArray(n->b->lit));
			CHECK(cJSON_GetArraySize(n->b->lit) > 0);
			break;
		case Q_ARITH:
			CHECK(n->op != 0 && strchr("+-*/%", n->op) != NULL);
			check_node(n->b);
			break;
		case Q_CMP:
			CHECK(n->op >= Q_EQ && n->op <= Q_GE);
			check_node(n->b);
			break;
		default:
			CHECK(n->kind == Q_AND || n->kind == Q_OR);
			check_node(n->b);
		}
		CHECK(n->a != NULL);
	}
}

static void check_query(const twin_query *q, const uint8_t *data, size_t size)
{
	CHECK(q->text != NULL && strlen(q->text) == size && memcmp(q->text, data, size) == 0);
	CHECK(q->top >= -1);
	CHECK(q->star ? q->nitems == 0 : q->nitems > 0);
	CHECK(!q->star || q->ngroup == 0);
	for (size_t i = 0; i < q->nitems; i++) {
		const q_item *it = &q->items[i];

		CHECK(it->name != NULL && it->name[0] != '\0');
		check_path(&it->path, it->agg == Q_AGG_COUNT);
		CHECK(it->agg != Q_AGG_COUNT || it->path.n == 0);
		CHECK(it->agg == Q_AGG_NONE || q->aggregate);
		CHECK(it->agg != Q_AGG_NONE || q->ngroup > 0 || !q->aggregate);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(q->items[j].name, it->name) != 0);
	}
	for (size_t i = 0; i < q->ngroup; i++)
		check_path(&q->group[i], 0);
	check_node(q->where);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	twin_query *q = (twin_query *)&q; /* must be overwritten either way */
	twin_error err;
	twin_err rc;

	memset(&err, 0, sizeof(err));
	rc = twin_query_parse((const char *)data, size, &q, &err);
	if (rc == TWIN_OK) {
		CHECK(q != NULL);
		check_query(q, data, size);
	} else {
		/* The message goes into a JSON error body: never empty, never a
		 * broken character. */
		CHECK(q == NULL);
		CHECK(rc == TWIN_E_INVALID || rc == TWIN_E_NOMEM);
		CHECK(err.err == rc && err.message[0] != '\0');
		CHECK(twin_utf8_valid(err.message, strlen(err.message)));
	}
	twin_query_free(q);
	return 0;
}
