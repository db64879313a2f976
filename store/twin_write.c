/*
 * twin_write.c - twin writes: reported patches, back-end updates and
 * replaces (PROTOCOL.md §2.3, §5).
 *
 * Every write parses and validates its whole input before it touches the
 * batch, and merges into scratch trees that are dropped on any failure, so a
 * rejected write leaves versions, etags and data exactly as they were.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "changes_log.h"
#include "db.h"
#include "twin/doc.h"
#include "twin/json.h"
#include "twin/twin.h"
#include "twin_records.h"

static void result_set(twin_write_result *res, int64_t version, const rec_section *desired,
                       const rec_section *reported)
{
	if (res == NULL)
		return;
	res->version = version;
	res->desired_version = desired->version;
	res->reported_version = reported->version;
}

static void stamp_now(twin_store *s, twin_stamp *st, int64_t version)
{
	twin_timestamp_format(twin_store_now(s), st->when);
	st->version = version;
}

/* Parse and validate a device patch; on success *patch is an object. */
static twin_err parse_patch(twin_store *s, const char *body, size_t len, cJSON **patch,
                            twin_error *err)
{
	twin_err rc = twin_json_parse(body, len, s->limits.int_min, s->limits.int_max, patch, err);

	if (rc == TWIN_OK)
		rc = twin_doc_validate(*patch, 1, &s->limits, err);
	if (rc != TWIN_OK) {
		cJSON_Delete(*patch);
		*patch = NULL;
	}
	return rc;
}

twin_err twin_patch_reported(twin_store *s, const char *device_id, const char *body, size_t len,
                             twin_write_result *res, twin_error *err)
{
	rec_section desired = {0}, reported = {0};
	twin_stamp st;
	int64_t version = 0;
	cJSON *patch = NULL, *accepted = NULL;
	twin_err rc = parse_patch(s, body, len, &patch, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = rec_load_version(s, device_id, &version, err);
	/* The section the last PATCH left parsed, else the stored one. */
	if (rc == TWIN_OK && !rec_cache_take(s, device_id, &reported))
		rc = rec_load_section(s, device_id, TWIN_KIND_REPORTED, &reported, err);
	if (rc == TWIN_OK && patch->child == NULL) {
		/* "{}" is not a write (project decision): answer the current version. */
		rc = rec_load_section(s, device_id, TWIN_KIND_DESIRED, &desired, err);
		if (rc == TWIN_OK)
			result_set(res, version, &desired, &reported);
		goto out;
	}
	/* The merge takes the patch apart; the change log needs it whole. */
	if (rc == TWIN_OK && (accepted = cJSON_Duplicate(patch, 1)) == NULL)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc == TWIN_OK) {
		stamp_now(s, &st, 0); /* reported nodes carry no $lastUpdatedVersion */
		rc = twin_doc_merge(reported.data, reported.meta, patch, &st);
		if (rc == TWIN_E_NOMEM)
			twin_error_set(err, rc, "Out of memory.");
	}
	if (rc == TWIN_OK)
		rc = twin_doc_check_size(reported.data, TWIN_SECTION_REPORTED, &s->limits, err);
	if (rc == TWIN_OK) {
		reported.version++;
		version++;
		rc = rec_store_section(s, device_id, TWIN_KIND_REPORTED, &reported, err);
	}
	if (rc == TWIN_OK)
		rc = rec_store_version(s, device_id, version, err);
	if (rc == TWIN_OK) {
		changes_stamp(s, st.when, 0); /* stored packed against the stamp */
		rc = changes_append_update(
		        s, device_id, 1, version, &(changes_section){0}, &(changes_section){0},
		        &(changes_section){accepted, reported.meta, reported.version}, err);
	}
	if (rc == TWIN_OK && res != NULL) {
		res->version = version;
		res->reported_version = reported.version;
		res->desired_version = 0; /* not loaded: a reported patch never reads desired */
	}
	/* In the batch now: keep it parsed for the next PATCH. A failed
	 * write leaves no entry (taken above, freed below). */
	if (rc == TWIN_OK)
		rec_cache_put(s, device_id, &reported);
out:
	cJSON_Delete(patch);
	cJSON_Delete(accepted);
	rec_section_free(&desired);
	rec_section_free(&reported);
	return rc;
}

/* The optional object member name of obj: NULL when absent, TWIN_E_INVALID
 * when present with another type. */
static twin_err optional_object(const cJSON *obj, const char *name, const char *label,
                                const cJSON **out, twin_error *err)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);

	*out = NULL;
	if (m == NULL)
		return TWIN_OK;
	if (!cJSON_IsObject(m))
		return twin_error_set(err, TWIN_E_INVALID, "'%s' must be a JSON object.", label);
	*out = m;
	return TWIN_OK;
}

/* Pick tags and properties.desired out of a back-end body; rejects a non-empty
 * properties.reported when reject_reported (update), ignores it otherwise. */
