/*
 * twinctl_credentials.c - device credentials on the command line: the
 * authentication flags of `device create` and `device update`, turned into
 * the identity's "authentication" member, and the device connection string
 * that --show-connection-string prints.
 *
 * The flags are --auth-type, --primary-key and --secondary-key (sas),
 * --primary-thumbprint and --secondary-thumbprint (selfSigned), and
 * --regenerate-keys; the type follows from them when --auth-type is absent.
 * updateDevice replaces the whole authentication member and generates any
 * key it does not get, so an update that names one key or thumbprint is
 * built on the identity's current member: the other one is sent back as it
 * is (twinctl_device.c reads it first).
 */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twinctl.h"

static int has_keys(const twinctl_credentials *c)
{
	return c->primary_key != NULL || c->secondary_key != NULL;
}

static int has_thumbs(const twinctl_credentials *c)
{
	return c->primary_thumb != NULL || c->secondary_thumb != NULL;
}

int twinctl_credentials_partial(const twinctl_credentials *c)
{
	return has_keys(c) || has_thumbs(c);
}

const char *twinctl_credentials_type(const twinctl_credentials *c)
{
	if (c->auth_type != NULL)
		return c->auth_type;
	if (has_thumbs(c))
		return "selfSigned";
	return has_keys(c) || c->regenerate ? "sas" : NULL;
}

int twinctl_credentials_check(const twinctl_conf *conf, const twinctl_credentials *c)
{
	const char *type = twinctl_credentials_type(c);

	if (type != NULL && strcmp(type, "sas") != 0 && strcmp(type, "selfSigned") != 0 &&
	    strcmp(type, "certificateAuthority") != 0)
		return twinctl_usage_error(conf, "--auth-type is sas, selfSigned or "
		                                 "certificateAuthority.");
	if (has_keys(c) && has_thumbs(c))
		return twinctl_usage_error(conf, "keys are for sas, thumbprints for "
		                                 "selfSigned: give one kind.");
	if (c->regenerate && has_keys(c))
		return twinctl_usage_error(conf, "--regenerate-keys makes both keys: give "
		                                 "no --primary-key or --secondary-key.");
	if (type != NULL && strcmp(type, "sas") != 0 && (has_keys(c) || c->regenerate))
		return twinctl_usage_error(conf, "keys need --auth-type sas.");
	if (type != NULL && strcmp(type, "selfSigned") != 0 && has_thumbs(c))
		return twinctl_usage_error(conf, "thumbprints need --auth-type selfSigned.");
	return TWINCTL_EXIT_OK;
}

/* Add member name to obj: value, else current's non-empty member, else
 * fallback; nothing when all three are NULL. */
static void add_member(cJSON *obj, const char *name, const char *value, const cJSON *current,
                       const char *fallback)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(current, name);

	if (value == NULL && cJSON_IsString(v) && v->valuestring[0])
		value = v->valuestring;
	if (value == NULL)
		value = fallback;
	if (value != NULL)
		cJSON_AddStringToObject(obj, name, value);
}

cJSON *twinctl_credentials_json(const twinctl_credentials *c, const cJSON *current)
{
	const char *type = twinctl_credentials_type(c), *fallback = c->regenerate ? "" : NULL;
	const cJSON *ctype = cJSON_GetObjectItemCaseSensitive(current, "type");
	cJSON *auth, *sub;

	if (type == NULL)
		return NULL;
	/* A new type starts empty; --regenerate-keys ("" keys) drops the old ones. */
	if (!cJSON_IsString(ctype) || strcmp(ctype->valuestring, type) != 0 || c->regenerate)
		current = NULL;
	auth = cJSON_CreateObject();
	cJSON_AddStringToObject(auth, "type", type);
	if (strcmp(type, "sas") == 0) {
		sub = cJSON_AddObjectToObject(auth, "symmetricKey");
		current = cJSON_GetObjectItemCaseSensitive(current, "symmetricKey");
		add_member(sub, "primaryKey", c->primary_key, current, fallback);
		add_member(sub, "secondaryKey", c->secondary_key, current, fallback);
	} else if (strcmp(type, "selfSigned") == 0) {
		sub = cJSON_AddObjectToObject(auth, "x509Thumbprint");
		current = cJSON_GetObjectItemCaseSensitive(current, "x509Thumbprint");
		add_member(sub, "primaryThumbprint", c->primary_thumb, current, NULL);
		add_member(sub, "secondaryThumbprint", c->secondary_thumb, current, NULL);
	}
	return auth;
}

void twinctl_add_connection_string(const twinctl_conf *conf, cJSON *identity)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(identity, "deviceId");
	const cJSON *auth = cJSON_GetObjectItemCaseSensitive(identity, "authentication");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(auth, "type");
	const cJSON *sym = cJSON_GetObjectItemCaseSensitive(auth, "symmetricKey");
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(sym, "primaryKey");
	const char *hub = twinctl_hub_host(conf), *t;
	char *cs = NULL;
	int n = -1;

	if (!cJSON_IsString(id) || !cJSON_IsString(type))
		return;
	t = type->valuestring;
	if (strcmp(t, "sas") == 0 && cJSON_IsString(key))
		n = asprintf(&cs, "HostName=%s;DeviceId=%s;SharedAccessKey=%s", hub,
		             id->valuestring, key->valuestring);
	else if (strcmp(t, "selfSigned") == 0 || strcmp(t, "certificateAuthority") == 0)
		n = asprintf(&cs, "HostName=%s;DeviceId=%s;x509=true", hub, id->valuestring);
	if (n >= 0) {
		cJSON_AddStringToObject(identity, "connectionString", cs);
		free(cs);
	} else {
		cJSON_AddNullToObject(identity, "connectionString");
	}
}
