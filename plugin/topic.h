/*
 * topic.h - parsing of the IoT Hub device topics (PROTOCOL.md §2.1).
 *
 * Pure string work with no Mosquitto types, so it is unit-tested and fuzzed
 * on its own. Parsing never copies: results point into the topic.
 */
#ifndef TWIN_PLUGIN_TOPIC_H
#define TWIN_PLUGIN_TOPIC_H

#include <stddef.h>

#define PLG_IOTHUB_PREFIX "$iothub/"
#define PLG_TWIN_PREFIX   "$iothub/twin/"
#define PLG_DESIRED_TOPIC "$iothub/twin/PATCH/properties/desired/"

typedef enum plg_topic_kind {
	PLG_TOPIC_NOT_IOTHUB = 0, /* not ours: the broker's rules apply */
	PLG_TOPIC_TWIN_GET,       /* $iothub/twin/GET/?… */
	PLG_TOPIC_TWIN_PATCH,     /* $iothub/twin/PATCH/properties/reported/?… */
	PLG_TOPIC_TWIN_UNKNOWN,   /* any other $iothub/twin/… */
	PLG_TOPIC_IOTHUB_OTHER,   /* any other $iothub/… */
} plg_topic_kind;

typedef struct plg_topic {
	plg_topic_kind kind;
	const char *rid; /* raw $rid value (never decoded), NULL when absent or empty */
	size_t rid_len;
} plg_topic;

/* Classify a PUBLISH topic and find its $rid (§2.1: the query is the text
 * after the first '?', split on '&', each pair at its first '='; names are
 * case-sensitive; unknown parameters are ignored). */
void plg_topic_parse(const char *topic, plg_topic *out);

/* Filters a device may subscribe to under $iothub/ (§2.2). */
typedef enum plg_filter_kind {
	PLG_FILTER_NOT_IOTHUB = 0,
	PLG_FILTER_TWIN_RES,  /* $iothub/twin/res/# */
	PLG_FILTER_DESIRED,   /* $iothub/twin/PATCH/properties/desired/# */
	PLG_FILTER_METHODS,   /* $iothub/methods/POST/# */
	PLG_FILTER_FORBIDDEN, /* anything else under $iothub/ */
} plg_filter_kind;

plg_filter_kind plg_filter_classify(const char *filter);

/* The topic trees the plugin owns (PROTOCOL.md §2, §11; DESIGN.md §6).
 * Everything else follows the broker's own ACLs. */
typedef enum plg_zone {
	PLG_ZONE_OTHER = 0,
	PLG_ZONE_IOTHUB,  /* $iothub/…: the device twin (and later methods) API */
	PLG_ZONE_DEVICES, /* devices/…: telemetry and cloud-to-device messages */
	PLG_ZONE_CONTROL, /* $CONTROL/twin/…: the back-end control API */
	PLG_ZONE_EVENTS,  /* $twin/…: the back-end event stream */
} plg_zone;

plg_zone plg_zone_of(const char *topic);

/* What a device's devices/ topic is, relative to device_id (§11). */
typedef enum plg_device_topic {
	PLG_DEVTOPIC_FOREIGN = 0, /* another device's, or no telemetry/C2D topic */
	PLG_DEVTOPIC_EVENTS,      /* devices/{id}/messages/events/… */
	PLG_DEVTOPIC_C2D,         /* devices/{id}/messages/devicebound/… */
	PLG_DEVTOPIC_C2D_FILTER,  /* exactly devices/{id}/messages/devicebound/# */
} plg_device_topic;

/* Classify topic (under devices/) for device_id. */
plg_device_topic plg_device_topic_of(const char *topic, const char *device_id);

/* Non-zero if topic is devices/{any id}/messages/devicebound/… (C2D). */
int plg_is_c2d_topic(const char *topic);

#endif
