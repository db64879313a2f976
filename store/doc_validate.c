/*
 * doc_validate.c - what a twin section may contain (PROTOCOL.md §6).
 *
 * Validation runs on the whole input before anything is merged, so a single
 * bad key rejects the whole write (§5.1 atomicity). The size check is the
 * exception: it is defined on the result of the write, so the store runs it
 * on the merged scratch copy (twin_doc_check_size).
 */
#include <stdio.h>
#include <string.h>

#include "twin/doc.h"

/* Dotted path of the node being checked, for error messages only; it is cut
 * short rather than grown when a path is longer than anyone would read. */
typedef struct validate_ctx {
	const twin_limits *l;
	int is_patch;
	twin_error *err;
	char path[256];
} validate_ctx;

static const char *section_labels[] = {
        [TWIN_SECTION_TAGS] = "Tags",
        [TWIN_SECTION_DESIRED] = "Properties.Desired",
        [TWIN_SECTION_REPORTED] = "Properties.Reported",
};

const char *twin_section_label(twin_section s)
{
	return section_labels[s];
}

size_t twin_section_limit(const twin_limits *l, twin_section s)
{
	switch (s) {
	case TWIN_SECTION_TAGS:
		return l->tags_max;
	case TWIN_SECTION_DESIRED:
		return l->desired_max;
	case TWIN_SECTION_REPORTED:
		break;
	}
	return l->reported_max;
}

/* Control characters U+0000–U+001F and U+007F–U+009F; in UTF-8 the C1 range
 * is the two-byte sequences C2 80 … C2 9F. Returns the sequence length when
 * s[i] starts one, else 0. */
static size_t control_char_at(const unsigned char *s, size_t len, size_t i)
{
	if (s[i] < 0x20 || s[i] == 0x7f)
		return 1;
	if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
		return 2;
	return 0;
}

static twin_err key_check(validate_ctx *c, const char *key)
{
	const unsigned char *k = (const unsigned char *)key;
	size_t len = strlen(key);

	if (len == 0)
		return twin_error_set(c->err, TWIN_E_INVALID, "Empty property name under '%s'.",
		                      c->path[0] ? c->path : "(root)");
	if (len > c->l->key_max_bytes)
		return twin_error_set(c->err, TWIN_E_INVALID,
		                      "Property name longer than %zu bytes under '%s'.",
		                      c->l->key_max_bytes, c->path[0] ? c->path : "(root)");
	for (size_t i = 0; i < len; i++) {
		if (control_char_at(k, len, i) || k[i] == '.' || k[i] == '$' || k[i] == ' ')
			return twin_error_set(
			        c->err, TWIN_E_INVALID,
			        "Invalid property name '%.64s': control characters, '.', "
			        "'$' and ' ' are not allowed.",
			        key);
	}
	return TWIN_OK;
}

static twin_err value_check(validate_ctx *c, const cJSON *v, int level, int in_array);

static twin_err children_check(validate_ctx *c, const cJSON *v, int level, int in_array)
{
	size_t plen = strlen(c->path);
	twin_err rc = TWIN_OK;

	for (const cJSON *ch = v->child; ch != NULL && rc == TWIN_OK; ch = ch->next) {
		if (cJSON_IsObject(v)) {
			rc = key_check(c, ch->string);
			if (rc != TWIN_OK)
				break;
			snprintf(c->path + plen, sizeof(c->path) - plen, "%s%s", plen ? "." : "",
			         ch->string);
		}
		rc = value_check(c, ch, level + 1, in_array || cJSON_IsArray(v));
		c->path[plen] = '\0';
	}
	return rc;
}

/* level: 1 for members of the section root; array elements are one level
 * below their array (project decision). Only containers are checked: a
 * primitive is at most one level below a container, so "objects and arrays
 * at level <= max_depth" already means "primitives at <= max_depth + 1". */
static twin_err value_check(validate_ctx *c, const cJSON *v, int level, int in_array)
{
	const char *where = c->path[0] ? c->path : "(root)";

	if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
		if (level > c->l->max_depth)
			return twin_error_set(c->err, TWIN_E_INVALID,
			                      "'%s' is nested deeper than %d levels.", where,
			                      c->l->max_depth);
		return children_check(c, v, level, in_array);
	}
	if (cJSON_IsNull(v)) {
		if (in_array)
			return twin_error_set(c->err, TWIN_E_INVALID,
			                      "null is not allowed inside an array ('%s').", where);
		if (!c->is_patch)
			return twin_error_set(c->err, TWIN_E_INVALID,
			                      "null is only allowed in patches ('%s').", where);
		return TWIN_OK;
	}
	if (cJSON_IsString(v) && strlen(v->valuestring) > c->l->string_max_bytes)
		return twin_error_set(c->err, TWIN_E_INVALID,
		                      "Value of '%s' is longer than %zu bytes.", where,
		                      c->l->string_max_bytes);
	if (cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v))
		return TWIN_OK;
	return twin_error_set(c->err, TWIN_E_INVALID, "Unsupported value type at '%s'.", where);
}

twin_err twin_doc_validate(const cJSON *doc, int is_patch, const twin_limits *l, twin_error *err)
{
	validate_ctx c = {.l = l, .is_patch = is_patch, .err = err};

	if (!cJSON_IsObject(doc))
		return twin_error_set(err, TWIN_E_INVALID, "The body must be a JSON object.");
	return children_check(&c, doc, 0, 0);
}

static size_t string_size(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), n = 0;

	for (size_t i = 0; i < len;) {
		size_t ctl = control_char_at(u, len, i);

		n += ctl ? 0 : 1;
		i += ctl ? ctl : 1;
	}
	return n;
}

size_t twin_doc_size(const cJSON *v)
{
	size_t n = 0;

	if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
		for (const cJSON *ch = v->child; ch != NULL; ch = ch->next)
			n += (cJSON_IsObject(v) ? strlen(ch->string) : 0) + twin_doc_size(ch);
		return n;
	}
	if (cJSON_IsString(v))
		return string_size(v->valuestring);
	if (cJSON_IsNumber(v))
		return 8;
	if (cJSON_IsBool(v))
		return 4;
	return 0;
}

twin_err twin_doc_check_size(const cJSON *data, twin_section s, const twin_limits *l,
                             twin_error *err)
{
	size_t limit = twin_section_limit(l, s);

	if (twin_doc_size(data) > limit)
		return twin_error_set(err, TWIN_E_SECTION_SIZE,
		                      "'%s' size should be less than %zu bytes.",
		                      twin_section_label(s), limit);
	return TWIN_OK;
}
