/*
 * twin_bench_clients.c - the client pool: many libmosquitto clients served
 * by one poll() loop in one thread.
 *
 * libmosquitto runs in its non-threaded mode: mosquitto_connect_async opens
 * a non-blocking socket and queues CONNECT; the loop polls every socket for
 * input, and for output while mosquitto_want_write says a packet waits (a
 * publish made inside a callback is only queued), then calls
 * mosquitto_loop_read / loop_write, and loop_misc once a second for the
 * keep-alives. loop_read handles one packet per call when nothing QoS>0 is
 * queued, so it is called again while the socket still holds bytes
 * (FIONREAD), which saves a poll() per packet under load.
 *
 * poll() costs O(clients) per iteration, which is fine up to ~10k clients:
 * the broker, not this loop, is what a run measures, and the echo baseline
 * pays the same cost as the twin scenarios it is compared with.
 *
 * The pool owns connection state (connecting, up, failed) and error
 * counting; what a message means is the scenario's business (its handlers).
 * Progress is any event from the broker: a run with none for --timeout
 * seconds ends with an error instead of waiting forever.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mqtt_protocol.h>

#include "twin/sas.h"
#include "twin_bench.h"

#define POLL_MS         10 /* a tick at least this often */
#define READ_REPEAT_MAX 64 /* packets read per socket per iteration */
#define ERRORS_PRINTED  10 /* per pool; the rest are only counted */
#define CLOSE_WAIT_NS   (2ULL * 1000000000ULL)

uint64_t bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void bench_device_id(const bench_conf *conf, int number, char *out, size_t size)
{
	snprintf(out, size, "%s%d", conf->prefix, number);
}

static void verror(bench_pool *p, const char *fmt, va_list ap)
{
	p->errors++;
	if (p->reported++ < ERRORS_PRINTED) {
		fprintf(stderr, "twin-bench: %s: ", p->name);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	} else if (p->reported == ERRORS_PRINTED + 1) {
		fprintf(stderr, "twin-bench: %s: further errors are only counted\n", p->name);
	}
}

void bench_error(bench_pool *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(p, fmt, ap);
	va_end(ap);
}

/* The one place a client changes state, so the pool's counters agree. */
static void set_state(bench_client *c, int state)
{
	bench_pool *p = c->pool;

	if (c->state == BENCH_C_CONNECTING)
		p->awaiting--;
	if (c->state == BENCH_C_UP)
		p->up--;
	c->state = state;
	if (state == BENCH_C_CONNECTING)
		p->awaiting++;
	if (state == BENCH_C_UP)
		p->up++;
}

void bench_client_fail(bench_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(c->pool, fmt, ap);
	va_end(ap);
	if (c->state == BENCH_C_FAILED)
		return;
	set_state(c, BENCH_C_FAILED);
	if (c->mosq != NULL)
		mosquitto_disconnect(c->mosq); /* on_disconnect sees FAILED: no second error */
	if (c->pool->h->failed != NULL)
		c->pool->h->failed(c, bench_now());
}

/* ---- libmosquitto callbacks: state, then the scenario's handler ---- */

