/*
 * store/json_print.c - compact JSON printing for the hot paths.
 *
 * Every reported PATCH prints its section and the section's $metadata back
 * to text. cJSON_PrintUnformatted spends most of that time on numbers (an
 * sprintf of "%1.15g", an sscanf to check the round trip, sometimes a
 * second sprintf) and on a strlen after every token; in the patch profile
 * those were a third of the broker's CPU. Versions and most values are
 * integers, which this printer writes with a few divisions, and it appends
 * to a caller-owned buffer, so a whole record is built in one reused
 * allocation.
 *
 * The text is byte for byte what cJSON_PrintUnformatted gives for the same
 * tree (tests/unit/test_json_print.c compares them), so switching printers
 * changes nothing on the wire or on disk.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin/json.h"

/* cJSON prints integral doubles below this magnitude with "%1.15g", which
 * writes every digit; at 1e15 and above it switches to an exponent. */
#define PRINT_INT_LIMIT 1e15

static int reserve(twin_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1, cap;
	char *p;

	if (need <= b->cap)
		return 1;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	/* Through cJSON's hooks, so tests can fail it like every other
	 * allocation of a write. */
	p = cJSON_malloc(cap);
	if (p == NULL)
		return 0;
	if (b->len)
		memcpy(p, b->data, b->len + 1);
	cJSON_free(b->data);
	b->data = p;
	b->cap = cap;
	return 1;
}

int twin_buf_put(twin_buf *b, const void *s, size_t n)
{
	if (!reserve(b, n))
		return 0;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 1;
}

/* The decimal digits of u, right-aligned at end; returns where they start. */
static char *digits_of(unsigned long long u, char *end)
{
	do
		*--end = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	return end;
}

static int print_int(twin_buf *b, long long v)
{
	char tmp[24], *end = tmp + sizeof(tmp);
	char *p = digits_of(v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, end);

	if (v < 0)
		*--p = '-';
	return twin_buf_put(b, p, (size_t)(end - p));
}

/* A decimal with at most 15 significant digits that reads back as d,
 * written as "%1.15g" writes it: when m / 10^k == d exactly for an integer
 * |m| < 10^15, d is the double nearest to m * 10^-k, so rounding d to 15
 * digits gives m * 10^-k, and with 1e-4 <= |d| "%g" uses fixed notation and
 * strips the trailing zeros the smallest such k never has. Sensor readings
 * like 20.37 take this path; anything else returns 0 for printf. */
static int print_short_decimal(twin_buf *b, double d)
{
	static const double p10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
	                             1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
	char tmp[24], out[40], *digits, *o = out;
	double a = fabs(d);
	int k, n;

	if (a < 1e-4)
		return 0;
	for (k = 1; k < 16 && a * p10[k] < PRINT_INT_LIMIT; k++) {
		double m = nearbyint(a * p10[k]);

		if (m / p10[k] != a)
			continue;
		digits = digits_of((unsigned long long)m, tmp + sizeof(tmp));
		n = (int)(tmp + sizeof(tmp) - digits);
		if (d < 0)
			*o++ = '-';
		if (n <= k) { /* 0.0…digits */
			*o++ = '0';
			*o++ = '.';
			memset(o, '0', (size_t)(k - n));
			o += k - n;
			memcpy(o, digits, (size_t)n);
			o += n;
		} else {
			memcpy(o, digits, (size_t)(n - k));
			o += n - k;
			*o++ = '.';
			memcpy(o, digits + n - k, (size_t)k);
			o += k;
		}
		return twin_buf_put(b, out, (size_t)(o - out)) ? 1 : -1;
	}
	return 0;
}

/* What cJSON's print_number does, with integers and short decimals taken on
 * a fast path. */
static int print_number(twin_buf *b, double d)
{
	char tmp[32];
	double back;
	int n;

	if (isnan(d) || isinf(d))
		return twin_buf_put(b, "null", 4);
	if (d == 0 && signbit(d))
		return twin_buf_put(b, "-0", 2); /* as "%1.15g" prints it */
	if (fabs(d) < PRINT_INT_LIMIT && d == (double)(long long)d)
		return print_int(b, (long long)d);
	n = print_short_decimal(b, d);
	if (n != 0)
		return n > 0;
	/* cJSON keeps 15 digits when they read back within one DBL_EPSILON. */
	n = snprintf(tmp, sizeof(tmp), "%1.15g", d);
	if (sscanf(tmp, "%lg", &back) != 1 ||
	    fabs(back - d) > fmax(fabs(back), fabs(d)) * DBL_EPSILON)
		n = snprintf(tmp, sizeof(tmp), "%1.17g", d);
	return n > 0 && (size_t)n < sizeof(tmp) && twin_buf_put(b, tmp, (size_t)n);
}

/* cJSON's escaping: the quote, the backslash and control characters; all
 * other bytes (UTF-8 included) go out as they are. Room for the worst case
 * is reserved once, so the loop only copies. */
static int print_string(twin_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p);
	char *o;

	if (!reserve(b, 6 * n + 2))
		return 0;
	o = b->data + b->len;
	*o++ = '"';
	for (const unsigned char *end = p + n; p < end; p++) {
		if (*p >= 32 && *p != '"' && *p != '\\') {
			*o++ = (char)*p;
			continue;
		}
		*o++ = '\\';
		switch (*p) {
		case '"':
			*o++ = '"';
			break;
		case '\\':
			*o++ = '\\';
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->data);
	return 1;
}

/* One structural character; the buffer always has room for its NUL. */
static int put_char(twin_buf *b, char c)
{
	if (b->len + 2 > b->cap && !reserve(b, 1))
		return 0;
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
	return 1;
}

static int print_value(twin_buf *b, const cJSON *item);

static int print_children(twin_buf *b, const cJSON *item, int object)
{
	if (!put_char(b, object ? '{' : '['))
		return 0;
	for (const cJSON *c = item->child; c; c = c->next) {
		if (c != item->child && !put_char(b, ','))
			return 0;
		if (object && (!print_string(b, c->string) || !put_char(b, ':')))
			return 0;
		if (!print_value(b, c))
			return 0;
	}
	return put_char(b, object ? '}' : ']');
}

static int print_value(twin_buf *b, const cJSON *item)
{
	switch (item->type & 0xFF) {
	case cJSON_NULL:
		return twin_buf_put(b, "null", 4);
	case cJSON_False:
		return twin_buf_put(b, "false", 5);
	case cJSON_True:
		return twin_buf_put(b, "true", 4);
	case cJSON_Number:
		return print_number(b, item->valuedouble);
	case cJSON_String:
		return print_string(b, item->valuestring);
	case cJSON_Raw:
		return item->valuestring != NULL &&
		       twin_buf_put(b, item->valuestring, strlen(item->valuestring));
	case cJSON_Array:
		return print_children(b, item, 0);
	case cJSON_Object:
		return print_children(b, item, 1);
	default:
		return 0; /* cJSON_Invalid: cJSON refuses to print it too */
	}
}

int twin_json_print_string_append(twin_buf *b, const char *s)
{
	return print_string(b, s);
}

int twin_json_print_append(twin_buf *b, const cJSON *item)
{
	size_t mark = b->len;

	if (item != NULL && print_value(b, item))
		return 1;
	b->len = mark;
	if (b->data != NULL)
		b->data[mark] = '\0';
	return 0;
}

char *twin_json_print(const cJSON *item)
{
	twin_buf b = {0};

	if (twin_json_print_append(&b, item))
		return b.data;
	cJSON_free(b.data);
	return NULL;
}
