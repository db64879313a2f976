/*
 * test_faults.c - every allocation and every LMDB call on the store's hot
 * paths, failed in turn (fault.h), SQLite-style.
 *
 * For each operation the plugin performs (a device's GET and PATCH, a back
 * end's update, replace, identity changes, connection events, catch-up,
 * queries, replay, retention, jobs) and for each kind of fault, the n-th
 * call fails for n = 1, 2, … until the operation runs without reaching
 * call n. Each time:
 *   - the operation either fails with what the plugin answers as 500
 *     (TWIN_E_NOMEM, TWIN_E_STORAGE) and hands back nothing, or succeeds
 *     with exactly the result it has without faults (a full map is grown);
 *   - the commit of its batch either succeeds or fails with TWIN_E_STORAGE;
 *   - the database then holds, byte for byte in every table, what it held
 *     before the batch, or after the batch without the failed operation (a
 *     request accepted earlier in the batch is kept), or after the whole
 *     batch; which one is decided by the two return codes alone, so the
 *     plugin's replies are always true;
 *   - the change log entries handed out for publishing (twin_changes_drain)
 *     are those of what was committed, or none when memory ran out for them;
 *   - the store goes on working without a reopen (the operation, retried
 *     without faults, gives the state it must), and reopened holds the same;
 *   - nothing leaks: LeakSanitizer in the ASan build, valgrind by hand.
 *
 * Every iteration starts from a copy of one template database, so each
 * operation's reference run and its faulted runs see the same bytes, with
 * the clock fixed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h" /* the tables, to compare whole databases */
#include "fault.h"
#include "test_support.h"
#include "twin/changes.h"
#include "twin/jobs.h"
#include "twin/query.h"
#include "twin/registry.h"
#include "twin/twin.h"

/* What an operation handed back, printed after the faults are disarmed
 * (printing allocates). */
typedef struct outcome {
	twin_write_result wr;
	cJSON *json;
	char *text;
	size_t len;
	int64_t num;
	char log[512]; /* job updates, written by the callback without allocating */
} outcome;

typedef twin_err (*op_fn)(twin_store *s, outcome *o, twin_error *err);

typedef struct scenario {
	const char *name;
	op_fn run;
} scenario;

static char *template_dir;

/* ---- databases ---- */

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out;
	ssize_t n;

	assert_true(in >= 0);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	close(in);
	close(out);
}

/* A fresh copy of the template in its own directory. */
static twin_store *open_copy(const char *dir)
{
	char from[4200], to[4200];
	twin_store_options o;
	twin_store *s = NULL;
	twin_error err = {0};

	mkdir(dir, 0700);
	snprintf(from, sizeof(from), "%s/data.mdb", template_dir);
	snprintf(to, sizeof(to), "%s/data.mdb", dir);
	copy_file(from, to);
	twin_store_options_default(&o);
	o.path = dir;
	o.clock = test_clock;
	o.drain_changes = 1;
	if (twin_store_open(&o, &s, &err) != TWIN_OK)
		fail_msg("open %s: %s", dir, err.message);
	return s;
}

static twin_store *reopen(twin_store *s, const char *dir)
{
	twin_store_options o;
	twin_error err = {0};

	twin_store_close(s);
	twin_store_options_default(&o);
	o.path = dir;
	o.clock = test_clock;
	o.drain_changes = 1;
	if (twin_store_open(&o, &s, &err) != TWIN_OK)
		fail_msg("reopen %s: %s", dir, err.message);
	return s;
}

static void put_hex(twin_buf *b, const MDB_val *v)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = v->mv_data;

	for (size_t i = 0; i < v->mv_size; i++) {
		char two[2] = {hex[p[i] >> 4], hex[p[i] & 15]};

		assert_true(twin_buf_put(b, two, 2));
	}
}

/* Every table's every record, one line each: what "nothing corrupts" is
 * compared on. Committed state only (between batches). */
