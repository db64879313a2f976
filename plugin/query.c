/*
 * query.c - the control API's `query` command (PROTOCOL.md §8) without
 * stalling devices (DESIGN.md §4).
 *
 * A query command is parsed at once (syntax errors are answered like any
 * other error) but runs only after the batch that was open when it arrived
 * is committed, so it sees every write received before it, including writes
 * of its own request (read-your-writes). It runs first on the broker thread
 * for at most PLG_QUERY_INLINE_NS; most queries end there and are answered
 * in the same loop iteration. The rest continue on one worker thread over
 * the run's own LMDB snapshot, while the broker serves devices on the other
 * core, and are answered at the first TICK after they finish. The request's
 * response leaves when all its queries are answered.
 *
 * An idle broker sleeps in epoll_wait for up to 100 ms, and only its own
 * thread may publish. So the worker wakes it with a real-time signal
 * (PLG_WAKE_SIGNAL, a handler that does nothing): Mosquitto 2.0.11 blocks
 * only its own signals around epoll_wait, so ours ends the wait with EINTR,
 * which its loop takes as an ordinary turn, TICK included. The handler is
 * installed with SA_RESTART, so any other system call the signal meets on
 * the broker thread is restarted.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control.h"
#include "plugin.h"
#include "twin/json.h"
#include "twin/query.h"

#define PLG_QUERY_INLINE_NS (2 * 1000 * 1000) /* longest slice on the broker thread */
#define PLG_QUERY_SLICE     256               /* twins between clock reads */
#define PLG_WAKE_SIGNAL     (SIGRTMIN + 4)    /* glibc keeps the first two */
#define PLG_PACE_NS         (2 * 1000 * 1000)

typedef struct plg_qreq plg_qreq;

/* One query command of a request. */
typedef struct plg_qjob {
	plg_qreq *req;
	size_t index; /* its response in req->out's "responses" */
	twin_query *q;
	char *token;
	size_t page_size;
	twin_query_run *run;
	twin_err rc; /* of the run, once finished */
	twin_error err;
	cJSON *items;              /* the page: a raw JSON array when printed by the worker */
	char *next;                /* continuation token, NULL on the last page */
	struct plg_qjob *next_job; /* in the worker's queue or done list */
} plg_qjob;

/* A control request holding queries, waiting for them. */
struct plg_qreq {
	cJSON *out; /* the response, query responses still to fill */
	char *client_id, *topic;
	int qos;
	void *corr;
	uint16_t corr_len;
	plg_qjob **jobs;
	plg_qjob **walk; /* room for a copy of jobs, made before the commit so
	                    that starting the jobs after it needs no memory */
	size_t njobs, pending;
	struct plg_qreq *next;
};

struct plg_queries {
	plg_qreq *collect; /* the request being handled by the CONTROL callback */
	plg_qreq *waiting; /* requests whose queries start after the commit */
	pthread_t worker;
	pthread_t broker; /* the thread to wake */
	struct sigaction old_action;
	int worker_started;
	int pace; /* wake the broker every PLG_PACE_NS while idle (lock) */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stop;
	plg_qjob *todo;    /* for the worker (lock) */
	plg_qjob *running; /* on the worker now (lock) */
	plg_qjob *done;    /* finished by the worker (lock) */
};

static int64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The page of a finished run, into the job (any thread). */
static void job_finish(plg_qjob *j, int print)
{
	char *text;

	if (j->rc == TWIN_OK)
		j->rc = twin_query_page(j->run, &j->items, &j->next, &j->err);
	/* Printing a page of up to 1000 twins is work the broker thread need
	 * not do: the worker hands over text. */
	if (j->rc == TWIN_OK && print && (text = twin_json_print(j->items)) != NULL) {
		cJSON *raw = cJSON_CreateRaw(text);

		cJSON_free(text);
		if (raw != NULL) {
			cJSON_Delete(j->items);
			j->items = raw;
		}
	}
}

