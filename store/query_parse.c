/*
 * query_parse.c - twin_query_parse: the statement of a fleet query
 * (PROTOCOL.md §8.1: SELECT [TOP n] ... FROM ... [WHERE ...] [GROUP BY ...])
 * and the rules it must meet before it runs (§8.2, §8.3): the output name of
 * every select item, no duplicates among them, and what GROUP BY and
 * aggregates allow together. Also property paths and the name case rules
 * of §8.2, which the statement's rules and query_expr.c share.
 *
 * Tokens come from query_lex.c and WHERE expressions from query_expr.c.
 * What is checked here the executor may rely on without checking again.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "query_ast.h"
#include "query_parser.h"

/* ---- names and paths, shared with query_expr.c ---- */

void *q_grow(void *v, size_t n, size_t *cap, size_t size)
{
	size_t ncap = *cap ? *cap * 2 : 4;
	void *nv;

	if (n < *cap)
		return v;
	nv = cJSON_malloc(ncap * size);
	if (nv == NULL)
		return NULL;
	if (n > 0)
		memcpy(nv, v, n * size);
	cJSON_free(v);
	*cap = ncap;
	return nv;
}

void q_path_free(q_path *path)
{
	for (size_t i = 0; i < path->n; i++)
		cJSON_free(path->seg[i]);
	cJSON_free(path->seg);
	path->seg = NULL;
	path->n = 0;
}

twin_err q_take_name(q_parser *p, const char *what, char **out)
{
	const q_token *t = &p->lx.tok;
	twin_err rc;

	*out = NULL;
	if (t->type != QT_BRACKETED && (t->type != QT_NAME || q_lex_reserved(&p->lx)))
		return q_lex_expected(&p->lx, what, 1);
	*out = q_lex_dup(&p->lx, t->name_at, t->name_len);
	if (*out == NULL)
		return q_lex_nomem(&p->lx);
	rc = q_lex_next(&p->lx);
	if (rc != TWIN_OK) {
		cJSON_free(*out);
		*out = NULL;
	}
	return rc;
}

twin_err q_parse_path(q_parser *p, const char *what, q_path *path)
{
	size_t cap = 0;
	char **segs, *seg;
	twin_err rc;

	memset(path, 0, sizeof(*path));
	for (;;) {
		rc = q_take_name(p, path->n == 0 ? what : "a name after '.'", &seg);
		if (rc != TWIN_OK)
			break;
		segs = q_grow(path->seg, path->n, &cap, sizeof(*segs));
		if (segs == NULL) {
			cJSON_free(seg);
			rc = q_lex_nomem(&p->lx);
			break;
		}
		path->seg = segs;
		path->seg[path->n++] = seg;
		if (!q_lex_punct(&p->lx, '.'))
			return TWIN_OK;
		rc = q_lex_next(&p->lx);
		if (rc != TWIN_OK)
			break;
	}
	q_path_free(path);
	return rc;
}

/* The top-level fields of a twin (PROTOCOL.md §4), in canonical case. */
static const char *const system_names[] = {
        "deviceId",
        "moduleId",
        "etag",
        "deviceEtag",
        "version",
        "status",
        "statusReason",
        "statusUpdateTime",
        "connectionState",
        "lastActivityTime",
        "cloudToDeviceMessageCount",
        "authenticationType",
        "x509Thumbprint",
        "modelId",
        "capabilities",
        "tags",
        "properties",
};

const char *q_system_name(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < sizeof(system_names) / sizeof(system_names[0]); i++) {
		if (q_word_eq(name, n, system_names[i]))
			return system_names[i];
	}
	return NULL;
}

/* Whether segment i of a is one whose case §8.2 ignores. */
static int case_free_segment(const q_path *a, size_t i)
{
	if (i == 0)
		return q_system_name(a->seg[0]) != NULL;
	return i == 1 && q_word_eq(a->seg[0], strlen(a->seg[0]), "PROPERTIES") &&
	       (q_word_eq(a->seg[1], strlen(a->seg[1]), "DESIRED") ||
	        q_word_eq(a->seg[1], strlen(a->seg[1]), "REPORTED"));
}

int q_path_same(const q_path *a, const q_path *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++) {
		if (case_free_segment(a, i) ? !q_word_eq(a->seg[i], strlen(a->seg[i]), b->seg[i])
		                            : strcmp(a->seg[i], b->seg[i]) != 0)
			return 0;
	}
	return 1;
}

/* ---- the statement ---- */

/* The statement being parsed. item_at has one entry per select item. */
struct stmt {
	q_parser p;
	twin_query *q;
	size_t *item_at; /* byte offset of each select item, for messages */
	size_t star_at;
	size_t items_cap, at_cap;
};

