/*
 * twin_bench_scenarios.c - the closed-loop scenarios: k clients, each with
 * exactly one request outstanding, for --warmup then --duration seconds.
 *
 *   echo   publish 200 bytes (--echo-bytes) to bench/echo/{clientid}, which the client
 *          subscribes to: the broker's own relay cost, the BASELINE
 *   get    $iothub/twin/GET/?$rid=N            → res/200/?$rid=N
 *   patch  $iothub/twin/PATCH/properties/reported/?$rid=N, ~200 bytes of
 *          changing nested fields               → res/204/?$rid=N&$version=V
 *
 * get and patch clients first seed their twin's reported section with one
 * ~1 KB patch, so GET bodies and merges have a realistic size. An operation
 * counts when its reply arrives inside the measured window; its latency is
 * the time from just before the publish to the reply's callback. Clients
 * stop sending at the end of the window and the run ends when every
 * outstanding reply is in (or its --timeout passed: an error).
 *
 * Every client must connect, subscribe and seed before the clock starts; a
 * run where one cannot is aborted (its errors are reported, its row has no
 * operations), because a row measured with fewer than k clients would lie.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin_bench.h"

#define CONNECT_WINDOW  256 /* CONNECTs in flight while setting up */
#define TWIN_RES_PREFIX "$iothub/twin/res/"
#define TIMEOUT_SCAN_NS 100000000ULL

enum phase { PH_SUBSCRIBING, PH_SEEDING, PH_READY, PH_RUNNING, PH_DONE };

typedef struct loop_run {
	bench_scenario kind;
	int k, qos;
	char name[48];
	int started, aborted;
	uint64_t start, end; /* the measured window */
	int ready, setup_failed, finished;
	long long ops;
	uint64_t next_scan;
	bench_samples samples;
	char seed[BENCH_SEED_MAX];
} loop_run;

/* ---- requests ---- */

void bench_make_seed(char *out, size_t size)
{
	size_t len = 0;

	len += (size_t)snprintf(out + len, size - len, "{\"seed\":{");
	for (int i = 0; i < BENCH_SEED_ENTRIES; i++)
		len += (size_t)snprintf(out + len, size - len,
		                        "%s\"sensor%02d\":{\"id\":\"s-%02d-abcdefgh\",\"unit\":"
		                        "\"celsius\",\"offset\":%d.25}",
		                        i ? "," : "", i, i, i);
	snprintf(out + len, size - len, "}}");
}

int bench_make_patch(char *out, size_t size, uint64_t n)
{
	return snprintf(out, size,
	                "{\"telemetry\":{\"temperature\":%.2f,\"humidity\":%.1f,\"pressure\":"
	                "%.2f},\"device\":{\"mode\":\"%s\",\"uptime\":%" PRIu64 ",\"seq\":%" PRIu64
	                "},\"firmware\":{\"version\":\"1.4.%u\"},"
	                "\"network\":{\"rssi\":%d,\"ip\":\"10.0.%u.%u\"}}",
	                20.0 + (double)(n % 1000) / 100.0, 40.0 + (double)(n % 200) / 10.0,
	                1000.0 + (double)(n % 3000) / 100.0, n % 2 ? "eco" : "normal", 3600 + n * 3,
	                n, (unsigned)(n % 10), -50 - (int)(n % 40), (unsigned)(n % 256),
	                (unsigned)((n * 7) % 256));
}

static void echo_topic(const bench_client *c, char *out, size_t size)
{
	char id[TWIN_DEVICE_ID_MAX + 1];

	bench_device_id(c->pool->conf, c->number, id, sizeof(id));
	snprintf(out, size, "bench/echo/%s", id);
}

/* Send the next request of client c (the seed when seeding). */
static void send_request(loop_run *r, bench_client *c, int seeding)
{
	char topic[TWIN_DEVICE_ID_MAX + 80], payload[BENCH_ECHO_BYTES_MAX + 1];
	const char *body = payload;
	int len = 0;

	c->rid++;
	switch (seeding ? BENCH_PATCH : r->kind) {
	case BENCH_ECHO:
		echo_topic(c, topic, sizeof(topic));
		snprintf(payload, sizeof(payload), "%016" PRIx64, c->rid);
		len = c->pool->conf->echo_bytes;
		memset(payload + 16, 'x', (size_t)len - 16);
		break;
	case BENCH_GET:
		snprintf(topic, sizeof(topic), "$iothub/twin/GET/?$rid=%" PRIu64, c->rid);
		break;
	default:
		snprintf(topic, sizeof(topic),
		         "$iothub/twin/PATCH/properties/reported/?$rid=%" PRIu64, c->rid);
		if (!seeding)
			len = bench_make_patch(payload, sizeof(payload), c->rid);
		break;
	}
	if (seeding) {
		body = r->seed;
		len = (int)strlen(r->seed);
	}
	c->t0 = bench_now();
	bench_publish(c, topic, len, body, r->qos);
}

