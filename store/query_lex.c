/*
 * query_lex.c - tokens of the query language (PROTOCOL.md §8.1): names,
 * [[bracketed names]], numbers, quoted strings with their escapes, and
 * operators; plus the wording of every query error.
 *
 * The whole text is checked up front (length, UTF-8, NUL bytes), so the
 * scanners below may assume well-formed UTF-8 and C strings can hold every
 * name and string. Offsets are bytes internally; messages count characters,
 * which is what a user sees in an editor.
 */
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json_scan.h"
#include "query_parser.h"
#include "twin/json.h"
#include "twin/query.h"

/* A token quoted in a message is cut to this many bytes. */
#define Q_QUOTE_MAX 40

/* Hex literals stop at 2^53 so that the cJSON double holds them exactly. */
#define Q_HEX_MAX 0x20000000000000ULL

/* Words that structure the query: a property of that name must be
 * bracketed. Literal words (true, null, ...), collection, aggregate and
 * function names are only special where the grammar expects them, so that
 * common property names like "count" or "min" need no brackets. */
static const char *const reserved[] = {"SELECT", "TOP", "FROM", "WHERE", "GROUP", "BY",
                                       "AS",     "AND", "OR",   "NOT",   "IN",    "NIN"};

static int upper(int c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

int q_word_eq(const char *s, size_t n, const char *word)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (word[i] == '\0' || upper((unsigned char)s[i]) != upper((unsigned char)word[i]))
			return 0;
	}
	return word[n] == '\0';
}

int q_lex_is(const q_lexer *lx, const char *word)
{
	return lx->tok.type == QT_NAME &&
	       q_word_eq((const char *)lx->text + lx->tok.name_at, lx->tok.name_len, word);
}

int q_lex_punct(const q_lexer *lx, int c)
{
	return lx->tok.type == QT_PUNCT && lx->tok.punct == c;
}

int q_lex_reserved(const q_lexer *lx)
{
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		if (q_lex_is(lx, reserved[i]))
			return 1;
	}
	return 0;
}

char *q_lex_dup(const q_lexer *lx, size_t at, size_t n)
{
	char *s = cJSON_malloc(n + 1);

	if (s != NULL) {
		if (n > 0)
			memcpy(s, lx->text + at, n);
		s[n] = '\0';
	}
	return s;
}

static size_t char_pos(const q_lexer *lx, size_t at)
{
	size_t n = 0;

	for (size_t i = 0; i < at && i < lx->len; i++)
		n += (lx->text[i] & 0xC0) != 0x80;
	return n;
}

