/*
 * twin_bench_job.c - the job scenario: what connected devices experience
 * while a bulk twin job (scheduleUpdateTwin) updates many twins.
 *
 * Setup: the twins of devices 0..n-1 get the tag benchJob = this run's
 * token (bench_devices_tag), so the condition tags.benchJob = '<token>'
 * selects exactly them, whatever else the registry holds. k of them
 * (devices 0..k-1) connect, subscribe to their twin replies and desired
 * notifications, and seed their reported section like get/patch clients.
 *
 * Each device then runs round trips back to back, a reported PATCH and a
 * GET in turn, one outstanding, through --warmup and three windows:
 *   before  WINDOW_MAX_S, or --duration when shorter;
 *   during  from the createJob request until getJob, polled every 100 ms
 *           on the back end's connection, says the job ended: the window
 *           and the job's wall time run up to one poll past its end;
 *   after   as long as before.
 * A round trip counts in the window its reply arrives in; its latency runs
 * from just before the publish to the reply's callback. The job's own
 * startTime and endTime give its duration as the broker saw it, without
 * the polling; twins/s is taken from that.
 *
 * The job sets desired.benchJob.run = token on every selected twin, so
 * each of the k devices must receive exactly one desired notification
 * carrying the token (catch-up notifications of earlier runs carry older
 * tokens and are ignored). Any other count is an error, as is a job that
 * does not complete or updates other than n twins.
 */
#define _GNU_SOURCE /* memmem, timegm */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "twin_bench.h"

#define CONNECT_WINDOW  256           /* CONNECTs in flight while setting up */
#define WINDOW_MAX_S    2.0           /* the before and after windows */
#define POLL_NS         100000000ULL  /* getJob every 100 ms */
#define GRACE_NS        1000000000ULL /* for notifications after the after window */
#define TIMEOUT_SCAN_NS 100000000ULL
#define CORR_CREATE     1
#define CORR_GET        2
#define RES_FILTER      "$iothub/twin/res/#"
#define DESIRED_FILTER  "$iothub/twin/PATCH/properties/desired/#"
#define DESIRED_PREFIX  "$iothub/twin/PATCH/properties/desired/"

enum job_phase { PH_NEW, PH_SEEDING, PH_READY, PH_RUNNING, PH_DONE };

typedef struct job_run {
	int n, k, qos;
	uint64_t window_ns; /* before and after */
	char token[40], job_id[64];
	char seed[BENCH_SEED_MAX];
	/* the devices */
	int backend_ready, ready, setup_failed, finished;
	int started, aborted;
	uint64_t next_scan, tick_now;
	int *notified;        /* per device: notifications carrying the token */
	int devices_notified; /* devices with at least one */
	/* before [t_before, t_job), during [t_job, t_done), after [t_done, t_end) */
	uint64_t t_before, t_job, t_done, t_end;
	long long ops[BENCH_NWINDOWS];
	bench_samples samples[BENCH_NWINDOWS];
	/* the job, as the last response showed it */
	int created;
	uint64_t poll_sent; /* getJob in flight since; 0 none */
	uint64_t next_poll;
	uint64_t moved; /* when its status or progress last changed */
	uint64_t now;   /* of the response being handled */
	char status[16];
	double scanned;
	long long device_count, succeeded, failed;
	double job_s;
} job_run;

/* ns from since to now; 0 when since is later (it was read after now). */
static uint64_t elapsed(uint64_t now, uint64_t since)
{
	return now > since ? now - since : 0;
}

/* ---- device requests and replies ---- */

/* Seed (rid 1), then a reported PATCH on even rids and a GET on odd ones. */
static int sends_patch(const bench_client *c)
{
	return c->phase == PH_SEEDING || c->rid % 2 == 0;
}

static void send_request(job_run *r, bench_client *c)
{
	char topic[96], payload[512];
	const char *body = payload;
	int len = 0;

	c->rid++;
	if (!sends_patch(c)) {
		snprintf(topic, sizeof(topic), "$iothub/twin/GET/?$rid=%" PRIu64, c->rid);
	} else {
		snprintf(topic, sizeof(topic),
		         "$iothub/twin/PATCH/properties/reported/?$rid=%" PRIu64, c->rid);
		if (c->phase == PH_SEEDING) {
			body = r->seed;
			len = (int)strlen(r->seed);
		} else {
			len = bench_make_patch(payload, sizeof(payload), c->rid);
		}
	}
	c->t0 = bench_now();
	bench_publish(c, topic, len, body, r->qos);
}

