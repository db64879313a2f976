/*
 * query_row.c - a twin as a query sees it: paths of the service view
 * (PROTOCOL.md §4) resolved against the raw records of a snapshot.
 *
 * Only what a path names is read: tags, desired and reported are scanned as
 * stored text (json_scan.h), the identity is read only for identity fields,
 * and section views are spliced from stored text rather than parsed and
 * printed. $metadata is stored without inherited stamps: a stamp is found
 * by walking down its path, and only a whole metadata node is parsed and
 * rebuilt. Top-level names and desired/reported match case-insensitively,
 * names below them exactly (§8.2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_scan.h"
#include "query_ast.h"
#include "query_run.h"
#include "registry_record.h"
#include "twin/doc.h"
#include "twin/twin.h"
#include "twin_records.h"

void q_row_reset(q_row *row, const char *id, size_t id_len)
{
	memcpy(row->id, id, id_len);
	row->id[id_len] = '\0';
	memset(row->rec, 0, sizeof(row->rec));
	memset(row->have, 0, sizeof(row->have));
	row->ident_state = 0;
	row->version = 0;
}

static int load_identity(q_row *row)
{
	MDB_val k = {strlen(row->id), row->id}, v;
	twin_error err;

	if (row->ident_state == 0)
		row->ident_state =
		        mdb_get(row->txn, row->devices, &k, &v) == 0 &&
		                        registry_record_decode(&v, &row->ident, &err) == TWIN_OK
		                ? 1
		                : -1;
	return row->ident_state == 1;
}

/* A copy of s[0..n) as the bytes behind a value; NULL when out of memory. */
static char *copy_of(const char *s, size_t n)
{
	char *c = malloc(n + 1);

	if (c != NULL) {
		memcpy(c, s, n);
		c[n] = '\0';
	}
	return c;
}

/* A computed string as an owned value. */
static int owned_string(const char *s, q_val *out)
{
	size_t n = strlen(s);
	char *c = copy_of(s, n);

	if (c == NULL)
		return -1;
	q_val_from_string(c, n, out);
	out->owned = c;
	return 0;
}

/* Owned JSON text (taken over; NULL means out of memory) as a value. */
static int owned_text(char *text, size_t len, q_val *out)
{
	if (text == NULL)
		return -1;
	q_val_from_text(text, len, out);
	out->owned = text;
	return 0;
}

/* Build the JSON text of a section view: the data members, then
 * "$metadata" and "$version" when the section has metadata, as twin_get
 * prints it. */
static char *section_text(const MDB_val *rec, int with_meta, size_t *len)
{
	const char *data, *meta;
	size_t dlen, mlen, n = 0, cap = 0;
	int64_t version;
	char *buf = NULL, *full;
	twin_buf b = {0};

	if (!rec_split(rec, &version, &data, &dlen, &meta, &mlen) || dlen < 2)
		return NULL;
	if (!with_meta || mlen == 0) {
		buf = malloc(dlen + 1);
		if (buf != NULL) {
			memcpy(buf, data, dlen);
			buf[dlen] = '\0';
			*len = dlen;
		}
		return buf;
	}
	full = rec_meta_text(data, dlen, meta, mlen, &mlen);
	if (full == NULL || !twin_buf_put(&b, data, dlen - 1) ||
	    (dlen > 2 && !twin_buf_put(&b, ",", 1)) || !twin_buf_put(&b, "\"$metadata\":", 12) ||
	    !twin_buf_put(&b, full, mlen) || !twin_buf_put(&b, "}", 1) ||
	    !rec_append_with_version(&buf, &n, &cap, b.data, b.len, version)) {
		free(buf);
		buf = NULL;
	}
	cJSON_free(full);
	cJSON_free(b.data);
	*len = n;
	return buf;
}

/* A stamp under $metadata, read from the compact text without rebuilding
 * it: seg[0..n-1) names a data node and seg[n-1] the stamp. The stamp is
 * the one of the deepest node on the way that writes it down (a null
 * there is an absence, store/doc_meta.c). 1 and the value's span when
 * defined, 0 when not, -1 when seg does not end in a stamp. */
static int meta_stamp(const char *data, size_t dlen, const char *meta, size_t mlen,
                      char *const *seg, size_t n, const char **v, size_t *vlen)
{
	const char *node, *sv;
	size_t nlen, svlen;
	int have = 0;

	if (n == 0 || (strcmp(seg[n - 1], "$lastUpdated") != 0 &&
	               strcmp(seg[n - 1], "$lastUpdatedVersion") != 0))
		return -1;
	if (!json_scan_path(data, dlen, seg, n - 1, &node, &nlen))
		return 0; /* no such node: no metadata either */
	for (size_t k = 0; k < n && json_scan_path(meta, mlen, seg, k, &node, &nlen); k++) {
		if (!json_scan_path(node, nlen, seg + n - 1, 1, &sv, &svlen))
			continue; /* inherited */
		have = !(svlen == 4 && memcmp(sv, "null", 4) == 0);
		*v = sv;
		*vlen = svlen;
	}
	return have;
}

