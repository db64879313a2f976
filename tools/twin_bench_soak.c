/*
 * twin_bench_soak.c - the soak: a fleet stays connected for a long time
 * under mixed traffic while the broker's memory is watched.
 *
 * n devices connect (at most CONNECT_WINDOW CONNECTs in flight, below
 * Mosquitto's listen backlog of 100), subscribe to res/# and desired/# at
 * QoS 1 and GET their twin, the documented device flow. One back end
 * subscribes to the control responses. Then the seeding (soak_seed): every
 * device reports one PATCH and gets one desired update of the shapes below,
 * so that every twin has its steady size before the warm-up; without it the
 * database, mapped into the broker, grows through the run while twins are
 * written for the first time, and the RSS says more about an empty
 * database filling than about leaks. Then, for --warmup and --duration
 * seconds, the loop issues --rate operations per second, each drawn from
 * the mix below and each on a device drawn at random among those that are
 * up and have no request in flight:
 *
 *   GET (QoS 0 or 1)                            → 200
 *   reported PATCH, ~200 bytes (QoS 0 or 1)     → 204
 *   desired update: updateTwin on the control API for a random device,
 *     connected or not, batched per CONTROL_FLUSH_NS → 200, and a desired
 *     notification to the device when it was up when the command left
 *   reconnect: the device disconnects, stays away RECONNECT_DELAY_NS and
 *     comes back (CONNECT, SUBSCRIBE, GET); desired updates made meanwhile
 *     reach it as a catch-up notification (PROTOCOL.md §3.1)
 *   induced error: a malformed reported PATCH   → 400
 *
 * Requests are counted once the traffic starts, through the warm-up and
 * the measured period (the setup's GETs are not, and the seeding has
 * figures of its own); round-trip percentiles are those of the GETs and
 * PATCHes answered in the measured period. Traffic
 * stops at the end of it, and the run ends when every outstanding reply,
 * response and notification is in (or --timeout later).
 *
 * Patches and updates always write the same keys, so twins do not grow:
 * what the broker holds should not depend on how long it ran. With
 * --broker-pid the broker's VmRSS (and RssAnon, its heap; RssFile is
 * mostly LMDB's mapped pages) is read every few seconds
 * (twin_bench_soak_report.c); the figures that matter are the RSS when the
 * warm-up ends, at the end, and the minimum and maximum in between. RSS is
 * reported, not judged: allocators and page caches breathe, and what
 * counts as flat is the reader's call. The change log grows until it holds
 * plugin_opt_changes_max_count entries; a warm-up that ends before that
 * measures the log filling up, not a leak.
 *
 * Unexpected, and the exit status 1: a reply whose status is not the one
 * expected (any non-2xx that was not induced, an induced error that was
 * accepted), a request or control command unanswered after --timeout, a
 * control response other than 200, a desired notification that never came,
 * a lost or refused connection. A notification is expected per update sent
 * while its device was up; a device is only disconnected on purpose when
 * it has no request and no notification outstanding, so every expectation
 * is either met or an error. Notifications beyond the expected ones
 * (catch-up after a reconnect, updates that crossed a reconnect) are
 * counted, not judged.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "twin_bench_soak.h"

#define CONNECT_WINDOW      64
#define PROGRESS_EVERY_NS   (60 * SOAK_NS)
#define RECONNECT_DELAY_NS  SOAK_NS
#define CONTROL_FLUSH_NS    (SOAK_NS / 10)
#define PROBE_MAX           64 /* devices tried for an idle one */
#define TIMEOUT_SCAN_NS     (SOAK_NS / 10)
#define BURST_S             0.1  /* operations owed after a stall: at most this much */
#define SEED_WINDOW         256  /* seeding: PATCHes in flight, at most */
#define SEED_CONTROL_WINDOW 1000 /* seeding: updateTwin commands unanswered, at most */
#define RES_PREFIX          "$iothub/twin/res/"
#define DESIRED_PREFIX      "$iothub/twin/PATCH/properties/desired/"

enum soak_phase { PH_NEW, PH_READY, PH_CLOSING, PH_LOST };
enum soak_op { OP_GET, OP_PATCH, OP_DESIRED, OP_RECONNECT, OP_INDUCED, SOAK_NOPS };

/* The mix, per mille of the operations. */
static const int soak_mix[SOAK_NOPS] = {350, 450, 150, 40, 10};

