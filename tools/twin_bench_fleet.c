/*
 * twin_bench_fleet.c - the fleet scenarios: many devices, one measurement
 * each.
 *
 * desired-fanout: n devices connect (at most k CONNECTs in flight) and
 * subscribe to their desired notifications at QoS 1; one back end then
 * sends updateTwin for every device through the control API, 100 commands
 * per request, at most FANOUT_WINDOW commands unanswered. The clock starts
 * at the first request and stops when every device has its notification. A
 * device's latency runs from the publish of the request holding its command
 * to its notification. Each run writes a fresh token into the desired
 * patch, and only a notification carrying it counts, so catch-up
 * notifications of earlier runs (PROTOCOL.md §3.1) never do.
 *
 * connect-storm: n devices connect, subscribe to res/# and desired/#, and
 * GET their twin; at most k are between their CONNECT and their GET reply
 * at any time, and each stays connected when done. A device's latency runs
 * from its connect call to its GET reply; the total from the first CONNECT
 * to the last reply. In open mode unknown devices are registered at their
 * first connect, which is not what a storm measures, so a warm-up pass
 * connects and disconnects every device first.
 */
#define _GNU_SOURCE /* memmem */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "twin_bench.h"

#define FANOUT_WINDOW  800 /* updateTwin commands sent and not answered */
#define DESIRED_FILTER "$iothub/twin/PATCH/properties/desired/#"
#define DESIRED_PREFIX "$iothub/twin/PATCH/properties/desired/"
#define RES_FILTER     "$iothub/twin/res/#"

enum fleet_phase { PH_NEW, PH_READY, PH_WAITING, PH_DONE, PH_LOST };

static void record(bench_pool *p, bench_samples *s, uint64_t ns)
{
	if (bench_samples_add(s, ns) != 0)
		bench_error(p, "out of memory for samples");
}

/* ======================= desired-fanout ======================= */

typedef struct fanout {
	int n, batch;
	char token[40];
	bench_request *reqs; /* prebuilt, BENCH_BATCH_MAX devices each */
	int nreqs, next_req;
	int in_flight, answered;
	int backend_ready, ready, setup_failed, lost;
	int started, aborted;
	uint64_t t_start, t_last;
	int notified;
	bench_samples samples;
} fanout;

static int fanout_build(const bench_conf *conf, fanout *f)
{
	char id[TWIN_DEVICE_ID_MAX + 1], members[TWIN_DEVICE_ID_MAX + 160];

	f->nreqs = (f->n + BENCH_BATCH_MAX - 1) / BENCH_BATCH_MAX;
	f->reqs = calloc((size_t)f->nreqs, sizeof(*f->reqs));
	if (f->reqs == NULL)
		return -1;
	for (int i = 0; i < f->n; i++) {
		bench_request *r = &f->reqs[i / BENCH_BATCH_MAX];

		bench_device_id(conf, i, id, sizeof(id));
		snprintf(members, sizeof(members),
		         "\"deviceId\":\"%s\",\"twin\":{\"properties\":{\"desired\":{\"bench\":"
		         "{\"run\":\"%s\",\"interval\":%d}}}}",
		         id, f->token, 5 + i % 60);
		if (bench_request_add(r, "updateTwin", members, i) != 0)
			return -1;
		if ((i + 1) % BENCH_BATCH_MAX == 0 || i + 1 == f->n)
			if (bench_request_finish(r) != 0)
				return -1;
	}
	return 0;
}

static void fanout_connected(bench_client *c, uint64_t now)
{
	const char *filter = c->number < 0 ? BENCH_RESPONSE_TOPIC : DESIRED_FILTER;

	(void)now;
	if (mosquitto_subscribe(c->mosq, NULL, filter, 1) != MOSQ_ERR_SUCCESS)
		bench_client_fail(c, "cannot subscribe to %s", filter);
}

static void fanout_subscribed(bench_client *c, int mid, int count, const int *granted, uint64_t now)
{
	fanout *f = c->pool->scenario;

	(void)mid, (void)now;
	if (!bench_granted_ok(count, granted, 1)) {
		bench_client_fail(c, "subscription refused (SUBACK 0x%02x)",
		                  count ? granted[0] : 0x80);
	} else if (c->number < 0) {
		f->backend_ready = 1;
	} else if (c->phase == PH_NEW) {
		c->phase = PH_READY;
		f->ready++;
	}
}

static void fanout_response(void *ctx, long corr, int status, void *response)
{
	bench_pool *p = ctx;
	fanout *f = p->scenario;

	(void)response;
	f->in_flight--;
	f->answered++;
	if (status != 200)
		bench_error(p, "updateTwin of device %ld: status %d", corr, status);
}