static const struct {
	const char *name;
	q_agg agg;
	const char *out; /* the output name without an alias (IoT Hub's) */
} aggregates[] = {
        {"COUNT", Q_AGG_COUNT, "count"}, {"AVG", Q_AGG_AVG, "avg"}, {"SUM", Q_AGG_SUM, "sum"},
        {"MIN", Q_AGG_MIN, "min"},       {"MAX", Q_AGG_MAX, "max"},
};

#define N_AGGREGATES (sizeof(aggregates) / sizeof(aggregates[0]))

q_agg q_aggregate_at(const q_parser *p)
{
	for (size_t i = 0; i < N_AGGREGATES; i++) {
		if (q_lex_is(&p->lx, aggregates[i].name))
			return aggregates[i].agg;
	}
	return Q_AGG_NONE;
}

static const q_token *tok(const struct stmt *s)
{
	return &s->p.lx.tok;
}

static twin_err next(struct stmt *s)
{
	return q_lex_next(&s->p.lx);
}

static int is_punct(const struct stmt *s, int c)
{
	return q_lex_punct(&s->p.lx, c);
}

static int is_word(const struct stmt *s, const char *word)
{
	return q_lex_is(&s->p.lx, word);
}

static twin_err expect_word(struct stmt *s, const char *word)
{
	return is_word(s, word) ? next(s) : q_lex_expected(&s->p.lx, word, 0);
}

static twin_err fail_at(const struct stmt *s, size_t at, const char *what)
{
	return q_lex_fail(&s->p.lx, at, "%s", what);
}

static char *dup_string(const char *text)
{
	size_t n = strlen(text);
	char *copy = cJSON_malloc(n + 1);

	if (copy != NULL)
		memcpy(copy, text, n + 1);
	return copy;
}

/* COUNT() | AVG(path) | SUM(path) | MIN(path) | MAX(path), at its name. */
static twin_err parse_aggregate(struct stmt *s, q_item *it)
{
	twin_err rc;

	it->agg = q_aggregate_at(&s->p);
	if (it->agg == Q_AGG_NONE) {
		const char *name = (const char *)s->p.lx.text + tok(s)->at;
		int cut, n = q_quote_len(name, tok(s)->name_len, &cut);

		return q_lex_fail(
		        &s->p.lx, tok(s)->at,
		        "'%.*s%s' is not an aggregate; expected COUNT, AVG, SUM, MIN or MAX", n,
		        name, cut ? "..." : "");
	}
	rc = next(s); /* the name; '(' follows, the caller saw it */
	if (rc == TWIN_OK)
		rc = next(s);
	if (rc == TWIN_OK && it->agg != Q_AGG_COUNT)
		rc = q_parse_path(&s->p, "a property path", &it->path);
	if (rc == TWIN_OK && !is_punct(s, ')'))
		rc = q_lex_expected(
		        &s->p.lx, it->agg == Q_AGG_COUNT ? "')' (COUNT takes no argument)" : "')'",
		        0);
	return rc == TWIN_OK ? next(s) : rc;
}

/* The member name of an item without alias (§8.3). */
static const char *default_name(const q_item *it)
{
	const char *system;

	if (it->agg != Q_AGG_NONE) {
		for (size_t i = 0; i < N_AGGREGATES; i++) {
			if (aggregates[i].agg == it->agg)
				return aggregates[i].out;
		}
	}
	system = it->path.n == 1 ? q_system_name(it->path.seg[0]) : NULL;
	return system != NULL ? system : it->path.seg[it->path.n - 1];
}

/* (path | aggregate) [AS alias] into it; what is for the message. */
static twin_err parse_item(struct stmt *s, const char *what, q_item *it)
{
	twin_err rc;

	memset(it, 0, sizeof(*it));
	if (is_punct(s, '*'))
		return fail_at(s, tok(s)->at, "'*' cannot be combined with other select items");
	if (tok(s)->type == QT_NAME && !q_lex_reserved(&s->p.lx) &&
	    q_lex_next_char(&s->p.lx) == '(')
		rc = parse_aggregate(s, it);
	else
		rc = q_parse_path(&s->p, what, &it->path);
	if (rc == TWIN_OK && is_word(s, "AS")) {
		rc = next(s);
		if (rc == TWIN_OK)
			rc = q_take_name(&s->p, "an alias after AS", &it->name);
	} else if (rc == TWIN_OK) {
		it->name = dup_string(default_name(it));
		if (it->name == NULL)
			rc = q_lex_nomem(&s->p.lx);
	}
	if (rc != TWIN_OK)
		q_path_free(&it->path);
	return rc;
}

/* The item just added must not reuse an earlier item's output name: a
 * result object cannot hold both (project decision, §8.3). */
