/*
 * twin_bench.h - twin-bench, the load generator: the types its files share.
 *
 * One process drives every connection: libmosquitto without its thread, one
 * poll() loop over all sockets (twin_bench_clients.c). A scenario is a set
 * of callbacks on that loop plus a tick; it records per-operation latencies
 * (send time to reply time, CLOCK_MONOTONIC) into a bench_samples and fills
 * a bench_result, which twin_bench_report.c prints as a table and JSON.
 *
 *   twin_bench.c            main: options, the order of the runs, exit code
 *   twin_bench_clients.c    the client pool and its poll loop
 *   twin_bench_scenarios.c  closed-loop scenarios: echo, get, patch
 *   twin_bench_fleet.c      fleet scenarios: desired-fanout, connect-storm
 *   twin_bench_job.c        job: device round trips before, during and
 *                           after a bulk twin job
 *   twin_bench_soak.c       soak: many devices, their twins seeded, then
 *                           mixed traffic for a long time; runs alone
 *   twin_bench_soak_report.c  the soak's broker RSS samples, its table
 *                           and --json (twin_bench_soak.h: their state)
 *   twin_bench_control.c    the control API: request bodies, responses,
 *                           creating the bench devices in sas mode,
 *                           tagging their twins
 *   twin_bench_stats.c      latency samples and percentiles
 *   twin_bench_report.c     the table on stdout and the --json file
 *
 * Every wait is bounded: a run that stops making progress for --timeout
 * seconds ends with an error, never hangs. Every failure (refused connect,
 * lost connection, refused subscription, error reply, timeout) is counted in
 * the run's errors and makes the exit status non-zero.
 */
#ifndef TWIN_BENCH_H
#define TWIN_BENCH_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>

#include "twin/connstr.h"
#include "twin/limits.h"

#define BENCH_LIST_MAX       16    /* values in -k and --qos lists */
#define BENCH_CLIENTS_MAX    60000 /* one process, one port range */
#define BENCH_API_VERSION    "2021-04-12"
#define BENCH_TOKEN_TTL      (24 * 3600) /* s; device and back-end SAS tokens */
#define BENCH_KEEPALIVE      60
#define BENCH_CONTROL_TOPIC  "$CONTROL/twin/v1"
#define BENCH_RESPONSE_TOPIC "$CONTROL/twin/v1/response"
#define BENCH_BATCH_MAX      100 /* commands per control request (the API's cap) */

typedef enum bench_scenario {
	BENCH_ECHO,
	BENCH_GET,
	BENCH_PATCH,
	BENCH_FANOUT,
	BENCH_STORM,
	BENCH_JOB,
	BENCH_NSCENARIOS, /* the scenarios of "all": each gives rows of the report */
	/* Only by name, never in "all": runs alone and prints its own report. */
	BENCH_SOAK = BENCH_NSCENARIOS
} bench_scenario;

#define BENCH_SOAK_NAME "soak"

/* The command line, and the device keys in sas mode. */
#define BENCH_ECHO_BYTES_MAX 4096

typedef struct bench_conf {
	const char *host;
	int port;
	unsigned scenarios; /* bit set of 1u << bench_scenario */
	int k[BENCH_LIST_MAX], nk;
	int qos[BENCH_LIST_MAX], nqos;
	double warmup, duration, timeout; /* seconds */
	int n_fanout, n_storm, n_job, n_soak;
	int k_job;        /* devices doing round trips during the job */
	double soak_rate; /* soak: operations per second, all devices together */
	int echo_bytes;   /* echo: payload size (BENCH_ECHO_BYTES_MAX at most) */
	int broker_pid;   /* soak: sample this process's RSS; 0 none */
	const char *json_path;
	const char *prefix; /* device ids are {prefix}{number} */
	/* sas mode: a service connection string was given */
	int sas;
	twin_connstr cs;
	/* sas mode: the primary key of device number i; owned, freed by main */
	char (*keys)[TWIN_SYM_KEY_B64_MAX + 1];
	int nkeys;
} bench_conf;

/* ---- latency samples (twin_bench_stats.c) ---- */

typedef struct bench_samples {
	uint32_t *us; /* microseconds, unsorted until bench_samples_summary */
	size_t n, cap;
} bench_samples;

/* Append one latency in nanoseconds (clamped to UINT32_MAX µs). 0, or -1
 * when out of memory (the sample is lost; the caller counts an error). */
int bench_samples_add(bench_samples *s, uint64_t ns);

/* Sort the samples and give the nearest-rank p50, p99 and the maximum, in
 * µs (all 0 without samples). */
void bench_samples_summary(bench_samples *s, uint32_t *p50, uint32_t *p99, uint32_t *max);

void bench_samples_free(bench_samples *s);

/* ---- one row of the report ---- */

/* The job scenario's three windows of device round trips. */
enum { BENCH_WIN_BEFORE, BENCH_WIN_DURING, BENCH_WIN_AFTER, BENCH_NWINDOWS };