/* Induced errors, in turn: malformed JSON, an invalid name, no object. */
static const char *const soak_bad_bodies[] = {"{\"temperature\":", "{\"$bad\":1}", "[1,2]"};

static uint64_t soak_random(soak_run *r)
{
	/* xorshift64*: enough to spread requests over devices */
	r->rng ^= r->rng >> 12;
	r->rng ^= r->rng << 25;
	r->rng ^= r->rng >> 27;
	return r->rng * 2685821657736338717ULL;
}

/* ---- device requests ---- */

/* A device that is up, has nothing in flight and, for a disconnect,
 * expects no notification; NULL when PROBE_MAX tries found none. */
static bench_client *soak_pick(bench_pool *p, soak_run *r, int to_close)
{
	int first = (int)(soak_random(r) % (uint64_t)r->n);

	for (int i = 0; i < PROBE_MAX; i++) {
		bench_client *c = &p->c[(first + i) % r->n];

		if (c->phase == PH_READY && c->state == BENCH_C_UP && c->t0 == 0 &&
		    (!to_close || r->dev[c->number].notify == 0))
			return c;
	}
	r->skipped++;
	return NULL;
}

static void soak_send(soak_run *r, bench_client *c, int req, int qos)
{
	static const uint16_t expect[SOAK_NREQS] = {200, 204, 400};
	char topic[96], payload[512];
	soak_dev *d = &r->dev[c->number];
	int len = 0;

	c->rid++;
	if (req == REQ_GET)
		snprintf(topic, sizeof(topic), "$iothub/twin/GET/?$rid=%" PRIu64, c->rid);
	else
		snprintf(topic, sizeof(topic),
		         "$iothub/twin/PATCH/properties/reported/?$rid=%" PRIu64, c->rid);
	if (req == REQ_PATCH)
		len = bench_make_patch(payload, sizeof(payload), c->rid);
	if (req == REQ_INDUCED) {
		const char *bad = soak_bad_bodies[r->sent[REQ_INDUCED][0] % 3];

		len = (int)strlen(bad);
		memcpy(payload, bad, (size_t)len);
	}
	d->req = (uint8_t)req;
	d->expect = expect[req];
	r->sent[req][qos] += r->started; /* not the setup's GETs */
	r->inflight++;
	c->t0 = bench_now();
	bench_publish(c, topic, len, payload, qos);
}

static void soak_reply(soak_run *r, bench_client *c, const struct mosquitto_message *m,
                       uint64_t now)
{
	soak_dev *d = &r->dev[c->number];
	uint64_t rid;
	int status;

	if (bench_parse_twin_reply(m->topic, &status, &rid) != 0)
		return;
	if (c->t0 == 0 || rid != c->rid) {
		r->stray++; /* the reply to a request already given up */
		return;
	}
	/* Before the start every reply is a setup GET's or a seeding PATCH's:
	 * not counted either. */
	r->replies[status >= 0 && status <= SOAK_STATUS_MAX ? status : SOAK_STATUS_MAX] +=
	        r->started;
	if (status != d->expect) {
		r->wrong_status++;
		bench_error(c->pool, "%s: expected %u, got %.*s", m->topic, d->expect,
		            m->payloadlen > 200 ? 200 : m->payloadlen, (const char *)m->payload);
	} else if (d->req == REQ_INDUCED) {
		r->induced_400++;
	} else if (!r->started) {
		r->seed_patched += d->req == REQ_PATCH;
	} else if (now >= r->t_measure && now <= r->t_end &&
	           bench_samples_add(&r->samples, now - c->t0) != 0) {
		bench_error(c->pool, "out of memory for samples");
	}
	c->t0 = 0;
	r->inflight--;
	if (c->phase == PH_NEW) { /* the GET after connecting */
		c->phase = PH_READY;
		if (r->started)
			r->reconnects++;
		else
			r->ready++;
	}
}

/* ---- desired updates through the control API ---- */

static void soak_flush(bench_pool *p, soak_run *r)
{
	bench_client *be = &p->c[p->n - 1];

	if (r->batch.count == 0)
		return;
	if (bench_request_finish(&r->batch) != 0)
		bench_error(p, "out of memory for a control request");
	else if (bench_publish(be, BENCH_CONTROL_TOPIC, (int)r->batch.len, r->batch.body, 1) == 0)
		r->desired[r->started].updates += r->batch.count;
	bench_request_free(&r->batch);
}