static void fanout_message(bench_client *c, const struct mosquitto_message *m, uint64_t now)
{
	fanout *f = c->pool->scenario;

	if (c->number < 0) {
		if (strcmp(m->topic, BENCH_RESPONSE_TOPIC) == 0 &&
		    bench_response_each(m->payload, m->payloadlen, fanout_response, c->pool) != 0)
			bench_error(c->pool, "a control response that is no response document");
		return;
	}
	if (c->phase != PH_WAITING || strncmp(m->topic, DESIRED_PREFIX, strlen(DESIRED_PREFIX)) ||
	    memmem(m->payload, (size_t)m->payloadlen, f->token, strlen(f->token)) == NULL)
		return; /* a catch-up notification, or not ours */
	record(c->pool, &f->samples, now - c->t0);
	c->phase = PH_DONE;
	f->notified++;
	f->t_last = now;
}

static void fanout_failed(bench_client *c, uint64_t now)
{
	fanout *f = c->pool->scenario;

	(void)now;
	if (c->number < 0)
		f->aborted = 1;
	else if (!f->started)
		f->setup_failed++;
	else if (c->phase != PH_DONE)
		f->lost++;
	c->phase = PH_LOST;
}

/* Send requests while the window allows; each device's clock starts with
 * the publish of the request holding its command. */
static void fanout_send(bench_pool *p, fanout *f)
{
	bench_client *be = &p->c[p->n - 1];

	while (f->next_req < f->nreqs && f->in_flight < FANOUT_WINDOW && be->state == BENCH_C_UP) {
		bench_request *r = &f->reqs[f->next_req];
		int first = f->next_req * BENCH_BATCH_MAX;
		uint64_t now = bench_now();

		for (int i = first; i < first + r->count; i++)
			if (p->c[i].phase == PH_READY) {
				p->c[i].phase = PH_WAITING;
				p->c[i].t0 = now;
			}
		f->next_req++;
		if (bench_publish(be, BENCH_CONTROL_TOPIC, (int)r->len, r->body, 1) != 0)
			return;
		f->in_flight += r->count;
	}
}

static void fanout_tick(bench_pool *p, uint64_t now)
{
	fanout *f = p->scenario;
	bench_client *be = &p->c[p->n - 1];

	if (be->mosq == NULL)
		bench_client_connect_backend(be);
	while (p->awaiting < f->batch && p->next < p->ndevices)
		bench_pool_connect_next(p);
	if (!f->started && f->backend_ready && f->ready + f->setup_failed == f->n) {
		if (f->setup_failed > 0) {
			fprintf(stderr,
			        "twin-bench: desired-fanout: %d of %d devices could not start\n",
			        f->setup_failed, f->n);
			f->aborted = 1;
			return;
		}
		f->started = 1;
		f->t_start = f->t_last = now;
	}
	if (f->started)
		fanout_send(p, f);
}

static int fanout_done(bench_pool *p)
{
	fanout *f = p->scenario;

	return f->aborted || (f->started && f->notified + f->lost == f->n &&
	                      f->next_req == f->nreqs && f->in_flight <= 0);
}

static const bench_handlers fanout_handlers = {
        .connected = fanout_connected,
        .subscribed = fanout_subscribed,
        .message = fanout_message,
        .failed = fanout_failed,
        .tick = fanout_tick,
        .done = fanout_done,
};

static void fanout_free(fanout *f)
{
	for (int i = 0; f->reqs != NULL && i < f->nreqs; i++)
		bench_request_free(&f->reqs[i]);
	free(f->reqs);
	bench_samples_free(&f->samples);
}

int bench_run_fanout(const bench_conf *conf, int k, bench_result *out)
{
	fanout f = {.n = conf->n_fanout, .batch = k};
	bench_pool pool;
	int rc;

	snprintf(f.token, sizeof(f.token), "%ld-%" PRIx64, (long)getpid(), bench_now());
	if (fanout_build(conf, &f) != 0) {
		fprintf(stderr, "twin-bench: desired-fanout: out of memory for the requests\n");
		fanout_free(&f);
		return -1;
	}
	if (bench_pool_init(&pool, conf, "desired-fanout", f.n, 1, &fanout_handlers, &f) != 0) {
		fanout_free(&f);
		return -1;
	}
	rc = bench_pool_run(&pool);
	if (rc == 0 && !f.aborted && f.in_flight > 0)
		bench_error(&pool, "%d updateTwin commands unanswered", f.in_flight);
	memset(out, 0, sizeof(*out));
	out->scenario = BENCH_FANOUT;
	out->k = k;
	out->qos = 1;
	out->n = f.n;
	out->ops = f.notified;
	out->total_s = out->seconds = (double)(f.t_last - f.t_start) / 1e9;
	out->ops_per_s = out->seconds > 0 ? (double)f.notified / out->seconds : 0;
	bench_samples_summary(&f.samples, &out->p50_us, &out->p99_us, &out->max_us);
	bench_pool_free(&pool);
	/* Devices never notified and not already counted as lost. */
	out->errors = pool.errors + (f.started ? f.n - f.notified - f.lost : 0);
	fanout_free(&f);
	return 0;
}

