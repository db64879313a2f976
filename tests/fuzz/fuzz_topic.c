/*
 * fuzz_topic.c - libFuzzer target for the plugin's topic parsing
 * (plugin/topic.c; PROTOCOL.md §2.1, §2.2, §11).
 *
 * Every PUBLISH and SUBSCRIBE of every client goes through these functions
 * before any rule is applied, and their answers decide what a device may
 * read and write, so they must survive any topic and say exactly what
 * topic.h documents. Each one is compared with a reference written here
 * from that text: the kind of a request topic and its $rid (the raw value
 * of the first "$rid=" pair of the query after the first '?', NULL when
 * absent or empty, always inside the topic), the filter classes (exact
 * filters only), the zones (by prefix), and a device's own telemetry and
 * C2D topics. Every answer must also be the same when asked again, and the
 * functions must agree with one another ($iothub/ is one zone for all).
 *
 * Input: byte 0 picks a prefix put before the topic, so the fuzzer starts
 * inside the trees that have rules; then the topic, and after a NUL the
 * device id for plg_device_topic_of ("d1" when there is none). MQTT topics
 * hold no NUL, so nothing is lost by the split.
 *
 * Build and run with tools/run-fuzz.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define GET_PATH   "$iothub/twin/GET/"
#define PATCH_PATH "$iothub/twin/PATCH/properties/reported/"

static int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- plg_topic_parse ----------------------------------------------------- */

/* The value of the first pair of query (up to its end) named $rid, split at
 * its first '='. A pair without '=' has no value to give and is passed over,
 * as plugin/topic.c does; an empty value means no $rid. */