static twin_err split_body(const cJSON *body, int reject_reported, const cJSON **tags,
                           const cJSON **desired, twin_error *err)
{
	const cJSON *props, *reported;
	twin_err rc;

	if (!cJSON_IsObject(body))
		return twin_error_set(err, TWIN_E_INVALID, "The twin must be a JSON object.");
	rc = optional_object(body, "tags", "tags", tags, err);
	if (rc == TWIN_OK)
		rc = optional_object(body, "properties", "properties", &props, err);
	if (rc == TWIN_OK && props != NULL)
		rc = optional_object(props, "desired", "properties.desired", desired, err);
	if (rc == TWIN_OK && props != NULL && reject_reported)
		rc = optional_object(props, "reported", "properties.reported", &reported, err);
	if (rc == TWIN_OK && props != NULL && reject_reported && reported != NULL &&
	    reported->child != NULL)
		rc = twin_error_set(err, TWIN_E_INVALID,
		                    "properties.reported cannot be written by the back end.");
	return rc;
}

/* A validated private copy of a patch subtree, or NULL for absent/empty. */
static twin_err patch_copy(twin_store *s, const cJSON *src, cJSON **out, twin_error *err)
{
	twin_err rc;

	*out = NULL;
	if (src == NULL || src->child == NULL)
		return TWIN_OK;
	rc = twin_doc_validate(src, 1, &s->limits, err);
	if (rc != TWIN_OK)
		return rc;
	*out = cJSON_Duplicate(src, 1);
	return *out ? TWIN_OK : twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
}

/* Load what a back-end write needs after checking existence and etag. */
static twin_err load_for_write(twin_store *s, const char *device_id, const char *if_match,
                               int64_t *version, rec_section *tags, rec_section *desired,
                               rec_section *reported, twin_error *err)
{
	twin_err rc = twin_device_id_check(device_id, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = rec_load_version(s, device_id, version, err);
	if (rc == TWIN_OK)
		rc = rec_check_etag(*version, if_match, err);
	if (rc == TWIN_OK)
		rc = rec_load_section(s, device_id, TWIN_KIND_TAGS, tags, err);
	if (rc == TWIN_OK)
		rc = rec_load_section(s, device_id, TWIN_KIND_DESIRED, desired, err);
	if (rc == TWIN_OK)
		rc = rec_load_section(s, device_id, TWIN_KIND_REPORTED, reported, err);
	return rc;
}

/* Write tags (when tags_changed), desired (when desired_changed) and the new
 * version. Every failure on the way fails the whole batch (rec_store_section,
 * db_put), because the operation would otherwise be half-applied. */
static twin_err store_backend_write(twin_store *s, const char *device_id, int64_t version,
                                    const rec_section *tags, int tags_changed,
                                    const rec_section *desired, int desired_changed,
                                    twin_error *err)
{
	twin_err rc = TWIN_OK;

	if (tags_changed)
		rc = rec_store_section(s, device_id, TWIN_KIND_TAGS, tags, err);
	if (rc == TWIN_OK && desired_changed)
		rc = rec_store_section(s, device_id, TWIN_KIND_DESIRED, desired, err);
	if (rc == TWIN_OK)
		rc = rec_store_version(s, device_id, version, err);
	return rc;
}

twin_err twin_update(twin_store *s, const char *device_id, const cJSON *patch, const char *if_match,
                     twin_write_result *res, twin_error *err)
{
	const cJSON *tags_in = NULL, *desired_in = NULL;
	cJSON *tags_patch = NULL, *desired_patch = NULL, *old_desired = NULL;
	rec_section tags = {0}, desired = {0}, reported = {0};
	twin_write_result local = {0};
	int64_t version = 0;
	twin_stamp st;
	twin_err rc = split_body(patch, 1, &tags_in, &desired_in, err);

	if (res == NULL)
		res = &local;
	if (rc == TWIN_OK)
		rc = patch_copy(s, tags_in, &tags_patch, err);
	if (rc == TWIN_OK)
		rc = patch_copy(s, desired_in, &desired_patch, err);
	if (rc == TWIN_OK)
		rc = load_for_write(s, device_id, if_match, &version, &tags, &desired, &reported,
		                    err);
	if (rc != TWIN_OK || (tags_patch == NULL && desired_patch == NULL))
		goto out; /* empty sections are not a write (§5.1) */
	if (tags_patch != NULL && twin_doc_merge(tags.data, NULL, tags_patch, NULL) != TWIN_OK)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc == TWIN_OK && tags_patch != NULL)
		rc = twin_doc_check_size(tags.data, TWIN_SECTION_TAGS, &s->limits, err);
	if (rc == TWIN_OK && desired_patch != NULL &&
	    (old_desired = cJSON_Duplicate(desired.data, 1)) == NULL)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc == TWIN_OK && desired_patch != NULL) {
		/* The notification is the patch as accepted, so print it before
		 * merging moves its nodes away. */
		rc = twin_print_with_version(desired_in, desired.version + 1, &res->notification,
		                             &res->notification_len, err);
		stamp_now(s, &st, desired.version + 1);
		if (rc == TWIN_OK &&
		    twin_doc_merge(desired.data, desired.meta, desired_patch, &st) != TWIN_OK)
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
		if (rc == TWIN_OK)
			rc = twin_doc_check_size(desired.data, TWIN_SECTION_DESIRED, &s->limits,
			                         err);
		desired.version++;
	}
	if (rc == TWIN_OK)
		rc = store_backend_write(s, device_id, ++version, &tags, tags_patch != NULL,
		                         &desired, desired_patch != NULL, err);
	if (rc == TWIN_OK && desired_patch != NULL)
		rc = twin_tombstones_record(s, device_id, old_desired, desired.data,
		                            desired.version, err);
	if (rc == TWIN_OK && desired_patch != NULL)
		changes_stamp(s, st.when, desired.version);
	if (rc == TWIN_OK)
		rc = changes_append_update(s, device_id, 0, version,
		                           &(changes_section){tags_patch ? tags_in : NULL, NULL, 0},
		                           &(changes_section){desired_patch ? desired_in : NULL,
		                                              desired.meta, desired.version},
		                           &(changes_section){0}, err);