/* The window a reply at t counts in, or -1. */
static int window_of(const job_run *r, uint64_t t)
{
	if (!r->started || t < r->t_before)
		return -1;
	if (r->t_job == 0 || t < r->t_job)
		return BENCH_WIN_BEFORE;
	if (r->t_done == 0 || t < r->t_done)
		return BENCH_WIN_DURING;
	return t < r->t_end ? BENCH_WIN_AFTER : -1;
}

static void device_reply(job_run *r, bench_client *c, const struct mosquitto_message *m,
                         uint64_t now)
{
	int status, w, want = sends_patch(c) ? 204 : 200;
	uint64_t rid;

	if ((c->phase != PH_SEEDING && c->phase != PH_RUNNING) || c->t0 == 0 ||
	    bench_parse_twin_reply(m->topic, &status, &rid) != 0 || rid != c->rid)
		return; /* not the reply we wait for */
	if (status != want) {
		if (c->phase == PH_SEEDING) {
			bench_client_fail(c, "seeding the twin: %s", m->topic);
			return;
		}
		bench_error(c->pool, "%s %.*s", m->topic, m->payloadlen > 200 ? 200 : m->payloadlen,
		            (const char *)m->payload);
	} else if (c->phase == PH_RUNNING && (w = window_of(r, now)) >= 0) {
		if (bench_samples_add(&r->samples[w], now - c->t0) != 0)
			bench_error(c->pool, "out of memory for samples");
		r->ops[w]++;
	}
	c->t0 = 0;
	if (c->phase == PH_SEEDING) {
		c->phase = PH_READY;
		r->ready++;
	} else if (r->t_end == 0 || now < r->t_end) {
		send_request(r, c);
	} else {
		c->phase = PH_DONE;
		r->finished++;
	}
}

/* ---- the job on the back end's connection ---- */

/* A timestamp member of the job object ("2026-11-24T10:00:00.1234567Z") in
 * seconds since the epoch; -1 when absent or malformed. */
static double job_time(const cJSON *job, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(job, name);
	struct tm tm = {0};
	double frac = 0;
	int used = 0;

	if (!cJSON_IsString(v) ||
	    sscanf(v->valuestring, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
	           &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
		return -1;
	if (v->valuestring[used] == '.')
		frac = strtod(v->valuestring + used, NULL);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (double)timegm(&tm) + frac;
}

static double number_at(const cJSON *obj, const char *section, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(obj, section), name);

	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int job_ended(const char *status)
{
	return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
	       strcmp(status, "cancelled") == 0;
}

/* Take in the job object of a createJob or getJob response. */
static void job_seen(bench_pool *p, job_run *r, const cJSON *job)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(job, "status");
	const cJSON *why = cJSON_GetObjectItemCaseSensitive(job, "failureReason");
	double scanned = number_at(job, "progress", "scanned"), start, end;

	if (!cJSON_IsString(st)) {
		bench_error(p, "job %s: a job object without status", r->job_id);
		r->aborted = 1;
		return;
	}
	if (strcmp(st->valuestring, r->status) != 0 || scanned != r->scanned)
		r->moved = r->now;
	snprintf(r->status, sizeof(r->status), "%s", st->valuestring);
	r->scanned = scanned;
	r->device_count = (long long)number_at(job, "deviceJobStatistics", "deviceCount");
	r->succeeded = (long long)number_at(job, "deviceJobStatistics", "succeededCount");
	r->failed = (long long)number_at(job, "deviceJobStatistics", "failedCount");
	if (!job_ended(r->status))
		return;
	r->t_done = r->now;
	r->t_end = r->t_done + r->window_ns;
	start = job_time(job, "startTime");
	end = job_time(job, "endTime");
	r->job_s = start > 0 && end >= start ? end - start : 0;
	if (strcmp(r->status, "completed") != 0)
		bench_error(p, "job %s %s: %s", r->job_id, r->status,
		            cJSON_IsString(why) ? why->valuestring : "no reason given");
	else if (r->device_count != r->n || r->succeeded != r->n)
		bench_error(p, "job %s updated %lld of %lld matching twins, expected %d", r->job_id,
		            r->succeeded, r->device_count, r->n);
}

static void job_response(void *ctx, long corr, int status, void *response)
{
	bench_pool *p = ctx;
	job_run *r = p->scenario;
	const char *command = corr == CORR_CREATE ? "createJob" : "getJob";
	char *text;

	if (corr != CORR_CREATE && corr != CORR_GET) {
		text = cJSON_PrintUnformatted(response);
		bench_error(p, "unexpected control response %s", text ? text : "?");
		free(text);
		r->aborted = 1;
		return;
	}
	if (corr == CORR_GET) {
		r->poll_sent = 0;
		r->next_poll = r->now + POLL_NS;
	}
	if (status != 200) {
		text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(response, "error"));
		bench_error(p, "%s %s: status %d %s", command, r->job_id, status, text ? text : "");
		free(text);
		r->aborted = 1;
		return;
	}
	r->created = 1;
	job_seen(p, r, cJSON_GetObjectItemCaseSensitive(response, "data"));
}

