/*
 * json_string.c - JSON strings for the strict parser: UTF-8 validation and
 * escape decoding (RFC 8259 §7, §8).
 *
 * Split from json.c because it is the one part with its own rules (Unicode
 * Table 3-7, surrogate pairs, the NUL ban) and its own tests' worth of edge
 * cases; json.c keeps the grammar of values.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json_parser.h"
#include "json_scan.h"

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

/* Decode the \uXXXX escape at text[at] (a surrogate pair takes two escapes)
 * into *cp, setting *used to the bytes consumed. end is the closing quote. */
static twin_err decode_u_escape(struct parser *ps, size_t at, size_t end, unsigned *cp,
                                size_t *used)
{
	const unsigned char *s = ps->text;
	long v, lo;

	if (end - at < 6 || (v = json_hex4((const char *)s + at + 2)) < 0)
		return json_fail(ps, at, "invalid \\u escape");
	*cp = (unsigned)v;
	/* cJSON strings are NUL-terminated, so a NUL would silently cut the
	 * string (or key) short; it is rejected rather than stored wrongly. */
	if (*cp == 0)
		return json_fail(ps, at, "\\u0000 is not allowed");
	if (*cp >= 0xDC00 && *cp <= 0xDFFF)
		return json_fail(ps, at, "lone low surrogate");
	*used = 6;
	if (*cp < 0xD800 || *cp > 0xDBFF)
		return TWIN_OK;
	if (end - at < 12 || s[at + 6] != '\\' || s[at + 7] != 'u' ||
	    (lo = json_hex4((const char *)s + at + 8)) < 0xDC00 || lo > 0xDFFF)
		return json_fail(ps, at, "lone high surrogate");
	*cp = 0x10000 + ((*cp - 0xD800) << 10) + (unsigned)(lo - 0xDC00);
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
		return json_fail(ps, *i, "invalid escape");
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
		return json_fail(ps, *i, "invalid escape");
	}
	*o += json_put_utf8(out + *o, cp);
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
twin_err json_parse_string(struct parser *ps, char **out)
{
	const unsigned char *s = ps->text;
	size_t open = ps->pos, end, i, o = 0, n;
	char *buf;
	twin_err rc;

	*out = NULL;
	end = closing_quote(ps, open + 1);
	if (end == ps->len)
		return json_fail(ps, open, "unterminated string");
	buf = cJSON_malloc(end - open);
	if (buf == NULL)
		return json_fail_nomem(ps);
	for (i = open + 1; i < end;) {
		if (s[i] == '\\') {
			rc = decode_escape(ps, &i, end, buf, &o);
			if (rc != TWIN_OK)
				goto err;
		} else if (s[i] < 0x20) {
			rc = json_fail(ps, i, "control character in string");
			goto err;
		} else {
			n = utf8_seq_len(s + i, end - i);
			if (n == 0) {
				rc = json_fail(ps, i, "invalid UTF-8");
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
