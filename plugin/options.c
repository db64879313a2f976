/*
 * options.c - plugin_opt_* parsing.
 *
 * An unknown or malformed option stops the broker with a log line naming it:
 * a misspelt limit silently falling back to a default is worse than a
 * broker that does not start.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "plugin.h"
#include "twin/limits.h"

/* A positive integer option, bounded by max. */
static int parse_size(const char *key, const char *value, unsigned long long max,
                      unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v == 0 || v > max || value[0] == '-') {
		mosquitto_log_printf(MOSQ_LOG_ERR,
		                     PLG_LOG_PREFIX
		                     "plugin_opt_%s must be an integer from 1 to %llu, "
		                     "got '%s'.",
		                     key, max, value);
		return MOSQ_ERR_INVAL;
	}
	*out = v;
	return MOSQ_ERR_SUCCESS;
}

static int parse_bool(const char *key, const char *value, int *out)
{
	if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) {
		*out = value[0] == 't';
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_log_printf(MOSQ_LOG_ERR,
	                     PLG_LOG_PREFIX "plugin_opt_%s must be true or false, got '%s'.", key,
	                     value);
	return MOSQ_ERR_INVAL;
}

/* Numeric options and where they land. */
static int parse_numeric(plg_options *o, const char *key, const char *value, int *known)
{
	twin_limits *l = &o->store.limits;
	unsigned long long v;
	int rc;

	*known = 1;
	if (strcmp(key, "map_size_mb") == 0) {
		rc = parse_size(key, value, 1ull << 20, &v);
		o->store.map_size = (size_t)v << 20;
	} else if (strcmp(key, "max_key_bytes") == 0) {
		rc = parse_size(key, value, 1 << 20, &v);
		l->key_max_bytes = (size_t)v;
	} else if (strcmp(key, "max_string_bytes") == 0) {
		rc = parse_size(key, value, 1 << 24, &v);
		l->string_max_bytes = (size_t)v;
	} else if (strcmp(key, "max_depth") == 0) {
		rc = parse_size(key, value, TWIN_JSON_MAX_NESTING - 2, &v);
		l->max_depth = (int)v;
	} else if (strcmp(key, "max_tags_bytes") == 0) {
		rc = parse_size(key, value, 1 << 24, &v);
		l->tags_max = (size_t)v;
	} else if (strcmp(key, "max_desired_bytes") == 0) {
		rc = parse_size(key, value, 1 << 24, &v);
		l->desired_max = (size_t)v;
	} else if (strcmp(key, "device_rate_limit") == 0) {
		rc = parse_size(key, value, 1000000, &o->device_rate);
	} else if (strcmp(key, "device_rate_burst") == 0) {
		rc = parse_size(key, value, 1000000, &o->device_burst);
	} else if (strcmp(key, "changes_max_count") == 0) {
		rc = parse_size(key, value, 1ull << 40, &o->changes_max_count);
	} else if (strcmp(key, "changes_max_age") == 0) {
		rc = parse_size(key, value, 100ull * 365 * 86400, &o->changes_max_age);
	} else if (strcmp(key, "max_reported_bytes") == 0) {
		rc = parse_size(key, value, 1 << 24, &v);
		l->reported_max = (size_t)v;
	} else {
		*known = 0;
		rc = MOSQ_ERR_SUCCESS;
	}
	return rc;
}

static int parse_auth(const char *value, plg_auth_mode *out)
{
	static const struct {
		const char *name;
		plg_auth_mode mode;
	} modes[] = {
	        {"sas", PLG_AUTH_SAS}, {"open", PLG_AUTH_OPEN}, {"external", PLG_AUTH_EXTERNAL}};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(value, modes[i].name) == 0) {
			*out = modes[i].mode;
			return MOSQ_ERR_SUCCESS;
		}
	}
	mosquitto_log_printf(
	        MOSQ_LOG_ERR,
	        PLG_LOG_PREFIX "plugin_opt_auth must be sas, open or external, got '%s'.", value);
	return MOSQ_ERR_INVAL;
}

static int set_string(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
	return *field != NULL ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
}

/* plugin_opt_policy_<name> RIGHTS:KEY[:KEY2]; a later line for the same
 * name replaces an earlier one. The error never repeats the value: it
 * holds keys. */