/* One command on the control topic; its publish time, 0 on failure. */
static uint64_t send_command(bench_pool *p, const char *command, const char *members, long corr)
{
	bench_client *be = &p->c[p->n - 1];
	bench_request req = {0};
	uint64_t t = 0;

	if (bench_request_add(&req, command, members, corr) != 0 ||
	    bench_request_finish(&req) != 0) {
		bench_error(p, "out of memory for a %s request", command);
	} else {
		t = bench_now();
		if (bench_publish(be, BENCH_CONTROL_TOPIC, (int)req.len, req.body, 1) != 0)
			t = 0;
	}
	bench_request_free(&req);
	return t;
}

static void create_job(bench_pool *p, job_run *r)
{
	char members[512];

	snprintf(members, sizeof(members),
	         "\"jobId\":\"%s\",\"type\":\"scheduleUpdateTwin\",\"queryCondition\":"
	         "\"tags.benchJob = '%s'\",\"updateTwin\":{\"properties\":{\"desired\":{"
	         "\"benchJob\":{\"run\":\"%s\",\"interval\":30,\"mode\":\"eco\"}}}}",
	         r->job_id, r->token, r->token);
	r->t_job = send_command(p, "createJob", members, CORR_CREATE);
	if (r->t_job == 0) {
		r->aborted = 1;
		return;
	}
	r->moved = r->t_job;
	r->next_poll = r->t_job + POLL_NS;
}

/* Poll getJob, one at a time; end the run when the job or its answers
 * stop making progress for --timeout seconds. */
static void poll_job(bench_pool *p, job_run *r, uint64_t now)
{
	uint64_t limit = (uint64_t)(p->conf->timeout * 1e9);
	char members[128];

	if (r->poll_sent != 0) {
		if (elapsed(now, r->poll_sent) > limit) {
			bench_error(p, "getJob %s unanswered after %g s", r->job_id,
			            p->conf->timeout);
			r->aborted = 1;
		}
		return;
	}
	if (elapsed(now, r->moved) > limit) {
		bench_error(p, "job %s made no progress for %g s (%s, %.0f twins scanned)",
		            r->job_id, p->conf->timeout, r->status, r->scanned);
		r->aborted = 1;
		return;
	}
	if (!r->created || now < r->next_poll)
		return;
	snprintf(members, sizeof(members), "\"jobId\":\"%s\"", r->job_id);
	r->poll_sent = send_command(p, "getJob", members, CORR_GET);
	if (r->poll_sent == 0)
		r->aborted = 1;
}

/* ---- handlers ---- */

static void job_connected(bench_client *c, uint64_t now)
{
	job_run *r = c->pool->scenario;
	char *filters[] = {RES_FILTER, DESIRED_FILTER};

	(void)now;
	if (c->number < 0) {
		if (mosquitto_subscribe(c->mosq, NULL, BENCH_RESPONSE_TOPIC, 1) != MOSQ_ERR_SUCCESS)
			bench_client_fail(c, "back end: cannot subscribe");
		return;
	}
	if (mosquitto_subscribe_multiple(c->mosq, NULL, 2, filters, r->qos, 0, NULL) !=
	    MOSQ_ERR_SUCCESS)
		bench_client_fail(c, "cannot subscribe");
}

