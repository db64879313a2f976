/*
 * jobs.c - bulk twin jobs (twin/jobs.h): records and their life cycle;
 * store/jobs_run.c runs them.
 *
 * Table "jobs": key = jobId; value = a 9-byte header (status, then the
 * ticks at which a scheduled job may start) and the record's JSON text:
 *   {"job":{the job object},"cursor":"<last deviceId visited>",
 *    "actor":{"type","name"},"runStart":<ticks>}
 * The header lets each slice find the job to run by reading one byte per
 * job instead of parsing every record. A slice parses and rewrites one
 * record; jobs are few and slices visit hundreds of twins, so that is noise.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "db.h"
#include "jobs_record.h"
#include "query_ast.h"
#include "twin/doc.h"
#include "twin/jobs.h"
#include "twin/query.h"

twin_err job_nomem(twin_error *err)
{
	return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
}

twin_err job_storage(twin_error *err, int rc)
{
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: jobs: %s", mdb_strerror(rc));
}

/* "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (UTC, from 1970) as ticks; -1 when
 * malformed or out of range. */
static int64_t parse_time(const char *t)
{
	struct tm tm = {0}, back;
	int used = 0, digits = 0;
	int64_t frac = 0, scale = 1000000;
	time_t secs;

	if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6 ||
	    used != 19)
		return -1;
	t += used;
	if (*t == '.')
		for (t++; *t >= '0' && *t <= '9'; t++, scale /= 10, digits++)
			frac += scale > 0 ? (*t - '0') * scale : 0;
	if (strcmp(t, "Z") != 0 || (t[-1] == '.' && digits == 0) || tm.tm_year < 1970)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	back = tm;
	secs = timegm(&tm);
	/* timegm normalises (25:00 is tomorrow, Feb 30 is March): refuse that. */
	if (secs < 0 || tm.tm_year != back.tm_year || tm.tm_mon != back.tm_mon ||
	    tm.tm_mday != back.tm_mday || tm.tm_hour != back.tm_hour || tm.tm_min != back.tm_min ||
	    tm.tm_sec != back.tm_sec)
		return -1;
	return (int64_t)secs * 10000000 + frac;
}

/* A syntax error's position in the query built around a condition, moved
 * back into the condition the user wrote. */
static void error_in_condition(twin_error *err, size_t prefix)
{
	size_t pos;
	int used = 0;
	char rest[sizeof(err->message)];

	if (err == NULL || sscanf(err->message, "Syntax error at position %zu%n", &pos, &used) != 1)
		return;
	snprintf(rest, sizeof(rest), "%s", err->message + used);
	if (pos < prefix) /* about the words added around the condition */
		twin_error_set(err, err->err, "Invalid 'queryCondition'%.200s", rest);
	else
		twin_error_set(err, err->err,
		               "Syntax error in queryCondition at position %zu%.200s", pos - prefix,
		               rest);
}

/* The query a condition stands for ("…", "WHERE …" or "SELECT …"). */
twin_err job_parse_condition(const char *cond, twin_query **q, twin_error *err)
{
	size_t n = strlen(cond), skip = strspn(cond, " \t\r\n");
	const char *prefix = strncasecmp(cond + skip, "SELECT", 6) == 0 ? ""
	                     : strncasecmp(cond + skip, "WHERE", 5) == 0
	                             ? "SELECT * FROM devices "
	                             : "SELECT * FROM devices WHERE ";
	char *text = malloc(n + 40);
	twin_err rc;

	if (text == NULL)
		return job_nomem(err);
	snprintf(text, n + 40, "%s%s", prefix, cond);
	rc = twin_query_parse(text, strlen(text), q, err);
	if (rc == TWIN_E_INVALID)
		error_in_condition(err, strlen(prefix));
	free(text);
	if (rc == TWIN_OK &&
	    ((*q)->aggregate || (*q)->ngroup > 0 || (*q)->top >= 0 || (*q)->modules)) {
		twin_query_free(*q);
		*q = NULL;
		rc = twin_error_set(err, TWIN_E_INVALID,
		                    "'queryCondition' must select devices: no aggregates, GROUP "
		                    "BY, TOP or devices.modules.");
	}
	return rc;
}