/* Queue one updateTwin for device number; sent at the next flush. */
static void soak_update(bench_pool *p, soak_run *r, int number, uint64_t now)
{
	long corr = ++r->corr_next;
	soak_slot *s = &r->slot[corr % SOAK_CONTROL_SLOTS];
	bench_client *c = &p->c[number];
	char id[TWIN_DEVICE_ID_MAX + 1], members[TWIN_DEVICE_ID_MAX + 160];

	if (s->corr != 0) {
		r->skipped++; /* SOAK_CONTROL_SLOTS commands unanswered */
		return;
	}
	bench_device_id(r->conf, number, id, sizeof(id));
	snprintf(members, sizeof(members),
	         "\"deviceId\":\"%s\",\"twin\":{\"properties\":{\"desired\":{\"soak\":{\"run\":"
	         "\"%s\",\"seq\":%ld,\"interval\":%d}}}}",
	         id, r->token, corr, (int)(corr % 60) + 5);
	if (bench_request_add(&r->batch, "updateTwin", members, corr) != 0) {
		bench_error(p, "out of memory for a control request");
		return;
	}
	if (r->batch.count == 1)
		r->batch_since = now;
	*s = (soak_slot){.corr = corr, .sent = now, .device = number};
	r->control_out++;
	if (c->phase == PH_READY && c->state == BENCH_C_UP) {
		r->dev[number].notify++;
		r->notify_pending++;
	}
	if (r->batch.count == BENCH_BATCH_MAX)
		soak_flush(p, r);
}

static void soak_response(void *ctx, long corr, int status, void *response)
{
	bench_pool *p = ctx;
	soak_run *r = p->scenario;
	soak_slot *s = &r->slot[(corr > 0 ? corr : 0) % SOAK_CONTROL_SLOTS];
	char *text;

	if (corr <= 0 || s->corr != corr) {
		text = cJSON_PrintUnformatted(response);
		bench_error(p, "unexpected control response %s", text ? text : "?");
		free(text);
		r->control_errors++;
		return;
	}
	s->corr = 0;
	r->control_out--;
	if (status == 200) {
		r->desired[r->started].updates_ok++;
		return;
	}
	text = cJSON_PrintUnformatted(response);
	bench_error(p, "updateTwin: %s", text ? text : "?");
	free(text);
	r->control_errors++;
}

/* ---- reconnects ---- */

static void soak_disconnect(soak_run *r, bench_client *c, uint64_t now)
{
	soak_reconnect *q = &r->queue[(r->q_head + r->q_len) % r->n];

	c->phase = PH_CLOSING;
	bench_client_close(c);
	*q = (soak_reconnect){.device = c->number, .at = now + RECONNECT_DELAY_NS};
	r->q_len++;
}

/* Bring back the devices whose time away is over, in the order they left. */
static void soak_reconnect_due(bench_pool *p, soak_run *r, uint64_t now)
{
	while (r->q_len > 0) {
		soak_reconnect *q = &r->queue[r->q_head];
		bench_client *c = &p->c[q->device];

		if (now < q->at || c->state == BENCH_C_CLOSING)
			return; /* not yet, or its socket closes soon */
		r->q_head = (r->q_head + 1) % r->n;
		r->q_len--;
		if (c->state != BENCH_C_IDLE || r->stopped)
			continue; /* lost meanwhile (counted), or the run is over */
		mosquitto_destroy(c->mosq);
		c->mosq = NULL;
		c->phase = PH_NEW;
		bench_client_connect(c);
	}
}

/* ---- the handlers ---- */

static void soak_connected(bench_client *c, uint64_t now)
{
	char *filters[] = {RES_PREFIX "#", DESIRED_PREFIX "#"};

	(void)now;
	if (c->number < 0) {
		if (mosquitto_subscribe(c->mosq, NULL, BENCH_RESPONSE_TOPIC, 1) != MOSQ_ERR_SUCCESS)
			bench_client_fail(c, "back end: cannot subscribe");
		return;
	}
	if (mosquitto_subscribe_multiple(c->mosq, NULL, 2, filters, 1, 0, NULL) != MOSQ_ERR_SUCCESS)
		bench_client_fail(c, "cannot subscribe");
}

