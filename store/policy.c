/*
 * policy.c - shared access policies (twin/policy.h, PROTOCOL.md §1.2, §7).
 *
 * A policy record is a fixed-size binary copy of twin_policy behind a format
 * tag, like an identity record (registry.c): a policy is read on every
 * policy-signed connect and back-end request, and a memcpy is cheaper than
 * a parse. A change of twin_policy's layout must bump POLICY_FORMAT and
 * convert old records. Records are validated when read, so a damaged one is
 * a storage error rather than a policy with strange rights.
 *
 * Keys are secrets: messages name the policy and the rule, never a key or
 * the spec that holds them.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "db.h"
#include "key.h"
#include "twin/policy.h"

_Static_assert(TWIN_POLICY_NAME_MAX <= TWIN_SAS_SKN_MAX,
               "every policy name must fit a SAS token's skn");

#define POLICY_FORMAT 0x74700001u /* "tp" + format 1 */

/* An unknown right this long could be a misplaced key: not echoed. */
#define RIGHT_ECHO_MAX 23

typedef struct policy_record {
	uint32_t format;
	twin_policy p;
} policy_record;

static const struct {
	const char *name;
	unsigned bit;
} right_names[] = {
        {"registryRead", TWIN_RIGHT_REGISTRY_READ},
        {"registryWrite", TWIN_RIGHT_REGISTRY_WRITE},
        {"serviceConnect", TWIN_RIGHT_SERVICE_CONNECT},
        {"deviceConnect", TWIN_RIGHT_DEVICE_CONNECT},
        {"all", TWIN_RIGHTS_ALL},
};

#define RIGHT_COUNT (sizeof(right_names) / sizeof(right_names[0]))

int twin_policy_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > TWIN_POLICY_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

/* ---- Rights ------------------------------------------------------------- */

static int ascii_equal_nocase(const char *s, size_t n, const char *name)
{
	if (strlen(name) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char a = s[i], b = name[i];

		if (a >= 'A' && a <= 'Z')
			a = (char)(a - 'A' + 'a');
		if (b >= 'A' && b <= 'Z')
			b = (char)(b - 'A' + 'a');
		if (a != b)
			return 0;
	}
	return 1;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* twin_rights_parse over text[0..len), which need not be NUL-terminated. */
static twin_err rights_parse_n(const char *text, size_t len, unsigned *out, twin_error *err)
{
	const char *end = text + len, *p = text;
	unsigned rights = 0;

	for (int item = 1;; item++) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;
		unsigned bit = 0;

		while (p < stop && is_blank(*p))
			p++;
		while (stop > p && is_blank(stop[-1]))
			stop--;
		if (p == stop && item == 1 && comma == NULL)
			return twin_error_set(err, TWIN_E_INVALID, "The list of rights is empty.");
		if (p == stop)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "Item %d of the list of rights is empty.", item);
		for (size_t i = 0; i < RIGHT_COUNT && bit == 0; i++)
			if (ascii_equal_nocase(p, (size_t)(stop - p), right_names[i].name))
				bit = right_names[i].bit;
		if (bit == 0 && stop - p > RIGHT_ECHO_MAX)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "Unknown right (item %d, %d characters): expected "
			                      "registryRead, registryWrite, serviceConnect, "
			                      "deviceConnect or all.",
			                      item, (int)(stop - p));
		if (bit == 0)
			return twin_error_set(
			        err, TWIN_E_INVALID,
			        "Unknown right '%.*s': expected registryRead, "
			        "registryWrite, serviceConnect, deviceConnect or all.",
			        (int)(stop - p), p);
		rights |= bit;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	*out = rights;
	return TWIN_OK;
}

twin_err twin_rights_parse(const char *text, unsigned *out, twin_error *err)
{
	if (text == NULL)
		return twin_error_set(err, TWIN_E_INVALID, "The list of rights is missing.");
	return rights_parse_n(text, strlen(text), out, err);
}

