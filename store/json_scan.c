/*
 * json_scan.c - find a path in stored JSON text by skipping, not parsing
 * (see json_scan.h for why).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at an opening quote: the position after the closing one, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* p at the start of a value: the position after it, or NULL. Containers
 * are skipped by counting brackets outside strings. */
static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[') {
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
		       *p != '\t' && *p != '\r')
			p++;
		return p;
	}
	for (; p < end; p++) {
		if (*p == '"') {
			p = skip_string(p, end);
			if (p == NULL)
				return NULL;
			p--;
		} else if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
	}
	return NULL;
}

long json_hex4(const char *p)
{
	long v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

size_t json_put_utf8(char *out, unsigned cp)
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

/* One escape at p (after the backslash), end the token's closing quote. */
static const char *unescape(const char *p, const char *end, char **o)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *hit = memchr(from, *p, sizeof(from) - 1);
	long cp, lo;

	if (hit != NULL) {
		*(*o)++ = to[hit - from];
		return p + 1;
	}
	if (*p != 'u' || end - p < 5 || (cp = json_hex4(p + 1)) < 0)
		return NULL;
	p += 5;
	if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
	    (lo = json_hex4(p + 2)) >= 0xDC00 && lo < 0xE000) {
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		p += 6;
	}
	*o += json_put_utf8(*o, (unsigned)cp);
	return p;
}

char *json_scan_string(const char *s, size_t len, size_t *out_len)
{
	const char *p = s + 1, *end = s + len - 1;
	char *out, *o;

	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return NULL;
	out = malloc(len); /* unescaping never grows a string */
	if (out == NULL)
		return NULL;
	for (o = out; p < end;) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		p = unescape(p + 1, end, &o);
		if (p == NULL) {
			free(out);
			return NULL;
		}
	}
	*o = '\0';
	*out_len = (size_t)(o - out);
	return out;
}

/* Does the key token k[0..klen) (with quotes) name seg? */
static int key_is(const char *k, size_t klen, const char *seg)
{
	size_t n = strlen(seg), dlen;
	char *decoded;
	int same;

	if (memchr(k, '\\', klen) == NULL)
		return klen == n + 2 && memcmp(k + 1, seg, n) == 0;
	decoded = json_scan_string(k, klen, &dlen);
	same = decoded != NULL && dlen == n && memcmp(decoded, seg, n) == 0;
	free(decoded);
	return same;
}

/* In the object at p, the value of member seg: its start, or NULL. */
static const char *member(const char *p, const char *end, const char *seg)
{
	p = skip_ws(p + 1, end);
	while (p < end && *p == '"') {
		const char *k = p, *kend = skip_string(p, end);

		if (kend == NULL)
			return NULL;
		p = skip_ws(kend, end);
		if (p >= end || *p != ':')
			return NULL;
		p = skip_ws(p + 1, end);
		if (key_is(k, (size_t)(kend - k), seg))
			return p;
		p = skip_value(p, end);
		if (p == NULL)
			return NULL;
		p = skip_ws(p, end);
		if (p < end && *p == ',')
			p = skip_ws(p + 1, end);
	}
	return NULL;
}

int json_scan_path(const char *text, size_t len, char *const *seg, size_t n, const char **v,
                   size_t *vlen)
{
	const char *end = text + len, *p = skip_ws(text, end), *after;

	for (size_t i = 0; i < n; i++) {
		if (p >= end || *p != '{')
			return 0;
		p = member(p, end, seg[i]);
		if (p == NULL)
			return 0;
	}
	after = skip_value(p, end);
	if (after == NULL || after == p)
		return 0;
	*v = p;
	*vlen = (size_t)(after - p);
	return 1;
}