static void soak_subscribed(bench_client *c, int mid, int count, const int *granted, uint64_t now)
{
	soak_run *r = c->pool->scenario;
	int want = c->number < 0 ? 1 : 2;

	(void)mid, (void)now;
	if (!bench_granted_ok(count, granted, want))
		bench_client_fail(c, "subscription refused");
	else if (c->number < 0)
		r->backend_ready = 1;
	else if (c->phase == PH_NEW) {
		r->connect_gets += r->started;
		soak_send(r, c, REQ_GET, 1);
	}
}

static void soak_message(bench_client *c, const struct mosquitto_message *m, uint64_t now)
{
	soak_run *r = c->pool->scenario;
	soak_dev *d;

	if (c->number < 0) {
		if (strcmp(m->topic, BENCH_RESPONSE_TOPIC) == 0 &&
		    bench_response_each(m->payload, m->payloadlen, soak_response, c->pool) != 0)
			bench_error(c->pool, "a control response that is no response document");
		return;
	}
	if (strncmp(m->topic, DESIRED_PREFIX, strlen(DESIRED_PREFIX)) != 0) {
		soak_reply(r, c, m, now);
		return;
	}
	d = &r->dev[c->number];
	r->desired[r->started].notifications++;
	if (d->notify > 0) {
		d->notify--;
		r->notify_pending--;
		r->desired[r->started].expected++;
	}
}

static void soak_failed(bench_client *c, uint64_t now)
{
	soak_run *r = c->pool->scenario;
	soak_dev *d;

	(void)now;
	if (c->number < 0) {
		r->aborted = 1; /* no more desired updates: the run cannot go on */
		return;
	}
	d = &r->dev[c->number];
	if (c->t0 != 0) {
		c->t0 = 0;
		r->inflight--;
	}
	r->notify_pending -= d->notify;
	d->notify = 0;
	if (!r->started && c->phase == PH_NEW)
		r->setup_failed++;
	c->phase = PH_LOST;
}

/* Count the requests and commands unanswered for --timeout as missing. */
static void soak_timeouts(bench_pool *p, soak_run *r, uint64_t now)
{
	uint64_t limit = (uint64_t)(p->conf->timeout * 1e9);

	if (now < r->next_scan)
		return;
	r->next_scan = now + TIMEOUT_SCAN_NS;
	for (int i = 0; i < r->n; i++) {
		bench_client *c = &p->c[i];

		if (c->t0 != 0 && now > c->t0 && now - c->t0 > limit) {
			r->missing_replies++;
			bench_error(p, "device %d: request %" PRIu64 " unanswered after %g s", i,
			            c->rid, p->conf->timeout);
			c->t0 = 0;
			r->inflight--;
		}
	}
	for (int i = 0; i < SOAK_CONTROL_SLOTS; i++) {
		soak_slot *s = &r->slot[i];

		if (s->corr != 0 && now > s->sent && now - s->sent > limit) {
			r->missing_control++;
			bench_error(p, "updateTwin of device %d unanswered after %g s", s->device,
			            p->conf->timeout);
			s->corr = 0;
			r->control_out--;
		}
	}
}

/* One operation of the mix. */
static void soak_operation(bench_pool *p, soak_run *r, uint64_t now)
{
	int roll = (int)(soak_random(r) % 1000), op = 0, qos = (int)(soak_random(r) & 1);
	bench_client *c;

	while (roll >= soak_mix[op])
		roll -= soak_mix[op++];
	if (op == OP_DESIRED) {
		soak_update(p, r, (int)(soak_random(r) % (uint64_t)r->n), now);
		return;
	}
	c = soak_pick(p, r, op == OP_RECONNECT);
	if (c == NULL)
		return;
	if (op == OP_RECONNECT)
		soak_disconnect(r, c, now);
	else
		soak_send(r, c,
		          op == OP_GET     ? REQ_GET
		          : op == OP_PATCH ? REQ_PATCH
		                           : REQ_INDUCED,
		          qos);
}

/* The operations owed at --rate since the traffic started; after a stall,
 * at most BURST_S worth of them (the rest are counted as behind). */