static const char *ref_rid(const char *query, size_t *len)
{
	const char *p = query;

	for (;;) {
		size_t n = strcspn(p, "&");
		const char *eq = memchr(p, '=', n);

		if (eq != NULL && (size_t)(eq - p) == 4 && memcmp(p, "$rid", 4) == 0) {
			*len = n - 5;
			return *len > 0 ? eq + 1 : NULL;
		}
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	*len = 0;
	return NULL;
}

static void check_topic_parse(const char *topic)
{
	const char *q = strchr(topic, '?');
	size_t len = strlen(topic), path_len = q ? (size_t)(q - topic) : len, rid_len = 0;
	const char *rid = NULL;
	plg_topic t, again;
	plg_topic_kind kind;

	if (!starts(topic, PLG_IOTHUB_PREFIX))
		kind = PLG_TOPIC_NOT_IOTHUB;
	else if (path_len == strlen(GET_PATH) && starts(topic, GET_PATH))
		kind = PLG_TOPIC_TWIN_GET;
	else if (path_len == strlen(PATCH_PATH) && starts(topic, PATCH_PATH))
		kind = PLG_TOPIC_TWIN_PATCH;
	else if (starts(topic, PLG_TWIN_PREFIX))
		kind = PLG_TOPIC_TWIN_UNKNOWN;
	else
		kind = PLG_TOPIC_IOTHUB_OTHER;
	if (kind != PLG_TOPIC_NOT_IOTHUB && q != NULL)
		rid = ref_rid(q + 1, &rid_len);

	memset(&t, 0xa5, sizeof(t)); /* every field must be written */
	plg_topic_parse(topic, &t);
	CHECK(t.kind == kind && t.rid == rid && t.rid_len == rid_len);
	if (t.rid != NULL) {
		/* Inside the query, a whole pair value: "?$rid=" or "&$rid=" before
		 * it, '&' or the end after it, no '&' within. */
		CHECK(t.rid_len > 0 && t.rid >= q + 6 && t.rid + t.rid_len <= topic + len);
		CHECK(memcmp(t.rid - 5, "$rid=", 5) == 0);
		CHECK(t.rid - 6 == q || t.rid[-6] == '&');
		CHECK(t.rid[t.rid_len] == '\0' || t.rid[t.rid_len] == '&');
		CHECK(memchr(t.rid, '&', t.rid_len) == NULL);
	}
	memset(&again, 0x5a, sizeof(again));
	plg_topic_parse(topic, &again);
	CHECK(again.kind == t.kind && again.rid == t.rid && again.rid_len == t.rid_len);
}

/* ---- Filters and zones --------------------------------------------------- */

static void check_filter_and_zone(const char *topic)
{
	plg_filter_kind f = plg_filter_classify(topic), want_f;
	plg_zone z = plg_zone_of(topic), want_z;
	plg_topic t;

	/* §2.2: exactly three filters are allowed under $iothub/. */
	if (!starts(topic, PLG_IOTHUB_PREFIX))
		want_f = PLG_FILTER_NOT_IOTHUB;
	else if (strcmp(topic, "$iothub/twin/res/#") == 0)
		want_f = PLG_FILTER_TWIN_RES;
	else if (strcmp(topic, PLG_DESIRED_TOPIC "#") == 0)
		want_f = PLG_FILTER_DESIRED;
	else if (strcmp(topic, "$iothub/methods/POST/#") == 0)
		want_f = PLG_FILTER_METHODS;
	else
		want_f = PLG_FILTER_FORBIDDEN;
	CHECK(f == want_f && plg_filter_classify(topic) == f);

	if (starts(topic, PLG_IOTHUB_PREFIX))
		want_z = PLG_ZONE_IOTHUB;
	else if (starts(topic, "devices/"))
		want_z = PLG_ZONE_DEVICES;
	else if (starts(topic, "$CONTROL/twin/"))
		want_z = PLG_ZONE_CONTROL;
	else if (starts(topic, "$twin/"))
		want_z = PLG_ZONE_EVENTS;
	else
		want_z = PLG_ZONE_OTHER;
	CHECK(z == want_z && plg_zone_of(topic) == z);

	/* One idea of "ours" across the three functions. */
	plg_topic_parse(topic, &t);
	CHECK((z == PLG_ZONE_IOTHUB) == (f != PLG_FILTER_NOT_IOTHUB));
	CHECK((z == PLG_ZONE_IOTHUB) == (t.kind != PLG_TOPIC_NOT_IOTHUB));
}

/* ---- devices/ topics (§11) ----------------------------------------------- */

static void check_device_topic(const char *topic, const char *id)
{
	size_t n = strlen(id), own_len = strlen("devices/") + n + strlen("/messages/");
	char *own = malloc(own_len + 1);
	plg_device_topic d = plg_device_topic_of(topic, id), want;
	const char *rest, *slash;
	int c2d, want_c2d;

	CHECK(own != NULL);
	memcpy(own, "devices/", 8);
	memcpy(own + 8, id, n);
	memcpy(own + 8 + n, "/messages/", sizeof("/messages/"));
	rest = topic + own_len;
	if (!starts(topic, own))
		want = PLG_DEVTOPIC_FOREIGN;
	else if (starts(rest, "events/"))
		want = PLG_DEVTOPIC_EVENTS;
	else if (strcmp(rest, "devicebound/#") == 0)
		want = PLG_DEVTOPIC_C2D_FILTER;
	else if (starts(rest, "devicebound/"))
		want = PLG_DEVTOPIC_C2D;
	else
		want = PLG_DEVTOPIC_FOREIGN;
	free(own);
	CHECK(d == want && plg_device_topic_of(topic, id) == d);

	/* Any device's C2D topic: devices/{non-empty id}/messages/devicebound/… */
	c2d = plg_is_c2d_topic(topic);
	slash = starts(topic, "devices/") ? strchr(topic + 8, '/') : NULL;
	want_c2d = slash != NULL && slash > topic + 8 && starts(slash, "/messages/devicebound/");
	CHECK(c2d == want_c2d && plg_is_c2d_topic(topic) == c2d);
	/* A device's own C2D topic is a C2D topic, for ids that can be ids. */
	if ((d == PLG_DEVTOPIC_C2D || d == PLG_DEVTOPIC_C2D_FILTER) && n > 0 &&
	    strchr(id, '/') == NULL)
		CHECK(c2d);
}

/* ---- Entry --------------------------------------------------------------- */

static char *concat(const char *a, size_t an, const char *b, size_t bn, const char *c, size_t cn)
{
	char *s = malloc(an + bn + cn + 1);

	CHECK(s != NULL);
	memcpy(s, a, an);
	memcpy(s + an, b, bn);
	memcpy(s + an + bn, c, cn);
	s[an + bn + cn] = '\0';
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const prefixes[] = {"", GET_PATH "?", PATCH_PATH "?", NULL};
	const char *text = (const char *)data + 1, *nul, *id_text = "d1";
	size_t text_len, id_len = 2;
	char *id, *topic;

	if (size == 0)
		return 0;
	text_len = size - 1;
	nul = memchr(text, '\0', text_len);
	if (nul != NULL) {
		id_text = nul + 1;
		id_len = strnlen(id_text, text_len - (size_t)(id_text - text));
		text_len = (size_t)(nul - text);
	}
	id = concat(id_text, id_len, "", 0, "", 0);
	if (prefixes[data[0] & 3] != NULL) {
		const char *p = prefixes[data[0] & 3];

		topic = concat(p, strlen(p), text, text_len, "", 0);
	} else {
		/* Inside the device's own devices/ tree. */
		char *own = concat("devices/", 8, id, id_len, "/messages/", 10);

		topic = concat(own, strlen(own), text, text_len, "", 0);
		free(own);
	}
	check_topic_parse(topic);
	check_filter_and_zone(topic);
	check_device_topic(topic, id);
	free(topic);
	free(id);
	return 0;
}
