/*
 * twin/limits.h - protocol constants and the configurable validation limits.
 *
 * Names follow PROTOCOL.md §6 and §7. Every limit that PROTOCOL.md calls
 * configurable is a field of twin_limits; twin_limits_default() gives IoT
 * Hub's values.
 */
#ifndef TWIN_LIMITS_H
#define TWIN_LIMITS_H

#include <stddef.h>
#include <stdint.h>

/* §7 identity fields. */
#define TWIN_DEVICE_ID_MAX     128
#define TWIN_STATUS_REASON_MAX 128
#define TWIN_SYM_KEY_MIN_BYTES 16
#define TWIN_SYM_KEY_MAX_BYTES 64
#define TWIN_SYM_KEY_GEN_BYTES 32  /* generated keys (project decision) */
#define TWIN_SYM_KEY_B64_MAX   88  /* base64 of TWIN_SYM_KEY_MAX_BYTES */
#define TWIN_THUMBPRINT_MAX    64  /* SHA-256 in hex; SHA-1 is 40 */
#define TWIN_MODEL_ID_MAX      512 /* DTMI length cap (project decision) */
#define TWIN_POLICY_NAME_MAX   64  /* shared access policy name (project decision) */

/* Username fields (§1.1). Module ids follow the deviceId rule (§7). */
#define TWIN_HOST_MAX        255 /* a DNS name */
#define TWIN_API_VERSION_MAX 32
#define TWIN_CLIENT_TYPE_MAX 512 /* DeviceClientType, URL-decoded */

/* SAS token fields (§1.2), in bytes as received unless noted. */
#define TWIN_SAS_TOKEN_MAX 4096 /* the whole password */
#define TWIN_SAS_SR_MAX    2048 /* host + two ids, every byte %-encoded */
#define TWIN_SAS_SE_MAX    20   /* digits; the value must also fit int64_t */
#define TWIN_SAS_SKN_MAX   256  /* URL-decoded policy name */
#define TWIN_SAS_SIG_BYTES 32   /* HMAC-SHA256 */

/* {hostname}/devices/{deviceId}/modules/{moduleId} and its NUL. */
#define TWIN_SAS_TARGET_MAX                                                                        \
	(TWIN_HOST_MAX + sizeof("/devices/") - 1 + TWIN_DEVICE_ID_MAX + sizeof("/modules/") - 1 +  \
	 TWIN_DEVICE_ID_MAX + 1)

/* Timestamps are rendered with 7 fractional digits (PROTOCOL.md conventions). */
#define TWIN_TIMESTAMP_MAX 32

/* The JSON parser refuses nesting deeper than this whatever the twin depth
 * limit is, so that recursion over parsed trees has a fixed stack bound. */
#define TWIN_JSON_MAX_NESTING 64

/* §6 defaults. */
#define TWIN_DEFAULT_KEY_MAX_BYTES    1024
#define TWIN_DEFAULT_STRING_MAX_BYTES 4096
#define TWIN_DEFAULT_INT_MIN          (-4503599627370496LL) /* -2^52 */
#define TWIN_DEFAULT_INT_MAX          4503599627370495LL    /* 2^52 - 1 */
#define TWIN_DEFAULT_MAX_DEPTH        10
#define TWIN_DEFAULT_TAGS_MAX         8192
#define TWIN_DEFAULT_DESIRED_MAX      32768
#define TWIN_DEFAULT_REPORTED_MAX     32768

typedef struct twin_limits {
	size_t key_max_bytes;    /* key length 1 … key_max_bytes UTF-8 bytes */
	size_t string_max_bytes; /* string values, array elements included */
	int64_t int_min;         /* integer literals (no '.', 'e', 'E') */
	int64_t int_max;
	int max_depth;   /* objects/arrays at level <= max_depth, primitives <= max_depth+1 */
	size_t tags_max; /* section sizes by the §6 size algorithm */
	size_t desired_max;
	size_t reported_max;
} twin_limits;

/* Fill l with IoT Hub's defaults. */
void twin_limits_default(twin_limits *l);

#endif
