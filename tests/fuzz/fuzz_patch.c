/*
 * fuzz_patch.c - libFuzzer target for twin patches (PROTOCOL.md §5.1, §6):
 * the strict JSON parser, validation and merge, and the reported PATCH of a
 * real store (§2.3).
 *
 * A reported PATCH body comes from any connected device, so every byte of it
 * is hostile. The input is such a body, and it goes through the code twice:
 *
 *  - pure: twin_json_parse with the default limits, twin_doc_validate and,
 *    when valid, twin_doc_merge into a fixed section with its metadata. The
 *    verdict of validation is compared with a reference written here from
 *    the §6 table, the merged data with a reference merge written from the
 *    §5.1 table, and the result is checked for what §4.1 and §6 say always
 *    holds: no null left in the data, metadata mirroring the data with the
 *    write's stamp on every node the patch set, the §6 size, the same data
 *    when the patch is merged twice, a result that passes validation,
 *    text that prints as cJSON prints it and reads back the same, and
 *    metadata that survives the compact form it is stored in.
 *
 *  - store: twin_patch_reported on one twin of a store opened once, in /dev/shm
 *    when there is one, with one or two patches per batch and commits and
 *    aborts in turn. A model of the twin's reported section is kept here with
 *    the reference merge; the device GET body must always be valid JSON of
 *    the §2.3 shape equal to the model, so a refused or aborted write must
 *    look as if it never happened, and the service view's $metadata must
 *    mirror the data.
 *
 * A broken rule aborts, so libFuzzer keeps the input. The store half carries
 * state from one input to the next (that is the point: the section cache and
 * the batch must agree over many writes), so an input that fails there may
 * need the inputs before it; the pure half never does. Build and run with
 * tools/run-fuzz.
 */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "twin/changes.h"
#include "twin/doc.h"
#include "twin/json.h"
#include "twin/limits.h"
#include "twin/registry.h"
#include "twin/store.h"
#include "twin/twin.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* Validation messages quote keys and paths cut at a byte count, which could
 * split a UTF-8 sequence, and the message goes into a JSON error body
 * (§2.4). Found by this target (tests/fuzz/regressions/fuzz_patch/); fixed
 * in twin_error_set, which now drops split characters. */
#define CHECK_VALIDATE_MESSAGE_UTF8 1

#define DEVICE_ID "fuzz-device"

/* The store half keeps the reported section below this size (§6 bytes) by
 * deleting every key once it grows past it, so patches keep being accepted
 * and the 32 KB limit stays reachable from one input. */
#define RESET_SIZE 8192

/* The section the pure half merges into: every value type, nesting, and an
 * object inside an array. */
static const char base_section[] =
        "{\"fw\":\"1.2\",\"temp\":21.5,\"on\":true,\"off\":false,\"n\":42,"
        "\"list\":[1,\"x\",{\"k\":2},[true]],\"obj\":{\"a\":1,\"b\":{\"c\":\"d\"},\"e\":{}},"
        "\"s\":\"\\u00e9t\\u00e9\\u0085\"}";

static const twin_stamp stamp_base = {"2024-01-01T00:00:00.0000000Z", 3};
static const twin_stamp stamp_once = {"2024-01-02T00:00:00.0000000Z", 4};
static const twin_stamp stamp_twice = {"2024-01-03T00:00:00.0000000Z", 5};

/* ---- Helpers ------------------------------------------------------------- */

static cJSON *json_dup(const cJSON *item)
{
	cJSON *d = cJSON_Duplicate(item, 1);

	CHECK(d != NULL);
	return d;
}