/* ---- records ---- */

void job_rec_free(job_rec *r)
{
	cJSON_Delete(r->root);
	r->root = r->job = NULL;
}

/* Every member a record needs (twin/jobs.h), with its type. */
static int rec_whole(const job_rec *r)
{
	static const char *strings[] = {"jobId",          "type",        "status",
	                                "queryCondition", "createdTime", "startTime"};
	static const char *stats[] = {"deviceCount", "failedCount", "succeededCount",
	                              "runningCount", "pendingCount"};
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->job, "deviceJobStatistics");
	const cJSON *pr = cJSON_GetObjectItemCaseSensitive(r->job, "progress");

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r->job, strings[i])))
			return 0;
	for (size_t i = 0; i < sizeof(stats) / sizeof(stats[0]); i++)
		if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(st, stats[i])))
			return 0;
	return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->job, "updateTwin")) &&
	       cJSON_IsNumber(
	               cJSON_GetObjectItemCaseSensitive(r->job, "maxExecutionTimeInSeconds")) &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(pr, "scanned")) &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(pr, "total")) &&
	       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r->root, "cursor")) &&
	       cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->root, "actor")) &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r->root, "runStart"));
}

twin_err job_rec_load(twin_store *s, const char *id, job_rec *r, twin_error *err)
{
	MDB_val v;
	twin_err rc;

	memset(r, 0, sizeof(*r));
	if (strlen(id) > TWIN_JOB_ID_MAX)
		return twin_error_set(err, TWIN_E_NOT_FOUND, "Job '%.128s' not found.", id);
	rc = db_read_begin(s, err);
	if (rc != TWIN_OK)
		return rc;
	rc = db_get(s, DB_JOBS, id, strlen(id), &v, err);
	if (rc == TWIN_E_NOT_FOUND)
		twin_error_set(err, rc, "Job '%s' not found.", id);
	if (rc == TWIN_OK) {
		r->root = v.mv_size > HDR
		                  ? cJSON_ParseWithLength((char *)v.mv_data + HDR, v.mv_size - HDR)
		                  : NULL;
		r->job = cJSON_GetObjectItemCaseSensitive(r->root, "job");
		if (r->job == NULL || !rec_whole(r))
			rc = twin_error_set(err, TWIN_E_STORAGE,
			                    "Storage error: job '%s' is corrupt.", id);
	}
	db_read_end(s);
	if (rc == TWIN_OK)
		strcpy(r->id, id);
	else
		job_rec_free(r);
	return rc;
}

const char *job_status(const job_rec *r)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->job, "status");

	return cJSON_IsString(st) ? st->valuestring : "failed";
}

static int64_t start_ticks(const job_rec *r)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->job, "startTime");

	int64_t at = cJSON_IsString(t) ? parse_time(t->valuestring) : 0;

	return at > 0 ? at : 0;
}

char job_header_status(const char *status)
{
	return strcmp(status, "queued") == 0      ? ST_QUEUED
	       : strcmp(status, "scheduled") == 0 ? ST_SCHEDULED
	       : strcmp(status, "running") == 0   ? ST_RUNNING
	                                          : ST_DONE;
}

twin_err job_rec_store(twin_store *s, job_rec *r, twin_error *err)
{
	twin_buf b = {0};
	unsigned char hdr[HDR];
	int64_t start = start_ticks(r);
	twin_err rc;

	hdr[0] = (unsigned char)job_header_status(job_status(r));
	memcpy(hdr + 1, &start, sizeof(start));
	if (!twin_buf_put(&b, hdr, HDR) || !twin_json_print_append(&b, r->root)) {
		cJSON_free(b.data);
		db_fail_batch(s);
		return job_nomem(err);
	}
	rc = db_put(s, DB_JOBS, r->id, strlen(r->id), b.data, b.len, err);
	cJSON_free(b.data);
	return rc;
}