static void *worker_main(void *arg)
{
	struct plg_queries *qs = arg;

	pthread_mutex_lock(&qs->lock);
	for (;;) {
		plg_qjob *j;
		int done = 0;

		while (!qs->stop && qs->todo == NULL) {
			struct timespec at;

			if (!qs->pace) {
				pthread_cond_wait(&qs->wake, &qs->lock);
				continue;
			}
			/* A job has work: keep the broker's loop turning. */
			clock_gettime(CLOCK_REALTIME, &at);
			at.tv_nsec += PLG_PACE_NS;
			if (at.tv_nsec >= 1000000000) {
				at.tv_sec++;
				at.tv_nsec -= 1000000000;
			}
			if (pthread_cond_timedwait(&qs->wake, &qs->lock, &at) == ETIMEDOUT &&
			    qs->pace && !qs->stop)
				pthread_kill(qs->broker, PLG_WAKE_SIGNAL);
		}
		if (qs->stop)
			break;
		j = qs->todo;
		qs->todo = j->next_job;
		qs->running = j;
		pthread_mutex_unlock(&qs->lock);
		while (j->rc == TWIN_OK && !done)
			j->rc = twin_query_step(j->run, 4096, &done, &j->err);
		job_finish(j, 1);
		pthread_mutex_lock(&qs->lock);
		qs->running = NULL;
		j->next_job = qs->done;
		qs->done = j;
		if (!qs->stop)
			pthread_kill(qs->broker, PLG_WAKE_SIGNAL);
	}
	pthread_mutex_unlock(&qs->lock);
	return NULL;
}

static void on_wake_signal(int sig)
{
	(void)sig; /* interrupting epoll_wait was the point */
}

int plg_queries_init(plg_ctx *ctx)
{
	struct plg_queries *qs = calloc(1, sizeof(*qs));
	struct sigaction sa;
	sigset_t wake, old;

	if (qs == NULL)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(PLG_WAKE_SIGNAL, &sa, &qs->old_action) != 0) {
		free(qs);
		return -1;
	}
	qs->broker = pthread_self(); /* init runs on the broker's thread */
	pthread_mutex_init(&qs->lock, NULL);
	pthread_cond_init(&qs->wake, NULL);
	/* The worker inherits this mask: the signal is for the broker only. */
	sigemptyset(&wake);
	sigaddset(&wake, PLG_WAKE_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &wake, &old);
	if (pthread_create(&qs->worker, NULL, worker_main, qs) != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		sigaction(PLG_WAKE_SIGNAL, &qs->old_action, NULL);
		pthread_mutex_destroy(&qs->lock);
		pthread_cond_destroy(&qs->wake);
		free(qs);
		return -1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	qs->worker_started = 1;
	ctx->queries = qs;
	return 0;
}

static void job_free(plg_qjob *j)
{
	twin_query_end(j->run);
	twin_query_free(j->q);
	cJSON_Delete(j->items);
	free(j->token);
	free(j->next);
	free(j);
}

static void req_free(plg_qreq *r)
{
	for (size_t i = 0; i < r->njobs; i++)
		job_free(r->jobs[i]);
	free(r->jobs);
	free(r->walk);
	cJSON_Delete(r->out);
	free(r->client_id);
	free(r->topic);
	free(r->corr);
	free(r);
}