static const cJSON *get(const cJSON *obj, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* Member key of obj, trying hint first. Trees that went through the same
 * merges keep their members in the same order, so walking two of them side
 * by side stays linear in wide objects instead of quadratic. */
static const cJSON *member(const cJSON *obj, const char *key, const cJSON *hint)
{
	if (hint != NULL && hint->string != NULL && strcmp(hint->string, key) == 0)
		return hint;
	return get(obj, key);
}

static int num_equal(double a, double b)
{
	/* The store prints 15 digits when they read back within DBL_EPSILON. */
	return a == b || fabs(a - b) <= fmax(fabs(a), fabs(b)) * DBL_EPSILON;
}

/* The same JSON value, member order aside (no rule in PROTOCOL.md fixes it).
 * Keys are unique (the parser refuses duplicates), so equal counts and every
 * member of a found in b mean the same members. */
static int json_equal(const cJSON *a, const cJSON *b)
{
	const cJSON *x, *y, *m;
	size_t na = 0, nb = 0;

	if ((a->type & 0xff) != (b->type & 0xff))
		return 0;
	switch (a->type & 0xff) {
	case cJSON_Number:
		return num_equal(a->valuedouble, b->valuedouble);
	case cJSON_String:
		return strcmp(a->valuestring, b->valuestring) == 0;
	case cJSON_Array:
		for (x = a->child, y = b->child; x != NULL && y != NULL; x = x->next, y = y->next)
			if (!json_equal(x, y))
				return 0;
		return x == NULL && y == NULL;
	case cJSON_Object:
		for (y = b->child; y != NULL; y = y->next)
			nb++;
		for (x = a->child, y = b->child; x != NULL; x = x->next, na++) {
			m = member(b, x->string, y);
			if (m == NULL || !json_equal(x, m))
				return 0;
			y = m->next;
		}
		return na == nb;
	default:
		return 1; /* true, false, null: the type says it all */
	}
}

/* A twin_error after a failure: set, with a message. utf8: the message must
 * also be well-formed UTF-8, because it goes into a JSON error body. */
static void check_failure(twin_err rc, const twin_error *err, int utf8)
{
	CHECK(err->err == rc && err->message[0] != '\0');
	CHECK(!utf8 || twin_utf8_valid(err->message, strlen(err->message)));
}

/* ---- What the parser promises (twin/json.h) ------------------------------ */

static int key_order(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void check_parsed(const cJSON *v, int depth)
{
	size_t n = 0, i = 0;
	const char **keys;

	CHECK(depth <= TWIN_JSON_MAX_NESTING);
	if (cJSON_IsNumber(v))
		CHECK(isfinite(v->valuedouble));
	if (cJSON_IsString(v))
		CHECK(twin_utf8_valid(v->valuestring, strlen(v->valuestring)));
	if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) {
		CHECK(v->child == NULL);
		return;
	}
	for (const cJSON *ch = v->child; ch != NULL; ch = ch->next, n++)
		check_parsed(ch, depth + 1);
	if (!cJSON_IsObject(v) || n < 2)
		return;
	keys = malloc(n * sizeof(*keys));
	CHECK(keys != NULL);
	for (const cJSON *ch = v->child; ch != NULL; ch = ch->next) {
		CHECK(ch->string != NULL && twin_utf8_valid(ch->string, strlen(ch->string)));
		keys[i++] = ch->string;
	}
	qsort(keys, n, sizeof(*keys), key_order);
	for (i = 1; i < n; i++)
		CHECK(strcmp(keys[i - 1], keys[i]) != 0);
	free(keys);
}

/* ---- References written from PROTOCOL.md --------------------------------- */

/* §6 key characters: control characters (U+0000–U+001F, U+007F–U+009F), '.',
 * '$' and space are forbidden. s is valid UTF-8. Returns the code point at
 * *s and advances *s past it. */
static uint32_t next_code_point(const unsigned char **s)
{
	const unsigned char *u = *s;
	uint32_t cp;
	size_t len;

	if (u[0] < 0x80) {
		cp = u[0];
		len = 1;
	} else if (u[0] < 0xe0) {
		cp = (uint32_t)(u[0] & 0x1f) << 6 | (u[1] & 0x3f);
		len = 2;
	} else if (u[0] < 0xf0) {
		cp = (uint32_t)(u[0] & 0x0f) << 12 | (uint32_t)(u[1] & 0x3f) << 6 | (u[2] & 0x3f);
		len = 3;
	} else {
		cp = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3f) << 12 |
		     (uint32_t)(u[2] & 0x3f) << 6 | (u[3] & 0x3f);
		len = 4;
	}
	*s = u + len;
	return cp;
}

static int is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

static int ref_key_valid(const char *key, const twin_limits *l)
{
	const unsigned char *u = (const unsigned char *)key;
	size_t len = strlen(key);

	if (len == 0 || len > l->key_max_bytes)
		return 0;
	while (*u != '\0') {
		uint32_t cp = next_code_point(&u);

		if (is_control(cp) || cp == '.' || cp == '$' || cp == ' ')
			return 0;
	}
	return 1;
}

