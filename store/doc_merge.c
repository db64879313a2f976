/*
 * doc_merge.c - merge patches, stamp metadata, derive notifications
 * (PROTOCOL.md §4.1, §5.1, §5.3).
 *
 * Data and metadata are separate trees with the same shape, so device
 * replies can be rendered from the data alone. Patches are merged by moving
 * their nodes into the data tree rather than copying them: a reported patch
 * is parsed once and its nodes end up in the stored document.
 */
#include <string.h>

#include "twin/doc.h"

#define META_LAST_UPDATED "$lastUpdated"
#define META_LAST_VERSION "$lastUpdatedVersion"

char *twin_doc_key_dup(const char *key)
{
	size_t n = strlen(key) + 1;
	char *k = cJSON_malloc(n);

	if (k != NULL)
		memcpy(k, key, n);
	return k;
}

/* obj[key] = item, in place of an existing member or appended. item takes a
 * copy of key unless it already carries that key: cJSON's own replace frees
 * item->string before copying key, which is a use-after-free when key is
 * item->string, as it is for nodes moved out of a patch. */
static int set_member(cJSON *obj, const char *key, cJSON *item)
{
	cJSON *cur = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (item->string == NULL || strcmp(item->string, key) != 0) {
		char *k = twin_doc_key_dup(key);

		if (k == NULL)
			return 0;
		cJSON_free(item->string);
		item->string = k;
	}
	if (cur != NULL)
		return cJSON_ReplaceItemViaPointer(obj, cur, item);
	return cJSON_AddItemToArray(obj, item); /* appends and keeps item->string */
}

static twin_err stamp_node(cJSON *node, const twin_stamp *st)
{
	cJSON *when = cJSON_GetObjectItemCaseSensitive(node, META_LAST_UPDATED);
	cJSON *ver;

	if (when != NULL) {
		if (cJSON_SetValuestring(when, st->when) == NULL)
			return TWIN_E_NOMEM;
	} else {
		/* Stamps go first so a node reads "$lastUpdated", then its children. */
		when = cJSON_CreateString(st->when);
		if (when == NULL)
			return TWIN_E_NOMEM;
		when->string = twin_doc_key_dup(META_LAST_UPDATED);
		if (when->string == NULL) {
			cJSON_Delete(when);
			return TWIN_E_NOMEM;
		}
		when->next = node->child;
		when->prev = node->child ? node->child->prev : when;
		if (node->child)
			node->child->prev = when;
		node->child = when;
	}
	if (st->version <= 0)
		return TWIN_OK;
	ver = cJSON_GetObjectItemCaseSensitive(node, META_LAST_VERSION);
	if (ver != NULL) {
		cJSON_SetNumberValue(ver, (double)st->version);
		return TWIN_OK;
	}
	ver = cJSON_CreateNumber((double)st->version);
	if (ver == NULL)
		return TWIN_E_NOMEM;
	/* Insert right after "$lastUpdated" to keep stamps ahead of children. */
	ver->string = twin_doc_key_dup(META_LAST_VERSION);
	if (ver->string == NULL) {
		cJSON_Delete(ver);
		return TWIN_E_NOMEM;
	}
	ver->prev = when;
	ver->next = when->next;
	if (when->next)
		when->next->prev = ver;
	else
		node->child->prev = ver;
	when->next = ver;
	return TWIN_OK;
}

static cJSON *stamped_leaf(const twin_stamp *st)
{
	cJSON *m = cJSON_CreateObject();

	if (m != NULL && stamp_node(m, st) != TWIN_OK) {
		cJSON_Delete(m);
		return NULL;
	}
	return m;
}

cJSON *twin_meta_new_section(void)
{
	cJSON *m = cJSON_CreateObject();

	if (m != NULL &&
	    cJSON_AddStringToObject(m, META_LAST_UPDATED, "0001-01-01T00:00:00Z") == NULL) {
		cJSON_Delete(m);
		return NULL;
	}
	return m;
}

/* Merge an object member of the patch: into the existing object, or into a
 * fresh {} that replaces a missing or non-object value. */
static twin_err merge_object_member(cJSON *data, cJSON *meta, cJSON *p, const twin_stamp *st)
{
	cJSON *cur = cJSON_GetObjectItemCaseSensitive(data, p->string);
	cJSON *cur_meta = meta ? cJSON_GetObjectItemCaseSensitive(meta, p->string) : NULL;

	if (!cJSON_IsObject(cur)) {
		cur = cJSON_CreateObject();
		if (cur == NULL || !set_member(data, p->string, cur)) {
			cJSON_Delete(cur);
			return TWIN_E_NOMEM;
		}
		cur_meta = NULL; /* the old value's metadata no longer applies */
	}
	if (meta != NULL && cur_meta == NULL) {
		cur_meta = cJSON_CreateObject();
		if (cur_meta == NULL || !set_member(meta, p->string, cur_meta)) {
			cJSON_Delete(cur_meta);
			return TWIN_E_NOMEM;
		}
	}
	return twin_doc_merge(cur, cur_meta, p, st);
}