static void soak_traffic(bench_pool *p, soak_run *r, uint64_t now)
{
	double rate = p->conf->soak_rate;
	double owed = (double)(now - r->t_traffic) / 1e9 * rate - (double)r->ops_issued;
	double burst = rate * BURST_S + 1;

	if (owed > burst) {
		r->ops_behind += (long long)(owed - burst);
		r->ops_issued += (long long)(owed - burst);
		owed -= (double)(long long)(owed - burst);
	}
	for (; owed >= 1; owed--) {
		soak_operation(p, r, now);
		r->ops_issued++;
	}
	if (r->batch.count > 0 && now - r->batch_since >= CONTROL_FLUSH_NS)
		soak_flush(p, r);
}

static void soak_progress(soak_run *r, uint64_t now, long long errors)
{
	if (now < r->next_progress)
		return;
	r->next_progress = now + PROGRESS_EVERY_NS;
	fprintf(stderr,
	        "twin-bench: soak: %.0f s: %lld requests, %lld updates, %lld notifications, "
	        "%lld reconnects, %lld unexpected",
	        (double)(now - r->t_traffic) / 1e9, soak_requests(r),
	        r->desired[SOAK_TRAFFIC].updates, r->desired[SOAK_TRAFFIC].notifications,
	        r->reconnects, errors);
	if (r->nmem > 0)
		fprintf(stderr, ", broker RSS %.1f MB", (double)r->mem[r->nmem - 1].rss_kb / 1024);
	fputc('\n', stderr);
}

/* Every device is up: read the broker's memory and begin the seeding. */
static void soak_seed_begin(bench_pool *p, soak_run *r, uint64_t now)
{
	if (r->setup_failed > 0) {
		fprintf(stderr, "twin-bench: soak: %d of %d devices could not start\n",
		        r->setup_failed, r->n);
		r->aborted = 1;
		return;
	}
	r->seeding = 1;
	r->t_seed = now;
	fprintf(stderr, "twin-bench: soak: %d devices connected; seeding their twins\n", r->n);
	if (r->conf->broker_pid != 0 && soak_read_mem(r->conf->broker_pid, &r->m_connected) != 0)
		bench_error(p, "the broker (pid %d) is gone", r->conf->broker_pid);
}

static void soak_start(bench_pool *p, soak_run *r, uint64_t now)
{
	r->seed_s = (double)(now - r->t_seed) / 1e9;
	r->started = 1;
	r->t_traffic = now;
	r->next_progress = now + PROGRESS_EVERY_NS;
	r->t_measure = now + (uint64_t)(p->conf->warmup * 1e9);
	r->t_end = r->t_measure + (uint64_t)(p->conf->duration * 1e9);
	fprintf(stderr, "twin-bench: soak: seeded in %.1f s; traffic at %g/s\n", r->seed_s,
	        p->conf->soak_rate);
	if (r->conf->broker_pid != 0 && soak_read_mem(r->conf->broker_pid, &r->m_seeded) != 0)
		bench_error(p, "the broker (pid %d) is gone", r->conf->broker_pid);
}

/* The seeding: every device reports one PATCH of the traffic's shape (at
 * most SEED_WINDOW in flight) and gets one desired update of the traffic's
 * shape, batched BENCH_BATCH_MAX to a control request like the traffic's
 * (at most SEED_CONTROL_WINDOW unanswered). The traffic starts once every
 * reply, response and notification of it is in: from then on, every twin
 * has the size it keeps. Nothing of it counts in the traffic's figures;
 * an unexpected status or a timeout counts as an error all the same. */
static void soak_seed(bench_pool *p, soak_run *r, uint64_t now)
{
	while (r->inflight < SEED_WINDOW && r->seed_patch < r->n) {
		bench_client *c = &p->c[r->seed_patch++];

		if (c->phase == PH_READY && c->state == BENCH_C_UP && c->t0 == 0) {
			soak_send(r, c, REQ_PATCH, 1);
			r->seed_patches++;
		}
	}
	while (r->control_out < SEED_CONTROL_WINDOW && r->seed_update < r->n)
		soak_update(p, r, r->seed_update++, now);
	soak_flush(p, r);
	soak_timeouts(p, r, now);
	if (r->seed_patch == r->n && r->seed_update == r->n && r->inflight == 0 &&
	    r->control_out == 0 && r->notify_pending == 0)
		soak_start(p, r, now);
}