static twin_err check_duplicate(const struct stmt *s)
{
	const twin_query *q = s->q;
	const char *name = q->items[q->nitems - 1].name;
	int cut, n;

	for (size_t i = 0; i + 1 < q->nitems; i++) {
		if (strcmp(q->items[i].name, name) != 0)
			continue;
		n = q_quote_len(name, strlen(name), &cut);
		return q_lex_fail(
		        &s->p.lx, s->item_at[q->nitems - 1],
		        "duplicate output name '%.*s%s'; give one of them an alias with AS", n,
		        name, cut ? "..." : "");
	}
	return TWIN_OK;
}

static twin_err add_item(struct stmt *s)
{
	twin_query *q = s->q;
	size_t at = tok(s)->at;
	q_item *items = q_grow(q->items, q->nitems, &s->items_cap, sizeof(*items));
	size_t *item_at;
	twin_err rc;

	if (items == NULL)
		return q_lex_nomem(&s->p.lx);
	q->items = items;
	item_at = q_grow(s->item_at, q->nitems, &s->at_cap, sizeof(*item_at));
	if (item_at == NULL)
		return q_lex_nomem(&s->p.lx);
	s->item_at = item_at;
	rc = parse_item(s,
	                q->nitems == 0 ? "'*', a property path or an aggregate"
	                               : "a property path or an aggregate",
	                &q->items[q->nitems]);
	if (rc != TWIN_OK)
		return rc;
	s->item_at[q->nitems] = at;
	if (q->items[q->nitems++].agg != Q_AGG_NONE)
		q->aggregate = 1;
	return check_duplicate(s);
}

/* '*' | item {, item} */
static twin_err parse_select(struct stmt *s)
{
	twin_err rc;

	if (is_punct(s, '*')) {
		s->q->star = 1;
		s->star_at = tok(s)->at;
		rc = next(s);
		if (rc == TWIN_OK && is_punct(s, ','))
			rc = fail_at(s, tok(s)->at,
			             "'*' cannot be combined with other select items");
		return rc;
	}
	for (;;) {
		rc = add_item(s);
		if (rc != TWIN_OK || !is_punct(s, ','))
			return rc;
		rc = next(s);
		if (rc != TWIN_OK)
			return rc;
	}
}

/* TOP n: a non-negative integer, written as one. A TOP followed by what
 * follows a select item was meant as a property name. */
static twin_err parse_top(struct stmt *s)
{
	size_t at = tok(s)->at;
	twin_err rc = next(s);

	if (rc != TWIN_OK)
		return rc;
	if (is_punct(s, '.') || is_punct(s, ',') || is_word(s, "FROM") || is_word(s, "AS"))
		return q_lex_fail(
		        &s->p.lx, at,
		        "expected a name, found reserved word '%.3s'; write [[%.3s]] to use "
		        "it as a name",
		        (const char *)s->p.lx.text + at, (const char *)s->p.lx.text + at);
	if (tok(s)->type != QT_NUMBER || !tok(s)->is_int)
		return q_lex_expected(&s->p.lx, "a non-negative integer after TOP", 0);
	s->q->top = tok(s)->ival;
	return next(s);
}

static twin_err unknown_collection(struct stmt *s, size_t at)
{
	const char *name = (const char *)s->p.lx.text + at;
	int cut, n = q_quote_len(name, tok(s)->end - at, &cut);

	return q_lex_fail(&s->p.lx, at,
	                  "unknown collection '%.*s%s'; expected devices or devices.modules", n,
	                  name, cut ? "..." : "");
}

/* devices | devices.modules; any other name is a collection we do not have
 * (devices.jobs, §8.2). */
static twin_err parse_source(struct stmt *s)
{
	size_t at = tok(s)->at;
	twin_err rc;

	if (tok(s)->type == QT_NAME && !is_word(s, "DEVICES") && !q_lex_reserved(&s->p.lx))
		return unknown_collection(s, at);
	if (!is_word(s, "DEVICES"))
		return q_lex_expected(&s->p.lx, "devices or devices.modules", 0);
	rc = next(s);
	if (rc != TWIN_OK || !is_punct(s, '.'))
		return rc;
	rc = next(s);
	if (rc != TWIN_OK)
		return rc;
	if (is_word(s, "MODULES")) {
		s->q->modules = 1;
		return next(s);
	}
	if (tok(s)->type == QT_NAME)
		return unknown_collection(s, at);
	return q_lex_expected(&s->p.lx, "modules after 'devices.'", 0);
}