size_t twin_rights_format(unsigned rights, char *out, size_t n)
{
	char text[TWIN_RIGHTS_TEXT_MAX];
	size_t len = 0;

	text[0] = '\0';
	/* The last entry, "all", is not a right of its own. */
	for (size_t i = 0; i + 1 < RIGHT_COUNT; i++) {
		if (!(rights & right_names[i].bit))
			continue;
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s", len ? "," : "",
		                        right_names[i].name);
	}
	if (n > 0)
		snprintf(out, n, "%s", text);
	return len;
}

/* ---- Policies ----------------------------------------------------------- */

static twin_err check_name(const char *name, twin_error *err)
{
	if (!twin_policy_name_valid(name))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "Invalid policy name: 1-%d ASCII letters, digits, '.', '-' "
		                      "or '_' are allowed.",
		                      TWIN_POLICY_NAME_MAX);
	return TWIN_OK;
}

static int terminated(const char *field, size_t size)
{
	return memchr(field, '\0', size) != NULL;
}

/* Every rule a stored policy obeys. */
static twin_err check_policy(const twin_policy *p, twin_error *err)
{
	if (!terminated(p->name, sizeof(p->name)) ||
	    !terminated(p->primary_key, sizeof(p->primary_key)) ||
	    !terminated(p->secondary_key, sizeof(p->secondary_key)))
		return twin_error_set(err, TWIN_E_INVALID, "Policy fields must be terminated.");
	if (check_name(p->name, err) != TWIN_OK)
		return TWIN_E_INVALID;
	if (p->rights == 0 || (p->rights & ~(unsigned)TWIN_RIGHTS_ALL) != 0)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "Policy '%s' must have at least one right and no other bits.",
		                      p->name);
	if (!key_b64_valid(p->primary_key))
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "Policy '%s': the primary key must be base64 of %d to %d bytes.", p->name,
		        TWIN_SYM_KEY_MIN_BYTES, TWIN_SYM_KEY_MAX_BYTES);
	if (p->secondary_key[0] != '\0' && !key_b64_valid(p->secondary_key))
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "Policy '%s': the secondary key must be empty or base64 of %d "
		        "to %d bytes.",
		        p->name, TWIN_SYM_KEY_MIN_BYTES, TWIN_SYM_KEY_MAX_BYTES);
	return TWIN_OK;
}

/* Copy the key spec[0..n) into out, or fail naming which key (never the
 * key itself). */
static twin_err spec_key(const char *name, const char *which, const char *key, size_t n, char *out,
                         twin_error *err)
{
	if (n == 0)
		return twin_error_set(err, TWIN_E_INVALID, "Policy '%s': the %s key is empty.",
		                      name, which);
	if (n <= TWIN_SYM_KEY_B64_MAX) {
		memcpy(out, key, n);
		out[n] = '\0';
		if (key_b64_valid(out))
			return TWIN_OK;
	}
	return twin_error_set(err, TWIN_E_INVALID,
	                      "Policy '%s': the %s key must be base64 of %d to %d bytes.", name,
	                      which, TWIN_SYM_KEY_MIN_BYTES, TWIN_SYM_KEY_MAX_BYTES);
}

static twin_err spec_parse(const char *name, const char *spec, twin_policy *out, twin_error *err)
{
	const char *c1, *c2, *end;
	twin_error rerr;
	twin_err rc = check_name(name, err);

	if (rc != TWIN_OK)
		return rc;
	c1 = spec ? strchr(spec, ':') : NULL;
	c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (c1 == NULL || (c2 != NULL && strchr(c2 + 1, ':') != NULL))
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "Policy '%s' must be given as RIGHTS:PRIMARYKEY[:SECONDARYKEY].", name);
	snprintf(out->name, sizeof(out->name), "%s", name);
	if (rights_parse_n(spec, (size_t)(c1 - spec), &out->rights, &rerr) != TWIN_OK)
		return twin_error_set(err, TWIN_E_INVALID, "Policy '%s': %s", name, rerr.message);
	end = c2 ? c2 : c1 + 1 + strlen(c1 + 1);
	rc = spec_key(name, "primary", c1 + 1, (size_t)(end - c1 - 1), out->primary_key, err);
	if (rc == TWIN_OK && c2 != NULL)
		rc = spec_key(name, "secondary", c2 + 1, strlen(c2 + 1), out->secondary_key, err);
	return rc;
}