static char *fingerprint(twin_store *s)
{
	twin_buf b = {0};
	MDB_txn *txn;

	assert_false(twin_store_batch_open(s));
	assert_int_equal(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn), 0);
	for (int t = 0; t < DB_TABLE_COUNT; t++) {
		MDB_cursor *c;
		MDB_val k, v;
		char tag[8];
		int rc;

		assert_int_equal(mdb_cursor_open(txn, s->dbi[t], &c), 0);
		snprintf(tag, sizeof(tag), "%d:", t);
		for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			assert_true(twin_buf_put(&b, tag, strlen(tag)));
			put_hex(&b, &k);
			assert_true(twin_buf_put(&b, "=", 1));
			put_hex(&b, &v);
			assert_true(twin_buf_put(&b, "\n", 1));
		}
		assert_int_equal(rc, MDB_NOTFOUND);
		mdb_cursor_close(c);
	}
	mdb_txn_abort(txn);
	assert_true(twin_buf_put(&b, "", 1));
	return (char *)b.data;
}

/* Fail showing where two fingerprints first differ: the line's table and
 * key, and the bytes around the difference. */
static void assert_same_db(const char *got, const char *want, const char *what)
{
	size_t i = 0, line = 0, from;

	if (strcmp(got, want) == 0)
		return;
	while (got[i] == want[i]) {
		if (got[i] == '\n')
			line = i + 1;
		i++;
	}
	from = i - line > 80 ? i - 40 : line;
	fail_msg("%s: database differs in the record\n  %.60s\nat byte %zu:\n  got  %.120s\n"
	         "  want %.120s",
	         what, got + line, (i - line) / 2, got + from, want + from);
}

static void on_change(void *arg, const twin_change *c)
{
	twin_buf *b = arg;

	assert_true(twin_buf_put(b, c->body, c->body_len));
	assert_true(twin_buf_put(b, "\n", 1));
}

/* The entries twin_changes_drain hands out now, as text ("" for none). */
static char *drained(twin_store *s)
{
	twin_buf b = {0};

	twin_changes_drain(s, on_change, &b);
	assert_true(twin_buf_put(&b, "", 1));
	return (char *)b.data;
}

/* ---- outcomes ---- */

static int outcome_empty(const outcome *o)
{
	return o->wr.notification == NULL && o->json == NULL && o->text == NULL;
}

static char *outcome_text(const outcome *o)
{
	char *json = o->json ? cJSON_PrintUnformatted(o->json) : NULL, *out;
	int n;

	n = asprintf(&out, "v=%lld d=%lld r=%lld num=%lld log=[%s] note=%.*s json=%s text=%.*s",
	             (long long)o->wr.version, (long long)o->wr.desired_version,
	             (long long)o->wr.reported_version, (long long)o->num, o->log,
	             (int)o->wr.notification_len, o->wr.notification ? o->wr.notification : "",
	             json ? json : "", (int)o->len, o->text ? o->text : "");
	assert_true(n >= 0);
	free(json);
	return out;
}

static void outcome_clear(outcome *o)
{
	twin_write_result_clear(&o->wr);
	cJSON_Delete(o->json);
	free(o->text);
	memset(o, 0, sizeof(*o));
}

/* ---- the template database ---- */

static cJSON *spec_with_keys(const char *extra)
{
	char text[512];

	/* Explicit keys: generated ones would differ between two runs. */
	snprintf(text, sizeof(text),
	         "{\"authentication\":{\"type\":\"sas\",\"symmetricKey\":{\"primaryKey\":"
	         "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\",\"secondaryKey\":"
	         "\"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\"}}%s}",
	         extra);
	return cJSON_Parse(text); /* NULL when an injected fault hits it */
}

static void create(twin_store *s, const char *id)
{
	cJSON *spec = spec_with_keys("");
	twin_error err = {0};

	assert_non_null(spec);
	if (twin_device_create(s, id, spec, NULL, &err) != TWIN_OK)
		fail_msg("create %s: %s", id, err.message);
	cJSON_Delete(spec);
}

static void update(twin_store *s, const char *id, const char *patch)
{
	cJSON *j = test_json(patch);
	twin_error err = {0};

	if (twin_update(s, id, j, NULL, NULL, &err) != TWIN_OK)
		fail_msg("update %s: %s", id, err.message);
	cJSON_Delete(j);
}

static void patch(twin_store *s, const char *id, const char *body)
{
	twin_error err = {0};

	if (twin_patch_reported(s, id, body, strlen(body), NULL, &err) != TWIN_OK)
		fail_msg("patch %s: %s", id, err.message);
}

static void commit(twin_store *s)
{
	twin_error err = {0};

	if (twin_store_commit(s, &err) != TWIN_OK)
		fail_msg("commit: %s", err.message);
}

