/*
 * twin_bench_control.c - the control API as twin-bench uses it: request
 * bodies of up to 100 commands, the responses, and in sas mode the bench
 * devices themselves.
 *
 * Request bodies are built as text, not with cJSON: the fan-out builds all
 * of them before its clock starts, and the text form makes the cost of a
 * body obvious. Every command's correlationData is a number (the device
 * number), which maps each response back to its device. Responses are
 * parsed with cJSON: they carry whole twins and identities.
 *
 * In sas mode device clients need their keys: bench_devices_prepare creates
 * the devices with createDevice (keeping those that exist: 409 is followed
 * by getDevice) and keeps each primary key, indexed by device number.
 * bench_devices_tag runs the same two steps to give twins tags (the job
 * scenario's condition selects them): createDevice with an initial twin,
 * and for the devices that exist updateTwin instead of getDevice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "twin_bench.h"

#define PREPARE_WINDOW 400 /* commands in flight while creating devices */
#define TAGS_MAX       256 /* bytes of the tags bench_devices_tag sets */

/* ---- request bodies ---- */

static int append(bench_request *r, const char *text)
{
	size_t n = strlen(text);

	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *more;

		while (cap < r->len + n + 1)
			cap *= 2;
		more = realloc(r->body, cap);
		if (more == NULL)
			return -1;
		r->body = more;
		r->cap = cap;
	}
	memcpy(r->body + r->len, text, n + 1);
	r->len += n;
	return 0;
}

int bench_request_add(bench_request *r, const char *command, const char *members, long corr)
{
	char head[96], tail[48];

	snprintf(head, sizeof(head), "%s{\"command\":\"%s\",",
	         r->count == 0 ? "{\"commands\":[" : ",", command);
	snprintf(tail, sizeof(tail), ",\"correlationData\":%ld}", corr);
	if (append(r, head) != 0 || append(r, members) != 0 || append(r, tail) != 0)
		return -1;
	r->count++;
	return 0;
}

int bench_request_finish(bench_request *r)
{
	return append(r, r->count == 0 ? "{\"commands\":[]}" : "]}");
}

void bench_request_free(bench_request *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

int bench_response_each(const void *payload, int len,
                        void (*fn)(void *ctx, long corr, int status, void *response), void *ctx)
{
	cJSON *doc = cJSON_ParseWithLength(payload, (size_t)len);
	const cJSON *responses = cJSON_GetObjectItemCaseSensitive(doc, "responses"), *r;

	if (!cJSON_IsArray(responses)) {
		cJSON_Delete(doc);
		return -1;
	}
	cJSON_ArrayForEach(r, responses)
	{
		const cJSON *corr = cJSON_GetObjectItemCaseSensitive(r, "correlationData");
		const cJSON *status = cJSON_GetObjectItemCaseSensitive(r, "status");

		fn(ctx, cJSON_IsNumber(corr) ? (long)corr->valuedouble : -1,
		   cJSON_IsNumber(status) ? status->valueint : 0, (void *)r);
	}
	cJSON_Delete(doc);
	return 0;
}

/* ---- creating the devices (sas mode) and tagging their twins ---- */

typedef struct prepare {
	const bench_conf *conf;
	char (*keys)[TWIN_SYM_KEY_B64_MAX + 1]; /* keys read into; NULL: tagging */
	const char *tags;                       /* tagging: the tags object */
	int n;
	int ready;     /* the back end is subscribed */
	int next;      /* next device to create */
	int in_flight; /* commands sent, not answered */
	int *fetch;    /* devices that existed: getDevice (keys) or updateTwin (tags) */
	int nfetch;
	int known, failed; /* keys read or twins tagged; devices given up */
} prepare;

static void send_batch(bench_client *be, prepare *pr, const char *command, const int *numbers,
                       int count)
{
	bench_request req = {0};
	char id[TWIN_DEVICE_ID_MAX + 1], members[TWIN_DEVICE_ID_MAX + TAGS_MAX + 48];
	int i;

	for (i = 0; i < count; i++) {
		bench_device_id(pr->conf, numbers[i], id, sizeof(id));
		if (pr->tags != NULL)
			snprintf(members, sizeof(members),
			         "\"deviceId\":\"%s\",\"twin\":{\"tags\":%s}", id, pr->tags);
		else
			snprintf(members, sizeof(members), "\"deviceId\":\"%s\"", id);
		if (bench_request_add(&req, command, members, numbers[i]) != 0)
			break;
	}
	if (i < count || bench_request_finish(&req) != 0) {
		bench_error(be->pool, "out of memory for a %s request", command);
		pr->failed += count;
	} else if (bench_publish(be, BENCH_CONTROL_TOPIC, (int)req.len, req.body, 1) == 0) {
		pr->in_flight += count;
	}
	bench_request_free(&req);
}

static void prepare_response(void *ctx, long corr, int status, void *response)
{
	bench_pool *p = ctx;
	prepare *pr = p->scenario;
	const cJSON *r = response;
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(r, "command");
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(
	                cJSON_GetObjectItemCaseSensitive(
	                        cJSON_GetObjectItemCaseSensitive(r, "data"), "authentication"),
	                "symmetricKey"),
	        "primaryKey");
	const char *command = cJSON_IsString(cmd) ? cmd->valuestring : "?";
	char *text;

	if (corr < 0 || corr >= pr->n) {
		text = cJSON_PrintUnformatted(r);
		bench_error(p, "unexpected control response %s", text ? text : "?");
		free(text);
		pr->failed += pr->in_flight; /* a whole-request failure */
		pr->in_flight = 0;
		return;
	}
	pr->in_flight--;
	if (status == 409 && strcmp(command, "createDevice") == 0) {
		pr->fetch[pr->nfetch++] = (int)corr;
	} else if (status == 200 && pr->keys == NULL) {
		pr->known++; /* tagged */
	} else if (status == 200 && cJSON_IsString(key) &&
	           strlen(key->valuestring) < sizeof(pr->keys[0])) {
		strcpy(pr->keys[corr], key->valuestring);
		pr->known++;
	} else {
		text = cJSON_PrintUnformatted(r);
		bench_error(p, "%s of device %ld: %s", command, corr, text ? text : "?");
		free(text);
		pr->failed++;
	}
}