twin_err twin_policy_spec_parse(const char *name, const char *spec, twin_policy *out,
                                twin_error *err)
{
	twin_err rc;

	memset(out, 0, sizeof(*out));
	rc = spec_parse(name, spec, out, err);
	if (rc != TWIN_OK)
		OPENSSL_cleanse(out, sizeof(*out));
	return rc;
}

twin_err twin_policy_generate_keys(twin_policy *p, twin_error *err)
{
	twin_err rc = key_generate(p->primary_key, err);

	/* 256 random bits twice are equal only if the RNG is broken. */
	while (rc == TWIN_OK && (rc = key_generate(p->secondary_key, err)) == TWIN_OK &&
	       strcmp(p->primary_key, p->secondary_key) == 0)
		;
	if (rc != TWIN_OK)
		p->primary_key[0] = p->secondary_key[0] = '\0';
	return rc;
}

static twin_err load_policy(twin_store *s, const char *name, twin_policy *out, twin_error *err)
{
	policy_record rec;
	MDB_val v;
	twin_err rc = db_get(s, DB_POLICIES, name, strlen(name), &v, err);

	if (rc == TWIN_E_NOT_FOUND)
		return twin_error_set(err, rc, "Policy '%s' not found.", name);
	if (rc != TWIN_OK)
		return rc;
	if (v.mv_size != sizeof(rec))
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: bad policy record.");
	memcpy(&rec, v.mv_data, sizeof(rec));
	if (rec.format != POLICY_FORMAT)
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: unknown policy format.");
	if (check_policy(&rec.p, NULL) != TWIN_OK || strcmp(rec.p.name, name) != 0) {
		OPENSSL_cleanse(&rec, sizeof(rec));
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: bad policy record.");
	}
	*out = rec.p;
	OPENSSL_cleanse(&rec, sizeof(rec));
	return TWIN_OK;
}

twin_err twin_policy_get(twin_store *s, const char *name, twin_policy *out, twin_error *err)
{
	twin_err rc = check_name(name, err);

	if (rc == TWIN_OK)
		rc = db_read_begin(s, err);
	if (rc != TWIN_OK)
		return rc;
	rc = load_policy(s, name, out, err);
	db_read_end(s);
	return rc;
}

twin_err twin_policy_put(twin_store *s, const twin_policy *p, twin_error *err)
{
	policy_record rec;
	twin_err rc = check_policy(p, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc != TWIN_OK)
		return rc;
	/* Field by field, so the bytes after each NUL are zero and a record
	 * depends on the policy alone. */
	memset(&rec, 0, sizeof(rec));
	rec.format = POLICY_FORMAT;
	snprintf(rec.p.name, sizeof(rec.p.name), "%s", p->name);
	snprintf(rec.p.primary_key, sizeof(rec.p.primary_key), "%s", p->primary_key);
	snprintf(rec.p.secondary_key, sizeof(rec.p.secondary_key), "%s", p->secondary_key);
	rec.p.rights = p->rights;
	rc = db_put(s, DB_POLICIES, p->name, strlen(p->name), &rec, sizeof(rec), err);
	OPENSSL_cleanse(&rec, sizeof(rec));
	return rc;
}

twin_err twin_policy_delete(twin_store *s, const char *name, twin_error *err)
{
	MDB_val v;
	twin_err rc = check_name(name, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = db_get(s, DB_POLICIES, name, strlen(name), &v, err);
	if (rc == TWIN_E_NOT_FOUND)
		return twin_error_set(err, rc, "Policy '%s' not found.", name);
	if (rc == TWIN_OK)
		rc = db_del(s, DB_POLICIES, name, strlen(name), err);
	return rc;
}
