/*
 * store/json.c - strict RFC 8259 parser for JSON that crosses the wire.
 *
 * cJSON_Parse is too lenient for untrusted input: it passes invalid UTF-8
 * through, keeps duplicate keys, turns 1e400 into infinity, and reads every
 * number through double, so a range check afterwards cannot tell 2^53 from
 * 2^53+1. PROTOCOL.md §6 rejects all of these, so device and back-end payloads
 * go through this recursive-descent parser instead. It applies the rules while
 * reading, names the byte offset (counted from 0) of the first problem, and
 * builds ordinary cJSON trees so everything downstream keeps the cJSON API.
 *
 * Input is a length-delimited buffer (an MQTT payload) and is never assumed to
 * be NUL-terminated. Recursion is bounded by TWIN_JSON_MAX_NESTING. Every
 * allocation goes through cJSON_malloc, so the trees honour cJSON_InitHooks and
 * the out-of-memory paths can be tested by failing those hooks.
 */
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin/json.h"
#include "twin/limits.h"

/* Objects up to this many members are checked for duplicate keys by a linear
 * scan as each key arrives; cheaper than any index for the common case. */
#define JSON_SMALL_OBJECT 16

/* Duplicate-key messages quote at most this many bytes of the key. */
#define JSON_KEY_QUOTE_MAX 64

#include "json_parser.h"

/* One member of a large object, for the sort-based duplicate check. */
struct member_ref {
	const char *key; /* owned by the member's cJSON item */
	size_t index;    /* position in the object */
	size_t offset;   /* byte offset of the key in the input */
};

struct member_index {
	struct member_ref *v;
	size_t n;
	size_t cap;
};

static twin_err parse_value(struct parser *ps, cJSON **out);