twin_err q_lex_fail(const q_lexer *lx, size_t at, const char *fmt, ...)
{
	char what[TWIN_ERROR_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return twin_error_set(lx->err, TWIN_E_INVALID, "Syntax error at position %zu: %s.",
	                      char_pos(lx, at), what);
}

twin_err q_lex_nomem(const q_lexer *lx)
{
	return twin_error_set(lx->err, TWIN_E_NOMEM, "Out of memory while parsing the query.");
}

/* The message may end up in JSON, which needs whole characters. */
int q_quote_len(const char *s, size_t n, int *cut)
{
	*cut = n > Q_QUOTE_MAX;
	if (*cut) {
		n = Q_QUOTE_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	return (int)n;
}

twin_err q_lex_expected(const q_lexer *lx, const char *what, int name_ok)
{
	const q_token *t = &lx->tok;
	const char *s = (const char *)lx->text + t->at;
	int cut, n = q_quote_len(s, t->end - t->at, &cut);
	const char *more = cut ? "..." : "";

	if (t->type == QT_END)
		return q_lex_fail(lx, t->at, "expected %s, found end of query", what);
	if (t->type == QT_STRING)
		return q_lex_fail(lx, t->at, "expected %s, found string %.*s%s", what, n, s, more);
	if (name_ok && q_lex_reserved(lx))
		return q_lex_fail(lx, t->at,
		                  "expected %s, found reserved word '%.*s'; write [[%.*s]] to use "
		                  "it as a name",
		                  what, n, s, n, s);
	return q_lex_fail(lx, t->at, "expected %s, found '%.*s%s'", what, n, s, more);
}

/* Bytes in the UTF-8 sequence that lead byte c starts, 0 if c cannot start one. */
static size_t utf8_lead_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return 2;
	if (c >= 0xE0 && c <= 0xEF)
		return 3;
	if (c >= 0xF0 && c <= 0xF4)
		return 4;
	return 0;
}

/* Whole-text checks. A byte-length bound comes first so that a huge input
 * costs nothing; UTF-8 is checked one sequence at a time so the error can
 * name where it is. */
static twin_err check_text(q_lexer *lx)
{
	size_t i = 0, n, chars = 0;

	if (lx->len > 4 * (size_t)TWIN_QUERY_TEXT_MAX)
		goto too_long;
	while (i < lx->len) {
		n = utf8_lead_len(lx->text[i]);
		if (n == 0 || n > lx->len - i || !twin_utf8_valid((const char *)lx->text + i, n))
			return q_lex_fail(lx, i, "invalid UTF-8");
		if (lx->text[i] == 0)
			return q_lex_fail(lx, i, "NUL character");
		i += n;
		chars++;
	}
	if (chars <= TWIN_QUERY_TEXT_MAX)
		return TWIN_OK;
too_long:
	return twin_error_set(lx->err, TWIN_E_INVALID, "Query text is longer than %d characters.",
	                      TWIN_QUERY_TEXT_MAX);
}

twin_err q_lex_init(q_lexer *lx, const char *text, size_t len, twin_error *err)
{
	twin_err rc;

	memset(lx, 0, sizeof(*lx));
	lx->text = (const unsigned char *)text;
	lx->len = len;
	lx->err = err;
	rc = check_text(lx);
	return rc != TWIN_OK ? rc : q_lex_next(lx);
}

void q_lex_end(q_lexer *lx)
{
	cJSON_free(lx->tok.str);
	lx->tok.str = NULL;
}

static int is_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_name_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}

static int is_name_char(int c)
{
	return is_name_start(c) || is_digit(c);
}

static int hex_digit(int c)
{
	if (is_digit(c))
		return c - '0';
	if (upper(c) >= 'A' && upper(c) <= 'F')
		return upper(c) - 'A' + 10;
	return -1;
}

/* Byte at i, or -1 past the end. */
static int at(const q_lexer *lx, size_t i)
{
	return i < lx->len ? lx->text[i] : -1;
}

int q_lex_next_char(const q_lexer *lx)
{
	size_t i = lx->pos;

	while (is_blank(at(lx, i)))
		i++;
	return at(lx, i);
}

static size_t skip_digits(const q_lexer *lx, size_t i)
{
	while (is_digit(at(lx, i)))
		i++;
	return i;
}

static twin_err lex_hex(q_lexer *lx, q_token *t)
{
	unsigned long long v = 0;
	size_t i = t->at + 2;
	int d;

	if (hex_digit(at(lx, i)) < 0)
		return q_lex_fail(lx, t->at, "invalid number");
	for (; (d = hex_digit(at(lx, i))) >= 0; i++) {
		v = v * 16 + (unsigned)d;
		if (v > Q_HEX_MAX)
			return q_lex_fail(lx, t->at, "number out of range");
	}
	if (is_name_char(at(lx, i)))
		return q_lex_fail(lx, t->at, "invalid number");
	t->end = i;
	t->num = (double)v;
	t->ival = (long long)v;
	t->is_int = 1;
	return TWIN_OK;
}

/* The decimal literal text[at..end) as a double, which must be finite. */
static twin_err decimal_value(q_lexer *lx, q_token *t)
{
	size_t n = t->end - t->at;
	char local[64], *copy = local, *dot;

	if (n >= sizeof(local)) {
		copy = cJSON_malloc(n + 1);
		if (copy == NULL)
			return q_lex_nomem(lx);
	}
	memcpy(copy, lx->text + t->at, n);
	copy[n] = '\0';
	/* strtod reads the locale's decimal point, as in store/json.c. */
	dot = memchr(copy, '.', n);
	if (dot != NULL)
		*dot = localeconv()->decimal_point[0];
	t->num = strtod(copy, NULL);
	if (copy != local)
		cJSON_free(copy);
	if (!isfinite(t->num))
		return q_lex_fail(lx, t->at, "number out of range");
	return TWIN_OK;
}