static int section_lookup(q_row *row, int kind, const q_path *p, size_t from, q_val *out)
{
	const char *data, *meta, *v;
	size_t dlen, mlen, vlen, len = 0;
	int64_t version;

	memset(out, 0, sizeof(*out));
	if (!row->have[kind] || !rec_split(&row->rec[kind], &version, &data, &dlen, &meta, &mlen))
		return 0;
	if (from == p->n) {
		/* len is set by section_text: read it only after the call. */
		char *text = section_text(&row->rec[kind], kind != ROW_T, &len);

		return owned_text(text, len, out);
	}
	if (kind != ROW_T && strcmp(p->seg[from], "$version") == 0) {
		if (from + 1 == p->n)
			out->t = QV_NUM, out->n = (double)version;
		return 0;
	}
	if (kind != ROW_T && strcmp(p->seg[from], "$metadata") == 0) {
		/* Stored without inherited stamps: a stamp is found on the way
		 * down, anything bigger needs the whole tree rebuilt. */
		int rc = mlen > 0 ? meta_stamp(data, dlen, meta, mlen, p->seg + from + 1,
		                               p->n - from - 1, &v, &vlen)
		                  : 0;
		char *full;

		if (rc >= 0) {
			if (rc == 1)
				q_val_from_text(v, vlen, out);
			return 0;
		}
		full = rec_meta_text(data, dlen, meta, mlen, &len);
		rc = 0;
		if (full == NULL)
			return -1;
		if (json_scan_path(full, len, p->seg + from + 1, p->n - from - 1, &v, &vlen))
			rc = owned_text(copy_of(v, vlen), vlen, out);
		cJSON_free(full);
		return rc;
	}
	if (json_scan_path(data, dlen, p->seg + from, p->n - from, &v, &vlen))
		q_val_from_text(v, vlen, out);
	return 0;
}

static int properties_lookup(q_row *row, const q_path *p, q_val *out)
{
	char *d, *r, *text;
	size_t dlen, rlen;
	int rc;

	if (p->n >= 2 && strcasecmp(p->seg[1], "desired") == 0)
		return section_lookup(row, ROW_D, p, 2, out);
	if (p->n >= 2 && strcasecmp(p->seg[1], "reported") == 0)
		return section_lookup(row, ROW_R, p, 2, out);
	if (p->n >= 2 || !row->have[ROW_D] || !row->have[ROW_R])
		return 0;
	d = section_text(&row->rec[ROW_D], 1, &dlen);
	r = section_text(&row->rec[ROW_R], 1, &rlen);
	text = d && r ? malloc(dlen + rlen + 26) : NULL;
	if (text != NULL)
		snprintf(text, dlen + rlen + 26, "{\"desired\":%s,\"reported\":%s}", d, r);
	free(d);
	free(r);
	rc = owned_text(text, text ? strlen(text) : 0, out);
	return rc;
}

/* "…" for a thumbprint, null for none (hex digits need no escaping). */
static void thumbprint_json(const char *t, char *out, size_t size)
{
	snprintf(out, size, t[0] ? "\"%s\"" : "null", t);
}

/* x509Thumbprint and capabilities: small objects of identity fields. */
static int identity_object(q_row *row, const q_path *p, int thumbprints, q_val *out)
{
	char a[TWIN_THUMBPRINT_MAX + 3], b[TWIN_THUMBPRINT_MAX + 3], text[2 * sizeof(a) + 48];
	int n;

	if (!thumbprints) {
		if (p->n == 1)
			return owned_text(copy_of("{\"iotEdge\":false}", 17), 17, out);
		if (p->n == 2 && strcmp(p->seg[1], "iotEdge") == 0)
			out->t = QV_BOOL, out->b = 0;
		return 0;
	}
	thumbprint_json(row->ident.primary_thumbprint, a, sizeof(a));
	thumbprint_json(row->ident.secondary_thumbprint, b, sizeof(b));
	if (p->n == 2 && strcmp(p->seg[1], "primaryThumbprint") == 0)
		return owned_text(copy_of(a, strlen(a)), strlen(a), out);
	if (p->n == 2 && strcmp(p->seg[1], "secondaryThumbprint") == 0)
		return owned_text(copy_of(b, strlen(b)), strlen(b), out);
	if (p->n != 1)
		return 0;
	n = snprintf(text, sizeof(text), "{\"primaryThumbprint\":%s,\"secondaryThumbprint\":%s}", a,
	             b);
	return owned_text(copy_of(text, (size_t)n), (size_t)n, out);
}

