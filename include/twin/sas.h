/*
 * twin/sas.h - the CONNECT credentials of PROTOCOL.md §1.1 and §1.2: the
 * IoT Hub username and the SAS token password.
 *
 * Pure functions: no store, no clock, no Mosquitto. The plugin parses the
 * username and the token, picks the keys (§1.2 step 5: the identity's or the
 * named policy's, primary then secondary), builds the target and calls
 * twin_sas_verify; identity existence and status (step 7) are its business.
 *
 * Every failure is TWIN_E_INVALID with a message saying which rule failed
 * (malformed, expired, signature mismatch, resource mismatch, id mismatch).
 * The messages are for the broker log only: callers map any failure to
 * CONNACK 5 (§1.4) and never tell the client why.
 *
 * Nothing here allocates except twin_sas_make (OpenSSL may, inside HMAC).
 * Inputs may be hostile: every field is bounded, percent escapes must be %XX
 * with hex digits, %00 is refused, base64 must be strict and padded.
 */
#ifndef TWIN_SAS_H
#define TWIN_SAS_H

#include <stddef.h>
#include <stdint.h>

#include "twin/error.h"
#include "twin/limits.h"

/* A parsed CONNECT username. */
typedef struct twin_username {
	char host[TWIN_HOST_MAX + 1];           /* not compared (§1.1) */
	char device_id[TWIN_DEVICE_ID_MAX + 1]; /* raw segment, never URL-decoded */
	char module_id[TWIN_DEVICE_ID_MAX + 1]; /* raw segment; "" for a device */
	/* The query values, URL-decoded; "" when absent. */
	char api_version[TWIN_API_VERSION_MAX + 1];
	char client_type[TWIN_CLIENT_TYPE_MAX + 1]; /* DeviceClientType */
	int has_model_id;                           /* model-id present, possibly "" */
	char model_id[TWIN_MODEL_ID_MAX + 1];
} twin_username;

/* Parse a CONNECT username (§1.1) into *out (always fully overwritten).
 * Accepted forms, path = {host}/{deviceId}[/{moduleId}] with an optional
 * trailing '/':
 *   current  path?query           the path ends at the first '?'
 *   legacy   path/api-version=…   no '?'; the query starts at the first
 *                                 segment after the deviceId that begins with
 *                                 "api-version=" (so a legacy-form module id
 *                                 cannot itself begin with it)
 *   bare     path                 no query (project decision)
 * The host is non-empty and at most TWIN_HOST_MAX bytes; the ids are valid
 * deviceIds (twin_device_id_valid) and are kept raw. The query is split on
 * '&', each pair at its first '=' (a pair without '=' has the value "");
 * api-version, DeviceClientType and model-id are URL-decoded and bounded;
 * one of them given twice is refused (project decision); any other parameter
 * is ignored unread. Errors: TWIN_E_INVALID, the message naming the rule. */
twin_err twin_username_parse(const char *username, twin_username *out, twin_error *err);

/* Check that the id segments of u equal the MQTT client id byte for byte:
 * "{deviceId}" for a device, "{deviceId}/{moduleId}" for a module (§1.1).
 * TWIN_OK, or TWIN_E_INVALID when they differ or client_id is NULL. */
twin_err twin_username_check_client_id(const twin_username *u, const char *client_id,
                                       twin_error *err);

/* A parsed SAS token. sr and se are kept exactly as received because the
 * signature covers them that way (§1.2 step 3). */
typedef struct twin_sas {
	char sr_raw[TWIN_SAS_SR_MAX + 1];      /* as received, still URL-encoded */
	char sr[TWIN_SAS_SR_MAX + 1];          /* URL-decoded, for the resource check */
	char se_raw[TWIN_SAS_SE_MAX + 1];      /* as received (leading zeros kept) */
	int64_t se;                            /* expiry, seconds since 1970-01-01T00:00:00Z */
	unsigned char sig[TWIN_SAS_SIG_BYTES]; /* base64decode(urldecode(sig)) */
	int has_skn;
	char skn[TWIN_SAS_SKN_MAX + 1]; /* URL-decoded policy name; "" without skn */
} twin_sas;

