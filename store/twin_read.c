/*
 * twin_read.c - what a device GETs and what the back end sees (PROTOCOL.md
 * §2.3, §4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "twin/doc.h"
#include "twin/json.h"
#include "twin/twin.h"
#include "twin_records.h"

twin_err twin_get_device_body(twin_store *s, const char *device_id, char **out, size_t *len,
                              int64_t *desired_version, twin_error *err)
{
	static const char kinds[] = {TWIN_KIND_DESIRED, TWIN_KIND_REPORTED};
	static const char *prefix[] = {"{\"desired\":", ",\"reported\":"};
	size_t blen = 0, cap = 0;
	char *buf = NULL;
	twin_err rc = db_read_begin(s, err);

	*out = NULL;
	for (int i = 0; i < 2 && rc == TWIN_OK; i++) {
		const char *data, *meta;
		size_t dlen, mlen;
		int64_t version;
		MDB_val v;

		rc = twin_record_get(s, device_id, kinds[i], &v, err);
		if (rc != TWIN_OK)
			break;
		if (!rec_split(&v, &version, &data, &dlen, &meta, &mlen) || dlen < 2) {
			rc = rec_corrupt(err, device_id);
			break;
		}
		if (i == 0 && desired_version != NULL)
			*desired_version = version;
		if (!rec_append_str(&buf, &blen, &cap, prefix[i]) ||
		    !rec_append_with_version(&buf, &blen, &cap, data, dlen, version))
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	db_read_end(s);
	if (rc == TWIN_OK && !rec_append_str(&buf, &blen, &cap, "}"))
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc != TWIN_OK) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = blen;
	return TWIN_OK;
}

static cJSON *section_view(rec_section *sec)
{
	cJSON *view = sec->data;

	sec->data = NULL;
	if (sec->meta != NULL) {
		if (!cJSON_AddItemToObject(view, "$metadata", sec->meta)) {
			cJSON_Delete(view); /* sec->meta stays with sec */
			return NULL;
		}
		sec->meta = NULL;
		if (cJSON_AddNumberToObject(view, "$version", (double)sec->version) == NULL) {
			cJSON_Delete(view);
			return NULL;
		}
	}
	return view;
}

/* Add *v as obj's member name. Takes *v whatever happens (and clears it):
 * it is freed when obj is NULL or the add fails. */
static int add_view(cJSON *obj, const char *name, cJSON **v)
{
	cJSON *item = *v;

	*v = NULL;
	if (obj == NULL || item == NULL || !cJSON_AddItemToObject(obj, name, item)) {
		cJSON_Delete(item);
		return 0;
	}
	return 1;
}

cJSON *twin_view_make(const twin_identity *id, int64_t version, cJSON *tags, cJSON *desired,
                      cJSON *reported)
{
	char etag[TWIN_ETAG_MAX], ts[TWIN_TIMESTAMP_MAX];
	cJSON *twin = cJSON_CreateObject(), *props = NULL, *caps, *thumbs;
	int ok = twin != NULL;

	ok = ok && cJSON_AddStringToObject(twin, "deviceId", id->device_id);
	twin_etag_format(version, etag);
	ok = ok && cJSON_AddStringToObject(twin, "etag", etag);
	twin_identity_etag(id, etag);
	ok = ok && cJSON_AddStringToObject(twin, "deviceEtag", etag);
	ok = ok && cJSON_AddStringToObject(twin, "status", id->enabled ? "enabled" : "disabled");
	if (id->status_reason[0])
		ok = ok && cJSON_AddStringToObject(twin, "statusReason", id->status_reason);
	twin_timestamp_format(id->status_updated, ts);
	ok = ok && cJSON_AddStringToObject(twin, "statusUpdateTime", ts);
	ok = ok && cJSON_AddStringToObject(twin, "connectionState",
	                                   id->connected ? "Connected" : "Disconnected");
	twin_timestamp_format(id->last_activity, ts);
	ok = ok && cJSON_AddStringToObject(twin, "lastActivityTime", ts);
	ok = ok && cJSON_AddNumberToObject(twin, "cloudToDeviceMessageCount", 0);
	ok = ok && cJSON_AddStringToObject(twin, "authenticationType",
	                                   twin_auth_type_name(id->auth_type));
	ok = ok && (thumbs = cJSON_AddObjectToObject(twin, "x509Thumbprint")) != NULL;
	ok = ok && (id->primary_thumbprint[0] ? cJSON_AddStringToObject(thumbs, "primaryThumbprint",
	                                                                id->primary_thumbprint)
	                                      : cJSON_AddNullToObject(thumbs, "primaryThumbprint"));
	ok = ok &&
	     (id->secondary_thumbprint[0] ? cJSON_AddStringToObject(thumbs, "secondaryThumbprint",
	                                                            id->secondary_thumbprint)
	                                  : cJSON_AddNullToObject(thumbs, "secondaryThumbprint"));
	ok = ok && cJSON_AddStringToObject(twin, "modelId", id->model_id);
	ok = ok && cJSON_AddNumberToObject(twin, "version", (double)version);
	ok = ok && (caps = cJSON_AddObjectToObject(twin, "capabilities")) != NULL;
	ok = ok && cJSON_AddFalseToObject(caps, "iotEdge");
	/* Every view is taken over, also after a failure. */
	ok = add_view(ok ? twin : NULL, "tags", &tags) && ok;
	props = ok ? cJSON_AddObjectToObject(twin, "properties") : NULL;
	ok = add_view(props, "desired", &desired) && ok;
	ok = add_view(props, "reported", &reported) && ok;
	if (!ok) {
		cJSON_Delete(twin);
		return NULL;
	}
	return twin;
}

twin_err twin_get(twin_store *s, const char *device_id, cJSON **out, twin_error *err)
{
	rec_section tags = {0}, desired = {0}, reported = {0};
	twin_identity id;
	int64_t version = 0;
	twin_err rc = db_read_begin(s, err);

	*out = NULL;
	if (rc == TWIN_OK)
		rc = twin_device_get(s, device_id, &id, err);
	if (rc == TWIN_OK)
		rc = rec_load_version(s, device_id, &version, err);
	if (rc == TWIN_OK)
		rc = rec_load_section(s, device_id, TWIN_KIND_TAGS, &tags, err);
	if (rc == TWIN_OK)
		rc = rec_load_section(s, device_id, TWIN_KIND_DESIRED, &desired, err);
	if (rc == TWIN_OK)
		rc = rec_load_section(s, device_id, TWIN_KIND_REPORTED, &reported, err);
	db_read_end(s);
	if (rc == TWIN_OK) {
		*out = twin_view_make(&id, version, section_view(&tags), section_view(&desired),
		                      section_view(&reported));
		if (*out == NULL)
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	rec_sections_free(&tags, &desired, &reported);
	return rc;
}