static void prepare_connected(bench_client *c, uint64_t now)
{
	(void)now;
	if (mosquitto_subscribe(c->mosq, NULL, BENCH_RESPONSE_TOPIC, 1) != MOSQ_ERR_SUCCESS)
		bench_client_fail(c, "back end: cannot subscribe");
}

static void prepare_subscribed(bench_client *c, int mid, int count, const int *granted,
                               uint64_t now)
{
	prepare *pr = c->pool->scenario;

	(void)mid, (void)now;
	if (count < 1 || granted[0] > 1)
		bench_client_fail(c, "back end: %s refused", BENCH_RESPONSE_TOPIC);
	else
		pr->ready = 1;
}

static void prepare_message(bench_client *c, const struct mosquitto_message *m, uint64_t now)
{
	(void)now;
	if (strcmp(m->topic, BENCH_RESPONSE_TOPIC) == 0 &&
	    bench_response_each(m->payload, m->payloadlen, prepare_response, c->pool) != 0)
		bench_error(c->pool, "a control response that is no response document");
}

static void prepare_failed(bench_client *c, uint64_t now)
{
	prepare *pr = c->pool->scenario;

	(void)now;
	pr->failed = pr->n - pr->known; /* nothing more will come */
}

static void prepare_tick(bench_pool *p, uint64_t now)
{
	prepare *pr = p->scenario;
	bench_client *be = &p->c[0];
	int numbers[BENCH_BATCH_MAX], count;

	(void)now;
	if (be->state == BENCH_C_IDLE && be->mosq == NULL)
		bench_client_connect_backend(be);
	if (!pr->ready || be->state != BENCH_C_UP)
		return;
	while (pr->next < pr->n && pr->in_flight < PREPARE_WINDOW) {
		for (count = 0; count < BENCH_BATCH_MAX && pr->next < pr->n; count++)
			numbers[count] = pr->next++;
		send_batch(be, pr, "createDevice", numbers, count);
	}
	/* Existing devices, once a batch is full or the creates are answered. */
	while (pr->nfetch >= BENCH_BATCH_MAX ||
	       (pr->nfetch > 0 && pr->next == pr->n && pr->in_flight == 0)) {
		count = pr->nfetch < BENCH_BATCH_MAX ? pr->nfetch : BENCH_BATCH_MAX;
		pr->nfetch -= count;
		send_batch(be, pr, pr->tags != NULL ? "updateTwin" : "getDevice",
		           pr->fetch + pr->nfetch, count);
	}
}

static int prepare_done(bench_pool *p)
{
	prepare *pr = p->scenario;

	return pr->known + pr->failed >= pr->n;
}

static const bench_handlers prepare_handlers = {
        .connected = prepare_connected,
        .subscribed = prepare_subscribed,
        .message = prepare_message,
        .failed = prepare_failed,
        .tick = prepare_tick,
        .done = prepare_done,
};

/* Run pr to its end on a pool of one back end; 0, or -1 with the reason on
 * stderr (what names the work). */
static int prepare_run(prepare *pr, const char *what)
{
	bench_pool pool;
	int rc;

	pr->fetch = calloc((size_t)pr->n, sizeof(*pr->fetch));
	if (pr->fetch == NULL) {
		fprintf(stderr, "twin-bench: %s: out of memory\n", what);
		return -1;
	}
	if (bench_pool_init(&pool, pr->conf, what, 0, 1, &prepare_handlers, pr) != 0) {
		free(pr->fetch);
		return -1;
	}
	rc = bench_pool_run(&pool);
	bench_pool_free(&pool);
	free(pr->fetch);
	if (rc != 0 || pool.errors > 0 || pr->known < pr->n) {
		fprintf(stderr, "twin-bench: %s: %d of %d devices done\n", what, pr->known, pr->n);
		return -1;
	}
	return 0;
}

int bench_devices_prepare(bench_conf *conf, int n)
{
	prepare pr = {.conf = conf, .n = n};

	conf->keys = calloc((size_t)n, sizeof(*conf->keys));
	if (conf->keys == NULL) {
		fprintf(stderr, "twin-bench: out of memory for %d device keys\n", n);
		return -1;
	}
	pr.keys = conf->keys;
	if (prepare_run(&pr, "creating devices") != 0)
		return -1;
	conf->nkeys = n;
	return 0;
}

int bench_devices_tag(const bench_conf *conf, int n, const char *tags)
{
	prepare pr = {.conf = conf, .n = n, .tags = tags};

	if (strlen(tags) >= TAGS_MAX) {
		fprintf(stderr, "twin-bench: tags too long\n");
		return -1;
	}
	return prepare_run(&pr, "tagging twins");
}