/* digits [. digits] [e [+-] digits], or 0x hex digits. A sign is never part
 * of the token: the parser folds unary minus into number literals. */
static twin_err lex_number(q_lexer *lx, q_token *t)
{
	size_t i = skip_digits(lx, t->at);
	unsigned long long v = 0;

	t->type = QT_NUMBER;
	if (lx->text[t->at] == '0' && upper(at(lx, t->at + 1)) == 'X')
		return lex_hex(lx, t);
	t->is_int = 1;
	if (at(lx, i) == '.') {
		if (!is_digit(at(lx, i + 1)))
			return q_lex_fail(lx, t->at, "invalid number");
		i = skip_digits(lx, i + 1);
		t->is_int = 0;
	}
	if (upper(at(lx, i)) == 'E') {
		i += at(lx, i + 1) == '+' || at(lx, i + 1) == '-' ? 2 : 1;
		if (!is_digit(at(lx, i)))
			return q_lex_fail(lx, t->at, "invalid number");
		i = skip_digits(lx, i);
		t->is_int = 0;
	}
	if (is_name_char(at(lx, i)))
		return q_lex_fail(lx, t->at, "invalid number");
	t->end = i;
	for (i = t->at; t->is_int && i < t->end; i++) {
		unsigned d = (unsigned)(lx->text[i] - '0');

		if (v > ((unsigned long long)LLONG_MAX - d) / 10)
			t->is_int = 0; /* still a number, just not an exact integer */
		v = v * 10 + d;
	}
	t->ival = t->is_int ? (long long)v : 0;
	return decimal_value(lx, t);
}

/* The four hex digits at text[i..i+4) before end, or -1. */
static long hex4(const q_lexer *lx, size_t i, size_t end)
{
	return end - i < 4 ? -1 : json_hex4((const char *)lx->text + i);
}

/* Decode \uXXXX (or a surrogate pair of two) at text[i]; end is the closing
 * quote. NUL is refused: cJSON strings would end there. */
