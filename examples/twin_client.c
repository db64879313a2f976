/*
 * twin_client.c - the device side of IoT Hub's MQTT twin dialect: requests with
 * $rid, their responses, and desired notifications reconciled by $version.
 *
 * Desired versions follow PROTOCOL.md §3. After every (re)connect: SUBSCRIBE,
 * then GET once the SUBACK is in (replies to a GET sent earlier could miss the
 * subscription). Notifications that arrive before the GET result (such as the
 * §3.1 catch-up of a resumed session) or while a later GET is in flight are
 * held and replayed against its result, so those with $version <= the GET's are
 * dropped; a notification more than one version ahead of the applied one means
 * one was missed, so the device GETs again. Query parameters ($rid, $version)
 * are looked up by name, never by position (§2.1).
 *
 * Requests in flight live in a small fixed table: a device has one or two at a
 * time, and a linear scan of 16 slots costs nothing next to a network round trip.
 */
#include "twin_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC_RES      "$iothub/twin/res/"
#define TOPIC_DESIRED  "$iothub/twin/PATCH/properties/desired/"
#define FILTER_RES     "$iothub/twin/res/#"
#define FILTER_DESIRED "$iothub/twin/PATCH/properties/desired/#"
#define GET_RETRY_MS   5000

int64_t tc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *tc_must(void *p)
{
	if (!p) {
		fputs("out of memory\n", stderr);
		exit(1);
	}
	return p;
}

const char *tc_json_text(const cJSON *item, char *buf, int len)
{
	if (!cJSON_PrintPreallocated((cJSON *)item, buf, len, false)) {
		snprintf(buf, (size_t)len, "(too long to show)");
	}
	return buf;
}

static void tc_log(struct twin_client *tc, bool error, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tc->log(tc->ctx, error, fmt, ap);
	va_end(ap);
}

/*
 * Copies the raw value of query parameter `name` of `topic` into out: text after
 * the first '?', split on '&', each pair at its first '=', exact name match
 * (PROTOCOL.md §2.1). False when absent or longer than outlen - 1.
 */
static bool topic_param(const char *topic, const char *name, char *out, size_t outlen)
{
	const char *p = strchr(topic, '?');
	size_t name_len = strlen(name);
	while (p) {
		p++;
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t key_len = eq ? (size_t)(eq - p) : len;
		if (key_len == name_len && memcmp(p, name, name_len) == 0) {
			const char *value = eq ? eq + 1 : p + len;
			size_t value_len = (size_t)(p + len - value);
			if (value_len >= outlen) {
				return false;
			}
			memcpy(out, value, value_len);
			out[value_len] = '\0';
			return true;
		}
		p = end;
	}
	return false;
}

/* Query parameter `name` as a strict non-negative decimal (digits only). */
static bool topic_long_param(const char *topic, const char *name, long *out)
{
	char text[32], *end;
	if (!topic_param(topic, name, text, sizeof text) || text[0] < '0' || text[0] > '9') {
		return false;
	}
	errno = 0;
	*out = strtol(text, &end, 10);
	return errno == 0 && *end == '\0';
}

/* Sets or replaces member `name` of object; takes ownership of item. */
static void json_set(cJSON *object, const char *name, cJSON *item)
{
	if (cJSON_GetObjectItemCaseSensitive(object, name)) {
		cJSON_ReplaceItemInObjectCaseSensitive(object, name, item);
	} else {
		cJSON_AddItemToObject(object, name, item);
	}
}

/* JSON merge patch (PROTOCOL.md §5.1): objects merge, null deletes, the rest replaces. */
static void merge_patch(cJSON *target, const cJSON *patch)
{
	const cJSON *member;
	cJSON_ArrayForEach(member, patch)
	{
		cJSON *current = cJSON_GetObjectItemCaseSensitive(target, member->string);
		if (cJSON_IsNull(member)) {
			cJSON_DeleteItemFromObjectCaseSensitive(target, member->string);
		} else if (cJSON_IsObject(member)) {
			if (!cJSON_IsObject(current)) {
				current = tc_must(cJSON_CreateObject());
				json_set(target, member->string, current);
			}
			merge_patch(current, member);
		} else {
			json_set(target, member->string, tc_must(cJSON_Duplicate(member, true)));
		}
	}
}

/* ---- Requests ------------------------------------------------------------ */

