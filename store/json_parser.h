/*
 * json_parser.h - private to store/: the strict JSON parser's state, shared
 * by json.c (values) and json_string.c (strings, UTF-8).
 */
#ifndef TWIN_STORE_JSON_PARSER_H
#define TWIN_STORE_JSON_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/error.h"
#include "twin/json.h"

struct parser {
	const unsigned char *text;
	size_t len;
	size_t pos;
	int64_t int_min;
	int64_t int_max;
	int depth;
	twin_error *err;
};

/* Record "Invalid JSON at byte <at>: <what>." and return TWIN_E_INVALID. */
twin_err json_fail(struct parser *ps, size_t at, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Record running out of memory and return TWIN_E_NOMEM. */
twin_err json_fail_nomem(struct parser *ps);

/* Parse the string starting at ps->pos (which is on its opening quote) into
 * *out, a NUL-terminated copy from cJSON's allocator that the caller owns.
 * Leaves ps->pos after the closing quote. */
twin_err json_parse_string(struct parser *ps, char **out);

#endif