static void soak_tick(bench_pool *p, uint64_t now)
{
	soak_run *r = p->scenario;
	bench_client *be = &p->c[p->n - 1];

	r->now = now;
	if (be->mosq == NULL)
		bench_client_connect_backend(be);
	if (r->seeding && !r->started) {
		soak_seed(p, r, now);
		return;
	}
	if (!r->started) {
		while (p->awaiting < CONNECT_WINDOW && p->next < p->ndevices)
			bench_pool_connect_next(p);
		if (r->backend_ready && r->ready + r->setup_failed == r->n)
			soak_seed_begin(p, r, now);
		return;
	}
	soak_sample(p, r, now);
	if (!r->stopped && now >= r->t_end) {
		soak_flush(p, r);
		r->stopped = 1;
		r->t_drain_end = now + (uint64_t)(p->conf->timeout * 1e9);
	}
	if (!r->stopped)
		soak_traffic(p, r, now);
	soak_reconnect_due(p, r, now);
	soak_timeouts(p, r, now);
	soak_progress(r, now, p->errors);
}

/* Done when the traffic stopped and every reply, response and expected
 * notification is in, or --timeout after the stop. */
static int soak_done(bench_pool *p)
{
	soak_run *r = p->scenario;

	if (r->aborted)
		return 1;
	if (!r->stopped)
		return 0;
	return (r->inflight == 0 && r->control_out == 0 && r->notify_pending == 0) ||
	       r->now >= r->t_drain_end;
}

static const bench_handlers soak_handlers = {
        .connected = soak_connected,
        .subscribed = soak_subscribed,
        .message = soak_message,
        .failed = soak_failed,
        .tick = soak_tick,
        .done = soak_done,
};

/* ---- the run ---- */

static void soak_free(soak_run *r)
{
	bench_request_free(&r->batch);
	bench_samples_free(&r->samples);
	free(r->dev);
	free(r->queue);
	free(r->mem);
	free(r);
}

/* What the pool saw, into row; the expectations left open become errors. */
static void soak_summarize(bench_pool *p, soak_run *r, bench_result *row)
{
	if (r->inflight > 0) {
		r->missing_replies += r->inflight;
		bench_error(p, "%lld requests unanswered at the end", r->inflight);
	}
	if (r->control_out > 0) {
		r->missing_control += r->control_out;
		bench_error(p, "%lld updateTwin commands unanswered at the end", r->control_out);
	}
	if (r->notify_pending > 0) {
		r->missing_notify = r->notify_pending;
		bench_error(p, "%lld desired notifications never arrived", r->notify_pending);
	}
	memset(row, 0, sizeof(*row));
	row->scenario = BENCH_SOAK;
	row->k = row->n = r->n;
	row->qos = 1;
	row->ops = soak_requests(r);
	row->seconds = r->conf->duration;
	row->total_s = r->started ? (double)(r->now - r->t_traffic) / 1e9 : 0;
	row->ops_per_s = row->total_s > 0 ? (double)row->ops / row->total_s : 0;
	bench_samples_summary(&r->samples, &row->p50_us, &row->p99_us, &row->max_us);
}

int bench_run_soak(const bench_conf *conf, const char *started)
{
	soak_run *r = calloc(1, sizeof(*r));
	bench_result row;
	bench_pool pool;
	int rc = 0;

	if (r == NULL)
		return 1;
	r->conf = conf;
	r->n = conf->n_soak;
	r->rng = bench_now() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
	snprintf(r->token, sizeof(r->token), "%ld-%" PRIx64, (long)getpid(), bench_now());
	r->dev = calloc((size_t)r->n, sizeof(*r->dev));
	r->queue = calloc((size_t)r->n, sizeof(*r->queue));
	if (r->dev == NULL || r->queue == NULL ||
	    (conf->broker_pid != 0 && soak_check_broker(r) != 0) ||
	    bench_pool_init(&pool, conf, "soak", r->n, 1, &soak_handlers, r) != 0) {
		soak_free(r);
		return 1;
	}
	if (bench_pool_run(&pool) != 0)
		r->aborted = 1;
	soak_summarize(&pool, r, &row);
	bench_pool_free(&pool);
	/* Devices that never got ready before a stall or an abort. */
	row.errors = pool.errors + (r->started ? 0 : r->n - r->ready - r->setup_failed);
	soak_print(r, &row);
	if (conf->json_path != NULL && soak_write_json(r, &row, started) != 0)
		rc = 1;
	if (row.errors > 0 || r->aborted) {
		fprintf(stderr, "twin-bench: soak: %lld unexpected errors\n", row.errors);
		rc = 1;
	}
	soak_free(r);
	return rc;
}
