/*
 * query_group.c - COUNT, AVG, SUM, MIN, MAX, with and without GROUP BY
 * (PROTOCOL.md §8.3).
 *
 * A group's key is the compact JSON text of each grouped value, joined with
 * a separator no JSON text contains outside strings (a NUL byte), so equal
 * values share a group whatever their stored spelling. Groups live in an
 * array found through an open-addressing hash table; a fleet rarely has more
 * than a few thousand distinct keys. Output is in key byte order, which
 * makes pages of a GROUP BY result stable.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "query_parser.h"
#include "query_run.h"

/* One aggregate of one group. */
typedef struct q_acc {
	double sum, min, max;
	long long n; /* numeric values seen (COUNT: rows) */
} q_acc;

typedef struct q_group {
	char *key; /* joined key texts; "\x01" for an undefined value */
	size_t klen;
	cJSON **keyval; /* per GROUP BY path: the value, NULL when undefined */
	q_acc *acc;     /* per select item */
} q_group;

struct q_groups {
	const twin_query *q;
	size_t *item_group; /* per select item: index into q->group, or SIZE_MAX */
	q_group *v;
	size_t n, cap;
	size_t *slot; /* hash table of group index + 1; 0 = empty */
	size_t nslot;
};

q_groups *q_groups_new(const twin_query *q)
{
	q_groups *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->q = q;
	g->item_group = calloc(q->nitems ? q->nitems : 1, sizeof(*g->item_group));
	g->nslot = 64;
	g->slot = calloc(g->nslot, sizeof(*g->slot));
	if (g->item_group == NULL || g->slot == NULL) {
		q_groups_free(g);
		return NULL;
	}
	for (size_t i = 0; i < q->nitems; i++) {
		g->item_group[i] = SIZE_MAX;
		for (size_t j = 0; q->items[i].agg == Q_AGG_NONE && j < q->ngroup; j++)
			if (q_path_same(&q->items[i].path, &q->group[j]))
				g->item_group[i] = j;
	}
	return g;
}

static void group_free(const twin_query *q, q_group *gr)
{
	for (size_t j = 0; gr->keyval && j < q->ngroup; j++)
		cJSON_Delete(gr->keyval[j]);
	free(gr->keyval);
	free(gr->acc);
	cJSON_free(gr->key);
}

void q_groups_free(q_groups *g)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->n; i++)
		group_free(g->q, &g->v[i]);
	free(g->v);
	free(g->slot);
	free(g->item_group);
	free(g);
}

static size_t hash(const char *p, size_t n)
{
	size_t h = 1469598103934665603ULL;

	while (n--)
		h = (h ^ (unsigned char)*p++) * 1099511628211ULL;
	return h;
}

static int rehash(q_groups *g)
{
	size_t nslot = g->nslot * 2, *slot = calloc(nslot, sizeof(*slot));

	if (slot == NULL)
		return -1;
	for (size_t i = 0; i < g->n; i++) {
		size_t h = hash(g->v[i].key, g->v[i].klen) & (nslot - 1);

		while (slot[h])
			h = (h + 1) & (nslot - 1);
		slot[h] = i + 1;
	}
	free(g->slot);
	g->slot = slot;
	g->nslot = nslot;
	return 0;
}

/* The group of key (taking key and vals over when it is new), or NULL
 * when out of memory (then the caller still owns both). */