static int parse_policy(plg_options *o, const char *name, const char *value)
{
	twin_policy p, *grown;
	twin_error err;
	size_t i;

	if (twin_policy_spec_parse(name, value, &p, &err) != TWIN_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "plugin_opt_policy_%s: %s", name,
		                     err.message);
		return MOSQ_ERR_INVAL;
	}
	for (i = 0; i < o->npolicies; i++)
		if (strcmp(o->policies[i].name, p.name) == 0)
			break;
	if (i == o->npolicies) {
		grown = realloc(o->policies, (o->npolicies + 1) * sizeof(*grown));
		if (grown == NULL)
			return MOSQ_ERR_NOMEM;
		o->policies = grown;
		o->npolicies++;
	}
	o->policies[i] = p;
	return MOSQ_ERR_SUCCESS;
}

/* Options that are not numbers. *known is 0 for an unknown key. */
static int parse_other(plg_options *o, const char *key, const char *value, int *known)
{
	*known = 1;
	if (strcmp(key, "db_path") == 0)
		return set_string(&o->db_path, value);
	if (strcmp(key, "hostname") == 0)
		return set_string(&o->hostname, value);
	if (strcmp(key, "catchup") == 0)
		return parse_bool(key, value, &o->catchup);
	if (strcmp(key, "auth") == 0)
		return parse_auth(value, &o->auth);
	if (strncmp(key, "policy_", strlen("policy_")) == 0)
		return parse_policy(o, key + strlen("policy_"), value);
	*known = 0;
	return MOSQ_ERR_SUCCESS;
}

/* The host name devices dial and SAS tokens name (PROTOCOL.md §1.2 step 6). */
static int check_hostname(const plg_options *o)
{
	const char *h = o->hostname;

	if (h == NULL) {
		if (o->auth != PLG_AUTH_SAS)
			return MOSQ_ERR_SUCCESS;
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX
		                     "plugin_opt_auth sas needs plugin_opt_hostname: the host "
		                     "name devices connect to, which their SAS tokens name.");
		return MOSQ_ERR_INVAL;
	}
	if (h[0] == '\0' || strlen(h) > TWIN_HOST_MAX || strpbrk(h, "/?&= ") != NULL) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
		                     PLG_LOG_PREFIX
		                     "plugin_opt_hostname must be a host name of 1 to %d "
		                     "characters, got '%s'.",
		                     TWIN_HOST_MAX, h);
		return MOSQ_ERR_INVAL;
	}
	return MOSQ_ERR_SUCCESS;
}

int plg_options_parse(plg_options *o, struct mosquitto_opt *opts, int count)
{
	memset(o, 0, sizeof(*o));
	o->catchup = 1;
	o->changes_max_count = 100000;
	o->changes_max_age = 86400;
	twin_store_options_default(&o->store);
	o->store.drain_changes = 1; /* the event stream (events.c) */
	for (int i = 0; i < count; i++) {
		const char *key = opts[i].key, *value = opts[i].value ? opts[i].value : "";
		int known, rc;

		rc = parse_other(o, key, value, &known);
		if (rc == MOSQ_ERR_SUCCESS && !known)
			rc = parse_numeric(o, key, value, &known);
		if (rc != MOSQ_ERR_SUCCESS)
			return rc;
		if (!known) {
			mosquitto_log_printf(MOSQ_LOG_ERR,
			                     PLG_LOG_PREFIX "unknown option plugin_opt_%s.", key);
			return MOSQ_ERR_INVAL;
		}
	}
	if (o->db_path == NULL && (o->db_path = strdup(PLG_DEFAULT_DB_PATH)) == NULL)
		return MOSQ_ERR_NOMEM;
	if (o->db_path[0] == '\0') {
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "plugin_opt_db_path is empty.");
		return MOSQ_ERR_INVAL;
	}
	if (check_hostname(o) != MOSQ_ERR_SUCCESS)
		return MOSQ_ERR_INVAL;
	o->store.path = o->db_path;
	return MOSQ_ERR_SUCCESS;
}

void plg_options_free(plg_options *o)
{
	free(o->db_path);
	free(o->hostname);
	if (o->policies != NULL)
		OPENSSL_cleanse(o->policies, o->npolicies * sizeof(*o->policies));
	free(o->policies);
	o->db_path = o->hostname = NULL;
	o->policies = NULL;
	o->npolicies = 0;
	o->store.path = NULL;
}