out:
	if (rc == TWIN_OK)
		result_set(res, version, &desired, &reported);
	else
		twin_write_result_clear(res);
	twin_write_result_clear(&local);
	cJSON_Delete(old_desired);
	cJSON_Delete(tags_patch);
	cJSON_Delete(desired_patch);
	rec_sections_free(&tags, &desired, &reported);
	return rc;
}

/* The new content of a replaced section: a validated copy of in (or {}),
 * null members dropped. For desired, the service-view members a client may
 * echo back from getTwin ("$metadata", "$version" at the root) are ignored. */
static twin_err replacement(twin_store *s, const cJSON *in, int is_desired, cJSON **out,
                            twin_error *err)
{
	twin_err rc;

	*out = in ? cJSON_Duplicate(in, 1) : cJSON_CreateObject();
	if (*out == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (is_desired) {
		cJSON_DeleteItemFromObjectCaseSensitive(*out, "$metadata");
		cJSON_DeleteItemFromObjectCaseSensitive(*out, "$version");
	}
	rc = twin_doc_validate(*out, 1, &s->limits, err);
	if (rc == TWIN_OK)
		twin_doc_drop_nulls(*out);
	return rc;
}

twin_err twin_replace(twin_store *s, const char *device_id, const cJSON *body, const char *if_match,
                      twin_write_result *res, twin_error *err)
{
	const cJSON *tags_in = NULL, *desired_in = NULL;
	cJSON *new_tags = NULL, *new_desired = NULL, *notification = NULL;
	rec_section tags = {0}, desired = {0}, reported = {0};
	twin_write_result local = {0};
	int64_t version = 0;
	twin_stamp st;
	twin_err rc = split_body(body, 0, &tags_in, &desired_in, err);

	if (res == NULL)
		res = &local;
	if (rc == TWIN_OK)
		rc = replacement(s, tags_in, 0, &new_tags, err);
	if (rc == TWIN_OK)
		rc = replacement(s, desired_in, 1, &new_desired, err);
	if (rc == TWIN_OK)
		rc = twin_doc_check_size(new_tags, TWIN_SECTION_TAGS, &s->limits, err);
	if (rc == TWIN_OK)
		rc = twin_doc_check_size(new_desired, TWIN_SECTION_DESIRED, &s->limits, err);
	if (rc == TWIN_OK)
		rc = load_for_write(s, device_id, if_match, &version, &tags, &desired, &reported,
		                    err);
	if (rc != TWIN_OK)
		goto out;
	/* Always a desired write: the device learns the whole new document,
	 * with null for every key that disappeared (§5.3). */
	desired.version++;
	stamp_now(s, &st, desired.version);
	notification = twin_doc_with_removals(desired.data, new_desired);
	cJSON_Delete(desired.meta);
	desired.meta = twin_meta_stamp_all(new_desired, &st);
	if (notification == NULL || desired.meta == NULL) {
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
		goto out;
	}
	rc = twin_print_with_version(notification, desired.version, &res->notification,
	                             &res->notification_len, err);
	cJSON_Delete(tags.data);
	tags.data = new_tags;
	new_tags = NULL;
	if (rc == TWIN_OK)
		rc = store_backend_write(s, device_id, ++version, &tags, 1,
		                         &(rec_section){desired.version, new_desired, desired.meta},
		                         1, err);
	if (rc == TWIN_OK)
		rc = twin_tombstones_record(s, device_id, desired.data, new_desired,
		                            desired.version, err);
	if (rc == TWIN_OK) {
		changes_stamp(s, st.when, desired.version);
		rc = changes_append_twin(s, TWIN_OP_REPLACE_TWIN, device_id, err);
	}
	cJSON_Delete(desired.data);
	desired.data = new_desired;
	new_desired = NULL;
out:
	if (rc == TWIN_OK)
		result_set(res, version, &desired, &reported);
	else
		twin_write_result_clear(res);
	twin_write_result_clear(&local);
	cJSON_Delete(notification);
	cJSON_Delete(new_tags);
	cJSON_Delete(new_desired);
	rec_sections_free(&tags, &desired, &reported);
	return rc;
}

void twin_write_result_clear(twin_write_result *r)
{
	free(r->notification);
	memset(r, 0, sizeof(*r));
}

/* {data…, "$metadata": meta, "$version": v}; takes data and meta. */
