/*
 * connstr.c - Azure IoT Hub connection strings (twin/connstr.h).
 *
 * Two passes: split the text into one slice per known name (refusing what
 * cannot be read at all), then check each value and the combination. The
 * split keeps pointers into text, so nothing is copied before it is known
 * to fit. Messages name fields and part numbers, never values: a key may be
 * pasted where a name or a host was meant.
 */
#include <stddef.h>
#include <string.h>

#include "key.h"
#include "twin/connstr.h"
#include "twin/policy.h"
#include "twin/registry.h"

typedef enum field {
	F_HOST = 0,
	F_DEVICE,
	F_MODULE,
	F_KEY_NAME,
	F_KEY,
	F_GATEWAY,
	F_X509,
	F_COUNT
} field;

static const char *const field_names[F_COUNT] = {
        [F_HOST] = "HostName",       [F_DEVICE] = "DeviceId",
        [F_MODULE] = "ModuleId",     [F_KEY_NAME] = "SharedAccessKeyName",
        [F_KEY] = "SharedAccessKey", [F_GATEWAY] = "GatewayHostName",
        [F_X509] = "x509",
};

typedef struct slice {
	const char *p; /* NULL when the name is absent */
	size_t n;
} slice;

static int name_is(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && memcmp(s, name, n) == 0;
}

/* Pass one: every part is Name=Value; known names land in f[]. */
static twin_err split(const char *text, slice f[F_COUNT], twin_error *err)
{
	const char *p = text;

	if (text == NULL || text[0] == '\0')
		return twin_error_set(err, TWIN_E_INVALID, "The connection string is empty.");
	for (int part = 1; *p != '\0'; part++) {
		const char *semi = strchr(p, ';');
		size_t n = semi ? (size_t)(semi - p) : strlen(p), name_len;
		const char *eq = memchr(p, '=', n);

		if (n == 0)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "Part %d of the connection string is empty.", part);
		if (eq == NULL || eq == p)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "Part %d of the connection string is not Name=Value.",
			                      part);
		name_len = (size_t)(eq - p);
		if (name_is(p, name_len, "SharedAccessSignature"))
			return twin_error_set(err, TWIN_E_INVALID,
			                      "SharedAccessSignature connection strings are not "
			                      "supported; give the key.");
		for (int i = 0; i < F_COUNT; i++) {
			if (!name_is(p, name_len, field_names[i]))
				continue;
			if (f[i].p != NULL)
				return twin_error_set(err, TWIN_E_INVALID, "%s is given twice.",
				                      field_names[i]);
			if (n == name_len + 1)
				return twin_error_set(err, TWIN_E_INVALID, "%s is empty.",
				                      field_names[i]);
			f[i].p = eq + 1;
			f[i].n = n - name_len - 1;
		}
		p = semi ? semi + 1 : p + n;
	}
	return TWIN_OK;
}

static int host_valid(const char *h)
{
	for (; *h != '\0'; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || *h == '.' || *h == '-' || *h == '_'))
			return 0;
	return 1;
}

/* 1 for "true", 0 for "false" (ASCII case-insensitive), else -1. */
static int x509_value(const char *v, size_t n)
{
	char lower[sizeof("false")];

	if (n >= sizeof(lower))
		return -1;
	for (size_t i = 0; i < n; i++)
		lower[i] = (v[i] >= 'A' && v[i] <= 'Z') ? (char)(v[i] - 'A' + 'a') : v[i];
	lower[n] = '\0';
	return strcmp(lower, "true") == 0 ? 1 : strcmp(lower, "false") == 0 ? 0 : -1;
}

#define ID_RULE  "is not a valid id: 1-128 ASCII letters, digits or -:.+%_#*?!(),=@;$' are allowed"
#define FIELD(m) offsetof(twin_connstr, m), sizeof(((twin_connstr *)0)->m)

_Static_assert(TWIN_DEVICE_ID_MAX == 128 && TWIN_POLICY_NAME_MAX == 64 &&
                       TWIN_SYM_KEY_MIN_BYTES == 16 && TWIN_SYM_KEY_MAX_BYTES == 64,
               "the rules of text_fields spell these limits out");