/* Parse a CONNECT password as a SAS token (§1.2 step 1 and the syntax of
 * step 2) into *out (always fully overwritten). The password starts with
 * exactly "SharedAccessSignature " (case-sensitive, one space); the rest is
 * split on '&' and each field at its first '='. Fields come in any order;
 * sr, sig and se are required, skn is optional; sr, sig, se or skn given
 * twice is refused; other fields are ignored unread. sr must URL-decode to a
 * non-empty string; sig must URL-decode to strict base64 of 32 bytes; se is
 * 1–TWIN_SAS_SE_MAX decimal digits (no sign, no space) whose value fits
 * int64_t; skn, when present, URL-decodes to a non-empty name. Expiry is not
 * checked here (twin_sas_verify does). Errors: TWIN_E_INVALID. */
twin_err twin_sas_parse(const char *password, twin_sas *out, twin_error *err);

/* Verify t (§1.2 steps 2, 3, 4, 6) for the resource target (twin_sas_target)
 * at now_seconds (seconds since the epoch), in this order:
 *   expiry     t->se > now_seconds, no grace
 *   signature  base64 HMAC-SHA256 over raw sr + "\n" + raw se equals t->sig
 *              (constant-time) with one of keys[0..nkeys), tried in order;
 *              NULL or "" entries are skipped, as are keys that are not
 *              strict base64 of 1–TWIN_SYM_KEY_MAX_BYTES bytes
 *   resource   t->sr is a segment prefix of target, ASCII case-insensitive:
 *              equal, or target continues with '/' right after it
 * Callers pass the identity's keys, or the named policy's keys after checking
 * that it grants DeviceConnect (step 5). Allocates nothing itself; decoded
 * keys are wiped from the stack.
 * TWIN_OK, or TWIN_E_INVALID with "expired", "signature" or "resource" in the
 * message; any failure means CONNACK 5. */
twin_err twin_sas_verify(const twin_sas *t, const char *const keys[], size_t nkeys,
                         const char *target, int64_t now_seconds, twin_error *err);

/* Write the §1.2 step 6 target {hostname}/devices/{deviceId} (module:
 * …/modules/{moduleId}) into out[0..n). module_id NULL or "" means a device.
 * TWIN_E_INVALID when hostname or device_id is empty or NULL, or when the
 * result does not fit (n >= TWIN_SAS_TARGET_MAX always fits a host name of
 * at most TWIN_HOST_MAX bytes and valid ids). */
twin_err twin_sas_target(char *out, size_t n, const char *hostname, const char *device_id,
                         const char *module_id, twin_error *err);

/* Make a SAS token exactly as the Azure IoT Node SDK does (azure-iot-common
 * SharedAccessSignature.create + toString):
 *   SharedAccessSignature
 * sr={E(resource_uri)}&sig={E(base64(HMAC))}[&skn={E(policy)}]&se={expiry}
 * where E is encodeURIComponent with !'()* also escaped (the SDK's
 * encodeUriComponentStrict: bytes other than A-Z a-z 0-9 - _ . ~ become %XX,
 * upper-case hex except %2a for '*') and the HMAC-SHA256 with
 * base64decode(key_b64) covers the ENCODED sr + "\n" + expiry. resource_uri
 * is unencoded, e.g. "myhub.azure-devices.net/devices/dev1"; policy_name NULL
 * or "" gives a token without skn. The result always parses with
 * twin_sas_parse. On TWIN_OK *out is malloc'd and owned by the caller (free);
 * on failure *out is NULL. Errors: TWIN_E_INVALID (empty or overlong
 * resource or policy name, negative expiry, key not strict base64 of
 * 1–TWIN_SYM_KEY_MAX_BYTES bytes), TWIN_E_NOMEM. */
twin_err twin_sas_make(const char *resource_uri, const char *key_b64, const char *policy_name,
                       int64_t expiry_seconds, char **out, twin_error *err);

#endif
