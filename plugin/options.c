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
	} else if (strcmp(key, "max_reported_bytes") == 0) {
		rc = parse_size(key, value, 1 << 24, &v);
		l->reported_max = (size_t)v;
	} else {
		*known = 0;
		rc = MOSQ_ERR_SUCCESS;
	}
	return rc;
}

int plg_options_parse(plg_options *o, struct mosquitto_opt *opts, int count)
{
	memset(o, 0, sizeof(*o));
	o->catchup = 1;
	twin_store_options_default(&o->store);
	for (int i = 0; i < count; i++) {
		const char *key = opts[i].key, *value = opts[i].value ? opts[i].value : "";
		int known, rc;

		if (strcmp(key, "db_path") == 0) {
			free(o->db_path);
			o->db_path = strdup(value);
			if (o->db_path == NULL)
				return MOSQ_ERR_NOMEM;
			continue;
		}
		if (strcmp(key, "catchup") == 0) {
			if (parse_bool(key, value, &o->catchup) != MOSQ_ERR_SUCCESS)
				return MOSQ_ERR_INVAL;
			continue;
		}
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
	o->store.path = o->db_path;
	return MOSQ_ERR_SUCCESS;
}

void plg_options_free(plg_options *o)
{
	free(o->db_path);
	o->db_path = NULL;
	o->store.path = NULL;
}
