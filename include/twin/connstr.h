/*
 * twin/connstr.h - Azure IoT Hub connection strings, as the portal, the
 * az CLI and the SDKs write them:
 *   HostName=h;SharedAccessKeyName=service;SharedAccessKey=…    (service)
 *   HostName=h;DeviceId=d[;ModuleId=m];SharedAccessKey=…         (device)
 *   HostName=h;DeviceId=d;x509=true                              (device, X.509)
 *
 * A pure function: no store, no Mosquitto, no allocation. Messages name the
 * field and the rule and never contain a value: a connection string holds
 * a key, and a mistyped one may hold it anywhere.
 */
#ifndef TWIN_CONNSTR_H
#define TWIN_CONNSTR_H

#include "twin/error.h"
#include "twin/limits.h"

/* A parsed connection string. A service string has device_id "". */
typedef struct twin_connstr {
	char host_name[TWIN_HOST_MAX + 1];       /* HostName, required */
	char device_id[TWIN_DEVICE_ID_MAX + 1];  /* DeviceId, "" if absent */
	char module_id[TWIN_DEVICE_ID_MAX + 1];  /* ModuleId, "" if absent */
	char key_name[TWIN_POLICY_NAME_MAX + 1]; /* SharedAccessKeyName, "" if absent */
	char key[TWIN_SYM_KEY_B64_MAX + 1];      /* SharedAccessKey, "" if absent */
	char gateway_host[TWIN_HOST_MAX + 1];    /* GatewayHostName, "" if absent */
	int x509;                                /* x509=true */
} twin_connstr;

/* Parse text into *out (fully overwritten; zeroed on failure).
 *
 * Syntax: ';'-separated Name=Value pairs, each split at its FIRST '=' (so a
 * base64 key keeps its '=' padding); one trailing ';' is allowed. Nothing
 * is trimmed or decoded. Names are case-sensitive, as IoT Hub writes them:
 * HostName, DeviceId, ModuleId, SharedAccessKeyName, SharedAccessKey,
 * GatewayHostName, x509. Other names are ignored, except
 * SharedAccessSignature, which is refused (a token expires; give the key).
 * Refused: NULL or "", a pair without '=' or with an empty name, an empty
 * part (";;"), a known name given twice or with an empty value, a value
 * longer than its field.
 *
 * Values: HostName and GatewayHostName are ASCII letters, digits, '.', '-'
 * and '_' (project decision); DeviceId and ModuleId are valid deviceIds
 * (twin_device_id_valid); SharedAccessKeyName a valid policy name
 * (twin_policy_name_valid); SharedAccessKey strict, padded base64 of
 * TWIN_SYM_KEY_MIN_BYTES..TWIN_SYM_KEY_MAX_BYTES bytes; x509 "true" or
 * "false", ASCII case-insensitive.
 *
 * Combinations (HostName always required):
 *   service  SharedAccessKeyName + SharedAccessKey, no DeviceId, and none of
 *            ModuleId, GatewayHostName, x509=true
 *   device   DeviceId + exactly one of SharedAccessKey and x509=true;
 *            optional ModuleId, GatewayHostName, and SharedAccessKeyName
 *            (a policy-signed device string, which then needs the key)
 *
 * Errors: TWIN_E_INVALID, the message naming the field and the rule, or
 * what is missing. */
twin_err twin_connstr_parse(const char *text, twin_connstr *out, twin_error *err);

#endif