static twin_err decode_u(q_lexer *lx, size_t i, size_t end, unsigned *cp, size_t *used)
{
	long hi = hex4(lx, i + 2, end), lo;

	if (hi < 0)
		return q_lex_fail(lx, i, "invalid \\u escape");
	if (hi == 0)
		return q_lex_fail(lx, i, "\\u0000 is not allowed");
	if (hi >= 0xDC00 && hi <= 0xDFFF)
		return q_lex_fail(lx, i, "lone low surrogate");
	*cp = (unsigned)hi;
	*used = 6;
	if (hi < 0xD800 || hi > 0xDBFF)
		return TWIN_OK;
	lo = end - i >= 12 && lx->text[i + 6] == '\\' && lx->text[i + 7] == 'u'
	             ? hex4(lx, i + 8, end)
	             : -1;
	if (lo < 0xDC00 || lo > 0xDFFF)
		return q_lex_fail(lx, i, "lone high surrogate");
	*cp = 0x10000 + (((unsigned)hi - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
	*used = 12;
	return TWIN_OK;
}

/* Decode the escape at text[*i] (a backslash before end) into out + *o. */
static twin_err decode_escape(q_lexer *lx, size_t *i, size_t end, char *out, size_t *o)
{
	static const char from[] = "'\"\\/bfnrt", to[] = "'\"\\/\b\f\n\r\t";
	int c = *i + 1 < end ? lx->text[*i + 1] : -1;
	const char *k = c > 0 ? strchr(from, c) : NULL;
	unsigned cp = 0;
	size_t used = 2;
	twin_err rc;

	if (k != NULL) {
		cp = (unsigned char)to[k - from];
	} else if (c == 'u') {
		rc = decode_u(lx, *i, end, &cp, &used);
		if (rc != TWIN_OK)
			return rc;
	} else if (c > 0x20 && c < 0x7F) {
		return q_lex_fail(lx, *i, "invalid escape '\\%c'", c);
	} else {
		return q_lex_fail(lx, *i, "invalid escape");
	}
	*o += json_put_utf8(out + *o, cp);
	*i += used;
	return TWIN_OK;
}

/* '...' or "...": either quote may be escaped in either kind of string. */
static twin_err lex_string(q_lexer *lx, q_token *t)
{
	unsigned char quote = lx->text[t->at];
	size_t i = t->at + 1, end, o = 0;
	twin_err rc;

	t->type = QT_STRING;
	while (i < lx->len && lx->text[i] != quote)
		i += lx->text[i] == '\\' ? 2 : 1;
	if (i >= lx->len)
		return q_lex_fail(lx, t->at, "unterminated string");
	end = i;
	t->end = end + 1;
	/* Escapes only shrink, so the raw length bounds the decoded one. */
	t->str = cJSON_malloc(end - t->at);
	if (t->str == NULL)
		return q_lex_nomem(lx);
	for (i = t->at + 1; i < end;) {
		if (lx->text[i] == '\\') {
			rc = decode_escape(lx, &i, end, t->str, &o);
			if (rc != TWIN_OK)
				return rc;
		} else {
			t->str[o++] = (char)lx->text[i++];
		}
	}
	t->str[o] = '\0';
	return TWIN_OK;
}

static twin_err lex_bracketed(q_lexer *lx, q_token *t)
{
	size_t i;

	t->type = QT_BRACKETED;
	for (i = t->at + 2; i + 1 < lx->len; i++) {
		if (lx->text[i] == ']' && lx->text[i + 1] == ']')
			break;
	}
	if (i + 1 >= lx->len)
		return q_lex_fail(lx, t->at, "unterminated [[name]]");
	if (i == t->at + 2)
		return q_lex_fail(lx, t->at, "empty [[name]]");
	t->name_at = t->at + 2;
	t->name_len = i - t->name_at;
	t->end = i + 2;
	return TWIN_OK;
}

static twin_err lex_punct(q_lexer *lx, q_token *t)
{
	int c = lx->text[t->at], d = at(lx, t->at + 1);

	t->type = QT_PUNCT;
	t->punct = c;
	t->end = t->at + 1;
	if ((c == '!' && d == '=') || (c == '<' && d == '>'))
		t->punct = QP_NE;
	else if (c == '<' && d == '=')
		t->punct = QP_LE;
	else if (c == '>' && d == '=')
		t->punct = QP_GE;
	if (t->punct != c)
		t->end++;
	else if (strchr("*,.()[]+-/%=<>", c) == NULL)
		goto bad;
	return TWIN_OK;
bad:
	if (c > 0x20 && c < 0x7F)
		return q_lex_fail(lx, t->at, "unexpected character '%c'", c);
	if (c < 0x80)
		return q_lex_fail(lx, t->at, "unexpected character 0x%02X", (unsigned)c);
	return q_lex_fail(lx, t->at, "unexpected character '%.*s'", (int)utf8_lead_len(c),
	                  (const char *)lx->text + t->at);
}

twin_err q_lex_next(q_lexer *lx)
{
	q_token *t = &lx->tok;
	twin_err rc;
	int c;

	q_lex_end(lx);
	memset(t, 0, sizeof(*t));
	while (is_blank(at(lx, lx->pos)))
		lx->pos++;
	t->at = t->end = lx->pos;
	c = at(lx, lx->pos);
	if (c < 0) {
		t->type = QT_END;
		return TWIN_OK;
	}
	if (is_name_start(c)) {
		t->type = QT_NAME;
		for (t->end = t->at + 1; is_name_char(at(lx, t->end));)
			t->end++;
		t->name_at = t->at;
		t->name_len = t->end - t->at;
		rc = TWIN_OK;
	} else if (is_digit(c)) {
		rc = lex_number(lx, t);
	} else if (c == '\'' || c == '"') {
		rc = lex_string(lx, t);
	} else if (c == '[' && at(lx, lx->pos + 1) == '[') {
		rc = lex_bracketed(lx, t);
	} else {
		rc = lex_punct(lx, t);
	}
	lx->pos = t->end;
	return rc;
}