static void pending_add(struct twin_client *tc, unsigned long rid, enum tc_request_kind kind)
{
	for (int i = 0; i < TC_MAX_PENDING; i++) {
		if (tc->pending[i].kind == TC_FREE) {
			tc->pending[i] = (struct tc_request){rid, kind};
			return;
		}
	}
	tc_log(tc, true, "%d requests in flight: $rid=%lu not tracked", TC_MAX_PENDING, rid);
}

/* Removes the request with this $rid; returns its kind (TC_FREE: unknown). */
static enum tc_request_kind pending_take(struct twin_client *tc, unsigned long rid)
{
	for (int i = 0; i < TC_MAX_PENDING; i++) {
		if (tc->pending[i].kind != TC_FREE && tc->pending[i].rid == rid) {
			enum tc_request_kind kind = tc->pending[i].kind;
			tc->pending[i].kind = TC_FREE;
			return kind;
		}
	}
	return TC_FREE;
}

/* PUBLISHes body at QoS 1 on `{topic_prefix}{rid}` and tracks it under that new $rid. */
static bool send_request(struct twin_client *tc, const char *topic_prefix, const char *body,
                         enum tc_request_kind kind, unsigned long *rid)
{
	char topic[96];
	*rid = ++tc->next_rid;
	snprintf(topic, sizeof topic, "%s%lu", topic_prefix, *rid);
	int rc = mosquitto_publish(tc->mosq, NULL, topic, (int)strlen(body), body, 1, false);
	if (rc != MOSQ_ERR_SUCCESS) {
		tc_log(tc, true, "publish to %s failed: %s", topic, mosquitto_strerror(rc));
		return false;
	}
	pending_add(tc, *rid, kind);
	return true;
}

static void twin_get(struct twin_client *tc)
{
	unsigned long rid;
	if (send_request(tc, "$iothub/twin/GET/?$rid=", "", TC_GET, &rid)) {
		tc->get_in_flight = true;
		tc->t_get_retry = 0;
		tc_log(tc, false, "-> GET $rid=%lu", rid);
	}
}

void tc_report(struct twin_client *tc, cJSON *patch)
{
	char text[TC_LOG_JSON];
	unsigned long rid;
	if (tc->unsent_report) {
		merge_patch(tc->unsent_report, patch);
		cJSON_Delete(patch);
		patch = tc->unsent_report;
		tc->unsent_report = NULL;
	}
	if (!tc->ready) {
		tc->unsent_report = patch;
		tc_log(tc, false, "offline: report %s held until reconnect",
		       tc_json_text(patch, text, sizeof text));
		return;
	}
	char *body = tc_must(cJSON_PrintUnformatted(patch));
	if (send_request(tc, "$iothub/twin/PATCH/properties/reported/?$rid=", body, TC_REPORT,
	                 &rid)) {
		tc_log(tc, false, "-> report $rid=%lu %s", rid, body);
	}
	free(body);
	cJSON_Delete(patch);
}

/* ---- Desired versions (PROTOCOL.md §3) ---------------------------------- */

static void hold_notification(struct twin_client *tc, long version, cJSON *patch)
{
	cJSON *entry = tc_must(cJSON_CreateObject());
	cJSON_AddNumberToObject(entry, "v", (double)version);
	cJSON_AddItemToObject(entry, "patch", patch);
	cJSON_AddItemToArray(tc->held, entry);
}

/*
 * One desired notification of $version `version`; takes ownership of patch.
 * after_get: replayed right after a GET result, so a gap there is not chased
 * with yet another GET (a broker that never catches up must not make us loop).
 */
static void desired_notification(struct twin_client *tc, long version, cJSON *patch, bool after_get)
{
	char text[TC_LOG_JSON];
	long applied = tc->desired_version;
	if (tc->get_in_flight || !tc->synced) {
		tc_log(tc, false, "desired $version %ld held until the GET result", version);
		hold_notification(tc, version, patch);
		return;
	}
	if (version <= applied) {
		tc_log(tc, false, "desired $version %ld <= applied %ld: stale, dropped", version,
		       applied);
	} else if (version > applied + 1 && !after_get) {
		tc_log(tc, false, "desired $version %ld after %ld: missed %ld, GET again", version,
		       applied, version - applied - 1);
		hold_notification(tc, version, patch);
		twin_get(tc);
		return;
	} else if (version > applied + 1) {
		tc_log(tc, true, "desired $version %ld still ahead of GET result %ld: dropped",
		       version, applied);
	} else {
		tc_log(tc, false, "<- desired $version %ld: %s", version,
		       tc_json_text(patch, text, sizeof text));
		merge_patch(tc->desired, patch);
		tc->desired_version = version;
		tc->on_desired(tc->ctx, tc->desired, patch, version);
	}
	cJSON_Delete(patch);
}