int job_set_number(cJSON *obj, const char *name, double v)
{
	cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (n == NULL)
		return cJSON_AddNumberToObject(obj, name, v) != NULL;
	cJSON_SetNumberValue(n, v);
	return 1;
}

/* Set member name of obj to item (taken; freed if it cannot be added). */
static int set_item(cJSON *obj, const char *name, cJSON *item)
{
	cJSON *old = cJSON_GetObjectItemCaseSensitive(obj, name);
	size_t n = strlen(name) + 1;

	if (item == NULL)
		return 0;
	if (old == NULL) {
		if (cJSON_AddItemToObject(obj, name, item))
			return 1;
		cJSON_Delete(item);
		return 0;
	}
	/* Not cJSON_ReplaceItemInObject: cJSON 1.7.15 does not check the copy
	 * of the name it makes, and puts in a member without one ("") when
	 * memory runs out. */
	item->string = cJSON_malloc(n);
	if (item->string == NULL) {
		cJSON_Delete(item);
		return 0;
	}
	memcpy(item->string, name, n);
	return cJSON_ReplaceItemViaPointer(obj, old, item);
}

int job_set_string(cJSON *obj, const char *name, const char *v)
{
	return set_item(obj, name, cJSON_CreateString(v));
}

static int set_time(cJSON *obj, const char *name, int64_t ticks)
{
	char when[TWIN_TIMESTAMP_MAX];

	twin_timestamp_format(ticks, when);
	return job_set_string(obj, name, when);
}

/* Count n more of name in the job's deviceJobStatistics. */
void job_count(job_rec *r, const char *name, double n)
{
	cJSON *stats = cJSON_GetObjectItemCaseSensitive(r->job, "deviceJobStatistics");
	cJSON *c = cJSON_GetObjectItemCaseSensitive(stats, name);

	if (cJSON_IsNumber(c))
		cJSON_SetNumberValue(c, c->valuedouble + n);
}

int job_finish(twin_store *s, job_rec *r, const char *status, const char *reason)
{
	return job_set_string(r->job, "status", status) &&
	       set_time(r->job, "endTime", twin_store_now(s)) &&
	       (reason == NULL || job_set_string(r->job, "failureReason", reason));
}

/* ---- commands ---- */

static twin_err check_update(twin_store *s, const cJSON *u, twin_error *err)
{
	const cJSON *etag = cJSON_GetObjectItemCaseSensitive(u, "etag");
	const cJSON *tags = cJSON_GetObjectItemCaseSensitive(u, "tags");
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(u, "properties");
	const cJSON *desired = cJSON_GetObjectItemCaseSensitive(props, "desired");
	const cJSON *reported = cJSON_GetObjectItemCaseSensitive(props, "reported");

	if (!cJSON_IsObject(u))
		return twin_error_set(err, TWIN_E_INVALID, "'updateTwin' must be an object.");
	if (etag != NULL && !cJSON_IsString(etag))
		return twin_error_set(err, TWIN_E_INVALID, "'updateTwin.etag' must be a string.");
	if ((tags != NULL && !cJSON_IsObject(tags)) || (props != NULL && !cJSON_IsObject(props)) ||
	    (desired != NULL && !cJSON_IsObject(desired)))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'updateTwin' tags and properties.desired must be objects.");
	if (reported != NULL)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "properties.reported cannot be written by the back end.");
	if ((tags == NULL || tags->child == NULL) && (desired == NULL || desired->child == NULL))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'updateTwin' must set tags or desired properties.");
	if (tags != NULL && twin_doc_validate(tags, 1, &s->limits, err) != TWIN_OK)
		return TWIN_E_INVALID;
	if (desired != NULL && twin_doc_validate(desired, 1, &s->limits, err) != TWIN_OK)
		return TWIN_E_INVALID;
	return TWIN_OK;
}

