/*
 * doc_meta.c - $metadata as stored: only the stamps a node does not share
 * with its parent.
 *
 * A write stamps every node it sets and every ancestor (§4.1), so most
 * nodes carry exactly their parent's "$lastUpdated" (and, in desired,
 * "$lastUpdatedVersion"). Printed whole, metadata was three quarters of the
 * bytes of a stored twin and of the text a reported PATCH prints. On disk
 * a node therefore keeps only the stamps that differ from its parent's, and
 * a node with nothing of its own left is not written at all. Loading puts
 * the tree back: every data node without a metadata node gets one, every
 * missing stamp is its parent's. The data tree gives the shape, so the
 * round trip is exact for any metadata that mirrors its data, which is
 * what merges and replaces build (tests/unit/test_doc.c checks it).
 *
 * A stamp a node lacks while its parent has one is written as null, so
 * that absence survives the round trip too. Records written before this
 * encoding hold every stamp and load unchanged.
 */
#include <string.h>

#include "twin/doc.h"
#include "twin/json.h"

#define META_LAST_UPDATED "$lastUpdated"
#define META_LAST_VERSION "$lastUpdatedVersion"

static int same_stamp(const cJSON *a, const cJSON *b)
{
	if (cJSON_IsString(a) && cJSON_IsString(b))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
		return a->valuedouble == b->valuedouble;
	return 0;
}

/* meta's member name, looked for among the "$" members only: a node has
 * many children and at most two stamps, and this runs for every node of
 * every write. */
static cJSON *stamp_of(const cJSON *meta, const char *name)
{
	for (cJSON *c = meta->child; c != NULL; c = c->next)
		if (c->string != NULL && c->string[0] == '$' && strcmp(c->string, name) == 0)
			return c;
	return NULL;
}

/* One stamp of node against the parent's: printed unless inherited. */
static int print_stamp(twin_buf *b, const cJSON *own, const cJSON *parents, int *members)
{
	if (own == NULL && parents == NULL)
		return 1;
	if (own != NULL && parents != NULL && same_stamp(own, parents))
		return 1;
	if (*members > 0 && !twin_buf_put(b, ",", 1))
		return 0;
	++*members;
	if (!twin_json_print_string_append(b, own ? own->string : parents->string) ||
	    !twin_buf_put(b, ":", 1))
		return 0;
	return own ? twin_json_print_append(b, own) : twin_buf_put(b, "null", 4);
}

/* Print meta's members that are not inherited from the parent stamps pw
 * and pv (NULL at the root); *members counts them. A child that ends up
 * with none is taken back out of b. 0 when out of memory. */
static int print_node(twin_buf *b, const cJSON *meta, const cJSON *pw, const cJSON *pv,
                      int *members)
{
	const cJSON *when = stamp_of(meta, META_LAST_UPDATED);
	const cJSON *ver = stamp_of(meta, META_LAST_VERSION);

	if (!print_stamp(b, when, pw, members) || !print_stamp(b, ver, pv, members))
		return 0;
	for (const cJSON *c = meta->child; c != NULL; c = c->next) {
		size_t mark = b->len;
		int inner = 0;

		if (c == when || c == ver)
			continue;
		if ((*members > 0 && !twin_buf_put(b, ",", 1)) ||
		    !twin_json_print_string_append(b, c->string) || !twin_buf_put(b, ":", 1))
			return 0;
		if (!cJSON_IsObject(c)) { /* not metadata's shape: keep it as it is */
			if (!twin_json_print_append(b, c))
				return 0;
			++*members;
			continue;
		}
		if (!twin_buf_put(b, "{", 1) || !print_node(b, c, when, ver, &inner) ||
		    !twin_buf_put(b, "}", 1))
			return 0;
		if (inner == 0) {
			b->len = mark;
			b->data[mark] = '\0';
		} else {
			++*members;
		}
	}
	return 1;
}

int twin_meta_print_compact(twin_buf *b, const cJSON *meta)
{
	size_t mark = b->len;
	int members = 0;

	if (cJSON_IsObject(meta) && twin_buf_put(b, "{", 1) &&
	    print_node(b, meta, NULL, NULL, &members) && twin_buf_put(b, "}", 1))
		return 1;
	b->len = mark;
	if (b->data != NULL)
		b->data[mark] = '\0';
	return 0;
}

/* item as the child of obj right before `before` (last when NULL). item's
 * key is set by the caller. */
static void link_before(cJSON *obj, cJSON *before, cJSON *item)
{
	if (before == NULL) {
		cJSON_AddItemToArray(obj, item); /* appends, keeps item->string */
		return;
	}
	item->next = before;
	item->prev = before->prev;
	if (before == obj->child)
		obj->child = item;
	else
		before->prev->next = item;
	before->prev = item;
}

/* Give node the parent's stamp when it has none of its own; drop a null
 * (an absence written down). *own is the stamp that holds afterwards. */
static twin_err fill_stamp(cJSON *node, const char *name, const cJSON *parents, cJSON *before,
                           cJSON **own)
{
	*own = stamp_of(node, name);
	if (cJSON_IsNull(*own)) {
		cJSON_Delete(cJSON_DetachItemViaPointer(node, *own));
		*own = NULL;
		return TWIN_OK;
	}
	if (*own != NULL || parents == NULL)
		return TWIN_OK;
	*own = cJSON_Duplicate(parents, 0); /* name included */
	if (*own == NULL)
		return TWIN_E_NOMEM;
	link_before(node, before, *own);
	return TWIN_OK;
}

static twin_err expand_node(cJSON *meta, const cJSON *data, const cJSON *pw, const cJSON *pv)
{
	cJSON *when, *ver, *next;
	twin_err rc = fill_stamp(meta, META_LAST_UPDATED, pw, meta->child, &when);

	/* Stamps lead, "$lastUpdated" first, as stamp_node writes them. */
	if (rc == TWIN_OK)
		rc = fill_stamp(meta, META_LAST_VERSION, pv, when ? when->next : meta->child, &ver);
	if (rc != TWIN_OK || !cJSON_IsObject(data))
		return rc;
	/* Metadata members follow the data's order, so the next one is
	 * usually the member wanted; a missing one is put back there. */
	next = meta->child;
	while (next != NULL && (next == when || next == ver))
		next = next->next;
	for (const cJSON *d = data->child; d != NULL; d = d->next) {
		cJSON *m = next != NULL && strcmp(next->string, d->string) == 0
		                   ? next
		                   : cJSON_GetObjectItemCaseSensitive(meta, d->string);

		if (m == NULL) {
			m = cJSON_CreateObject();
			if (m == NULL)
				return TWIN_E_NOMEM;
			m->string = twin_doc_key_dup(d->string);
			if (m->string == NULL) {
				cJSON_Delete(m);
				return TWIN_E_NOMEM;
			}
			link_before(meta, next, m);
		} else if (m == next) {
			next = next->next;
		}
		if (!cJSON_IsObject(m))
			continue; /* not metadata's shape: left as it is */
		rc = expand_node(m, d, when, ver);
		if (rc != TWIN_OK)
			return rc;
	}
	return TWIN_OK;
}

twin_err twin_meta_expand(cJSON *meta, const cJSON *data)
{
	return cJSON_IsObject(meta) ? expand_node(meta, data, NULL, NULL) : TWIN_OK;
}