/* Replays the held notifications in arrival order against the applied version. */
static void release_held(struct twin_client *tc)
{
	cJSON *held = tc->held;
	cJSON *entry;
	tc->held = tc_must(cJSON_CreateArray());
	cJSON_ArrayForEach(entry, held)
	{
		long version = (long)cJSON_GetObjectItemCaseSensitive(entry, "v")->valuedouble;
		cJSON *patch = cJSON_DetachItemFromObjectCaseSensitive(entry, "patch");
		desired_notification(tc, version, patch, true);
	}
	cJSON_Delete(held);
}

/* `$iothub/twin/PATCH/properties/desired/?$version={V}`, body = patch + "$version". */
static void on_desired_message(struct twin_client *tc, const struct mosquitto_message *msg)
{
	long version;
	cJSON *body = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	const cJSON *body_version = cJSON_GetObjectItemCaseSensitive(body, "$version");
	if (!cJSON_IsObject(body)) {
		tc_log(tc, true, "desired notification %s: body is not a JSON object: dropped",
		       msg->topic);
		cJSON_Delete(body);
		return;
	}
	if (!topic_long_param(msg->topic, "$version", &version)) {
		if (!cJSON_IsNumber(body_version)) {
			tc_log(tc, true, "desired notification without $version: dropped");
			cJSON_Delete(body);
			return;
		}
		version = (long)body_version->valuedouble;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(body, "$version");
	desired_notification(tc, version, body, false);
}

/* ---- Responses ------------------------------------------------------------ */

/* `{"desired":{…,"$version":D},"reported":{…,"$version":R}}` (PROTOCOL.md §2.3). */
static void on_get_result(struct twin_client *tc, const struct mosquitto_message *msg)
{
	char text[TC_LOG_JSON];
	cJSON *twin = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	cJSON *desired = cJSON_DetachItemFromObjectCaseSensitive(twin, "desired");
	const cJSON *reported = cJSON_GetObjectItemCaseSensitive(twin, "reported");
	cJSON *version = cJSON_DetachItemFromObjectCaseSensitive(desired, "$version");
	if (!cJSON_IsObject(desired) || !cJSON_IsNumber(version)) {
		tc_log(tc, true, "GET result without desired $version: %.*s", msg->payloadlen,
		       (const char *)msg->payload);
		tc->failures++;
		tc->t_get_retry = tc_now_ms() + GET_RETRY_MS;
	} else {
		tc_log(tc, false, "twin: desired $version %ld %s, reported $version %g",
		       (long)version->valuedouble, tc_json_text(desired, text, sizeof text),
		       cJSON_GetNumberValue(
		               cJSON_GetObjectItemCaseSensitive(reported, "$version")));
		cJSON_Delete(tc->desired);
		tc->desired = desired;
		desired = NULL;
		tc->desired_version = (long)version->valuedouble;
		tc->synced = true;
		tc->on_desired(tc->ctx, tc->desired, NULL, tc->desired_version);
		release_held(tc);
	}
	cJSON_Delete(version);
	cJSON_Delete(desired);
	cJSON_Delete(twin);
}

/* `$iothub/twin/res/{status}/?$rid={rid}[&$version={R}]`. */
static void on_response(struct twin_client *tc, const struct mosquitto_message *msg)
{
	long status, rid, version;
	char *end;
	status = strtol(msg->topic + strlen(TOPIC_RES), &end, 10);
	if (*end != '/' || !topic_long_param(msg->topic, "$rid", &rid)) {
		tc_log(tc, true, "malformed response topic %s: ignored", msg->topic);
		return;
	}
	enum tc_request_kind kind = pending_take(tc, (unsigned long)rid);
	const char *what = kind == TC_GET ? "GET" : "report";
	if (kind == TC_FREE) {
		tc_log(tc, false, "<- %ld for unknown $rid=%ld (earlier connection?): ignored",
		       status, rid);
		return;
	}
	if (kind == TC_GET) {
		tc->get_in_flight = false;
	}
	if (kind == TC_GET && status == 200) {
		tc_log(tc, false, "<- GET $rid=%ld: 200", rid);
		on_get_result(tc, msg);
	} else if (kind == TC_REPORT && status == 204) {
		if (topic_long_param(msg->topic, "$version", &version)) {
			tc_log(tc, false, "<- report $rid=%ld: 204, reported $version %ld", rid,
			       version);
		} else {
			tc_log(tc, true, "<- report $rid=%ld: 204 without $version", rid);
		}
	} else {
		tc_log(tc, true, "<- %s $rid=%ld: %ld %.*s", what, rid, status, msg->payloadlen,
		       (const char *)msg->payload);
		tc->failures++;
		if (kind == TC_GET) {
			tc->t_get_retry = tc_now_ms() + GET_RETRY_MS;
		}
	}
}

/* ---- Connection events ---------------------------------------------------- */

void tc_init(struct twin_client *tc, struct mosquitto *mosq, void *ctx, tc_log_fn log,
             tc_desired_fn on_desired)
{
	*tc = (struct twin_client){.mosq = mosq, .ctx = ctx, .log = log, .on_desired = on_desired};
	tc->desired = tc_must(cJSON_CreateObject());
	tc->held = tc_must(cJSON_CreateArray());
}

void tc_free(struct twin_client *tc)
{
	cJSON_Delete(tc->desired);
	cJSON_Delete(tc->held);
	cJSON_Delete(tc->unsent_report);
}

/* Subscribes on every connect, even with a session present: cheap, and safe. */
void tc_on_connect(struct twin_client *tc)
{
	char *filters[] = {FILTER_RES, FILTER_DESIRED};
	int rc = mosquitto_subscribe_multiple(tc->mosq, &tc->sub_mid, 2, filters, 1, 0, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		tc_log(tc, true, "subscribe failed: %s", mosquitto_strerror(rc));
		tc->failures++;
	}
}

void tc_on_subscribe(struct twin_client *tc, int mid, int count, const int *granted)
{
	if (mid != tc->sub_mid) {
		return;
	}
	for (int i = 0; i < count; i++) {
		if (granted[i] > 1) { /* 0x80: refused; replies would never arrive */
			tc_log(tc, true, "twin subscription %d refused (SUBACK 0x%02x)", i,
			       granted[i]);
			tc->failures++;
			return;
		}
	}
	tc_log(tc, false, "subscribed to %s and %s", FILTER_RES, FILTER_DESIRED);
	tc->ready = true;
	twin_get(tc);
}

/* Requests of the old connection get no answer (PROTOCOL.md §1.4): forget them. */
void tc_on_disconnect(struct twin_client *tc)
{
	int abandoned = 0;
	for (int i = 0; i < TC_MAX_PENDING; i++) {
		abandoned += tc->pending[i].kind != TC_FREE;
		tc->pending[i].kind = TC_FREE;
	}
	if (abandoned) {
		tc_log(tc, false, "%d twin requests unanswered at disconnect", abandoned);
	}
	tc->ready = tc->get_in_flight = tc->synced = false;
	tc->t_get_retry = 0; /* the reconnect GETs anyway */
}

bool tc_on_message(struct twin_client *tc, const struct mosquitto_message *msg)
{
	if (strncmp(msg->topic, TOPIC_RES, strlen(TOPIC_RES)) == 0) {
		on_response(tc, msg);
	} else if (strncmp(msg->topic, TOPIC_DESIRED, strlen(TOPIC_DESIRED)) == 0) {
		on_desired_message(tc, msg);
	} else {
		return false;
	}
	return true;
}

void tc_run_timers(struct twin_client *tc, int64_t now)
{
	if (tc->t_get_retry && now >= tc->t_get_retry) {
		tc->t_get_retry = 0;
		if (tc->ready && !tc->get_in_flight) {
			twin_get(tc);
		}
	}
}

bool tc_idle(const struct twin_client *tc)
{
	for (int i = 0; i < TC_MAX_PENDING; i++) {
		if (tc->pending[i].kind != TC_FREE) {
			return false;
		}
	}
	return !tc->get_in_flight && !tc->unsent_report && cJSON_GetArraySize(tc->held) == 0;
}