/* GROUP BY path {, path}, at GROUP. */
static twin_err parse_group(struct stmt *s)
{
	twin_query *q = s->q;
	size_t cap = 0;
	q_path *group;
	twin_err rc = next(s);

	if (rc == TWIN_OK)
		rc = expect_word(s, "BY");
	while (rc == TWIN_OK) {
		group = q_grow(q->group, q->ngroup, &cap, sizeof(*group));
		if (group == NULL)
			return q_lex_nomem(&s->p.lx);
		q->group = group;
		rc = q_parse_path(&s->p, "a property path", &q->group[q->ngroup]);
		if (rc != TWIN_OK)
			break;
		q->ngroup++;
		if (!is_punct(s, ','))
			break;
		rc = next(s);
	}
	return rc;
}

/* What may follow the query so far, for the message at a stray token. */
static twin_err fail_trailing(struct stmt *s)
{
	if (is_word(s, "ORDER"))
		return fail_at(s, tok(s)->at, "ORDER BY is not supported");
	if (is_word(s, "JOIN"))
		return fail_at(s, tok(s)->at, "JOIN is not supported");
	if (s->q->ngroup > 0)
		return q_lex_expected(&s->p.lx, "',' or end of query", 0);
	if (s->q->where != NULL)
		return q_lex_expected(&s->p.lx, "an operator, GROUP BY or end of query", 0);
	return q_lex_expected(&s->p.lx, "WHERE, GROUP BY or end of query", 0);
}

static twin_err parse_statement(struct stmt *s)
{
	twin_err rc = expect_word(s, "SELECT");

	if (rc == TWIN_OK && is_word(s, "TOP"))
		rc = parse_top(s);
	if (rc == TWIN_OK)
		rc = parse_select(s);
	if (rc == TWIN_OK)
		rc = expect_word(s, "FROM");
	if (rc == TWIN_OK)
		rc = parse_source(s);
	if (rc == TWIN_OK && is_word(s, "WHERE")) {
		rc = next(s);
		if (rc == TWIN_OK)
			rc = q_parse_expr(&s->p, &s->q->where);
	}
	if (rc == TWIN_OK && is_word(s, "GROUP"))
		rc = parse_group(s);
	if (rc == TWIN_OK && tok(s)->type != QT_END)
		rc = fail_trailing(s);
	return rc;
}

static int grouped(const twin_query *q, const q_path *path)
{
	for (size_t i = 0; i < q->ngroup; i++) {
		if (q_path_same(path, &q->group[i]))
			return 1;
	}
	return 0;
}

/* §8.3: with GROUP BY the select list holds only grouped paths and
 * aggregates; without it, aggregates make one row, which plain paths
 * cannot share. */
static twin_err check_select(const struct stmt *s)
{
	const twin_query *q = s->q;

	if (q->star && q->ngroup > 0)
		return fail_at(s, s->star_at, "SELECT * cannot be used with GROUP BY");
	for (size_t i = 0; i < q->nitems; i++) {
		if (q->items[i].agg != Q_AGG_NONE)
			continue;
		if (q->ngroup > 0 && !grouped(q, &q->items[i].path))
			return fail_at(s, s->item_at[i],
			               "with GROUP BY, select only grouped paths and aggregates");
		if (q->ngroup == 0 && q->aggregate)
			return fail_at(s, s->item_at[i],
			               "property paths need GROUP BY when aggregates are selected");
	}
	return TWIN_OK;
}

twin_err twin_query_parse(const char *text, size_t len, twin_query **out, twin_error *err)
{
	struct stmt s;
	twin_err rc;

	*out = NULL;
	if (text == NULL && len > 0)
		return twin_error_set(err, TWIN_E_INVALID, "No query text.");
	memset(&s, 0, sizeof(s));
	s.q = cJSON_malloc(sizeof(*s.q));
	if (s.q == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory while parsing the query.");
	memset(s.q, 0, sizeof(*s.q));
	s.q->top = -1;
	rc = q_lex_init(&s.p.lx, text != NULL ? text : "", len, err);
	if (rc == TWIN_OK) {
		s.q->text = q_lex_dup(&s.p.lx, 0, len);
		if (s.q->text == NULL)
			rc = q_lex_nomem(&s.p.lx);
	}
	if (rc == TWIN_OK)
		rc = parse_statement(&s);
	if (rc == TWIN_OK)
		rc = check_select(&s);
	q_lex_end(&s.p.lx);
	cJSON_free(s.item_at);
	if (rc != TWIN_OK) {
		twin_query_free(s.q);
		return rc;
	}
	*out = s.q;
	return TWIN_OK;
}

void twin_query_free(twin_query *q)
{
	if (q == NULL)
		return;
	for (size_t i = 0; i < q->nitems; i++) {
		q_path_free(&q->items[i].path);
		cJSON_free(q->items[i].name);
	}
	cJSON_free(q->items);
	q_node_free(q->where);
	for (size_t i = 0; i < q->ngroup; i++)
		q_path_free(&q->group[i]);
	cJSON_free(q->group);
	cJSON_free(q->text);
	cJSON_free(q);
}