twin_err json_fail(struct parser *ps, size_t at, const char *fmt, ...)
{
	char what[TWIN_ERROR_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return twin_error_set(ps->err, TWIN_E_INVALID, "Invalid JSON at byte %zu: %s.", at, what);
}

twin_err json_fail_nomem(struct parser *ps)
{
	return twin_error_set(ps->err, TWIN_E_NOMEM, "Out of memory while parsing JSON.");
}

/* Next byte, or -1 at the end of the input. */
static int peek(const struct parser *ps)
{
	return ps->pos < ps->len ? ps->text[ps->pos] : -1;
}

/* The error for "something else than what the grammar allows here". */
static twin_err fail_expected(struct parser *ps, const char *what)
{
	int c = peek(ps);

	if (c < 0)
		return json_fail(ps, ps->pos, "unexpected end of input, expected %s", what);
	if (c > 0x20 && c < 0x7F)
		return json_fail(ps, ps->pos, "expected %s, found '%c'", what, c);
	return json_fail(ps, ps->pos, "expected %s, found byte 0x%02X", what, (unsigned)c);
}

static twin_err fail_duplicate(struct parser *ps, size_t at, const char *key)
{
	size_t n = strlen(key);
	int cut = n > JSON_KEY_QUOTE_MAX;

	if (cut) {
		/* Cut on a code point boundary: the message may end up in JSON. */
		n = JSON_KEY_QUOTE_MAX;
		while (n > 0 && ((unsigned char)key[n] & 0xC0) == 0x80)
			n--;
	}
	return json_fail(ps, at, "duplicate key '%.*s%s'", (int)n, key, cut ? "..." : "");
}

static void skip_ws(struct parser *ps)
{
	while (ps->pos < ps->len) {
		unsigned char c = ps->text[ps->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		ps->pos++;
	}
}

/* A string item that takes ownership of s, as cJSON's own parser builds them,
 * saving a copy of every string. */
static twin_err string_item(struct parser *ps, char *s, cJSON **out)
{
	*out = cJSON_CreateNull();
	if (*out == NULL) {
		cJSON_free(s);
		return json_fail_nomem(ps);
	}
	(*out)->type = cJSON_String;
	(*out)->valuestring = s;
	return TWIN_OK;
}

static bool digit_at(const struct parser *ps)
{
	int c = peek(ps);

	return c >= '0' && c <= '9';
}

static void skip_digits(struct parser *ps)
{
	while (digit_at(ps))
		ps->pos++;
}

/* Advance over -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; *is_int tells
 * whether there was neither fraction nor exponent (PROTOCOL.md §6 integer). */
static twin_err scan_number(struct parser *ps, bool *is_int)
{
	size_t start = ps->pos;

	*is_int = true;
	if (peek(ps) == '-')
		ps->pos++;
	if (!digit_at(ps))
		return fail_expected(ps, "a digit");
	if (peek(ps) == '0') {
		ps->pos++;
		if (digit_at(ps))
			return json_fail(ps, start, "leading zero in number");
	} else {
		skip_digits(ps);
	}
	if (peek(ps) == '.') {
		ps->pos++;
		if (!digit_at(ps))
			return fail_expected(ps, "a digit after '.'");
		skip_digits(ps);
		*is_int = false;
	}
	if (peek(ps) == 'e' || peek(ps) == 'E') {
		ps->pos++;
		if (peek(ps) == '+' || peek(ps) == '-')
			ps->pos++;
		if (!digit_at(ps))
			return fail_expected(ps, "a digit in the exponent");
		skip_digits(ps);
		*is_int = false;
	}
	return TWIN_OK;
}

/* The integer literal text[start..pos), exactly: going through double would
 * make 2^53 and 2^53+1 indistinguishable at the range check. */
static twin_err integer_value(struct parser *ps, size_t start, int64_t *v)
{
	const unsigned char *s = ps->text;
	size_t i = start;
	bool neg = s[i] == '-';
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t mag = 0;

	if (neg)
		i++;
	for (; i < ps->pos; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (mag > (limit - d) / 10)
			goto range;
		mag = mag * 10 + d;
	}
	if (neg)
		*v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
	else
		*v = (int64_t)mag;
	if (*v >= ps->int_min && *v <= ps->int_max)
		return TWIN_OK;
range:
	return json_fail(ps, start, "integer out of range %" PRId64 "..%" PRId64, ps->int_min,
	                 ps->int_max);
}

/* The literal text[start..pos) as a double, which must be finite. */
static twin_err float_value(struct parser *ps, size_t start, double *d)
{
	size_t n = ps->pos - start;
	char local[64];
	char *copy = local, *dot;

	if (n >= sizeof(local)) {
		copy = cJSON_malloc(n + 1);
		if (copy == NULL)
			return json_fail_nomem(ps);
	}
	memcpy(copy, ps->text + start, n);
	copy[n] = '\0';
	/* strtod reads the locale's decimal point; cJSON adapts the same way. */
	dot = memchr(copy, '.', n);
	if (dot != NULL)
		*dot = localeconv()->decimal_point[0];
	*d = strtod(copy, NULL);
	if (copy != local)
		cJSON_free(copy);
	if (!isfinite(*d))
		return json_fail(ps, start, "number is not finite");
	return TWIN_OK;
}

static twin_err parse_number(struct parser *ps, cJSON **out)
{
	size_t start = ps->pos;
	bool is_int;
	int64_t v = 0;
	double d = 0;
	twin_err rc;

	rc = scan_number(ps, &is_int);
	if (rc != TWIN_OK)
		return rc;
	rc = is_int ? integer_value(ps, start, &v) : float_value(ps, start, &d);
	if (rc != TWIN_OK)
		return rc;
	if (is_int)
		d = (double)v;
	*out = cJSON_CreateNumber(d);
	return *out != NULL ? TWIN_OK : json_fail_nomem(ps);
}

static twin_err parse_literal(struct parser *ps, const char *word, cJSON *(*make)(void),
                              cJSON **out)
{
	size_t n = strlen(word);

	if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, word, n) != 0)
		return json_fail(ps, ps->pos, "invalid literal, expected '%s'", word);
	*out = make();
	if (*out == NULL)
		return json_fail_nomem(ps);
	ps->pos += n;
	return TWIN_OK;
}