/* Three devices with all sections, a bystander, a connected device, a
 * change log, a job waiting to run and one scheduled for later. */
static void make_template(void)
{
	static const char *ids[] = {"dev1", "dev2", "dev3", "by"};
	twin_store_options o;
	twin_error err = {0};
	twin_store *s;
	cJSON *job;

	template_dir = test_dir_new("faults_template");
	twin_store_options_default(&o);
	o.path = template_dir;
	o.clock = test_clock;
	assert_int_equal(twin_store_open(&o, &s, &err), TWIN_OK);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		create(s, ids[i]);
		update(s, ids[i],
		       "{\"tags\":{\"t\":1,\"site\":{\"n\":\"north\"}},\"properties\":{\"desired\":"
		       "{\"a\":1,\"b\":{\"c\":[1,2]},\"gone\":true}}}");
		patch(s, ids[i], "{\"r\":1,\"s\":{\"x\":\"y\"}}");
	}
	update(s, "dev2", "{\"tags\":{\"t\":2},\"properties\":{\"desired\":{\"gone\":null}}}");
	assert_int_equal(twin_device_set_connected(s, "dev2", 1, &err), TWIN_OK);
	job = test_json("{\"jobId\":\"waiting\",\"type\":\"scheduleUpdateTwin\",\"queryCondition\":"
	                "\"tags.t = 1\",\"updateTwin\":{\"tags\":{\"j\":1},\"properties\":"
	                "{\"desired\":{\"j\":1}}}}");
	assert_int_equal(twin_job_create(s, job, NULL, &err), TWIN_OK);
	cJSON_Delete(job);
	job = test_json("{\"jobId\":\"later\",\"type\":\"scheduleUpdateTwin\",\"queryCondition\":"
	                "\"tags.t = 2\",\"startTime\":\"2099-01-01T00:00:00Z\",\"updateTwin\":"
	                "{\"properties\":{\"desired\":{\"k\":1}}}}");
	assert_int_equal(twin_job_create(s, job, NULL, &err), TWIN_OK);
	cJSON_Delete(job);
	commit(s);
	twin_store_close(s);
}

/* A request that joined the batch before the faulted one. */
static void bystander(twin_store *s)
{
	patch(s, "by", "{\"by\":1}");
}

/* ---- the operations ---- */

static twin_err op_device_get(twin_store *s, outcome *o, twin_error *err)
{
	return twin_get_device_body(s, "dev1", &o->text, &o->len, &o->num, err);
}

static twin_err op_device_patch(twin_store *s, outcome *o, twin_error *err)
{
	static const char body[] = "{\"r\":2,\"s\":{\"x\":null,\"z\":[1,{\"q\":1}]},\"new\":\"v\"}";

	return twin_patch_reported(s, "dev1", body, sizeof(body) - 1, &o->wr, err);
}

static twin_err op_service_get(twin_store *s, outcome *o, twin_error *err)
{
	return twin_get(s, "dev2", &o->json, err);
}

