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

struct parser {
	const unsigned char *text;
	size_t len;
	size_t pos;
	int64_t int_min;
	int64_t int_max;
	int depth;
	twin_error *err;
};

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

/* Length of the well-formed UTF-8 sequence at s[0..avail), avail >= 1, or 0
 * when there is none. Follows Unicode Table 3-7: restricting the second byte
 * after E0, ED, F0 and F4 is what excludes overlongs, UTF-16 surrogates and
 * code points above U+10FFFF without decoding. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4;
	else
		return 0; /* continuation byte, overlong lead C0/C1, or F5..FF */
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	}
	return n;
}

int twin_utf8_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		n = utf8_seq_len(u + i, len - i);
		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

__attribute__((format(printf, 3, 4))) static twin_err fail(struct parser *ps, size_t at,
                                                           const char *fmt, ...)
{
	char what[TWIN_ERROR_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return twin_error_set(ps->err, TWIN_E_INVALID, "Invalid JSON at byte %zu: %s.", at, what);
}

static twin_err fail_nomem(struct parser *ps)
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
		return fail(ps, ps->pos, "unexpected end of input, expected %s", what);
	if (c > 0x20 && c < 0x7F)
		return fail(ps, ps->pos, "expected %s, found '%c'", what, c);
	return fail(ps, ps->pos, "expected %s, found byte 0x%02X", what, (unsigned)c);
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
	return fail(ps, at, "duplicate key '%.*s%s'", (int)n, key, cut ? "..." : "");
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

static bool hex4(const unsigned char *s, unsigned *out)
{
	unsigned v = 0;
	int k;

	for (k = 0; k < 4; k++) {
		unsigned char c = s[k];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

static size_t put_utf8(char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decode the \uXXXX escape at text[at] (a surrogate pair takes two escapes)
 * into *cp, setting *used to the bytes consumed. end is the closing quote. */
static twin_err decode_u_escape(struct parser *ps, size_t at, size_t end, unsigned *cp,
                                size_t *used)
{
	const unsigned char *s = ps->text;
	unsigned lo;

	if (end - at < 6 || !hex4(s + at + 2, cp))
		return fail(ps, at, "invalid \\u escape");
	/* cJSON strings are NUL-terminated, so a NUL would silently cut the
	 * string (or key) short; it is rejected rather than stored wrongly. */
	if (*cp == 0)
		return fail(ps, at, "\\u0000 is not allowed");
	if (*cp >= 0xDC00 && *cp <= 0xDFFF)
		return fail(ps, at, "lone low surrogate");
	*used = 6;
	if (*cp < 0xD800 || *cp > 0xDBFF)
		return TWIN_OK;
	if (end - at < 12 || s[at + 6] != '\\' || s[at + 7] != 'u' || !hex4(s + at + 8, &lo) ||
	    lo < 0xDC00 || lo > 0xDFFF)
		return fail(ps, at, "lone high surrogate");
	*cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
	*used = 12;
	return TWIN_OK;
}

/* Decode the escape at text[*i] into out + *o, advancing both. */
static twin_err decode_escape(struct parser *ps, size_t *i, size_t end, char *out, size_t *o)
{
	unsigned cp = 0;
	size_t used = 2;
	twin_err rc;

	if (end - *i < 2)
		return fail(ps, *i, "invalid escape");
	switch (ps->text[*i + 1]) {
	case '"':
	case '\\':
	case '/':
		cp = ps->text[*i + 1];
		break;
	case 'b':
		cp = '\b';
		break;
	case 'f':
		cp = '\f';
		break;
	case 'n':
		cp = '\n';
		break;
	case 'r':
		cp = '\r';
		break;
	case 't':
		cp = '\t';
		break;
	case 'u':
		rc = decode_u_escape(ps, *i, end, &cp, &used);
		if (rc != TWIN_OK)
			return rc;
		break;
	default:
		return fail(ps, *i, "invalid escape");
	}
	*o += put_utf8(out + *o, cp);
	*i += used;
	return TWIN_OK;
}

/* Offset of the quote that closes a string whose contents start at i, or len.
 * Knowing it first bounds the decoded size (escapes only ever shrink), so the
 * string is allocated once at the right size. */
static size_t closing_quote(const struct parser *ps, size_t i)
{
	while (i < ps->len) {
		if (ps->text[i] == '"')
			return i;
		i += ps->text[i] == '\\' ? 2 : 1;
	}
	return ps->len;
}

/* Parse the string at text[pos] (a '"') into *out, allocated with
 * cJSON_malloc and owned by the caller. */
static twin_err parse_string(struct parser *ps, char **out)
{
	const unsigned char *s = ps->text;
	size_t open = ps->pos, end, i, o = 0, n;
	char *buf;
	twin_err rc;

	*out = NULL;
	end = closing_quote(ps, open + 1);
	if (end == ps->len)
		return fail(ps, open, "unterminated string");
	buf = cJSON_malloc(end - open);
	if (buf == NULL)
		return fail_nomem(ps);
	for (i = open + 1; i < end;) {
		if (s[i] == '\\') {
			rc = decode_escape(ps, &i, end, buf, &o);
			if (rc != TWIN_OK)
				goto err;
		} else if (s[i] < 0x20) {
			rc = fail(ps, i, "control character in string");
			goto err;
		} else {
			n = utf8_seq_len(s + i, end - i);
			if (n == 0) {
				rc = fail(ps, i, "invalid UTF-8");
				goto err;
			}
			memcpy(buf + o, s + i, n);
			o += n;
			i += n;
		}
	}
	buf[o] = '\0';
	ps->pos = end + 1;
	*out = buf;
	return TWIN_OK;
err:
	cJSON_free(buf);
	return rc;
}

/* A string item that takes ownership of s, as cJSON's own parser builds them,
 * saving a copy of every string. */
static twin_err string_item(struct parser *ps, char *s, cJSON **out)
{
	*out = cJSON_CreateNull();
	if (*out == NULL) {
		cJSON_free(s);
		return fail_nomem(ps);
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
			return fail(ps, start, "leading zero in number");
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
	return fail(ps, start, "integer out of range %" PRId64 "..%" PRId64, ps->int_min,
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
			return fail_nomem(ps);
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
		return fail(ps, start, "number is not finite");
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
	return *out != NULL ? TWIN_OK : fail_nomem(ps);
}

static twin_err parse_literal(struct parser *ps, const char *word, cJSON *(*make)(void),
                              cJSON **out)
{
	size_t n = strlen(word);

	if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, word, n) != 0)
		return fail(ps, ps->pos, "invalid literal, expected '%s'", word);
	*out = make();
	if (*out == NULL)
		return fail_nomem(ps);
	ps->pos += n;
	return TWIN_OK;
}

static twin_err parse_array(struct parser *ps, cJSON **out)
{
	cJSON *arr = cJSON_CreateArray(), *item;
	twin_err rc;

	if (arr == NULL)
		return fail_nomem(ps);
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
			return fail_nomem(ps);
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
	rc = parse_string(ps, &key);
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
		return fail_nomem(ps);
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
		return fail(ps, ps->pos, "nesting deeper than %d levels", TWIN_JSON_MAX_NESTING);
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
		rc = parse_string(ps, &s);
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
		return fail(&ps, ps.pos, "trailing data");
	}
	*out = root;
	return TWIN_OK;
}