/* §6 and §5.1: v is at level (members of the root are at 1); containers at
 * level <= max_depth; strings within string_max_bytes; null only as an
 * object member of a patch, never inside an array (objects in arrays too). */
static int ref_value_valid(const cJSON *v, int level, int in_array, int is_patch,
                           const twin_limits *l)
{
	if (cJSON_IsNull(v))
		return is_patch && !in_array;
	if (cJSON_IsString(v))
		return strlen(v->valuestring) <= l->string_max_bytes;
	if (cJSON_IsNumber(v) || cJSON_IsBool(v))
		return 1;
	if (level > l->max_depth)
		return 0;
	for (const cJSON *ch = v->child; ch != NULL; ch = ch->next) {
		if (cJSON_IsObject(v) && !ref_key_valid(ch->string, l))
			return 0;
		if (!ref_value_valid(ch, level + 1, in_array || cJSON_IsArray(v), is_patch, l))
			return 0;
	}
	return 1;
}

static int ref_valid(const cJSON *doc, int is_patch, const twin_limits *l)
{
	for (const cJSON *ch = cJSON_IsObject(doc) ? doc->child : NULL; ch != NULL; ch = ch->next)
		if (!ref_key_valid(ch->string, l) || !ref_value_valid(ch, 1, 0, is_patch, l))
			return 0;
	return cJSON_IsObject(doc);
}

/* §6 size: keys and strings count their UTF-8 bytes except control
 * characters, numbers 8, booleans 4. */
static size_t ref_size(const cJSON *v)
{
	size_t n = 0;

	if (cJSON_IsString(v)) {
		const unsigned char *u = (const unsigned char *)v->valuestring, *at;

		while (*u != '\0') {
			at = u;
			if (!is_control(next_code_point(&u)))
				n += (size_t)(u - at);
		}
		return n;
	}
	if (cJSON_IsNumber(v))
		return 8;
	if (cJSON_IsBool(v))
		return 4;
	for (const cJSON *ch = v->child; ch != NULL; ch = ch->next)
		n += (cJSON_IsObject(v) ? strlen(ch->string) : 0) + ref_size(ch);
	return n;
}

/* obj[key] = item, in place or appended, as §5.1 sets a member. */
static void ref_set(cJSON *obj, const char *key, cJSON *item)
{
	CHECK(item != NULL);
	if (get(obj, key) != NULL)
		CHECK(cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item));
	else
		CHECK(cJSON_AddItemToObject(obj, key, item));
}

/* The §5.1 table, plainly: null deletes (a missing key stays missing), an
 * object merges into an object and replaces anything else, every other value
 * is set whole. patch is left intact. */
static void ref_merge(cJSON *target, const cJSON *patch)
{
	for (const cJSON *p = patch->child; p != NULL; p = p->next) {
		cJSON *cur = cJSON_GetObjectItemCaseSensitive(target, p->string);

		if (cJSON_IsNull(p)) {
			cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
		} else if (cJSON_IsObject(p)) {
			if (!cJSON_IsObject(cur)) {
				cur = cJSON_CreateObject();
				ref_set(target, p->string, cur);
			}
			ref_merge(cur, p);
		} else {
			ref_set(target, p->string, json_dup(p));
		}
	}
}

/* ---- What a merged section must look like -------------------------------- */

static void check_no_nulls(const cJSON *v)
{
	for (const cJSON *ch = v->child; ch != NULL; ch = ch->next) {
		CHECK(!cJSON_IsNull(ch));
		check_no_nulls(ch);
	}
}

/* §4.1: every node of data has a metadata object with a "$lastUpdated"
 * timestamp, and "$lastUpdatedVersion" exactly when versioned (desired);
 * an object's metadata has one member per data member and no other that is
 * not a "$" stamp. Data members starting with '$' are the service view's
 * own ("$version", "$metadata"; user keys cannot hold '$') and skipped. */