/* ---- replies ---- */

int bench_parse_twin_reply(const char *topic, int *status, uint64_t *rid)
{
	const char *q, *p;
	char *end;

	if (strncmp(topic, TWIN_RES_PREFIX, strlen(TWIN_RES_PREFIX)) != 0)
		return -1;
	*status = (int)strtol(topic + strlen(TWIN_RES_PREFIX), &end, 10);
	if (strncmp(end, "/?", 2) != 0)
		return -1;
	for (q = end + 2; q != NULL && *q; q = (p = strchr(q, '&')) ? p + 1 : NULL) {
		if (strncmp(q, "$rid=", 5) == 0) {
			*rid = strtoull(q + 5, &end, 10);
			return end != q + 5 ? 0 : -1;
		}
	}
	return -1;
}

/* The rid and status a message answers for client c; -1 if it is no reply. */
static int parse_reply(loop_run *r, bench_client *c, const struct mosquitto_message *m, int *status,
                       uint64_t *rid)
{
	char topic[TWIN_DEVICE_ID_MAX + 16], hex[17];

	if (r->kind != BENCH_ECHO)
		return bench_parse_twin_reply(m->topic, status, rid);
	echo_topic(c, topic, sizeof(topic));
	if (strcmp(m->topic, topic) != 0 || m->payloadlen != c->pool->conf->echo_bytes)
		return -1;
	memcpy(hex, m->payload, 16);
	hex[16] = '\0';
	*rid = strtoull(hex, NULL, 16);
	*status = 200;
	return 0;
}

static int expected_status(const loop_run *r, int seeding)
{
	return r->kind == BENCH_PATCH || seeding ? 204 : 200;
}

/* ---- handlers ---- */

static void on_connected(bench_client *c, uint64_t now)
{
	loop_run *r = c->pool->scenario;
	char topic[TWIN_DEVICE_ID_MAX + 16];

	(void)now;
	c->phase = PH_SUBSCRIBING;
	if (r->kind == BENCH_ECHO)
		echo_topic(c, topic, sizeof(topic));
	else
		snprintf(topic, sizeof(topic), "%s#", TWIN_RES_PREFIX);
	if (mosquitto_subscribe(c->mosq, NULL, topic, r->qos) != MOSQ_ERR_SUCCESS)
		bench_client_fail(c, "cannot subscribe to %s", topic);
}

static void on_subscribed(bench_client *c, int mid, int count, const int *granted, uint64_t now)
{
	loop_run *r = c->pool->scenario;

	(void)mid, (void)now;
	if (c->phase != PH_SUBSCRIBING)
		return;
	if (count < 1 || granted[0] > 1) {
		bench_client_fail(c, "subscription refused (SUBACK 0x%02x)%s",
		                  count < 1 ? 0x80 : granted[0],
		                  r->kind == BENCH_ECHO ? ": echo needs a broker ACL that grants "
		                                          "devices bench/echo/# (sas mode)"
		                                        : "");
		return;
	}
	if (r->kind == BENCH_ECHO) {
		c->phase = PH_READY;
		r->ready++;
		return;
	}
	c->phase = PH_SEEDING;
	send_request(r, c, 1);
}

static void on_message(bench_client *c, const struct mosquitto_message *m, uint64_t now)
{
	loop_run *r = c->pool->scenario;
	int status, seeding = c->phase == PH_SEEDING;
	uint64_t rid;

	if ((c->phase != PH_SEEDING && c->phase != PH_RUNNING) || c->t0 == 0 ||
	    parse_reply(r, c, m, &status, &rid) != 0 || rid != c->rid)
		return; /* not the reply we wait for */
	if (status != expected_status(r, seeding)) {
		if (seeding) {
			bench_client_fail(c, "seeding the twin: %s %.*s", m->topic,
			                  m->payloadlen > 200 ? 200 : m->payloadlen,
			                  (const char *)m->payload);
			return;
		}
		bench_error(c->pool, "%s %.*s", m->topic, m->payloadlen > 200 ? 200 : m->payloadlen,
		            (const char *)m->payload);
	} else if (!seeding && now >= r->start && now <= r->end) {
		if (bench_samples_add(&r->samples, now - c->t0) != 0)
			bench_error(c->pool, "out of memory for samples");
		r->ops++;
	}
	c->t0 = 0;
	if (seeding) {
		c->phase = PH_READY;
		r->ready++;
	} else if (now < r->end) {
		send_request(r, c, 0);
	} else {
		c->phase = PH_DONE;
		r->finished++;
	}
}