const char *job_spec_string(const cJSON *spec, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A new record for a valid spec. */
static twin_err rec_new(twin_store *s, const cJSON *spec, job_rec *r, twin_error *err)
{
	const char *id = job_spec_string(spec, "jobId"), *type = job_spec_string(spec, "type");
	const char *cond = job_spec_string(spec, "queryCondition"),
	           *start = job_spec_string(spec, "startTime");
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(spec, "maxExecutionTimeInSeconds");
	const cJSON *update = cJSON_GetObjectItemCaseSensitive(spec, "updateTwin");
	int64_t now = twin_store_now(s), at = start ? parse_time(start) : 0;
	const cJSON *start_item = cJSON_GetObjectItemCaseSensitive(spec, "startTime");
	double max_s = TWIN_JOB_MAX_EXECUTION_DEFAULT;
	twin_query *q = NULL;
	cJSON *stats, *progress;
	twin_err rc;

	memset(r, 0, sizeof(*r));
	if (id == NULL || !twin_device_id_valid(id))
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "'jobId' must be 1 to 128 letters, digits or - : . + %% _ # * "
		        "? ! ( ) , = @ ; $ '.");
	if (type == NULL || strcmp(type, "scheduleUpdateTwin") != 0)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'type' must be \"scheduleUpdateTwin\" (the only job type).");
	if (cond == NULL)
		return twin_error_set(err, TWIN_E_INVALID, "'queryCondition' is missing.");
	if ((start_item != NULL && start == NULL) || at < 0)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'startTime' must be an ISO 8601 UTC time such as "
		                      "2026-11-24T10:00:00Z.");
	if (max != NULL) {
		max_s = cJSON_IsNumber(max) ? max->valuedouble : 0;
		if (max_s < 1 || max_s > 2147483647 || max_s != (double)(long long)max_s)
			return twin_error_set(
			        err, TWIN_E_INVALID,
			        "'maxExecutionTimeInSeconds' must be an integer from 1 "
			        "to 2147483647.");
	}
	rc = check_update(s, update, err);
	if (rc == TWIN_OK)
		rc = job_parse_condition(cond, &q, err);
	twin_query_free(q);
	if (rc != TWIN_OK)
		return rc;
	r->root = cJSON_CreateObject();
	r->job = cJSON_AddObjectToObject(r->root, "job");
	if (r->job == NULL) {
		job_rec_free(r);
		return job_nomem(err);
	}
	strcpy(r->id, id);
	job_set_string(r->job, "jobId", id);
	job_set_string(r->job, "type", type);
	job_set_string(r->job, "status", at > now ? "scheduled" : "queued");
	job_set_string(r->job, "queryCondition", cond);
	set_item(r->job, "updateTwin", cJSON_Duplicate(update, 1));
	set_time(r->job, "createdTime", now);
	set_time(r->job, "startTime", at > now ? at : now);
	job_set_number(r->job, "maxExecutionTimeInSeconds", max_s);
	stats = cJSON_AddObjectToObject(r->job, "deviceJobStatistics");
	progress = cJSON_AddObjectToObject(r->job, "progress");
	for (int i = 0; i < 5; i++)
		job_set_number(stats,
		               (const char *[]){"deviceCount", "failedCount", "succeededCount",
		                                "runningCount", "pendingCount"}[i],
		               0);
	job_set_number(progress, "scanned", 0);
	job_set_number(progress, "total", 0);
	job_set_string(r->root, "cursor", "");
	set_item(r->root, "actor", cJSON_Parse(s->chg.actor));
	job_set_number(r->root, "runStart", 0);
	/* The setters above cannot report memory running out: check the
	 * record is whole instead. */
	if (!rec_whole(r)) {
		job_rec_free(r);
		return job_nomem(err);
	}
	return TWIN_OK;
}

static twin_err job_out(job_rec *r, cJSON **out, twin_error *err)
{
	if (out == NULL)
		return TWIN_OK;
	*out = cJSON_Duplicate(r->job, 1);
	return *out ? TWIN_OK : job_nomem(err);
}

