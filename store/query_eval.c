/*
 * query_eval.c - the query language's values, operators and functions
 * (PROTOCOL.md §8.2): undefined propagates, comparisons need primitives of
 * one type, logic is three-valued, WHERE keeps only exactly-true rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"
#include "query_eval.h"

void q_val_clear(q_val *v)
{
	free(v->owned);
	memset(v, 0, sizeof(*v));
}

void q_val_from_string(const char *s, size_t len, q_val *out)
{
	memset(out, 0, sizeof(*out));
	out->t = QV_STR;
	out->s = s;
	out->slen = len;
}

void q_val_from_text(const char *p, size_t len, q_val *out)
{
	char num[64];

	memset(out, 0, sizeof(*out));
	out->json = p;
	out->jlen = len;
	if (len == 0)
		return;
	switch (*p) {
	case '"':
		out->t = QV_STR;
		if (len >= 2 && memchr(p, '\\', len) == NULL) {
			out->s = p + 1; /* no escapes: the bytes are the string */
			out->slen = len - 2;
		}
		return;
	case '{':
		out->t = QV_OBJ;
		return;
	case '[':
		out->t = QV_ARR;
		return;
	case 't':
		out->t = QV_BOOL, out->b = 1;
		return;
	case 'f':
		out->t = QV_BOOL, out->b = 0;
		return;
	case 'n':
		out->t = QV_NULL;
		return;
	default:
		if (len >= sizeof(num))
			return; /* not a number the store prints: undefined */
		memcpy(num, p, len);
		num[len] = '\0';
		out->t = QV_NUM;
		out->n = strtod(num, NULL);
	}
}

void q_val_from_node(const cJSON *c, q_val *out)
{
	memset(out, 0, sizeof(*out));
	out->node = c;
	if (c == NULL)
		return;
	if (cJSON_IsNull(c))
		out->t = QV_NULL;
	else if (cJSON_IsBool(c))
		out->t = QV_BOOL, out->b = cJSON_IsTrue(c);
	else if (cJSON_IsNumber(c))
		out->t = QV_NUM, out->n = c->valuedouble;
	else if (cJSON_IsString(c)) {
		out->t = QV_STR;
		out->s = c->valuestring;
		out->slen = strlen(c->valuestring);
	} else if (cJSON_IsObject(c))
		out->t = QV_OBJ;
	else if (cJSON_IsArray(c))
		out->t = QV_ARR;
	else if (cJSON_IsRaw(c))
		q_val_from_text(c->valuestring, strlen(c->valuestring), out), out->node = c;
}

int q_val_string_bytes(q_val *v)
{
	if (v->t != QV_STR || v->s != NULL)
		return 0;
	v->owned = json_scan_string(v->json, v->jlen, &v->slen);
	if (v->owned == NULL)
		return -1;
	v->s = v->owned;
	return 0;
}

cJSON *q_val_to_json(q_val *v)
{
	char *raw;
	cJSON *c;

	if (v->node != NULL && !cJSON_IsRaw(v->node))
		return cJSON_Duplicate(v->node, 1);
	switch (v->t) {
	case QV_NULL:
		return cJSON_CreateNull();
	case QV_BOOL:
		return cJSON_CreateBool(v->b);
	case QV_NUM:
		return cJSON_CreateNumber(v->n);
	case QV_STR:
		if (q_val_string_bytes(v) < 0 || memchr(v->s, '\0', v->slen) != NULL)
			return NULL;
		raw = malloc(v->slen + 1);
		if (raw == NULL)
			return NULL;
		memcpy(raw, v->s, v->slen);
		raw[v->slen] = '\0';
		c = cJSON_CreateString(raw);
		free(raw);
		return c;
	case QV_OBJ:
	case QV_ARR:
		if (v->json == NULL)
			return NULL;
		raw = malloc(v->jlen + 1);
		if (raw == NULL)
			return NULL;
		memcpy(raw, v->json, v->jlen);
		raw[v->jlen] = '\0';
		c = cJSON_CreateRaw(raw);
		free(raw);
		return c;
	default:
		return NULL;
	}
}