static void check_meta(const cJSON *data, const cJSON *meta, int versioned)
{
	const cJSON *when, *ver, *hint, *m;

	CHECK(cJSON_IsObject(meta));
	when = get(meta, "$lastUpdated");
	ver = get(meta, "$lastUpdatedVersion");
	CHECK(cJSON_IsString(when) && strlen(when->valuestring) >= 20);
	CHECK(versioned ? cJSON_IsNumber(ver) && ver->valuedouble >= 1 : ver == NULL);
	hint = cJSON_IsObject(data) ? data->child : NULL;
	for (m = meta->child; m != NULL; m = m->next) {
		const cJSON *d;

		if (m->string[0] == '$')
			continue;
		d = cJSON_IsObject(data) ? member(data, m->string, hint) : NULL;
		CHECK(d != NULL);
		hint = d->next;
	}
	if (!cJSON_IsObject(data))
		return;
	hint = meta->child;
	for (const cJSON *d = data->child; d != NULL; d = d->next) {
		if (d->string[0] == '$')
			continue;
		m = member(meta, d->string, hint);
		CHECK(m != NULL);
		check_meta(d, m, versioned);
		hint = m->next;
	}
}

/* §4.1: a write stamps every node it sets, and the root; a deleted key has no
 * metadata left. meta is after the write, patch the write's intact patch. */
static void check_stamped(const cJSON *meta, const cJSON *patch, const char *when, int64_t version)
{
	const cJSON *w = get(meta, "$lastUpdated"), *v = get(meta, "$lastUpdatedVersion");

	CHECK(cJSON_IsString(w) && strcmp(w->valuestring, when) == 0);
	CHECK(version > 0 ? cJSON_IsNumber(v) && v->valuedouble == (double)version : v == NULL);
	if (!cJSON_IsObject(patch))
		return;
	for (const cJSON *p = patch->child; p != NULL; p = p->next) {
		const cJSON *m = get(meta, p->string);

		if (cJSON_IsNull(p)) {
			CHECK(m == NULL);
			continue;
		}
		CHECK(m != NULL);
		check_stamped(m, p, when, version);
	}
}

/* twin_meta_touched: the root's stamps, and for each member of the patch still
 * in meta its metadata, descending into the patch's objects only. */
static void check_touched(const cJSON *touched, const cJSON *meta, const cJSON *patch)
{
	size_t n = 0, want = 0;

	CHECK(cJSON_IsObject(touched));
	for (const cJSON *m = meta->child; m != NULL; m = m->next)
		want += m->string[0] == '$';
	for (const cJSON *p = patch->child; p != NULL; p = p->next)
		want += get(meta, p->string) != NULL;
	for (const cJSON *t = touched->child; t != NULL; t = t->next, n++) {
		const cJSON *m = get(meta, t->string), *p = get(patch, t->string);

		CHECK(m != NULL);
		if (t->string[0] == '$')
			CHECK(json_equal(t, m));
		else if (cJSON_IsObject(p))
			check_touched(t, m, p);
		else
			CHECK(p != NULL && !cJSON_IsNull(p) && json_equal(t, m));
	}
	CHECK(n == want);
}

/* The store prints with twin_json_print, promised byte for byte what
 * cJSON_PrintUnformatted prints; the text must read back as the same value
 * under the strict parser (wide integer range: it prints doubles, not
 * literals). */
static void check_print(const cJSON *v)
{
	char *mine = twin_json_print(v), *theirs = cJSON_PrintUnformatted(v);
	cJSON *back = NULL;

	CHECK(mine != NULL && theirs != NULL && strcmp(mine, theirs) == 0);
	CHECK(twin_json_parse(mine, strlen(mine), INT64_MIN, INT64_MAX, &back, NULL) == TWIN_OK);
	CHECK(json_equal(v, back));
	cJSON_Delete(back);
	cJSON_free(mine);
	cJSON_free(theirs);
}

/* Metadata as stored (store/doc_meta.c): printed without inherited
 * stamps, read back against the data, it is byte for byte the tree again. */
static void check_compact(const cJSON *data, const cJSON *meta)
{
	twin_buf b = {0};
	char *want = twin_json_print(meta), *got;
	cJSON *back = NULL;

	CHECK(want != NULL && twin_meta_print_compact(&b, meta));
	CHECK(b.len <= strlen(want));
	CHECK(twin_json_parse(b.data, b.len, INT64_MIN, INT64_MAX, &back, NULL) == TWIN_OK);
	CHECK(twin_meta_expand(back, data) == TWIN_OK);
	got = twin_json_print(back);
	CHECK(got != NULL && strcmp(got, want) == 0);
	cJSON_Delete(back);
	cJSON_free(b.data);
	cJSON_free(want);
	cJSON_free(got);
}

