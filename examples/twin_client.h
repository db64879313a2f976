/*
 * twin_client.h - the device side of IoT Hub's MQTT twin dialect (PROTOCOL.md §2,
 * §3) on a libmosquitto client: subscribe, GET, reported PATCH, and desired
 * notifications reconciled by $version. Used by device_sim.c.
 *
 * The caller owns the mosquitto client and its callbacks and forwards the
 * events below; the twin client never connects, loops or sleeps itself, and
 * keeps no globals, so one process can drive several simulated devices.
 * Out of memory aborts the process (tc_must): this is demo code.
 */
#ifndef TWIN_CLIENT_H
#define TWIN_CLIENT_H

#include <cjson/cJSON.h>
#include <mosquitto.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#define TC_MAX_PENDING 16  /* twin requests in flight at once */
#define TC_LOG_JSON    400 /* buffer for JSON shown in a log line */

/* One log line (no newline); error lines are failures worth a reader's attention. */
typedef void (*tc_log_fn)(void *ctx, bool error, const char *fmt, va_list ap);

/*
 * The desired document changed: `desired` is the whole document at $version
 * `version`, without $version; `patch` is the notification just merged into
 * it, or NULL after a GET result. Both borrowed for the call. The callback
 * may call tc_report().
 */
typedef void (*tc_desired_fn)(void *ctx, const cJSON *desired, const cJSON *patch, long version);

enum tc_request_kind { TC_FREE, TC_GET, TC_REPORT };

struct tc_request {
	unsigned long rid;
	enum tc_request_kind kind;
};

struct twin_client {
	struct mosquitto *mosq; /* borrowed */
	void *ctx;
	tc_log_fn log;
	tc_desired_fn on_desired;
	bool ready; /* twin SUBACK received on the current connection */
	bool get_in_flight;
	bool synced; /* a GET result arrived on this connection; until then notifications are held
	              */
	int sub_mid;
	unsigned failures; /* refused subscriptions and failed requests so far */
	unsigned long next_rid;
	struct tc_request pending[TC_MAX_PENDING];
	cJSON *desired;       /* local copy of desired, without $version */
	long desired_version; /* $version of `desired` (0: no GET result yet) */
	cJSON *held;          /* [{"v":V,"patch":{…}}] received during a GET */
	cJSON *unsent_report; /* reported patch made while offline; NULL if none */
	int64_t t_get_retry;  /* tc_now_ms() of the next GET after a failed one; 0: none */
};

/* Prepares tc for mosq (borrowed: must outlive tc). */
void tc_init(struct twin_client *tc, struct mosquitto *mosq, void *ctx, tc_log_fn log,
             tc_desired_fn on_desired);
/* Frees what tc owns; not mosq. */
void tc_free(struct twin_client *tc);

/* Forward from the client's callbacks: CONNACK accepted, SUBACK, any disconnect, messages. */
void tc_on_connect(struct twin_client *tc);
void tc_on_subscribe(struct twin_client *tc, int mid, int count, const int *granted);
void tc_on_disconnect(struct twin_client *tc);
/* Returns false for a topic outside $iothub/twin/ (left to the caller). */
bool tc_on_message(struct twin_client *tc, const struct mosquitto_message *msg);

/*
 * Sends patch (taken over) as a reported-properties PATCH. Before the twin is
 * ready (offline, or subscribing), it is merged into one held patch that goes
 * out with the next report, at the latest the one made after the next GET.
 */
void tc_report(struct twin_client *tc, cJSON *patch);

/* Call on every loop turn: retries a failed GET when due. */
void tc_run_timers(struct twin_client *tc, int64_t now);
/* Nothing in flight and nothing held: a bounded run may stop. */
bool tc_idle(const struct twin_client *tc);

/* Helpers shared with the caller. */
int64_t tc_now_ms(void); /* monotonic clock */
void *tc_must(void *p);  /* p, or exit(1) with "out of memory" */
const char *tc_json_text(const cJSON *item, char *buf, int len); /* compact JSON in buf */

#endif
