/*
 * harness_internal.h - what the harness's .c files share and tests must not
 * use: the broker and client structures, the cleanup registry's hooks and
 * the fail-on-error primitives. Tests include harness.h only.
 *
 * Where things live:
 *   harness.c               tb_cleanup_all() and the shared primitives below
 *   harness_broker.c        broker process: start, readiness, stop, restart,
 *                           kill -9, teardown
 *   harness_broker_log.c    broker log: reading, waiting for a line,
 *                           sanitizer reports
 *   harness_broker_setup.c  what a broker starts with: temporary directories,
 *                           mosquitto.conf, environment (sanitizer runtimes)
 *   harness_client.c        libmosquitto client: connect, CONNACK, disconnect
 *   harness_pubsub.c        SUBSCRIBE/UNSUBSCRIBE/PUBLISH and their
 *                           acknowledgements, the received-message queue
 *   harness_twin.c          twin protocol helpers ($iothub/twin/ topics)
 *   harness_json.c          JSON assertions, §2.4 error bodies, timestamps
 *
 * Names with external linkage that are not public start with tbi_.
 * Every .c file defines _GNU_SOURCE before including this header.
 */
#ifndef TWIN_ITEST_HARNESS_INTERNAL_H
#define TWIN_ITEST_HARNESS_INTERNAL_H

#include "harness.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct mosquitto;

/* ---- shared primitives (harness.c) ---------------------------------------- */

/* asprintf that fails the test instead of returning NULL. */
char *tbi_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* strdup that fails the test instead of returning NULL. */
char *tbi_xstrdup(const char *s);

/* Polling interval of the waits on a broker process and its log. */
#define POLL_MS 10

/* CLOCK_MONOTONIC in milliseconds. */
int64_t tbi_now_ms(void);

/* Sleep ms milliseconds, resumed after a signal. */
void tbi_sleep_ms(int ms);

/* *ts = now + timeout_ms on CLOCK_MONOTONIC, for pthread_cond_timedwait on a
 * condition variable that uses that clock (every tb_client's does). */
void tbi_deadline_ts(struct timespec *ts, int timeout_ms);

/* ---- broker (harness_broker*.c) ------------------------------------------- */

struct tb_broker {
	pid_t pid;  /* > 0 while the process has not been reaped */
	int status; /* last exit status (tb_broker_stop's encoding), -1 before */
	int port;
	bool own_dir; /* created by the harness: removed at free */
	char *dir, *db_path, *conf_path, *log_path;
	char *config, *plugin_opts;
	bool persistence;
	bool exit_expected; /* stopped, killed or awaited by the test */
	long log_offset;    /* start of the current run in broker.log */
	struct tb_broker *next;
};

/* The environment variable name's value, fallback when unset or empty. */
const char *tbi_env_or(const char *name, const char *fallback);

/* The broker's environment: ours, plus the sanitizer runtimes when
 * TWIN_SANITIZE is ON. A NULL-terminated array of malloc'd strings; free it
 * with tbi_strv_free(). Fails the test when out of memory or when a
 * sanitizer runtime is not found. */
char **tbi_broker_env(void);
void tbi_strv_free(char **v);

/* Write b->conf_path from b's port, directories and options; fails the test
 * when it cannot. */
void tbi_write_config(tb_broker *b);

/* The file's contents from offset on, malloc'd and NUL-terminated ("" when
 * the file is missing); NULL only when out of memory. */
char *tbi_read_file_from(const char *path, long offset);

/* Sanitizer report lines of b's whole log, malloc'd; NULL when none. */
char *tbi_sanitizer_reports(const tb_broker *b);

/* Cleanup registry, broker half: stop, remove and free every broker still
 * registered. Returns a malloc'd description of what went wrong, the
 * brokers' problems joined by newlines; NULL if nothing did. */
char *tbi_brokers_release_all(void);

/* ---- client (harness_client.c, harness_pubsub.c) -------------------------- */

/* Acknowledgement table entries, indexed by packet id. */
#define ACK_DONE   0x1000 /* | the granted QoS or reason code */
#define ACK_IGNORE 0x2000 /* nobody waits: drop the acknowledgement */

typedef struct msg_node {
	tb_msg *msg;
	struct msg_node *next;
} msg_node;

struct tb_client {
	struct mosquitto *mosq;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool loop_running;
	/* Under lock: */
	bool connack_seen;
	int connack_rc;
	bool session_present;
	bool closed;           /* the socket closed (on_disconnect) */
	bool we_disconnect;    /* ... because we asked to */
	bool closed_by_broker; /* ... without us asking */
	msg_node *head, *tail;
	int queued;
	uint16_t acks[65536];
	struct tb_client *next;
};

/* Install the PUBLISH/SUBSCRIBE/UNSUBSCRIBE acknowledgement and message
 * callbacks (harness_pubsub.c) on a new client's mosq, whose userdata is the
 * tb_client. */
void tbi_pubsub_callbacks_set(struct mosquitto *mosq);

/* Cleanup registry, client half: tb_client_free() every client still
 * registered. */
void tbi_clients_free_all(void);

#endif