static cJSON *parse_trusted(const char *text)
{
	cJSON *v = NULL;

	CHECK(twin_json_parse(text, strlen(text), INT64_MIN, INT64_MAX, &v, NULL) == TWIN_OK);
	return v;
}

/* ---- Pure half ----------------------------------------------------------- */

/* Merge the valid patch into the base section, then again. */
static void check_merge(const cJSON *patch, const twin_limits *lim)
{
	cJSON *base = parse_trusted(base_section), *data = cJSON_CreateObject();
	cJSON *meta = twin_meta_new_section(), *p, *want, *once, *out;

	CHECK(data != NULL && meta != NULL);
	p = json_dup(base);
	CHECK(twin_doc_merge(data, meta, p, &stamp_base) == TWIN_OK);
	cJSON_Delete(p);
	check_meta(data, meta, 1);

	want = json_dup(data);
	ref_merge(want, patch);
	p = json_dup(patch);
	CHECK(twin_doc_merge(data, meta, p, &stamp_once) == TWIN_OK);
	cJSON_Delete(p);
	CHECK(json_equal(data, want));
	check_no_nulls(data);
	check_meta(data, meta, 1);
	check_stamped(meta, patch, stamp_once.when, stamp_once.version);
	CHECK(twin_doc_size(data) == ref_size(data));
	CHECK((twin_doc_check_size(data, TWIN_SECTION_TAGS, lim, NULL) == TWIN_OK) ==
	      (ref_size(data) <= lim->tags_max));
	CHECK(twin_doc_validate(data, 0, lim, NULL) == TWIN_OK);
	check_print(data);
	check_print(meta);

	/* A merge patch is idempotent: only the stamps move. */
	once = json_dup(data);
	p = json_dup(patch);
	CHECK(twin_doc_merge(data, meta, p, &stamp_twice) == TWIN_OK);
	cJSON_Delete(p);
	CHECK(json_equal(data, once));
	check_meta(data, meta, 1);
	check_stamped(meta, patch, stamp_twice.when, stamp_twice.version);
	check_compact(data, meta);

	out = twin_meta_touched(meta, patch);
	CHECK(out != NULL);
	check_touched(out, meta, patch);
	cJSON_Delete(out);

	/* A replace of base by data: data plus null for what went; dropping the
	 * nulls gives data back. */
	out = twin_doc_with_removals(base, data);
	CHECK(out != NULL);
	for (const cJSON *b = base->child; b != NULL; b = b->next)
		CHECK(get(data, b->string) != NULL || cJSON_IsNull(get(out, b->string)));
	twin_doc_drop_nulls(out);
	CHECK(json_equal(out, data));
	cJSON_Delete(out);

	out = twin_meta_stamp_all(data, &stamp_twice);
	CHECK(out != NULL);
	check_meta(data, out, 1);
	cJSON_Delete(out);

	cJSON_Delete(once);
	cJSON_Delete(want);
	cJSON_Delete(meta);
	cJSON_Delete(data);
	cJSON_Delete(base);
}

/* Parse and validate as the store does; returns the patch when valid (the
 * caller deletes it), else NULL. */
static cJSON *pure_half(const uint8_t *data, size_t size)
{
	twin_limits lim;
	twin_error err;
	cJSON *patch = (cJSON *)&patch; /* must be overwritten either way */
	twin_err rc;
	int valid;

	twin_limits_default(&lim);
	memset(&err, 0, sizeof(err));
	rc = twin_json_parse((const char *)data, size, lim.int_min, lim.int_max, &patch, &err);
	if (rc != TWIN_OK) {
		CHECK(rc == TWIN_E_INVALID || rc == TWIN_E_NOMEM);
		CHECK(patch == NULL);
		check_failure(rc, &err, 1);
		return NULL;
	}
	CHECK(patch != NULL);
	check_parsed(patch, 0);

	memset(&err, 0, sizeof(err));
	rc = twin_doc_validate(patch, 1, &lim, &err);
	valid = ref_valid(patch, 1, &lim);
	CHECK((rc == TWIN_OK) == valid);
	CHECK((twin_doc_validate(patch, 0, &lim, NULL) == TWIN_OK) == ref_valid(patch, 0, &lim));
	if (rc != TWIN_OK) {
		CHECK(rc == TWIN_E_INVALID);
		check_failure(rc, &err, CHECK_VALIDATE_MESSAGE_UTF8);
		cJSON_Delete(patch);
		return NULL;
	}
	check_merge(patch, &lim);
	return patch;
}

