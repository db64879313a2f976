/*
 * twin/policy.h - shared access policies (PROTOCOL.md §1.2 step 5, §7).
 *
 * A policy is a named pair of keys with rights, as on IoT Hub: a SAS token
 * with skn={name} signed with one of its keys acts with its rights
 * (DeviceConnect for a device connection, ServiceConnect, RegistryRead,
 * RegistryWrite for back-end operations). Policies live in the store's
 * "policies" table; writes join the open batch (twin/store.h) and nothing
 * is durable before twin_store_commit.
 *
 * Keys are secrets: no message of this module ever contains a key or a
 * policy spec (which holds keys).
 */
#ifndef TWIN_POLICY_H
#define TWIN_POLICY_H

#include <stddef.h>

#include "twin/error.h"
#include "twin/limits.h"
#include "twin/store.h"

/* Rights of a shared access policy (PROTOCOL.md §7, IoT Hub names). */
enum {
	TWIN_RIGHT_REGISTRY_READ = 1u << 0,
	TWIN_RIGHT_REGISTRY_WRITE = 1u << 1,
	TWIN_RIGHT_SERVICE_CONNECT = 1u << 2,
	TWIN_RIGHT_DEVICE_CONNECT = 1u << 3,
	TWIN_RIGHTS_ALL = 15u,
};

/* Room for twin_rights_format of any rights, NUL included. */
#define TWIN_RIGHTS_TEXT_MAX sizeof("registryRead,registryWrite,serviceConnect,deviceConnect")

typedef struct twin_policy {
	char name[TWIN_POLICY_NAME_MAX + 1];
	char primary_key[TWIN_SYM_KEY_B64_MAX + 1];   /* base64 */
	char secondary_key[TWIN_SYM_KEY_B64_MAX + 1]; /* base64, "" = none */
	unsigned rights;                              /* TWIN_RIGHT_* bits */
} twin_policy;

/* Non-zero if name is a valid policy name: 1–TWIN_POLICY_NAME_MAX ASCII
 * letters, digits, '.', '-' or '_' (project decision). Case-sensitive: a
 * token's skn must match byte for byte. NULL is not valid. */
int twin_policy_name_valid(const char *name);

/* Parse a comma-separated list of rights into *out: registryRead,
 * registryWrite, serviceConnect, deviceConnect, or "all" for every right,
 * case-insensitive, with spaces or tabs allowed around each item. Repeated
 * items are harmless. *out is set on success only.
 * Errors: TWIN_E_INVALID for NULL, an empty list, an empty item ("a,,b",
 * trailing ',') or an unknown name, the message naming the bad item; an
 * unknown item long enough to be a key (24 characters or more) is
 * described by its length instead of echoed. */
twin_err twin_rights_parse(const char *text, unsigned *out, twin_error *err);

/* Write the names of the rights in rights into out[0..n) as
 * "registryRead,registryWrite,serviceConnect,deviceConnect" (that order,
 * only those set; "" for none; unknown bits ignored), for logs. Like
 * snprintf: returns the length of the whole text, truncates to fit, and
 * NUL-terminates when n > 0. n >= TWIN_RIGHTS_TEXT_MAX always fits. */
size_t twin_rights_format(unsigned rights, char *out, size_t n);

/* Parse a policy from its option value spec, "RIGHTS:PRIMARYKEY[:SECONDARYKEY]"
 * (base64 has no ':'), named name, into *out (fully overwritten; zeroed on
 * failure). RIGHTS as for twin_rights_parse; each key strict, padded base64
 * of TWIN_SYM_KEY_MIN_BYTES..TWIN_SYM_KEY_MAX_BYTES bytes, the same rule as
 * identity keys. No secondary key gives secondary_key "".
 * Errors: TWIN_E_INVALID naming the rule (bad name, malformed spec, bad
 * rights, bad primary or secondary key); the message never contains the
 * spec or a key. */
twin_err twin_policy_spec_parse(const char *name, const char *spec, twin_policy *out,
                                twin_error *err);

/* Replace p's primary and secondary keys with fresh random keys of
 * TWIN_SYM_KEY_GEN_BYTES bytes from OpenSSL's RNG; the two differ.
 * Errors: TWIN_E_STORAGE when the RNG fails (the keys are then cleared). */
twin_err twin_policy_generate_keys(twin_policy *p, twin_error *err);

/* Read policy name into *out. Errors: TWIN_E_INVALID for an invalid name
 * (no such policy can exist), TWIN_E_NOT_FOUND when there is none (the
 * open batch's writes included), TWIN_E_STORAGE. *out is unspecified on
 * failure. */
twin_err twin_policy_get(twin_store *s, const char *name, twin_policy *out, twin_error *err);

/* Create policy p->name, or replace it whole. Joins the open batch (opening
 * one if needed). p is copied. Errors: TWIN_E_INVALID (invalid name, no
 * rights or bits outside TWIN_RIGHTS_ALL, primary key missing or not a valid
 * key, secondary key neither "" nor valid; nothing is written),
 * TWIN_E_STORAGE, TWIN_E_NOMEM. */
twin_err twin_policy_put(twin_store *s, const twin_policy *p, twin_error *err);

/* Delete policy name inside the open batch. Errors: TWIN_E_INVALID (invalid
 * name), TWIN_E_NOT_FOUND when there is none, TWIN_E_STORAGE, TWIN_E_NOMEM. */
twin_err twin_policy_delete(twin_store *s, const char *name, twin_error *err);

#endif