static int is_primitive(const q_val *v)
{
	return v->t == QV_NULL || v->t == QV_BOOL || v->t == QV_NUM || v->t == QV_STR;
}

/* Order of two primitives of one type: <0, 0, >0; 2 when they do not
 * compare (undefined), -2 when out of memory. Strings compare by code point,
 * which for UTF-8 is byte order. */
static int compare(q_val *a, q_val *b)
{
	size_t n;
	int c;

	if (a->t != b->t || !is_primitive(a))
		return 2;
	switch (a->t) {
	case QV_NULL:
		return 0;
	case QV_BOOL:
		return a->b - b->b;
	case QV_NUM:
		return a->n < b->n ? -1 : a->n > b->n ? 1 : a->n == b->n ? 0 : 2;
	default:
		if (q_val_string_bytes(a) < 0 || q_val_string_bytes(b) < 0)
			return -2;
		n = a->slen < b->slen ? a->slen : b->slen;
		c = memcmp(a->s, b->s, n);
		if (c != 0)
			return c < 0 ? -1 : 1;
		return a->slen < b->slen ? -1 : a->slen > b->slen ? 1 : 0;
	}
}

static void set_bool(q_val *out, int b)
{
	q_val_clear(out);
	out->t = QV_BOOL;
	out->b = b;
}

static int eval_cmp(int op, q_val *a, q_val *b, q_val *out)
{
	int c = compare(a, b), r;

	if (c == -2)
		return -1;
	if (c == 2)
		return 0; /* undefined */
	switch (op) {
	case Q_EQ:
		r = c == 0;
		break;
	case Q_NE:
		r = c != 0;
		break;
	case Q_LT:
		r = c < 0;
		break;
	case Q_GT:
		r = c > 0;
		break;
	case Q_LE:
		r = c <= 0;
		break;
	default:
		r = c >= 0;
		break;
	}
	set_bool(out, r);
	return 0;
}

static int eval_in(const q_node *n, q_val *a, q_val *out)
{
	const cJSON *list = n->b->lit, *e;

	if (a->t == QV_UNDEF || !is_primitive(a))
		return 0;
	cJSON_ArrayForEach(e, list)
	{
		q_val ev;
		int c;

		q_val_from_node(e, &ev);
		c = compare(a, &ev);
		if (c == -2)
			return -1;
		if (c == 0) {
			set_bool(out, n->kind == Q_IN);
			return 0;
		}
	}
	set_bool(out, n->kind == Q_NIN);
	return 0;
}

static void eval_arith(int op, const q_val *a, const q_val *b, q_val *out)
{
	double r;

	if (a->t != QV_NUM || b->t != QV_NUM)
		return;
	switch (op) {
	case '+':
		r = a->n + b->n;
		break;
	case '-':
		r = a->n - b->n;
		break;
	case '*':
		r = a->n * b->n;
		break;
	case '/':
		if (b->n == 0)
			return;
		r = a->n / b->n;
		break;
	default:
		if (b->n == 0)
			return;
		r = fmod(a->n, b->n);
	}
	if (!isfinite(r))
		return;
	out->t = QV_NUM;
	out->n = r;
}

/* STARTSWITH, ENDSWITH, CONTAINS: case-sensitive, on two strings only. */
static int eval_string_func(int f, q_val *s, q_val *p, q_val *out)
{
	int r;

	if (s->t != QV_STR || p->t != QV_STR)
		return 0;
	if (q_val_string_bytes(s) < 0 || q_val_string_bytes(p) < 0)
		return -1;
	if (p->slen > s->slen)
		r = 0;
	else if (f == Q_STARTSWITH)
		r = memcmp(s->s, p->s, p->slen) == 0;
	else if (f == Q_ENDSWITH)
		r = memcmp(s->s + s->slen - p->slen, p->s, p->slen) == 0;
	else {
		r = p->slen == 0;
		for (size_t i = 0; !r && i + p->slen <= s->slen; i++)
			r = memcmp(s->s + i, p->s, p->slen) == 0;
	}
	set_bool(out, r);
	return 0;
}