/* ---- Store half ---------------------------------------------------------- */

static struct {
	twin_store *s;
	int64_t ticks;
	unsigned long turn;
	cJSON *reported; /* model: the committed reported data */
	int64_t reported_version;
} g;

static int64_t fuzz_clock(void *ctx)
{
	(void)ctx;
	return g.ticks += 10000; /* 1 ms a call: every write gets its own stamp */
}

/* Read the device GET body and check it against the model: §2.3's shape,
 * desired untouched ({"$version":1}), reported equal to want. */
static void check_body(const cJSON *want, int64_t want_version)
{
	char *text = NULL;
	size_t len = 0;
	int64_t dv = 0;
	cJSON *body = NULL, *reported;
	const cJSON *desired, *ver, *last;

	CHECK(twin_get_device_body(g.s, DEVICE_ID, &text, &len, &dv, NULL) == TWIN_OK);
	CHECK(twin_json_parse(text, len, INT64_MIN, INT64_MAX, &body, NULL) == TWIN_OK);
	free(text);
	CHECK(cJSON_IsObject(body) && cJSON_GetArraySize(body) == 2);
	desired = body->child;
	CHECK(strcmp(desired->string, "desired") == 0 && cJSON_IsObject(desired));
	CHECK(cJSON_GetArraySize(desired) == 1 && dv == 1);
	ver = get(desired, "$version");
	CHECK(cJSON_IsNumber(ver) && ver->valuedouble == 1);
	reported = desired->next;
	CHECK(strcmp(reported->string, "reported") == 0 && cJSON_IsObject(reported));
	last = reported->child ? reported->child->prev : NULL; /* "$version" comes last */
	CHECK(last != NULL && strcmp(last->string, "$version") == 0 && cJSON_IsNumber(last));
	CHECK(last->valuedouble == (double)want_version);
	cJSON_Delete(cJSON_DetachItemViaPointer(reported, (cJSON *)last));
	CHECK(json_equal(reported, want));
	cJSON_Delete(body);
}

/* The service view's reported section: the model's data, $version, and a
 * $metadata that mirrors the data, without $lastUpdatedVersion (§4.1). */
static void check_view(const cJSON *patch)
{
	cJSON *view = NULL, *data;
	const cJSON *reported, *meta, *ver;

	CHECK(twin_get(g.s, DEVICE_ID, &view, NULL) == TWIN_OK);
	reported = get(get(view, "properties"), "reported");
	CHECK(cJSON_IsObject(reported));
	meta = get(reported, "$metadata");
	ver = get(reported, "$version");
	CHECK(cJSON_IsNumber(ver) && ver->valuedouble == (double)g.reported_version);
	check_meta(reported, meta, 0);
	if (patch != NULL && patch->child != NULL)
		check_stamped(meta, patch, get(meta, "$lastUpdated")->valuestring, 0);
	data = json_dup(reported);
	cJSON_DeleteItemFromObjectCaseSensitive(data, "$metadata");
	cJSON_DeleteItemFromObjectCaseSensitive(data, "$version");
	CHECK(json_equal(data, g.reported));
	cJSON_Delete(data);
	cJSON_Delete(view);
}

static void commit(void)
{
	twin_error err;

	/* Keep the change log short: every write appends to it. */
	CHECK(twin_changes_trim(g.s, 32, 0, 64, NULL, &err) == TWIN_OK);
	CHECK(twin_store_commit(g.s, &err) == TWIN_OK);
}