twin_err twin_job_create(twin_store *s, const cJSON *spec, cJSON **out, twin_error *err)
{
	job_rec r;
	MDB_val v;
	twin_err rc;

	if (out != NULL)
		*out = NULL;
	if (!cJSON_IsObject(spec))
		return twin_error_set(err, TWIN_E_INVALID, "The job must be a JSON object.");
	rc = rec_new(s, spec, &r, err);
	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK && db_get(s, DB_JOBS, r.id, strlen(r.id), &v, NULL) == TWIN_OK)
		rc = twin_error_set(err, TWIN_E_EXISTS, "Job '%s' already exists.", r.id);
	/* The answer first: once the record is in the batch, nothing may fail. */
	if (rc == TWIN_OK)
		rc = job_out(&r, out, err);
	if (rc == TWIN_OK)
		rc = job_rec_store(s, &r, err);
	if (rc == TWIN_OK)
		s->jobs_hint = 1;
	else if (out != NULL) {
		cJSON_Delete(*out);
		*out = NULL;
	}
	job_rec_free(&r);
	return rc;
}

twin_err twin_job_get(twin_store *s, const char *job_id, cJSON **out, twin_error *err)
{
	job_rec r;
	twin_err rc = job_rec_load(s, job_id, &r, err);

	*out = NULL;
	if (rc == TWIN_OK)
		rc = job_out(&r, out, err);
	job_rec_free(&r);
	return rc;
}

twin_err twin_job_cancel(twin_store *s, const char *job_id, cJSON **out, twin_error *err)
{
	job_rec r;
	int open;
	twin_err rc = db_write_begin(s, err);

	if (out != NULL)
		*out = NULL;
	if (rc == TWIN_OK)
		rc = job_rec_load(s, job_id, &r, err);
	if (rc != TWIN_OK)
		return rc;
	open = job_header_status(job_status(&r)) != ST_DONE;
	if (open && !job_finish(s, &r, "cancelled", NULL))
		rc = job_nomem(err);
	if (rc == TWIN_OK)
		rc = job_out(&r, out, err);
	if (rc == TWIN_OK && open)
		rc = job_rec_store(s, &r, err);
	if (rc != TWIN_OK && out != NULL) {
		cJSON_Delete(*out);
		*out = NULL;
	}
	job_rec_free(&r);
	return rc;
}

twin_err twin_job_list(twin_store *s, cJSON **out, twin_error *err)
{
	cJSON *res = cJSON_CreateObject(), *jobs = cJSON_AddArrayToObject(res, "jobs");
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	twin_err rc;
	int mrc;

	*out = NULL;
	if (jobs == NULL) {
		cJSON_Delete(res);
		return job_nomem(err);
	}
	rc = db_read_begin(s, err);
	if (rc != TWIN_OK) {
		cJSON_Delete(res);
		return rc;
	}
	mrc = mdb_cursor_open(db_txn(s), s->dbi[DB_JOBS], &cur);
	for (int op = MDB_FIRST; mrc == 0; op = MDB_NEXT) {
		cJSON *root, *job;

		if ((mrc = mdb_cursor_get(cur, &k, &v, op)) != 0)
			break;
		root = v.mv_size > HDR
		               ? cJSON_ParseWithLength((char *)v.mv_data + HDR, v.mv_size - HDR)
		               : NULL;
		/* Records are written whole (job_rec_store), so one that does
		 * not parse means memory ran out. */
		job = cJSON_DetachItemFromObjectCaseSensitive(root, "job");
		cJSON_Delete(root);
		if (job == NULL || !cJSON_AddItemToArray(jobs, job)) {
			cJSON_Delete(job);
			mrc = ENOMEM;
		}
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_read_end(s);
	if (mrc != MDB_NOTFOUND) {
		cJSON_Delete(res);
		return mrc == ENOMEM ? job_nomem(err) : job_storage(err, mrc);
	}
	*out = res;
	return TWIN_OK;
}