static q_group *find_or_add(q_groups *g, char *key, size_t klen, cJSON **vals)
{
	size_t h = hash(key, klen) & (g->nslot - 1);
	q_group *gr;

	for (; g->slot[h]; h = (h + 1) & (g->nslot - 1)) {
		gr = &g->v[g->slot[h] - 1];
		if (gr->klen == klen && memcmp(gr->key, key, klen) == 0)
			return gr;
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		q_group *v = realloc(g->v, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		g->v = v;
		g->cap = cap;
	}
	/* Keep the table at most half full, so probes stay short. */
	if ((g->n + 1) * 2 > g->nslot) {
		if (rehash(g) < 0)
			return NULL;
		for (h = hash(key, klen) & (g->nslot - 1); g->slot[h]; h = (h + 1) & (g->nslot - 1))
			;
	}
	gr = &g->v[g->n];
	memset(gr, 0, sizeof(*gr));
	gr->acc = calloc(g->q->nitems ? g->q->nitems : 1, sizeof(*gr->acc));
	if (gr->acc == NULL)
		return NULL;
	gr->key = key;
	gr->klen = klen;
	gr->keyval = vals;
	g->slot[h] = ++g->n;
	return gr;
}

/* The key of row: each grouped value's JSON text. */
static int row_key(q_groups *g, q_row *row, twin_buf *key, cJSON **vals)
{
	for (size_t j = 0; j < g->q->ngroup; j++) {
		q_val v;
		int ok, undefined;

		if (q_row_lookup(row, &g->q->group[j], &v) < 0)
			return -1;
		undefined = v.t == QV_UNDEF;
		vals[j] = undefined ? NULL : q_val_to_json(&v);
		q_val_clear(&v); /* which may reset v.t */
		if (!undefined && vals[j] == NULL)
			return -1;
		ok = vals[j] ? twin_json_print_append(key, vals[j]) : twin_buf_put(key, "\x01", 1);
		if (!ok || !twin_buf_put(key, "", 1))
			return -1;
	}
	return 0;
}

static int accumulate(q_groups *g, q_group *gr, q_row *row)
{
	for (size_t i = 0; i < g->q->nitems; i++) {
		const q_item *it = &g->q->items[i];
		q_acc *a = &gr->acc[i];
		q_val v;

		if (it->agg == Q_AGG_NONE)
			continue;
		if (it->agg == Q_AGG_COUNT) {
			a->n++;
			continue;
		}
		if (q_row_lookup(row, &it->path, &v) < 0)
			return -1;
		if (v.t == QV_NUM) {
			a->sum += v.n;
			a->min = a->n == 0 || v.n < a->min ? v.n : a->min;
			a->max = a->n == 0 || v.n > a->max ? v.n : a->max;
			a->n++;
		}
		q_val_clear(&v);
	}
	return 0;
}

int q_groups_add(q_groups *g, q_row *row)
{
	size_t ng = g->q->ngroup;
	cJSON **vals = calloc(ng ? ng : 1, sizeof(*vals));
	twin_buf key = {0};
	q_group *gr = NULL;

	if (vals != NULL && row_key(g, row, &key, vals) == 0 &&
	    twin_buf_put(&key, "", 0)) /* a group by nothing: the empty key */
		gr = find_or_add(g, key.data, key.len, vals);
	if (gr == NULL) {
		for (size_t j = 0; vals && j < ng; j++)
			cJSON_Delete(vals[j]);
		free(vals);
		cJSON_free(key.data);
		return -1;
	}
	if (gr->key != key.data) { /* an existing group: drop this row's copies */
		for (size_t j = 0; j < ng; j++)
			cJSON_Delete(vals[j]);
		free(vals);
		cJSON_free(key.data);
	}
	return accumulate(g, gr, row);
}

static int key_order(const void *a, const void *b)
{
	const q_group *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);

	return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static cJSON *group_output(q_groups *g, q_group *gr)
{
	cJSON *o = cJSON_CreateObject();

	for (size_t i = 0; o != NULL && i < g->q->nitems; i++) {
		const q_item *it = &g->q->items[i];
		const q_acc *a = &gr->acc[i];
		cJSON *v = NULL;

		if (it->agg == Q_AGG_NONE) {
			if (g->item_group[i] == SIZE_MAX || gr->keyval[g->item_group[i]] == NULL)
				continue;
			v = cJSON_Duplicate(gr->keyval[g->item_group[i]], 1);
		} else if (it->agg == Q_AGG_COUNT)
			v = cJSON_CreateNumber((double)a->n);
		else if (a->n == 0)
			continue; /* no numeric value: the member is omitted */
		else
			v = cJSON_CreateNumber(it->agg == Q_AGG_AVG   ? a->sum / (double)a->n
			                       : it->agg == Q_AGG_SUM ? a->sum
			                       : it->agg == Q_AGG_MIN ? a->min
			                                              : a->max);
		if (v == NULL || !cJSON_AddItemToObject(o, it->name, v)) {
			cJSON_Delete(v);
			cJSON_Delete(o);
			o = NULL;
		}
	}
	return o;
}

cJSON *q_groups_output(q_groups *g, size_t from, size_t max, size_t *total)
{
	cJSON *arr = cJSON_CreateArray();

	/* Without GROUP BY there is always exactly one row, even over no twins. */
	if (g->q->ngroup == 0 && g->n == 0) {
		char *key = cJSON_malloc(1);

		if (key == NULL || find_or_add(g, key, 0, NULL) == NULL) {
			cJSON_free(key);
			cJSON_Delete(arr);
			return NULL;
		}
	}
	/* Sorting moves the groups under the hash table: a run outputs once
	 * and adds nothing after. No groups: g->v may be NULL, which qsort
	 * must not be given even for zero elements. */
	if (g->n > 1)
		qsort(g->v, g->n, sizeof(*g->v), key_order);
	*total = g->n;
	for (size_t i = from; arr != NULL && i < g->n && i < from + max; i++) {
		cJSON *o = group_output(g, &g->v[i]);

		if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			cJSON_Delete(arr);
			arr = NULL;
		}
	}
	return arr;
}