static twin_err op_update(twin_store *s, outcome *o, twin_error *err)
{
	cJSON *j = cJSON_Parse("{\"tags\":{\"t\":3,\"site\":null},\"properties\":{\"desired\":"
	                       "{\"a\":2,\"b\":{\"c\":null,\"d\":\"e\"},\"n\":[1,2,3]}}}");
	twin_err rc;

	if (j == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory (the test's parse).");
	rc = twin_update(s, "dev2", j, "*", &o->wr, err);
	cJSON_Delete(j);
	return rc;
}

static twin_err op_replace(twin_store *s, outcome *o, twin_error *err)
{
	cJSON *j = cJSON_Parse("{\"tags\":{\"only\":true},\"properties\":{\"desired\":"
	                       "{\"fresh\":{\"x\":1}}}}");
	twin_err rc;

	if (j == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory (the test's parse).");
	rc = twin_replace(s, "dev3", j, NULL, &o->wr, err);
	cJSON_Delete(j);
	return rc;
}

static twin_err op_device_create(twin_store *s, outcome *o, twin_error *err)
{
	cJSON *spec = spec_with_keys(",\"status\":\"enabled\"");
	twin_err rc;

	(void)o;
	if (spec == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory (the test's parse).");
	rc = twin_device_create(s, "newdev", spec, NULL, err);
	cJSON_Delete(spec);
	return rc;
}

static twin_err op_device_update(twin_store *s, outcome *o, twin_error *err)
{
	cJSON *spec = cJSON_Parse("{\"status\":\"disabled\",\"statusReason\":\"faults\"}");
	twin_err rc;

	(void)o;
	if (spec == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory (the test's parse).");
	rc = twin_device_update(s, "dev1", spec, "*", NULL, err);
	cJSON_Delete(spec);
	return rc;
}

static twin_err op_device_delete(twin_store *s, outcome *o, twin_error *err)
{
	(void)o;
	return twin_device_delete(s, "dev2", NULL, err);
}

static twin_err op_connect(twin_store *s, outcome *o, twin_error *err)
{
	(void)o;
	return twin_device_set_connected(s, "dev1", 1, err);
}

static twin_err op_disconnect(twin_store *s, outcome *o, twin_error *err)
{
	(void)o;
	return twin_device_set_connected(s, "dev2", 0, err);
}

static twin_err op_session(twin_store *s, outcome *o, twin_error *err)
{
	twin_session ses = {
	        .res_qos = 1, .desired_qos = 0, .notified_version = 3, .connection_base = 2};

	(void)o;
	return twin_session_put(s, "dev1", &ses, err);
}

static twin_err op_catch_up(twin_store *s, outcome *o, twin_error *err)
{
	return twin_desired_since(s, "dev2", 1, &o->text, &o->len, &o->num, err);
}

/* One page of a query, parsed and stepped as the plugin's worker does. */
static twin_err run_query(twin_store *s, const char *text, size_t page_size, size_t step,
                          outcome *o, twin_error *err)
{
	twin_query *query = NULL;
	twin_query_run *run = NULL;
	char *continuation = NULL;
	int done = 0;
	twin_err rc = twin_query_parse(text, strlen(text), &query, err);

	if (rc == TWIN_OK)
		rc = twin_query_start(s, query, NULL, page_size, &run, err);
	while (rc == TWIN_OK && !done)
		rc = twin_query_step(run, step, &done, err);
	if (rc == TWIN_OK)
		rc = twin_query_page(run, &o->json, &continuation, err);
	if (rc == TWIN_OK)
		o->num = continuation != NULL;
	free(continuation);
	twin_query_end(run);
	twin_query_free(query);
	return rc;
}

static twin_err op_query(twin_store *s, outcome *o, twin_error *err)
{
	return run_query(s,
	                 "SELECT deviceId, tags.site.n AS site, properties.desired.b FROM devices "
	                 "WHERE tags.t = 1 AND properties.reported.r >= 1 OR deviceId IN ['dev2']",
	                 2, 1, o, err);
}

static twin_err op_query_group(twin_store *s, outcome *o, twin_error *err)
{
	return run_query(s, "SELECT tags.t, COUNT() AS n FROM devices GROUP BY tags.t", 0, 2, o,
	                 err);
}

static twin_err op_list_devices(twin_store *s, outcome *o, twin_error *err)
{
	return twin_device_list(s, NULL, 3, &o->json, err);
}

static twin_err op_changes_read(twin_store *s, outcome *o, twin_error *err)
{
	return twin_changes_read(s, 2, 100, NULL, 0, &o->json, err);
}

static twin_err op_changes_trim(twin_store *s, outcome *o, twin_error *err)
{
	size_t deleted = 0;
	twin_err rc = twin_changes_trim(s, 5, 0, 1000, &deleted, err);

	o->num = (int64_t)deleted;
	return rc;
}

static twin_err op_job_create(twin_store *s, outcome *o, twin_error *err)
{
	cJSON *spec =
	        cJSON_Parse("{\"jobId\":\"new\",\"type\":\"scheduleUpdateTwin\","
	                    "\"queryCondition\":\"WHERE tags.site.n = 'north'\",\"updateTwin\":"
	                    "{\"etag\":\"*\",\"properties\":{\"desired\":{\"n\":{\"m\":1}}}}}");
	twin_err rc;

	if (spec == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory (the test's parse).");
	rc = twin_job_create(s, spec, &o->json, err);
	cJSON_Delete(spec);
	return rc;
}

static void on_job_update(void *arg, const char *device_id, twin_write_result *res)
{
	outcome *o = arg;
	size_t n = strlen(o->log);

	snprintf(o->log + n, sizeof(o->log) - n, "%s:%lld:%s ", device_id, (long long)res->version,
	         res->notification ? res->notification : "-");
}

static twin_err op_job_step(twin_store *s, outcome *o, twin_error *err)
{
	twin_jobs_state st; /* not compared: a fault may turn "idle" into "look again" */

	return twin_jobs_step(s, 10, on_job_update, o, &st, err);
}

static twin_err op_job_get(twin_store *s, outcome *o, twin_error *err)
{
	return twin_job_get(s, "waiting", &o->json, err);
}

static twin_err op_job_list(twin_store *s, outcome *o, twin_error *err)
{
	return twin_job_list(s, &o->json, err);
}

static twin_err op_job_cancel(twin_store *s, outcome *o, twin_error *err)
{
	return twin_job_cancel(s, "later", &o->json, err);
}

static const scenario scenarios[] = {
        {"device GET", op_device_get},
        {"device reported PATCH", op_device_patch},
        {"service getTwin", op_service_get},
        {"updateTwin", op_update},
        {"replaceTwin", op_replace},
        {"createDevice", op_device_create},
        {"updateDevice", op_device_update},
        {"deleteDevice", op_device_delete},
        {"connect", op_connect},
        {"disconnect", op_disconnect},
        {"session state", op_session},
        {"desired catch-up", op_catch_up},
        {"query", op_query},
        {"query GROUP BY", op_query_group},
        {"listDevices", op_list_devices},
        {"getChanges", op_changes_read},
        {"change log retention", op_changes_trim},
        {"createJob", op_job_create},
        {"job slice", op_job_step},
        {"getJob", op_job_get},
        {"listJobs", op_job_list},
        {"cancelJob", op_job_cancel},
};

/* ---- the driver ---- */

/* What the scenario does without faults, from the template: the database
 * after the bystander alone, after bystander and operation in one batch,
 * after the operation alone; the drained entries of each; the result. */
typedef struct reference {
	char *base, *by, *both, *alone;
	char *drain_by, *drain_both, *drain_alone;
	char *result;
} reference;

static void reference_make(const scenario *sc, const char *dir, reference *r)
{
	twin_error err = {0};
	outcome o = {0};
	twin_store *s = open_copy(dir);

	r->base = fingerprint(s);
	bystander(s);
	commit(s);
	r->by = fingerprint(s);
	r->drain_by = drained(s);
	twin_store_close(s);

	s = open_copy(dir);
	bystander(s);
	if (sc->run(s, &o, &err) != TWIN_OK)
		fail_msg("%s without faults: %s", sc->name, err.message);
	commit(s);
	r->both = fingerprint(s);
	r->drain_both = drained(s);
	r->result = outcome_text(&o);
	outcome_clear(&o);
	twin_store_close(s);

	s = open_copy(dir);
	if (sc->run(s, &o, &err) != TWIN_OK)
		fail_msg("%s without faults: %s", sc->name, err.message);
	commit(s);
	r->alone = fingerprint(s);
	r->drain_alone = drained(s);
	outcome_clear(&o);
	twin_store_close(s);
}

static void reference_free(reference *r)
{
	free(r->base);
	free(r->by);
	free(r->both);
	free(r->alone);
	free(r->drain_by);
	free(r->drain_both);
	free(r->drain_alone);
	free(r->result);
}

/* Drained entries: those of the committed batch, or none at all when
 * memory ran out for them (they stay in the log, for replay). */
static void assert_drained(const char *got, const char *want, fault_kind k, const char *what)
{
	if (strcmp(got, want) == 0 || (k == FAULT_ALLOC && got[0] == '\0'))
		return;
	fail_msg("%s: drained\n  %s\nwant\n  %s", what, got, want);
}

/* Retry the failed operation without faults on the same open store: it must
 * work, and give the state of a fault-free run from where the batch left
 * the database. */
static twin_store *assert_goes_on(const scenario *sc, twin_store *s, const char *dir,
                                  const char *want, const char *what)
{
	twin_error err = {0};
	outcome o = {0};
	char *fp;

	if (sc->run(s, &o, &err) != TWIN_OK)
		fail_msg("%s: retry failed: %s", what, err.message);
	outcome_clear(&o);
	if (twin_store_commit(s, &err) != TWIN_OK)
		fail_msg("%s: retry commit failed: %s", what, err.message);
	free(drained(s));
	fp = fingerprint(s);
	assert_same_db(fp, want, what);
	free(fp);
	s = reopen(s, dir);
	fp = fingerprint(s);
	assert_same_db(fp, want, what);
	free(fp);
	return s;
}

/* Returns how many faulted runs there were. */
static long run_faults(const scenario *sc, fault_kind k)
{
	char *dir = test_dir_new("faults_run");
	reference ref = {0};
	long n;

	reference_make(sc, dir, &ref);
	for (n = 1;; n++) {
		twin_error err = {0}, cerr = {0};
		outcome o = {0};
		char what[160], *fp, *got, *dr;
		twin_store *s;
		twin_err rc, crc;
		const char *want;
		int fired;

		snprintf(what, sizeof(what), "%s, %s %ld", sc->name, fault_kind_name(k), n);
		s = open_copy(dir);
		bystander(s);
		fault_arm(k, n);
		rc = sc->run(s, &o, &err);
		crc = twin_store_commit(s, &cerr);
		fired = fault_disarm();
		dr = drained(s);
		got = outcome_text(&o);

		if (rc != TWIN_OK) {
			if (rc != TWIN_E_NOMEM && rc != TWIN_E_STORAGE)
				fail_msg("%s: error %d (%s) is not a 500", what, rc, err.message);
			if (!outcome_empty(&o))
				fail_msg("%s: failed but handed back %s", what, got);
			if (err.message[0] == '\0')
				fail_msg("%s: failed without a message", what);
		} else if (strcmp(got, ref.result) != 0) {
			fail_msg("%s: succeeded with\n  %s\nwant\n  %s", what, got, ref.result);
		}
		if (crc != TWIN_OK && crc != TWIN_E_STORAGE)
			fail_msg("%s: commit error %d (%s)", what, crc, cerr.message);
		if (!fired && (rc != TWIN_OK || crc != TWIN_OK))
			fail_msg("%s: failed with no fault: %s %s", what, err.message,
			         cerr.message);

		fp = fingerprint(s);
		if (crc != TWIN_OK) {
			want = ref.base;
			if (dr[0] != '\0')
				fail_msg("%s: a failed batch drained %s", what, dr);
		} else if (rc != TWIN_OK) {
			want = ref.by;
			assert_drained(dr, ref.drain_by, k, what);
		} else {
			want = ref.both;
			assert_drained(dr, ref.drain_both, k, what);
		}
		assert_same_db(fp, want, what);
		if (rc != TWIN_OK || crc != TWIN_OK)
			s = assert_goes_on(sc, s, dir, want == ref.base ? ref.alone : ref.both,
			                   what);
		outcome_clear(&o);
		free(fp);
		free(got);
		free(dr);
		twin_store_close(s);
		if (!fired)
			break;
	}
	reference_free(&ref);
	test_dir_free(dir);
	return n - 1;
}

static void check_scenario(const scenario *sc)
{
	static const fault_kind kinds[] = {FAULT_ALLOC, FAULT_IO, FAULT_MAP_FULL};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		long runs = run_faults(sc, kinds[i]);

		print_message("%-22s %-14s %4ld faulted runs\n", sc->name,
		              fault_kind_name(kinds[i]), runs);
		/* Every operation allocates and reads; a fault kind never reached
		 * would mean the wrappers are not in the path. */
		if (kinds[i] != FAULT_MAP_FULL)
			assert_true(runs > 0);
	}
}

static void test_faults(void **state)
{
	check_scenario(*state);
}

static int setup(void **state)
{
	(void)state;
	test_now = TEST_T0;
	return 0;
}

int main(void)
{
	enum { N = sizeof(scenarios) / sizeof(scenarios[0]) };
	struct CMUnitTest tests[N];
	char names[N][64];
	int failed;

	make_template();
	for (size_t i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "test_faults_%s", scenarios[i].name);
		tests[i] = (struct CMUnitTest){names[i], test_faults, setup, NULL,
		                               (void *)&scenarios[i]};
	}
	failed = _cmocka_run_group_tests("faults", tests, N, NULL, NULL);
	test_dir_free(template_dir);
	return failed;
}