/* The number of query commands it may hold is bounded by the request's. */
static plg_qjob *job_add(struct plg_queries *qs, size_t index)
{
	plg_qreq *r = qs->collect;
	plg_qjob *j, **grown;

	if (r == NULL && (r = qs->collect = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	grown = realloc(r->jobs, (r->njobs + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	r->jobs = grown;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return NULL;
	j->req = r;
	j->index = index;
	r->jobs[r->njobs++] = j;
	r->pending++;
	return j;
}

/* The `query` command: {"query":"…","pageSize":n,"continuationToken":"…"}. */
twin_err plg_query_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const cJSON *text = cJSON_GetObjectItemCaseSensitive(cmd, "query");
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(cmd, "pageSize");
	const cJSON *token = cJSON_GetObjectItemCaseSensitive(cmd, "continuationToken");
	twin_query *q = NULL;
	plg_qjob *j;
	twin_err rc;

	if (!cJSON_IsString(text))
		return twin_error_set(err, TWIN_E_INVALID, "'query' is missing or not a string.");
	/* Sizes are clamped to TWIN_QUERY_PAGE_MAX; the bound also keeps the
	 * cast defined (found by fuzz_request: "pageSize":2E49). */
	if (size != NULL &&
	    (!cJSON_IsNumber(size) || size->valuedouble < 1 || size->valuedouble > 1e15 ||
	     size->valuedouble != (double)(long long)size->valuedouble))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'pageSize' must be a positive integer (at most %d are "
		                      "returned).",
		                      TWIN_QUERY_PAGE_MAX);
	if (token != NULL && !cJSON_IsNull(token) && !cJSON_IsString(token))
		return twin_error_set(err, TWIN_E_INVALID, "'continuationToken' must be a string.");
	rc = twin_query_parse(text->valuestring, strlen(text->valuestring), &q, err);
	if (rc != TWIN_OK)
		return rc;
	j = job_add(ctx->queries, (size_t)ctx->control_index);
	if (j == NULL ||
	    (cJSON_IsString(token) && (j->token = strdup(token->valuestring)) == NULL)) {
		twin_query_free(q);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	j->q = q;
	j->page_size =
	        size != NULL ? (size->valuedouble > TWIN_QUERY_PAGE_MAX ? TWIN_QUERY_PAGE_MAX
	                                                                : (size_t)size->valuedouble)
	                     : 0;
	*data = cJSON_CreateObject(); /* filled when the query has run */
	return *data ? TWIN_OK : twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
}

int plg_query_collecting(plg_ctx *ctx)
{
	return ctx->queries->collect != NULL;
}

void plg_query_discard(plg_ctx *ctx)
{
	if (ctx->queries->collect != NULL)
		req_free(ctx->queries->collect);
	ctx->queries->collect = NULL;
}

void plg_query_defer(plg_ctx *ctx, cJSON *out, const char *client_id, const char *topic, int qos,
                     const void *corr, uint16_t corr_len)
{
	struct plg_queries *qs = ctx->queries;
	plg_qreq *r = qs->collect, **tail;

	qs->collect = NULL;
	r->out = out;
	r->client_id = strdup(client_id);
	r->topic = strdup(topic);
	r->qos = qos > 1 ? 1 : qos;
	r->corr = corr ? malloc(corr_len ? corr_len : 1) : NULL;
	r->walk = malloc(r->njobs * sizeof(*r->walk));
	if (r->client_id == NULL || r->topic == NULL || (corr != NULL && r->corr == NULL) ||
	    r->walk == NULL) {
		req_free(r);
		plg_lost(ctx, "the control response to", client_id);
		return;
	}
	if (corr != NULL)
		memcpy(r->corr, corr, corr_len);
	r->corr_len = corr_len;
	for (tail = &qs->waiting; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
}

/* Put a finished job's page, or its error, into its response. */
static void job_answer(plg_qjob *j)
{
	cJSON *resp = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j->req->out, "responses"),
	                                 (int)j->index);
	cJSON *data = cJSON_GetObjectItemCaseSensitive(resp, "data"), *e;

	if (j->rc != TWIN_OK) {
		cJSON_DeleteItemFromObjectCaseSensitive(resp, "data");
		cJSON_ReplaceItemInObjectCaseSensitive(resp, "status",
		                                       cJSON_CreateNumber(twin_err_status(j->rc)));
		e = cJSON_AddObjectToObject(resp, "error");
		cJSON_AddNumberToObject(e, "code", twin_err_code(j->rc));
		cJSON_AddStringToObject(e, "message", j->err.message);
	} else {
		cJSON_AddItemToObject(data, "items", j->items);
		j->items = NULL;
		if (j->next != NULL)
			cJSON_AddStringToObject(data, "continuationToken", j->next);
		else
			cJSON_AddNullToObject(data, "continuationToken");
	}
	twin_query_end(j->run); /* on the store's thread */
	j->run = NULL;
}

static void req_send(plg_qreq *r)
{
	char *text = twin_json_print(r->out);
	mosquitto_property *props = NULL;

	if (text == NULL)
		return;
	if (r->corr != NULL &&
	    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, r->corr,
	                                  r->corr_len) != MOSQ_ERR_SUCCESS) {
		mosquitto_property_free_all(&props);
		props = NULL;
	}
	if (mosquitto_broker_publish_copy(r->client_id, r->topic, (int)strlen(text), text, r->qos,
	                                  false, props) != MOSQ_ERR_SUCCESS)
		mosquitto_property_free_all(&props);
	cJSON_free(text);
}

static void job_done(plg_qjob *j)
{
	plg_qreq *r = j->req;

	job_answer(j);
	if (--r->pending == 0) {
		req_send(r);
		req_free(r);
	}
}

/* Start a job over the state just committed and run its first slice here.
 * Returns 1 when it still needs the worker. */
static int job_start(plg_ctx *ctx, plg_qjob *j)
{
	int64_t until = now_ns() + PLG_QUERY_INLINE_NS;
	int done = 0;

	j->rc = twin_query_start(ctx->store, j->q, j->token, j->page_size, &j->run, &j->err);
	while (j->rc == TWIN_OK && !done && now_ns() < until)
		j->rc = twin_query_step(j->run, PLG_QUERY_SLICE, &done, &j->err);
	if (j->rc == TWIN_OK && !done)
		return 1;
	job_finish(j, 0);
	return 0;
}

/* Hand jobs (linked by next_job) to the worker. */
static void to_worker(struct plg_queries *qs, plg_qjob *first, plg_qjob **last_next)
{
	if (first == NULL)
		return;
	pthread_mutex_lock(&qs->lock);
	*last_next = qs->todo;
	qs->todo = first;
	pthread_cond_signal(&qs->wake);
	pthread_mutex_unlock(&qs->lock);
}

/* Start the jobs of r; those that need more time go to the list at *tail. */
static void req_start(plg_ctx *ctx, plg_qreq *r, plg_qjob ***tail)
{
	size_t n = r->njobs;
	plg_qjob **jobs = r->walk;

	/* job_done frees r with its last job: walk a copy, which r no longer
	 * owns. */
	r->walk = NULL;
	memcpy(jobs, r->jobs, n * sizeof(*jobs));
	for (size_t i = 0; i < n; i++) {
		if (job_start(ctx, jobs[i])) {
			**tail = jobs[i];
			*tail = &jobs[i]->next_job;
		} else
			job_done(jobs[i]);
	}
	free(jobs);
}

/* A failed commit took the request's writes with it: their responses
 * become the commit's error; its queries still run on what is committed. */
static void req_fail_writes(plg_qreq *r, const twin_error *err)
{
	cJSON *resp;
	int i = 0;

	cJSON_ArrayForEach(resp, cJSON_GetObjectItemCaseSensitive(r->out, "responses"))
	{
		int query = 0;

		for (size_t k = 0; k < r->njobs && !query; k++)
			query = r->jobs[k]->index == (size_t)i;
		if (!query)
			plg_control_response_fail(resp, err);
		i++;
	}
}

void plg_queries_after_commit(plg_ctx *ctx, const twin_error *err)
{
	struct plg_queries *qs = ctx->queries;
	plg_qjob *first = NULL, **tail = &first;

	while (qs->waiting != NULL) {
		plg_qreq *r = qs->waiting;

		qs->waiting = r->next;
		if (err != NULL)
			req_fail_writes(r, err);
		req_start(ctx, r, &tail);
	}
	to_worker(qs, first, tail);
}

void plg_queries_tick(plg_ctx *ctx)
{
	struct plg_queries *qs = ctx->queries;
	plg_qjob *finished;

	pthread_mutex_lock(&qs->lock);
	finished = qs->done;
	qs->done = NULL;
	pthread_mutex_unlock(&qs->lock);
	while (finished != NULL) {
		plg_qjob *j = finished;

		finished = j->next_job;
		job_done(j);
	}
}

void plg_queries_free(plg_ctx *ctx)
{
	struct plg_queries *qs = ctx->queries;
	plg_qreq *freed = NULL;

	if (qs == NULL)
		return;
	pthread_mutex_lock(&qs->lock);
	qs->stop = 1;
	if (qs->running != NULL)
		twin_query_cancel(qs->running->run);
	pthread_cond_signal(&qs->wake);
	pthread_mutex_unlock(&qs->lock);
	if (qs->worker_started)
		pthread_join(qs->worker, NULL);
	/* Every job belongs to a request that is waiting or has jobs queued
	 * or done: free each request once. */
	for (plg_qjob *lists[] = {qs->todo, qs->done}, **l = lists; l < lists + 2; l++)
		for (plg_qjob *j = *l; j != NULL; j = j->next_job) {
			plg_qreq *r = j->req;
			int seen = 0;

			for (plg_qreq *f = freed; f != NULL && !seen; f = f->next)
				seen = f == r;
			if (!seen) {
				r->next = freed;
				freed = r;
			}
		}
	while (qs->waiting != NULL) {
		plg_qreq *r = qs->waiting;

		qs->waiting = r->next;
		r->next = freed;
		freed = r;
	}
	if (qs->collect != NULL) {
		qs->collect->next = freed;
		freed = qs->collect;
	}
	while (freed != NULL) {
		plg_qreq *r = freed;

		freed = r->next;
		req_free(r);
	}
	sigaction(PLG_WAKE_SIGNAL, &qs->old_action, NULL);
	pthread_mutex_destroy(&qs->lock);
	pthread_cond_destroy(&qs->wake);
	free(qs);
	ctx->queries = NULL;
}

void plg_queries_pace(plg_ctx *ctx, int on)
{
	struct plg_queries *qs = ctx->queries;

	if (qs == NULL)
		return;
	pthread_mutex_lock(&qs->lock);
	if (qs->pace != on) {
		qs->pace = on;
		pthread_cond_signal(&qs->wake);
	}
	pthread_mutex_unlock(&qs->lock);
}