static void client_name(const bench_client *c, char *out, size_t size)
{
	if (c->number >= 0)
		bench_device_id(c->pool->conf, c->number, out, size);
	else
		snprintf(out, size, "back end");
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
	bench_client *c = obj;
	char id[TWIN_DEVICE_ID_MAX + 16];
	uint64_t now = bench_now();

	(void)mosq;
	c->pool->last_event = now;
	if (c->state != BENCH_C_CONNECTING)
		return;
	if (rc != 0) {
		client_name(c, id, sizeof(id));
		bench_client_fail(c, "%s: CONNACK %d (%s)", id, rc, mosquitto_connack_string(rc));
		return;
	}
	set_state(c, BENCH_C_UP);
	if (c->pool->h->connected != NULL)
		c->pool->h->connected(c, now);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted)
{
	bench_client *c = obj;
	uint64_t now = bench_now();

	(void)mosq;
	c->pool->last_event = now;
	if (c->state == BENCH_C_UP && c->pool->h->subscribed != NULL)
		c->pool->h->subscribed(c, mid, count, granted, now);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m)
{
	bench_client *c = obj;
	uint64_t now = bench_now();

	(void)mosq;
	c->pool->last_event = now;
	if (c->state == BENCH_C_UP && c->pool->h->message != NULL)
		c->pool->h->message(c, m, now);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	bench_client *c = obj;
	char id[TWIN_DEVICE_ID_MAX + 16];

	(void)mosq;
	c->pool->last_event = bench_now();
	if (c->state == BENCH_C_CLOSING || c->state == BENCH_C_FAILED) {
		if (c->state == BENCH_C_CLOSING)
			set_state(c, BENCH_C_IDLE);
		return;
	}
	client_name(c, id, sizeof(id));
	bench_client_fail(c, "%s: connection %s: %s", id,
	                  c->state == BENCH_C_CONNECTING ? "failed" : "lost",
	                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
}

/* ---- connecting ---- */

/* mosquitto_new without its socketpair. libmosquitto opens a pair per client
 * that only its threaded loop reads (every queued packet writes a byte into
 * it to wake select()). This loop has no thread: the pair would cost two
 * descriptors per client, capping a process with the usual 20000 at ~6600
 * clients, and a write() per packet. Created while no descriptor may be
 * opened (soft RLIMIT_NOFILE 0, for this call only), socketpair() fails,
 * which libmosquitto tolerates: a warning to a log callback not yet set, and
 * the pair is never used. */
static struct mosquitto *new_mosq(const char *id, void *obj)
{
	struct rlimit saved, none;
	struct mosquitto *m;
	int lowered = 0, e;

	if (getrlimit(RLIMIT_NOFILE, &saved) == 0) {
		none = saved;
		none.rlim_cur = 0;
		lowered = setrlimit(RLIMIT_NOFILE, &none) == 0;
	}
	m = mosquitto_new(id, true, obj);
	e = errno;
	if (lowered)
		setrlimit(RLIMIT_NOFILE, &saved);
	errno = e;
	return m;
}

static int new_client(bench_client *c, const char *id)
{
	bench_pool *p = c->pool;

	if (c->mosq != NULL) {
		bench_error(p, "%s: connected twice", id);
		return -1;
	}
	c->mosq = new_mosq(id, c);
	if (c->mosq == NULL) {
		bench_client_fail(c, "%s: cannot create the client: %s", id, strerror(errno));
		return -1;
	}
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(c->mosq, on_connect);
	mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
	mosquitto_message_callback_set(c->mosq, on_message);
	mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
	return 0;
}

static int start_connect(bench_client *c, const char *id)
{
	int rc;

	set_state(c, BENCH_C_CONNECTING);
	rc = mosquitto_connect_async(c->mosq, c->pool->conf->host, c->pool->conf->port,
	                             BENCH_KEEPALIVE);
	if (rc != MOSQ_ERR_SUCCESS) {
		bench_client_fail(c, "%s: cannot connect to %s:%d: %s", id, c->pool->conf->host,
		                  c->pool->conf->port,
		                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return -1;
	}
	return 0;
}

int bench_client_connect(bench_client *c)
{
	const bench_conf *conf = c->pool->conf;
	char id[TWIN_DEVICE_ID_MAX + 1], user[TWIN_HOST_MAX + TWIN_DEVICE_ID_MAX + 32];
	char resource[TWIN_SAS_TARGET_MAX];
	char *token = NULL;
	twin_error err;
	int rc;

	bench_device_id(conf, c->number, id, sizeof(id));
	if (new_client(c, id) != 0)
		return -1;
	/* The IoT Hub username in both modes, as the SDKs send it; open mode
	 * does not check it. */
	snprintf(user, sizeof(user), "%s/%s/?api-version=" BENCH_API_VERSION,
	         conf->sas ? conf->cs.host_name : conf->host, id);
	if (conf->sas) {
		if (c->number >= conf->nkeys ||
		    twin_sas_target(resource, sizeof(resource), conf->cs.host_name, id, NULL,
		                    &err) != TWIN_OK ||
		    twin_sas_make(resource, conf->keys[c->number], NULL,
		                  (int64_t)time(NULL) + BENCH_TOKEN_TTL, &token, &err) != TWIN_OK) {
			bench_client_fail(c, "%s: no SAS token: %s", id,
			                  c->number >= conf->nkeys ? "no key" : err.message);
			return -1;
		}
	}
	rc = mosquitto_username_pw_set(c->mosq, user, token);
	free(token);
	if (rc != MOSQ_ERR_SUCCESS) {
		bench_client_fail(c, "%s: %s", id, mosquitto_strerror(rc));
		return -1;
	}
	return start_connect(c, id);
}

int bench_client_connect_backend(bench_client *c)
{
	const bench_conf *conf = c->pool->conf;
	char id[64];
	char *token = NULL;
	twin_error err;
	int rc = MOSQ_ERR_SUCCESS;

	/* A '/' makes it no valid deviceId: in open mode it is not a device. */
	snprintf(id, sizeof(id), "twin-bench/%ld/%d", (long)getpid(), (int)(c - c->pool->c));
	if (new_client(c, id) != 0)
		return -1;
	if (conf->sas) {
		if (twin_sas_make(conf->cs.host_name, conf->cs.key, conf->cs.key_name,
		                  (int64_t)time(NULL) + BENCH_TOKEN_TTL, &token, &err) != TWIN_OK) {
			bench_client_fail(c, "back end: no SAS token: %s", err.message);
			return -1;
		}
		rc = mosquitto_username_pw_set(c->mosq, conf->cs.key_name, token);
		free(token);
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		bench_client_fail(c, "back end: %s", mosquitto_strerror(rc));
		return -1;
	}
	return start_connect(c, id);
}

int bench_pool_connect_next(bench_pool *p)
{
	if (p->next >= p->ndevices)
		return 1;
	return bench_client_connect(&p->c[p->next++]);
}

void bench_client_close(bench_client *c)
{
	if (c->state != BENCH_C_UP)
		return;
	set_state(c, BENCH_C_CLOSING);
	mosquitto_disconnect(c->mosq);
}

int bench_publish(bench_client *c, const char *topic, int len, const void *payload, int qos)
{
	int rc = mosquitto_publish(c->mosq, NULL, topic, len, payload, qos, false);

	if (rc != MOSQ_ERR_SUCCESS) {
		bench_client_fail(c, "publish to %s: %s", topic,
		                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return -1;
	}
	return 0;
}

/* ---- the pool and its loop ---- */

int bench_pool_init(bench_pool *p, const bench_conf *conf, const char *name, int ndevices,
                    int nbackends, const bench_handlers *h, void *scenario)
{
	int n = ndevices + nbackends;

	memset(p, 0, sizeof(*p));
	p->conf = conf;
	p->h = h;
	p->scenario = scenario;
	p->name = name;
	p->n = n;
	p->ndevices = ndevices;
	p->c = calloc((size_t)n, sizeof(*p->c));
	p->pfd = calloc((size_t)n, sizeof(*p->pfd));
	if (p->c == NULL || p->pfd == NULL) {
		free(p->c);
		free(p->pfd);
		fprintf(stderr, "twin-bench: %s: out of memory for %d clients\n", name, n);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		p->c[i].pool = p;
		p->c[i].number = i < ndevices ? i : -1;
	}
	p->last_event = p->last_misc = bench_now();
	return 0;
}

/* Serve one client's socket events. */
static void serve(bench_client *c, short revents)
{
	struct mosquitto *m = c->mosq;
	int avail, i;

	if (revents & POLLOUT) {
		if (mosquitto_loop_write(m, 1) != MOSQ_ERR_SUCCESS)
			return; /* on_disconnect has run */
	}
	if (!(revents & (POLLIN | POLLERR | POLLHUP)))
		return;
	for (i = 0; i < READ_REPEAT_MAX; i++) {
		if (mosquitto_loop_read(m, 1) != MOSQ_ERR_SUCCESS || mosquitto_socket(m) < 0)
			return;
		if (ioctl(mosquitto_socket(m), FIONREAD, &avail) != 0 || avail <= 0)
			break;
	}
	/* Publishes made by the handlers inside the callbacks, at once. */
	if (mosquitto_want_write(m))
		mosquitto_loop_write(m, 1);
}

/* One poll() over every socket and the work it found. -1 on a poll error. */
static int iterate(bench_pool *p, int timeout_ms)
{
	int i, ready;

	for (i = 0; i < p->n; i++) {
		struct mosquitto *m = p->c[i].mosq;
		int fd = m != NULL ? mosquitto_socket(m) : -1;

		p->pfd[i].fd = fd;
		p->pfd[i].events = fd < 0 ? 0 : POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0);
		p->pfd[i].revents = 0;
	}
	ready = poll(p->pfd, (nfds_t)p->n, timeout_ms);
	if (ready < 0) {
		if (errno == EINTR)
			return 0;
		bench_error(p, "poll: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < p->n && ready > 0; i++) {
		if (p->pfd[i].revents == 0)
			continue;
		ready--;
		/* The socket may have closed since poll() (a callback failed it). */
		if (p->c[i].mosq != NULL && mosquitto_socket(p->c[i].mosq) == p->pfd[i].fd)
			serve(&p->c[i], p->pfd[i].revents);
	}
	return 0;
}

static void keepalives(bench_pool *p, uint64_t now)
{
	if (now - p->last_misc < 1000000000ULL)
		return;
	p->last_misc = now;
	for (int i = 0; i < p->n; i++)
		if (p->c[i].mosq != NULL && mosquitto_socket(p->c[i].mosq) >= 0)
			mosquitto_loop_misc(p->c[i].mosq);
}

int bench_pool_run(bench_pool *p)
{
	uint64_t now, limit = (uint64_t)(p->conf->timeout * 1e9);

	p->last_event = bench_now();
	for (;;) {
		now = bench_now();
		if (p->h->tick != NULL)
			p->h->tick(p, now);
		if (p->h->done(p))
			return 0;
		/* last_event may be later than now: set by the tick's own calls. */
		if (p->last_event < now && now - p->last_event > limit) {
			bench_error(p, "no progress for %g s (%d of %d clients connected)",
			            p->conf->timeout, p->up, p->n);
			return -1;
		}
		if (iterate(p, POLL_MS) != 0)
			return -1;
		keepalives(p, bench_now());
	}
}

/* DISCONNECT every live client and wait (bounded) for the sockets to close. */
static void close_all(bench_pool *p)
{
	uint64_t deadline = bench_now() + CLOSE_WAIT_NS;
	int open = 0, i;

	for (i = 0; i < p->n; i++) {
		bench_client *c = &p->c[i];

		if (c->mosq == NULL || mosquitto_socket(c->mosq) < 0)
			continue;
		bench_client_close(c);
	}
	do {
		for (open = 0, i = 0; i < p->n; i++)
			if (p->c[i].mosq != NULL && p->c[i].state == BENCH_C_CLOSING &&
			    mosquitto_socket(p->c[i].mosq) >= 0)
				open++;
		if (open > 0 && iterate(p, POLL_MS) != 0)
			break;
	} while (open > 0 && bench_now() < deadline);
}

void bench_pool_free(bench_pool *p)
{
	if (p->c == NULL)
		return;
	close_all(p);
	for (int i = 0; i < p->n; i++)
		if (p->c[i].mosq != NULL)
			mosquitto_destroy(p->c[i].mosq);
	free(p->c);
	free(p->pfd);
	p->c = NULL;
	p->pfd = NULL;
}

int bench_granted_ok(int count, const int *granted, int want)
{
	if (count < want)
		return 0;
	for (int i = 0; i < count; i++)
		if (granted[i] > 1)
			return 0;
	return 1;
}