typedef struct bench_window {
	long long ops;
	double seconds, ops_per_s;
	uint32_t p50_us, p99_us, max_us;
} bench_window;

/* What the job scenario measures besides its row's figures (which are
 * those of the window during the job). */
typedef struct bench_job_figures {
	bench_window win[BENCH_NWINDOWS];
	char status[16];             /* the job's last status ("completed") */
	long long succeeded, failed; /* its deviceJobStatistics at the end */
	long long scanned;           /* twins it visited (the whole registry) */
	double job_s;                /* its own endTime - startTime; 0 unknown */
	double twins_per_s;          /* succeeded / job_s (or the wall time) */
	int notified;                /* desired notifications of this job received */
	int notify_expected;         /* one per connected device */
	int notify_wrong;            /* devices that did not get exactly one */
} bench_job_figures;

typedef struct bench_result {
	bench_scenario scenario;
	int k, qos;
	long long ops;
	double seconds; /* the measured interval */
	double ops_per_s;
	uint32_t p50_us, p99_us, max_us;
	long long errors;
	int n;          /* fleet scenarios and job: devices; 0 otherwise */
	double total_s; /* fleet: first request/CONNECT to last reply; job: its
	                 * wall time, createJob to getJob saying it ended */
	int has_ratio;  /* set by the report */
	double ratio;
	int has_job; /* the job scenario's row: job is filled */
	bench_job_figures job;
	/* A scenario's own figures (cJSON *, owned by the scenario), put in its
	 * JSON row under the scenario's name; NULL for none. */
	void *figures;
} bench_result;

/* ---- the client pool (twin_bench_clients.c) ---- */

typedef struct bench_client bench_client;
typedef struct bench_pool bench_pool;

enum bench_client_state {
	BENCH_C_IDLE,       /* not connected (yet, or any more) */
	BENCH_C_CONNECTING, /* CONNECT sent, no CONNACK */
	BENCH_C_UP,         /* CONNACK 0 received */
	BENCH_C_CLOSING,    /* DISCONNECT sent by us */
	BENCH_C_FAILED,     /* refused or lost: an error was counted */
};

/* What a scenario does on the loop's events. Any member may be NULL. */
typedef struct bench_handlers {
	void (*connected)(bench_client *c, uint64_t now);
	void (*subscribed)(bench_client *c, int mid, int count, const int *granted, uint64_t now);
	void (*message)(bench_client *c, const struct mosquitto_message *m, uint64_t now);
	/* An unexpected loss or refusal (the error is already counted). */
	void (*failed)(bench_client *c, uint64_t now);
	/* Once per loop iteration, after the sockets were served. */
	void (*tick)(bench_pool *p, uint64_t now);
	/* Non-zero when the run is complete. */
	int (*done)(bench_pool *p);
} bench_handlers;

struct bench_client {
	struct mosquitto *mosq;
	bench_pool *pool;
	int number;   /* device number (client id {prefix}{number}); -1: the back end */
	int state;    /* enum bench_client_state */
	int phase;    /* the scenario's own progress marker */
	uint64_t t0;  /* ns: when the operation being timed started; 0 none */
	uint64_t rid; /* the request in flight, 0 none */
};

struct bench_pool {
	const bench_conf *conf;
	const bench_handlers *h;
	void *scenario; /* the scenario's state, for its handlers */
	const char *name;
	bench_client *c;
	struct pollfd *pfd;
	int n; /* clients: devices first, then back ends */
	int ndevices;
	int next;     /* first client never connected (bench_pool_connect_next) */
	int awaiting; /* CONNECTs without CONNACK */
	int up;       /* clients in BENCH_C_UP */
	long long errors;
	int reported; /* errors printed on stderr so far */
	uint64_t last_event, last_misc;
};

/* Monotonic clock in nanoseconds. */
uint64_t bench_now(void);

/* ndevices clients for devices 0..ndevices-1, then nbackends clients for
 * back ends (number -1), none connected. name labels error messages (a
 * string that outlives the pool). 0, or -1 with a message on stderr. */
int bench_pool_init(bench_pool *p, const bench_conf *conf, const char *name, int ndevices,
                    int nbackends, const bench_handlers *h, void *scenario);

/* Close every connection (DISCONNECT, bounded wait) and free everything. */
void bench_pool_free(bench_pool *p);

/* Connect client c as device c->number (open mode: the client id is the
 * device; sas mode: a device SAS token made from its key), MQTT 3.1.1,
 * clean session, TCP_NODELAY. 0, or -1 with the error counted. */
int bench_client_connect(bench_client *c);

/* Connect the pool's next never-connected client; 0, 1 when none is left,
 * -1 with the error counted. */
int bench_pool_connect_next(bench_pool *p);

/* Connect client c as a back end (open mode: anonymous; sas mode: the
 * connection string's policy and a service SAS token). 0 or -1. */
int bench_client_connect_backend(bench_client *c);