static int eval_func(const q_node *n, q_lookup_fn lookup, void *row, q_val *out)
{
	q_val a = {0}, b = {0};
	int rc = q_eval(n->args[0], lookup, row, &a), r = 0;

	if (rc == 0 && n->nargs > 1)
		rc = q_eval(n->args[1], lookup, row, &b);
	if (rc == 0) {
		switch (n->op) {
		case Q_STARTSWITH:
		case Q_ENDSWITH:
		case Q_CONTAINS:
			rc = eval_string_func(n->op, &a, &b, out);
			goto done;
		case Q_IS_DEFINED:
			r = a.t != QV_UNDEF;
			break;
		case Q_IS_NULL:
			r = a.t == QV_NULL;
			break;
		case Q_IS_BOOL:
			r = a.t == QV_BOOL;
			break;
		case Q_IS_NUMBER:
			r = a.t == QV_NUM;
			break;
		case Q_IS_STRING:
			r = a.t == QV_STR;
			break;
		case Q_IS_OBJECT:
			r = a.t == QV_OBJ;
			break;
		case Q_IS_ARRAY:
			r = a.t == QV_ARR;
			break;
		default:
			r = is_primitive(&a);
			break;
		}
		set_bool(out, r);
	}
done:
	q_val_clear(&a);
	q_val_clear(&b);
	return rc;
}

/* AND and OR in three-valued logic: a decided left side skips the right. */
static int eval_logic(const q_node *n, q_lookup_fn lookup, void *row, q_val *out)
{
	int is_and = n->kind == Q_AND, left, right;
	q_val a = {0}, b = {0};

	if (q_eval(n->a, lookup, row, &a) < 0)
		return -1;
	left = a.t == QV_BOOL ? a.b : -1;
	q_val_clear(&a);
	if (left == !is_and) {
		set_bool(out, left);
		return 0;
	}
	if (q_eval(n->b, lookup, row, &b) < 0)
		return -1;
	right = b.t == QV_BOOL ? b.b : -1;
	q_val_clear(&b);
	if (right == !is_and)
		set_bool(out, right);
	else if (left >= 0 && right >= 0)
		set_bool(out, is_and);
	return 0;
}

int q_eval(const q_node *n, q_lookup_fn lookup, void *row, q_val *out)
{
	q_val a = {0}, b = {0};
	int rc = 0;

	memset(out, 0, sizeof(*out));
	switch (n->kind) {
	case Q_LITERAL:
		q_val_from_node(n->lit, out);
		return 0;
	case Q_PATH:
		return lookup(row, &n->path, out);
	case Q_AND:
	case Q_OR:
		return eval_logic(n, lookup, row, out);
	case Q_FUNC:
		return eval_func(n, lookup, row, out);
	default:
		break;
	}
	rc = q_eval(n->a, lookup, row, &a);
	if (rc == 0 && n->b != NULL && n->kind != Q_IN && n->kind != Q_NIN)
		rc = q_eval(n->b, lookup, row, &b);
	if (rc == 0) {
		switch (n->kind) {
		case Q_NEG:
			if (a.t == QV_NUM)
				out->t = QV_NUM, out->n = -a.n;
			break;
		case Q_NOT:
			if (a.t == QV_BOOL)
				set_bool(out, !a.b);
			break;
		case Q_ARITH:
			eval_arith(n->op, &a, &b, out);
			break;
		case Q_CMP:
			rc = eval_cmp(n->op, &a, &b, out);
			break;
		default:
			rc = eval_in(n, &a, out);
			break;
		}
	}
	q_val_clear(&a);
	q_val_clear(&b);
	return rc;
}

int q_eval_where(const q_node *where, q_lookup_fn lookup, void *row)
{
	q_val v;
	int keep;

	if (where == NULL)
		return 1;
	if (q_eval(where, lookup, row, &v) < 0)
		return -1;
	keep = v.t == QV_BOOL && v.b;
	q_val_clear(&v);
	return keep;
}