static void job_subscribed(bench_client *c, int mid, int count, const int *granted, uint64_t now)
{
	job_run *r = c->pool->scenario;
	int want = c->number < 0 ? 1 : 2;

	(void)mid, (void)now;
	if (!bench_granted_ok(count, granted, want)) {
		bench_client_fail(c, "subscription refused");
	} else if (c->number < 0) {
		r->backend_ready = 1;
	} else if (c->phase == PH_NEW) {
		c->phase = PH_SEEDING;
		send_request(r, c);
	}
}

static void job_message(bench_client *c, const struct mosquitto_message *m, uint64_t now)
{
	job_run *r = c->pool->scenario;

	if (c->number < 0) {
		r->now = now;
		if (strcmp(m->topic, BENCH_RESPONSE_TOPIC) == 0 &&
		    bench_response_each(m->payload, m->payloadlen, job_response, c->pool) != 0)
			bench_error(c->pool, "a control response that is no response document");
		return;
	}
	if (strncmp(m->topic, DESIRED_PREFIX, strlen(DESIRED_PREFIX)) != 0) {
		device_reply(r, c, m, now);
		return;
	}
	if (memmem(m->payload, (size_t)m->payloadlen, r->token, strlen(r->token)) != NULL &&
	    r->notified[c->number]++ == 0)
		r->devices_notified++;
}

static void job_failed(bench_client *c, uint64_t now)
{
	job_run *r = c->pool->scenario;

	(void)now;
	if (c->number < 0) {
		r->aborted = 1;
		return;
	}
	if (c->phase == PH_RUNNING)
		r->finished++;
	else if (c->phase != PH_DONE && !r->started)
		r->setup_failed++;
	c->phase = PH_DONE;
}

static void start(bench_pool *p, job_run *r, uint64_t now)
{
	r->started = 1;
	r->t_before = now + (uint64_t)(p->conf->warmup * 1e9);
	for (int i = 0; i < p->ndevices; i++) {
		p->c[i].phase = PH_RUNNING;
		send_request(r, &p->c[i]);
	}
}

/* Fail the devices whose request is older than --timeout. */
static void scan_timeouts(bench_pool *p, job_run *r, uint64_t now)
{
	uint64_t limit = (uint64_t)(p->conf->timeout * 1e9);

	if (now < r->next_scan)
		return;
	r->next_scan = now + TIMEOUT_SCAN_NS;
	for (int i = 0; i < p->ndevices; i++) {
		bench_client *c = &p->c[i];

		if ((c->phase == PH_RUNNING || c->phase == PH_SEEDING) && c->t0 != 0 &&
		    elapsed(now, c->t0) > limit)
			bench_client_fail(c, "request %" PRIu64 " unanswered after %g s", c->rid,
			                  p->conf->timeout);
	}
}

static void job_tick(bench_pool *p, uint64_t now)
{
	job_run *r = p->scenario;
	bench_client *be = &p->c[p->n - 1];

	r->tick_now = now;
	if (be->mosq == NULL)
		bench_client_connect_backend(be);
	while (!r->started && p->awaiting < CONNECT_WINDOW && p->next < p->ndevices)
		bench_pool_connect_next(p);
	if (!r->started && r->backend_ready && r->ready + r->setup_failed == r->k) {
		if (r->setup_failed > 0) {
			fprintf(stderr, "twin-bench: job: %d of %d devices could not start\n",
			        r->setup_failed, r->k);
			r->aborted = 1;
			return;
		}
		start(p, r, now);
	}
	if (!r->started)
		return;
	if (r->t_job == 0 && now >= r->t_before + r->window_ns)
		create_job(p, r);
	else if (r->t_job != 0 && r->t_done == 0)
		poll_job(p, r, now);
	scan_timeouts(p, r, now);
}

/* Done when the after window has passed, every device's last reply is in
 * and every device has its notification (or GRACE_NS more have passed). */
static int job_done(bench_pool *p)
{
	job_run *r = p->scenario;

	return r->aborted || (r->t_end != 0 && r->finished == r->k &&
	                      (r->devices_notified == r->k || r->tick_now >= r->t_end + GRACE_NS));
}

static const bench_handlers job_handlers = {
        .connected = job_connected,
        .subscribed = job_subscribed,
        .message = job_message,
        .failed = job_failed,
        .tick = job_tick,
        .done = job_done,
};

/* ---- the row ---- */

