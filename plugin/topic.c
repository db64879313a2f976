/*
 * topic.c - IoT Hub device topic parsing (PROTOCOL.md §2.1, §2.2).
 */
#include <string.h>

#include "topic.h"

static int starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The raw value of query parameter name in query (up to its end), or NULL. */
static const char *query_param(const char *query, const char *name, size_t *len)
{
	size_t nlen = strlen(name);

	for (const char *p = query; p != NULL && *p;) {
		const char *end = strchr(p, '&');
		size_t plen = end ? (size_t)(end - p) : strlen(p);

		if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			*len = plen - nlen - 1;
			return p + nlen + 1;
		}
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

void plg_topic_parse(const char *topic, plg_topic *out)
{
	const char *q = strchr(topic, '?');
	size_t path_len = q ? (size_t)(q - topic) : strlen(topic);

	memset(out, 0, sizeof(*out));
	if (!starts_with(topic, PLG_IOTHUB_PREFIX))
		return;
	if (q != NULL) {
		out->rid = query_param(q + 1, "$rid", &out->rid_len);
		if (out->rid_len == 0)
			out->rid = NULL; /* "$rid=" is as good as none */
	}
	if (path_len == strlen("$iothub/twin/GET/") && starts_with(topic, "$iothub/twin/GET/"))
		out->kind = PLG_TOPIC_TWIN_GET;
	else if (path_len == strlen("$iothub/twin/PATCH/properties/reported/") &&
	         starts_with(topic, "$iothub/twin/PATCH/properties/reported/"))
		out->kind = PLG_TOPIC_TWIN_PATCH;
	else if (starts_with(topic, PLG_TWIN_PREFIX))
		out->kind = PLG_TOPIC_TWIN_UNKNOWN;
	else
		out->kind = PLG_TOPIC_IOTHUB_OTHER;
}

plg_filter_kind plg_filter_classify(const char *filter)
{
	if (!starts_with(filter, PLG_IOTHUB_PREFIX))
		return PLG_FILTER_NOT_IOTHUB;
	if (strcmp(filter, "$iothub/twin/res/#") == 0)
		return PLG_FILTER_TWIN_RES;
	if (strcmp(filter, "$iothub/twin/PATCH/properties/desired/#") == 0)
		return PLG_FILTER_DESIRED;
	if (strcmp(filter, "$iothub/methods/POST/#") == 0)
		return PLG_FILTER_METHODS;
	return PLG_FILTER_FORBIDDEN;
}

plg_zone plg_zone_of(const char *topic)
{
	if (starts_with(topic, PLG_IOTHUB_PREFIX))
		return PLG_ZONE_IOTHUB;
	if (starts_with(topic, "devices/"))
		return PLG_ZONE_DEVICES;
	if (starts_with(topic, "$CONTROL/twin/"))
		return PLG_ZONE_CONTROL;
	if (starts_with(topic, "$twin/"))
		return PLG_ZONE_EVENTS;
	return PLG_ZONE_OTHER;
}

plg_device_topic plg_device_topic_of(const char *topic, const char *device_id)
{
	size_t n = strlen(device_id);
	const char *rest;

	if (!starts_with(topic, "devices/") || strncmp(topic + 8, device_id, n) != 0 ||
	    topic[8 + n] != '/')
		return PLG_DEVTOPIC_FOREIGN;
	rest = topic + 8 + n;
	if (starts_with(rest, "/messages/events/"))
		return PLG_DEVTOPIC_EVENTS;
	if (strcmp(rest, "/messages/devicebound/#") == 0)
		return PLG_DEVTOPIC_C2D_FILTER;
	if (starts_with(rest, "/messages/devicebound/"))
		return PLG_DEVTOPIC_C2D;
	return PLG_DEVTOPIC_FOREIGN;
}

int plg_is_c2d_topic(const char *topic)
{
	const char *slash;

	if (!starts_with(topic, "devices/"))
		return 0;
	slash = strchr(topic + 8, '/');
	return slash != NULL && slash != topic + 8 && starts_with(slash, "/messages/devicebound/");
}