static int identity_lookup(q_row *row, const char *name, const q_path *p, q_val *out)
{
	const twin_identity *id = &row->ident;
	char ts[TWIN_TIMESTAMP_MAX], etag[TWIN_ETAG_MAX];

	if (!load_identity(row))
		return 0;
	if (strcasecmp(name, "x509Thumbprint") == 0 || strcasecmp(name, "capabilities") == 0)
		return identity_object(row, p, strcasecmp(name, "x509Thumbprint") == 0, out);
	if (p->n != 1)
		return 0; /* a path through a string */
	if (strcasecmp(name, "status") == 0)
		return owned_string(id->enabled ? "enabled" : "disabled", out);
	if (strcasecmp(name, "statusReason") == 0)
		return id->status_reason[0] ? owned_string(id->status_reason, out) : 0;
	if (strcasecmp(name, "connectionState") == 0)
		return owned_string(id->connected ? "Connected" : "Disconnected", out);
	if (strcasecmp(name, "authenticationType") == 0)
		return owned_string(twin_auth_type_name(id->auth_type), out);
	if (strcasecmp(name, "modelId") == 0)
		return owned_string(id->model_id, out);
	if (strcasecmp(name, "deviceEtag") == 0) {
		twin_identity_etag(id, etag);
		return owned_string(etag, out);
	}
	if (strcasecmp(name, "cloudToDeviceMessageCount") == 0) {
		out->t = QV_NUM;
		return 0;
	}
	if (strcasecmp(name, "statusUpdateTime") == 0)
		twin_timestamp_format(id->status_updated, ts);
	else if (strcasecmp(name, "lastActivityTime") == 0)
		twin_timestamp_format(id->last_activity, ts);
	else
		return 0;
	return owned_string(ts, out);
}

int q_row_lookup(void *rowp, const q_path *p, q_val *out)
{
	q_row *row = rowp;
	const char *name = p->seg[0];
	char etag[TWIN_ETAG_MAX];

	memset(out, 0, sizeof(*out));
	if (strcasecmp(name, "tags") == 0)
		return section_lookup(row, ROW_T, p, 1, out);
	if (strcasecmp(name, "properties") == 0)
		return properties_lookup(row, p, out);
	if (strcasecmp(name, "deviceId") == 0) {
		if (p->n == 1)
			q_val_from_string(row->id, strlen(row->id), out);
		return 0;
	}
	if (strcasecmp(name, "version") == 0 || strcasecmp(name, "etag") == 0) {
		if (p->n != 1)
			return 0;
		if (strcasecmp(name, "version") == 0) {
			out->t = QV_NUM;
			out->n = (double)row->version;
			return 0;
		}
		twin_etag_format(row->version, etag);
		return owned_string(etag, out);
	}
	return identity_lookup(row, name, p, out);
}

static cJSON *section_raw(q_row *row, int kind)
{
	size_t len;
	char *text = section_text(&row->rec[kind], kind != ROW_T, &len);
	cJSON *raw = text ? cJSON_CreateRaw(text) : NULL;

	free(text);
	return raw;
}

cJSON *q_row_output(q_row *row, const twin_query *q, int *bad)
{
	cJSON *out;

	*bad = 0;
	if (q->star) {
		if (!load_identity(row) || !row->have[ROW_T] || !row->have[ROW_D] ||
		    !row->have[ROW_R]) {
			*bad = 1;
			return NULL;
		}
		return twin_view_make(&row->ident, row->version, section_raw(row, ROW_T),
		                      section_raw(row, ROW_D), section_raw(row, ROW_R));
	}
	out = cJSON_CreateObject();
	for (size_t i = 0; out != NULL && i < q->nitems; i++) {
		q_val v;
		cJSON *item;

		if (q_row_lookup(row, &q->items[i].path, &v) < 0) {
			cJSON_Delete(out);
			return NULL;
		}
		if (v.t != QV_UNDEF) {
			item = q_val_to_json(&v);
			if (item == NULL || !cJSON_AddItemToObject(out, q->items[i].name, item)) {
				cJSON_Delete(item);
				cJSON_Delete(out);
				out = NULL;
			}
		}
		q_val_clear(&v);
	}
	return out;
}