static void summarize(job_run *r, bench_pool *p, bench_result *out)
{
	uint64_t from[BENCH_NWINDOWS] = {r->t_before, r->t_job, r->t_done};
	uint64_t to[BENCH_NWINDOWS] = {r->t_job, r->t_done, r->t_end};
	bench_job_figures *j = &out->job;

	for (int w = 0; w < BENCH_NWINDOWS; w++) {
		bench_window *win = &j->win[w];

		win->ops = r->ops[w];
		win->seconds =
		        from[w] != 0 && to[w] > from[w] ? (double)(to[w] - from[w]) / 1e9 : 0;
		win->ops_per_s = win->seconds > 0 ? (double)win->ops / win->seconds : 0;
		bench_samples_summary(&r->samples[w], &win->p50_us, &win->p99_us, &win->max_us);
		if (!r->aborted && win->ops == 0)
			bench_error(p, "no round trip completed %s the job",
			            w == BENCH_WIN_BEFORE   ? "before"
			            : w == BENCH_WIN_DURING ? "during"
			                                    : "after");
	}
	snprintf(j->status, sizeof(j->status), "%s", r->status[0] ? r->status : "none");
	j->succeeded = r->succeeded;
	j->failed = r->failed;
	j->scanned = r->scanned > 0 ? (long long)r->scanned : 0;
	j->job_s = r->job_s;
	out->total_s = r->t_done ? (double)(r->t_done - r->t_job) / 1e9 : 0;
	j->twins_per_s = r->job_s > 0       ? (double)r->succeeded / r->job_s
	                 : out->total_s > 0 ? (double)r->succeeded / out->total_s
	                                    : 0;
	j->notify_expected = r->k;
	for (int i = 0; i < r->k; i++) {
		j->notified += r->notified[i];
		j->notify_wrong += r->notified[i] != 1;
	}
	if (r->started && j->notify_wrong > 0)
		bench_error(p,
		            "%d of %d devices did not get exactly one notification of the job "
		            "(%d received)",
		            j->notify_wrong, r->k, j->notified);
}

int bench_run_job(const bench_conf *conf, int k, int qos, bench_result *out)
{
	job_run *r = calloc(1, sizeof(*r));
	char tags[96];
	bench_pool pool;
	int rc;

	if (r == NULL)
		return -1;
	r->n = conf->n_job;
	r->k = k < r->n ? k : r->n; /* devices beyond n would not be selected */
	r->qos = qos;
	r->window_ns =
	        (uint64_t)((conf->duration < WINDOW_MAX_S ? conf->duration : WINDOW_MAX_S) * 1e9);
	snprintf(r->token, sizeof(r->token), "%ld-%" PRIx64, (long)getpid(), bench_now());
	snprintf(r->job_id, sizeof(r->job_id), "twin-bench-%s", r->token);
	snprintf(tags, sizeof(tags), "{\"benchJob\":\"%s\"}", r->token);
	bench_make_seed(r->seed, sizeof(r->seed));
	r->notified = calloc((size_t)r->k, sizeof(*r->notified));
	if (r->notified == NULL || bench_devices_tag(conf, r->n, tags) != 0 ||
	    bench_pool_init(&pool, conf, "job", r->k, 1, &job_handlers, r) != 0) {
		free(r->notified);
		free(r);
		return -1;
	}
	rc = bench_pool_run(&pool);
	memset(out, 0, sizeof(*out));
	out->scenario = BENCH_JOB;
	out->k = r->k;
	out->qos = qos;
	out->n = r->n;
	out->has_job = 1;
	if (rc != 0)
		r->aborted = 1; /* a stall: its error is counted; report what there is */
	summarize(r, &pool, out);
	out->ops = out->job.win[BENCH_WIN_DURING].ops;
	out->seconds = out->job.win[BENCH_WIN_DURING].seconds;
	out->ops_per_s = out->job.win[BENCH_WIN_DURING].ops_per_s;
	out->p50_us = out->job.win[BENCH_WIN_DURING].p50_us;
	out->p99_us = out->job.win[BENCH_WIN_DURING].p99_us;
	out->max_us = out->job.win[BENCH_WIN_DURING].max_us;
	bench_pool_free(&pool);
	/* A stall before the start: the devices that never got ready. */
	out->errors = pool.errors + (r->started ? 0 : r->k - r->ready - r->setup_failed);
	for (int w = 0; w < BENCH_NWINDOWS; w++)
		bench_samples_free(&r->samples[w]);
	free(r->notified);
	free(r);
	return 0;
}