/* Count one error of the run; the first few are printed on stderr. */
void bench_error(bench_pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Count an error and mark client c failed (its connection is dropped). */
void bench_client_fail(bench_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 when a SUBACK granted at least want filters, each at QoS 0 or 1
 * (0x80 and anything above 1 are refusals). */
int bench_granted_ok(int count, const int *granted, int want);

/* Close client c on purpose (DISCONNECT): no error, state BENCH_C_IDLE
 * once the socket is closed. */
void bench_client_close(bench_client *c);

/* Publish; an error is counted when libmosquitto refuses. 0 or -1. */
int bench_publish(bench_client *c, const char *topic, int len, const void *payload, int qos);

/* Run the loop until h->done says so: 0. -1 (error counted and printed)
 * when nothing happened on any connection for conf->timeout seconds. */
int bench_pool_run(bench_pool *p);

/* The client id of device number into out[0..size). */
void bench_device_id(const bench_conf *conf, int number, char *out, size_t size);

/* ---- the control API (twin_bench_control.c) ---- */

/* One control request body under construction: {"commands":[…]} */
typedef struct bench_request {
	char *body;
	size_t len, cap;
	int count; /* commands so far */
} bench_request;

/* Append a command: the JSON object members after "command" and before
 * "correlationData", e.g. "\"deviceId\":\"d1\"" (caller-escaped). The
 * correlationData is the decimal number corr. 0 or -1 (out of memory). */
int bench_request_add(bench_request *r, const char *command, const char *members, long corr);

/* Close the body ("]}"); it is then r->body, r->len bytes. 0 or -1. */
int bench_request_finish(bench_request *r);

void bench_request_free(bench_request *r);

/* Call fn once per response in a $CONTROL/twin/v1/response message, with
 * its numeric correlationData (-1 if absent or not a number), status and
 * the response object. -1 when the message is not a response document. */
int bench_response_each(const void *payload, int len,
                        void (*fn)(void *ctx, long corr, int status, void *response), void *ctx);

/* sas mode: create devices 0..n-1 (existing ones are kept) and read their
 * primary keys into conf->keys. 0, or -1 with the reason on stderr. */
int bench_devices_prepare(bench_conf *conf, int n);

/* Give the twins of devices 0..n-1 the tags in tags (the text of a JSON
 * object, under 256 bytes): createDevice with those tags, or for a device
 * that exists updateTwin, which merges them into its other tags. 0, or -1
 * with the reason on stderr. */
int bench_devices_tag(const bench_conf *conf, int n, const char *tags);

/* ---- the scenarios ---- */

/* The status and $rid of a twin reply topic $iothub/twin/res/{status}/?…
 * (twin_bench_scenarios.c). 0, or -1 when topic is no twin reply. */
int bench_parse_twin_reply(const char *topic, int *status, uint64_t *rid);

#define BENCH_SEED_ENTRIES 16 /* ~1 KB of reported properties */
#define BENCH_SEED_MAX     (BENCH_SEED_ENTRIES * 96 + 32)

/* The ~1 KB reported patch that get and patch clients seed their twin with,
 * into out[0..size), size at least BENCH_SEED_MAX. */
void bench_make_seed(char *out, size_t size);

/* A ~200-byte reported patch whose values change with n, into
 * out[0..size) (512 bytes suffice); its length. */
int bench_make_patch(char *out, size_t size, uint64_t n);

/* echo, get or patch with k clients at qos: one row. */
int bench_run_closed_loop(const bench_conf *conf, bench_scenario s, int k, int qos,
                          bench_result *out);

/* desired-fanout over conf->n_fanout devices, connections batched by k. */
int bench_run_fanout(const bench_conf *conf, int k, bench_result *out);

/* connect-storm over conf->n_storm devices, at most k in progress. */
int bench_run_storm(const bench_conf *conf, int k, int qos, bench_result *out);

/* job: a scheduleUpdateTwin job over conf->n_job twins while k of their
 * devices do round trips at qos (twin_bench_job.c). One row. */
int bench_run_job(const bench_conf *conf, int k, int qos, bench_result *out);

/* soak over conf->n_soak devices for --warmup and --duration seconds at
 * conf->soak_rate operations/s (twin_bench_soak.c). It prints its own
 * report and writes its own --json document (started: the run's start
 * time, UTC). 0 when nothing unexpected happened, 1 otherwise. */
int bench_run_soak(const bench_conf *conf, const char *started);

/* ---- the report (twin_bench_report.c) ---- */

const char *bench_scenario_name(bench_scenario s);

/* Fill the ratio of every non-echo row to the echo row of the same k and
 * qos, when there is one. */
void bench_report_ratios(bench_result *r, int n);

/* The table on stdout. */
void bench_report_table(const bench_result *r, int n);

/* The JSON document into path. 0, or -1 with the reason on stderr. */
int bench_report_json(const char *path, const bench_conf *conf, const char *started,
                      const bench_result *r, int n);

#endif