/* The text fields: where each goes and the rule its value obeys. */
static const struct {
	field f;
	size_t offset, size;
	int (*valid)(const char *value);
	const char *rule;
} text_fields[] = {
        {F_HOST, FIELD(host_name), host_valid,
         "may hold only ASCII letters, digits, '.', '-' and '_'"},
        {F_DEVICE, FIELD(device_id), twin_device_id_valid, ID_RULE},
        {F_MODULE, FIELD(module_id), twin_device_id_valid, ID_RULE},
        {F_KEY_NAME, FIELD(key_name), twin_policy_name_valid,
         "is not a valid policy name: 1-64 ASCII letters, digits, '.', '-' or '_' are allowed"},
        {F_KEY, FIELD(key), key_b64_valid, "must be base64 of 16 to 64 bytes"},
        {F_GATEWAY, FIELD(gateway_host), host_valid,
         "may hold only ASCII letters, digits, '.', '-' and '_'"},
};

/* Pass two: copy and check the values. */
static twin_err take_all(const slice f[F_COUNT], twin_connstr *out, twin_error *err)
{
	for (size_t i = 0; i < sizeof(text_fields) / sizeof(text_fields[0]); i++) {
		const slice *v = &f[text_fields[i].f];
		const char *name = field_names[text_fields[i].f];
		char *dst = (char *)out + text_fields[i].offset;

		if (v->p == NULL)
			continue;
		if (v->n >= text_fields[i].size)
			return twin_error_set(err, TWIN_E_INVALID, "%s is longer than %zu bytes.",
			                      name, text_fields[i].size - 1);
		memcpy(dst, v->p, v->n);
		dst[v->n] = '\0';
		if (!text_fields[i].valid(dst))
			return twin_error_set(err, TWIN_E_INVALID, "%s %s.", name,
			                      text_fields[i].rule);
	}
	if (f[F_X509].p != NULL) {
		out->x509 = x509_value(f[F_X509].p, f[F_X509].n);
		if (out->x509 < 0)
			return twin_error_set(err, TWIN_E_INVALID, "x509 must be true or false.");
	}
	return TWIN_OK;
}

/* The combinations of twin/connstr.h. */
static twin_err check_combination(const twin_connstr *c, twin_error *err)
{
	if (!c->host_name[0])
		return twin_error_set(err, TWIN_E_INVALID, "HostName is missing.");
	if (!c->device_id[0]) {
		if (c->module_id[0])
			return twin_error_set(err, TWIN_E_INVALID, "ModuleId needs DeviceId.");
		if (c->gateway_host[0])
			return twin_error_set(err, TWIN_E_INVALID,
			                      "GatewayHostName needs DeviceId (it is only for "
			                      "device connection strings).");
		if (c->x509)
			return twin_error_set(err, TWIN_E_INVALID, "x509=true needs DeviceId.");
		if (!c->key_name[0] && !c->key[0])
			return twin_error_set(err, TWIN_E_INVALID,
			                      "DeviceId (device) or SharedAccessKeyName and "
			                      "SharedAccessKey (service) are missing.");
		if (!c->key_name[0])
			return twin_error_set(
			        err, TWIN_E_INVALID,
			        "SharedAccessKeyName is missing: a service connection "
			        "string needs it, a device one needs DeviceId.");
		if (!c->key[0])
			return twin_error_set(err, TWIN_E_INVALID, "SharedAccessKey is missing.");
		return TWIN_OK;
	}
	if (c->key[0] && c->x509)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "Give SharedAccessKey or x509=true, not both.");
	if (c->key_name[0] && !c->key[0])
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SharedAccessKey is missing: SharedAccessKeyName needs it.");
	if (!c->key[0] && !c->x509)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SharedAccessKey (or x509=true) is missing.");
	return TWIN_OK;
}

twin_err twin_connstr_parse(const char *text, twin_connstr *out, twin_error *err)
{
	slice f[F_COUNT];
	twin_err rc;

	memset(f, 0, sizeof(f));
	memset(out, 0, sizeof(*out));
	rc = split(text, f, err);
	if (rc == TWIN_OK)
		rc = take_all(f, out, err);
	if (rc == TWIN_OK)
		rc = check_combination(out, err);
	if (rc != TWIN_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}