static void on_failed(bench_client *c, uint64_t now)
{
	loop_run *r = c->pool->scenario;

	(void)now;
	if (c->phase == PH_RUNNING)
		r->finished++;
	else if (c->phase != PH_DONE && !r->started)
		r->setup_failed++;
	c->phase = PH_DONE;
}

static void start(bench_pool *p, loop_run *r, uint64_t now)
{
	r->started = 1;
	r->start = now + (uint64_t)(p->conf->warmup * 1e9);
	r->end = r->start + (uint64_t)(p->conf->duration * 1e9);
	for (int i = 0; i < p->n; i++) {
		p->c[i].phase = PH_RUNNING;
		send_request(r, &p->c[i], 0);
	}
}

/* Fail the clients whose request is older than --timeout. */
static void scan_timeouts(bench_pool *p, loop_run *r, uint64_t now)
{
	uint64_t limit = (uint64_t)(p->conf->timeout * 1e9);

	if (now < r->next_scan)
		return;
	r->next_scan = now + TIMEOUT_SCAN_NS;
	for (int i = 0; i < p->n; i++) {
		bench_client *c = &p->c[i];

		if ((c->phase == PH_RUNNING || c->phase == PH_SEEDING) && c->t0 != 0 &&
		    now - c->t0 > limit)
			bench_client_fail(c, "request %" PRIu64 " unanswered after %g s", c->rid,
			                  p->conf->timeout);
	}
}

static void on_tick(bench_pool *p, uint64_t now)
{
	loop_run *r = p->scenario;

	while (!r->started && p->awaiting < CONNECT_WINDOW && p->next < p->ndevices)
		bench_pool_connect_next(p);
	if (!r->started && r->ready + r->setup_failed == r->k) {
		if (r->setup_failed > 0) {
			fprintf(stderr, "twin-bench: %s: %d of %d clients could not start\n",
			        r->name, r->setup_failed, r->k);
			r->aborted = 1;
			return;
		}
		start(p, r, now);
	}
	scan_timeouts(p, r, now);
}

static int is_done(bench_pool *p)
{
	loop_run *r = p->scenario;

	return r->aborted || (r->started && r->finished == r->k);
}

static const bench_handlers loop_handlers = {
        .connected = on_connected,
        .subscribed = on_subscribed,
        .message = on_message,
        .failed = on_failed,
        .tick = on_tick,
        .done = is_done,
};

int bench_run_closed_loop(const bench_conf *conf, bench_scenario s, int k, int qos,
                          bench_result *out)
{
	loop_run *r = calloc(1, sizeof(*r));
	bench_pool pool;
	int rc;

	if (r == NULL)
		return -1;
	r->kind = s;
	r->k = k;
	r->qos = qos;
	snprintf(r->name, sizeof(r->name), "%s k=%d qos=%d", bench_scenario_name(s), k, qos);
	bench_make_seed(r->seed, sizeof(r->seed));
	if (bench_pool_init(&pool, conf, r->name, k, 0, &loop_handlers, r) != 0) {
		free(r);
		return -1;
	}
	rc = bench_pool_run(&pool);
	memset(out, 0, sizeof(*out));
	out->scenario = s;
	out->k = k;
	out->qos = qos;
	out->ops = r->ops;
	out->seconds = conf->duration;
	out->ops_per_s = conf->duration > 0 ? (double)r->ops / conf->duration : 0;
	bench_samples_summary(&r->samples, &out->p50_us, &out->p99_us, &out->max_us);
	if (rc == 0 && !r->aborted && r->ops == 0)
		bench_error(&pool, "no operation completed in the measured window");
	bench_pool_free(&pool);
	/* A stall before the start: the clients that never got ready. */
	out->errors = pool.errors + (r->started ? 0 : r->k - r->ready - r->setup_failed);
	bench_samples_free(&r->samples);
	free(r);
	return 0;
}