/* Delete every reported key with one patch, committed. */
static void reset_reported(void)
{
	cJSON *patch = cJSON_CreateObject();
	twin_write_result res;
	char *text;

	CHECK(patch != NULL);
	for (const cJSON *ch = g.reported->child; ch != NULL; ch = ch->next)
		CHECK(cJSON_AddNullToObject(patch, ch->string) != NULL);
	text = twin_json_print(patch);
	CHECK(text != NULL);
	memset(&res, 0, sizeof(res));
	CHECK(twin_patch_reported(g.s, DEVICE_ID, text, strlen(text), &res, NULL) == TWIN_OK);
	commit();
	g.reported_version++;
	CHECK(res.reported_version == g.reported_version);
	twin_write_result_clear(&res);
	cJSON_free(text);
	cJSON_Delete(patch);
	cJSON_Delete(g.reported);
	g.reported = cJSON_CreateObject();
	CHECK(g.reported != NULL);
	check_body(g.reported, g.reported_version);
}

/* One or two PATCHes of the same body in one batch, then a commit or an
 * abort, in a cycle of four so every combination recurs. patch is the pure
 * half's verdict: the parsed patch when valid, else NULL. */
static void store_half(const uint8_t *data, size_t size, const cJSON *patch)
{
	unsigned long turn = g.turn++ % 4;
	int writes = turn < 2 ? 1 : 2, commit_it = turn % 2 == 0, accepted = 0;
	int64_t version = g.reported_version;
	cJSON *want = NULL;
	twin_limits lim;

	twin_limits_default(&lim);
	if (patch != NULL) {
		want = json_dup(g.reported);
		ref_merge(want, patch);
	}
	for (int i = 0; i < writes; i++) {
		twin_write_result res;
		twin_error err;
		twin_err rc;

		memset(&res, 0, sizeof(res));
		memset(&err, 0, sizeof(err));
		rc = twin_patch_reported(g.s, DEVICE_ID, (const char *)data, size, &res, &err);
		if (patch == NULL)
			CHECK(rc == TWIN_E_INVALID);
		else if (ref_size(want) > lim.reported_max)
			CHECK(rc == TWIN_E_SECTION_SIZE);
		else
			CHECK(rc == TWIN_OK);
		if (rc != TWIN_OK) {
			check_failure(rc, &err, CHECK_VALIDATE_MESSAGE_UTF8);
			CHECK(res.notification == NULL);
			check_body(g.reported, version);
			continue;
		}
		accepted = 1;
		if (patch->child != NULL) /* "{}" is not a write */
			version++;
		CHECK(res.reported_version == version && res.notification == NULL);
		twin_write_result_clear(&res);
		check_body(want, version);
	}
	if (commit_it)
		commit();
	else
		twin_store_abort(g.s);
	if (commit_it && accepted) {
		cJSON_Delete(g.reported);
		g.reported = want;
		g.reported_version = version;
		want = NULL;
		check_view(patch);
	}
	cJSON_Delete(want);
	check_body(g.reported, g.reported_version);
	if (ref_size(g.reported) > RESET_SIZE)
		reset_reported();
}

/* Remove the store's files right after opening: LMDB keeps working on its
 * open descriptors and mapping, and nothing is left behind however the
 * process ends (crash, timeout, -runs). */
static void unlink_dir(const char *dir)
{
	char path[4096];
	DIR *d = opendir(dir);
	struct dirent *e;

	CHECK(d != NULL);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		CHECK(unlink(path) == 0);
	}
	closedir(d);
	CHECK(rmdir(dir) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	char dir[4096];
	twin_store_options o;
	twin_error err;

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/fuzz_patch.XXXXXX", base ? base : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	twin_store_options_default(&o);
	o.path = dir;
	o.map_size = (size_t)1 << 20; /* small, so the map grows while fuzzing */
	o.clock = fuzz_clock;
	g.ticks = 17040672000000000; /* 2024-01-01T00:00:00Z */
	if (twin_store_open(&o, &g.s, &err) != TWIN_OK) {
		fprintf(stderr, "fuzz_patch: %s\n", err.message);
		abort();
	}
	unlink_dir(dir);
	CHECK(twin_device_create(g.s, DEVICE_ID, NULL, NULL, &err) == TWIN_OK);
	CHECK(twin_store_commit(g.s, &err) == TWIN_OK);
	g.reported = cJSON_CreateObject();
	CHECK(g.reported != NULL);
	g.reported_version = 1;
	check_body(g.reported, g.reported_version);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cJSON *patch = pure_half(data, size);

	store_half(data, size, patch);
	cJSON_Delete(patch);
	return 0;
}