static twin_err parse_array(struct parser *ps, cJSON **out)
{
	cJSON *arr = cJSON_CreateArray(), *item;
	twin_err rc;

	if (arr == NULL)
		return json_fail_nomem(ps);
	ps->pos++;
	skip_ws(ps);
	if (peek(ps) == ']') {
		ps->pos++;
		*out = arr;
		return TWIN_OK;
	}
	for (;;) {
		rc = parse_value(ps, &item);
		if (rc != TWIN_OK)
			goto err;
		cJSON_AddItemToArray(arr, item);
		skip_ws(ps);
		if (peek(ps) == ']')
			break;
		if (peek(ps) != ',') {
			rc = fail_expected(ps, "',' or ']'");
			goto err;
		}
		ps->pos++;
	}
	ps->pos++;
	*out = arr;
	return TWIN_OK;
err:
	cJSON_Delete(arr);
	return rc;
}

static int member_cmp(const void *a, const void *b)
{
	const struct member_ref *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

static twin_err index_push(struct parser *ps, struct member_index *idx, const char *key,
                           size_t index, size_t offset)
{
	if (idx->n == idx->cap) {
		size_t cap = idx->cap ? idx->cap * 2 : 2 * JSON_SMALL_OBJECT;
		struct member_ref *v = cJSON_malloc(cap * sizeof(*v));

		if (v == NULL)
			return json_fail_nomem(ps);
		if (idx->n > 0)
			memcpy(v, idx->v, idx->n * sizeof(*v));
		cJSON_free(idx->v);
		idx->v = v;
		idx->cap = cap;
	}
	idx->v[idx->n++] = (struct member_ref){key, index, offset};
	return TWIN_OK;
}

/* Add member (number index of obj) to the key index of a large object. The
 * first JSON_SMALL_OBJECT members are copied in when the index starts; they
 * were already checked against each other, so a duplicate among them is never
 * the one reported and their offsets need not be known. */
static twin_err index_member(struct parser *ps, struct member_index *idx, const cJSON *obj,
                             const cJSON *member, size_t index, size_t offset)
{
	const cJSON *c;
	size_t i = 0;
	twin_err rc;

	if (idx->n == 0) {
		for (c = obj->child; c != member; c = c->next) {
			rc = index_push(ps, idx, c->string, i++, 0);
			if (rc != TWIN_OK)
				return rc;
		}
	}
	return index_push(ps, idx, member->string, index, offset);
}

/* Duplicate check for a large object, once it is complete. Sorting is
 * O(n log n) whatever the keys are, where an unseeded hash could be flooded
 * with colliding keys. Reports the duplicate that comes first in the input,
 * as the linear scan would; the price is that a syntax error later in the
 * same object is reported instead of an earlier duplicate. */
static twin_err check_duplicates(struct parser *ps, struct member_index *idx)
{
	const struct member_ref *first = NULL;
	size_t i;

	if (idx->n == 0)
		return TWIN_OK;
	qsort(idx->v, idx->n, sizeof(*idx->v), member_cmp);
	for (i = 1; i < idx->n; i++) {
		if (strcmp(idx->v[i - 1].key, idx->v[i].key) == 0 &&
		    (first == NULL || idx->v[i].index < first->index))
			first = &idx->v[i];
	}
	return first ? fail_duplicate(ps, first->offset, first->key) : TWIN_OK;
}

/* Parse one "key": value and append it to obj as member number index. */
static twin_err parse_member(struct parser *ps, cJSON *obj, size_t index, struct member_index *idx)
{
	size_t key_at = ps->pos;
	char *key = NULL;
	cJSON *value;
	twin_err rc;

	if (peek(ps) != '"')
		return fail_expected(ps, "a string key");
	rc = json_parse_string(ps, &key);
	if (rc != TWIN_OK)
		return rc;
	if (index < JSON_SMALL_OBJECT && cJSON_GetObjectItemCaseSensitive(obj, key) != NULL) {
		rc = fail_duplicate(ps, key_at, key);
		goto out;
	}
	skip_ws(ps);
	if (peek(ps) != ':') {
		rc = fail_expected(ps, "':'");
		goto out;
	}
	ps->pos++;
	rc = parse_value(ps, &value);
	if (rc != TWIN_OK)
		goto out;
	/* Objects and arrays share cJSON's child list; this is how cJSON's own
	 * parser adds members, without copying the key again. */
	value->string = key;
	key = NULL;
	cJSON_AddItemToArray(obj, value);
	if (index >= JSON_SMALL_OBJECT)
		rc = index_member(ps, idx, obj, value, index, key_at);
out:
	cJSON_free(key);
	return rc;
}

static twin_err parse_object(struct parser *ps, cJSON **out)
{
	cJSON *obj = cJSON_CreateObject();
	struct member_index idx = {NULL, 0, 0};
	size_t count = 0;
	twin_err rc;

	if (obj == NULL)
		return json_fail_nomem(ps);
	ps->pos++;
	skip_ws(ps);
	if (peek(ps) == '}') {
		ps->pos++;
		*out = obj;
		return TWIN_OK;
	}
	for (;;) {
		rc = parse_member(ps, obj, count++, &idx);
		if (rc != TWIN_OK)
			goto err;
		skip_ws(ps);
		if (peek(ps) == '}')
			break;
		if (peek(ps) != ',') {
			rc = fail_expected(ps, "',' or '}'");
			goto err;
		}
		ps->pos++;
		skip_ws(ps);
	}
	ps->pos++;
	rc = check_duplicates(ps, &idx);
	if (rc != TWIN_OK)
		goto err;
	cJSON_free(idx.v);
	*out = obj;
	return TWIN_OK;
err:
	cJSON_free(idx.v);
	cJSON_Delete(obj);
	return rc;
}

static twin_err parse_nested(struct parser *ps, cJSON **out)
{
	twin_err rc;

	if (ps->depth == TWIN_JSON_MAX_NESTING)
		return json_fail(ps, ps->pos, "nesting deeper than %d levels",
		                 TWIN_JSON_MAX_NESTING);
	ps->depth++;
	rc = peek(ps) == '{' ? parse_object(ps, out) : parse_array(ps, out);
	ps->depth--;
	return rc;
}

static twin_err parse_value(struct parser *ps, cJSON **out)
{
	char *s;
	twin_err rc;

	*out = NULL;
	skip_ws(ps);
	switch (peek(ps)) {
	case '{':
	case '[':
		return parse_nested(ps, out);
	case '"':
		rc = json_parse_string(ps, &s);
		return rc != TWIN_OK ? rc : string_item(ps, s, out);
	case 't':
		return parse_literal(ps, "true", cJSON_CreateTrue, out);
	case 'f':
		return parse_literal(ps, "false", cJSON_CreateFalse, out);
	case 'n':
		return parse_literal(ps, "null", cJSON_CreateNull, out);
	default:
		if (peek(ps) == '-' || digit_at(ps))
			return parse_number(ps, out);
		return fail_expected(ps, "a value");
	}
}

twin_err twin_json_parse(const char *text, size_t len, int64_t int_min, int64_t int_max,
                         cJSON **out, twin_error *err)
{
	struct parser ps = {
	        .text = (const unsigned char *)text,
	        .len = len,
	        .int_min = int_min,
	        .int_max = int_max,
	        .err = err,
	};
	cJSON *root;
	twin_err rc;

	*out = NULL;
	rc = parse_value(&ps, &root);
	if (rc != TWIN_OK)
		return rc;
	skip_ws(&ps);
	if (ps.pos < ps.len) {
		cJSON_Delete(root);
		return json_fail(&ps, ps.pos, "trailing data");
	}
	*out = root;
	return TWIN_OK;
}