twin_err twin_doc_merge(cJSON *data, cJSON *meta, cJSON *patch, const twin_stamp *st)
{
	cJSON *p = patch->child, *next;
	twin_err rc;

	for (; p != NULL; p = next) {
		next = p->next;
		if (cJSON_IsNull(p)) {
			/* Deleting an absent key is a no-op: nothing is created. */
			cJSON_DeleteItemFromObjectCaseSensitive(data, p->string);
			if (meta != NULL)
				cJSON_DeleteItemFromObjectCaseSensitive(meta, p->string);
			continue;
		}
		if (cJSON_IsObject(p)) {
			rc = merge_object_member(data, meta, p, st);
			if (rc != TWIN_OK)
				return rc;
			continue;
		}
		/* Primitives and arrays are leaves: set whole, never merged by element. */
		cJSON_DetachItemViaPointer(patch, p);
		if (!set_member(data, p->string, p)) {
			cJSON_Delete(p);
			return TWIN_E_NOMEM;
		}
		if (meta != NULL) {
			cJSON *leaf = stamped_leaf(st);

			if (leaf == NULL || !set_member(meta, p->string, leaf)) {
				cJSON_Delete(leaf);
				return TWIN_E_NOMEM;
			}
		}
	}
	return meta != NULL ? stamp_node(meta, st) : TWIN_OK;
}

cJSON *twin_meta_stamp_all(const cJSON *data, const twin_stamp *st)
{
	cJSON *m = stamped_leaf(st);

	if (m == NULL || !cJSON_IsObject(data))
		return m;
	for (const cJSON *ch = data->child; ch != NULL; ch = ch->next) {
		cJSON *cm = twin_meta_stamp_all(ch, st);

		if (cm == NULL || !cJSON_AddItemToObject(m, ch->string, cm)) {
			cJSON_Delete(cm);
			cJSON_Delete(m);
			return NULL;
		}
	}
	return m;
}

void twin_doc_drop_nulls(cJSON *doc)
{
	cJSON *ch = doc ? doc->child : NULL, *next;

	if (!cJSON_IsObject(doc))
		return;
	for (; ch != NULL; ch = next) {
		next = ch->next;
		if (cJSON_IsNull(ch))
			cJSON_Delete(cJSON_DetachItemViaPointer(doc, ch));
		else
			twin_doc_drop_nulls(ch);
	}
}

static int add_removals(cJSON *out, const cJSON *old)
{
	for (const cJSON *o = old->child; o != NULL; o = o->next) {
		cJSON *n = cJSON_GetObjectItemCaseSensitive(out, o->string);

		if (n == NULL) {
			if (cJSON_AddNullToObject(out, o->string) == NULL)
				return 0;
		} else if (cJSON_IsObject(n) && cJSON_IsObject(o) && !add_removals(n, o)) {
			return 0;
		}
	}
	return 1;
}

cJSON *twin_doc_with_removals(const cJSON *old_data, const cJSON *new_data)
{
	cJSON *out = cJSON_Duplicate(new_data, 1);

	if (out != NULL && old_data != NULL && !add_removals(out, old_data)) {
		cJSON_Delete(out);
		return NULL;
	}
	return out;
}

cJSON *twin_meta_touched(const cJSON *meta, const cJSON *patch)
{
	cJSON *out = cJSON_CreateObject();

	if (out == NULL || !cJSON_IsObject(meta))
		return out;
	for (const cJSON *m = meta->child; m != NULL; m = m->next) {
		cJSON *copy;

		if (m->string[0] != '$')
			continue;
		copy = cJSON_Duplicate(m, 1);
		if (!cJSON_AddItemToObject(out, m->string, copy)) {
			cJSON_Delete(copy);
			goto fail;
		}
	}
	for (const cJSON *p = patch ? patch->child : NULL; p != NULL; p = p->next) {
		const cJSON *node = cJSON_GetObjectItemCaseSensitive(meta, p->string);
		cJSON *sub;

		if (node == NULL)
			continue; /* removed by the patch: no metadata left */
		sub = cJSON_IsObject(p) ? twin_meta_touched(node, p) : cJSON_Duplicate(node, 1);
		if (!cJSON_AddItemToObject(out, p->string, sub)) {
			cJSON_Delete(sub);
			goto fail;
		}
	}
	return out;
fail:
	cJSON_Delete(out);
	return NULL;
}