/* ======================= connect-storm ======================= */

typedef struct storm {
	int n, window, qos;
	int warm_up; /* the registering pass: CONNACK ends a device */
	int in_progress, completed, failed;
	uint64_t t_first, t_last;
	bench_samples samples;
} storm;

static void storm_connected(bench_client *c, uint64_t now)
{
	storm *s = c->pool->scenario;
	char *filters[] = {RES_FILTER, DESIRED_FILTER};

	(void)now;
	if (s->warm_up) {
		c->phase = PH_DONE;
		s->in_progress--;
		s->completed++;
		bench_client_close(c);
		return;
	}
	if (mosquitto_subscribe_multiple(c->mosq, NULL, 2, filters, s->qos, 0, NULL) !=
	    MOSQ_ERR_SUCCESS)
		bench_client_fail(c, "cannot subscribe");
}

static void storm_subscribed(bench_client *c, int mid, int count, const int *granted, uint64_t now)
{
	(void)mid, (void)now;
	if (c->phase != PH_NEW)
		return;
	if (!bench_granted_ok(count, granted, 2)) {
		bench_client_fail(c, "subscription refused");
		return;
	}
	c->phase = PH_WAITING;
	c->rid = 1;
	bench_publish(c, "$iothub/twin/GET/?$rid=1", 0, NULL, ((storm *)c->pool->scenario)->qos);
}

static void storm_message(bench_client *c, const struct mosquitto_message *m, uint64_t now)
{
	storm *s = c->pool->scenario;
	int status;
	uint64_t rid;

	if (c->phase != PH_WAITING || bench_parse_twin_reply(m->topic, &status, &rid) != 0 ||
	    rid != c->rid)
		return; /* e.g. a catch-up notification */
	if (status != 200) {
		bench_client_fail(c, "GET: %s", m->topic);
		return;
	}
	record(c->pool, &s->samples, now - c->t0);
	c->phase = PH_DONE;
	s->in_progress--;
	s->completed++;
	s->t_last = now;
}

static void storm_failed(bench_client *c, uint64_t now)
{
	storm *s = c->pool->scenario;

	(void)now;
	if (c->phase == PH_DONE || c->phase == PH_LOST)
		return;
	c->phase = PH_LOST;
	s->in_progress--;
	s->failed++;
}

static void storm_tick(bench_pool *p, uint64_t now)
{
	storm *s = p->scenario;

	while (s->in_progress < s->window && p->next < p->ndevices) {
		if (p->next == 0)
			s->t_first = s->t_last = now;
		p->c[p->next].t0 = bench_now();
		s->in_progress++;
		bench_pool_connect_next(p);
	}
}

static int storm_done(bench_pool *p)
{
	storm *s = p->scenario;

	return s->completed + s->failed == s->n;
}

static const bench_handlers storm_handlers = {
        .connected = storm_connected,
        .subscribed = storm_subscribed,
        .message = storm_message,
        .failed = storm_failed,
        .tick = storm_tick,
        .done = storm_done,
};

/* One pass over every device; its errors, counting every device a stalled
 * pass never reached. */
static long long storm_pass(const bench_conf *conf, storm *s, const char *name)
{
	bench_pool pool;
	long long errors;

	if (bench_pool_init(&pool, conf, name, s->n, 0, &storm_handlers, s) != 0)
		return 1;
	bench_pool_run(&pool);
	bench_pool_free(&pool);
	errors = pool.errors;
	return errors + (s->n - s->completed - s->failed);
}

int bench_run_storm(const bench_conf *conf, int k, int qos, bench_result *out)
{
	storm s = {.n = conf->n_storm, .window = k, .qos = qos};
	long long errors = 0;

	if (!conf->sas) {
		s.warm_up = 1;
		errors = storm_pass(conf, &s, "connect-storm warm-up");
		s = (storm){.n = conf->n_storm, .window = k, .qos = qos};
	}
	if (errors == 0)
		errors = storm_pass(conf, &s, "connect-storm");
	memset(out, 0, sizeof(*out));
	out->scenario = BENCH_STORM;
	out->k = k;
	out->qos = qos;
	out->n = s.n;
	out->ops = s.completed;
	out->total_s = out->seconds = (double)(s.t_last - s.t_first) / 1e9;
	out->ops_per_s = out->seconds > 0 ? (double)s.completed / out->seconds : 0;
	bench_samples_summary(&s.samples, &out->p50_us, &out->p99_us, &out->max_us);
	out->errors = errors;
	bench_samples_free(&s.samples);
	return 0;
}
