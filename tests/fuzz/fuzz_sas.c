/*
 * fuzz_sas.c - libFuzzer target for the CONNECT credentials (PROTOCOL.md
 * §1.1, §1.2): SAS tokens, usernames, connection strings (twin/sas.h,
 * twin/connstr.h).
 *
 * A CONNECT is checked before the client is anyone, so an attacker picks
 * every byte of the username and the password; an operator pastes connection
 * strings. The parsers work in fixed-size buffers, so beyond surviving every
 * input they must keep each field NUL-terminated inside its buffer and give
 * the same answer twice. What they accept is checked against the headers'
 * rules, and the verifier against an HMAC computed here with OpenSSL: a
 * token passes exactly when it has not expired, one of the keys signed
 * sr + "\n" + se as received, and sr is a segment prefix of the target.
 *
 * Input: byte 0 picks what the rest is (low two bits):
 *   0  a password; bit 2 puts "SharedAccessSignature " before it
 *   1  a username, then after a NUL the MQTT client id (none: NULL)
 *   2  a connection string
 *   3  resource, NUL, policy name, NUL, key for twin_sas_make, whose token
 *      must parse and verify (an empty key means the fixed key K1)
 * Fields end at a NUL: the broker hands the plugin C strings.
 *
 * Build and run with tools/run-fuzz.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "twin/connstr.h"
#include "twin/policy.h"
#include "twin/registry.h"
#include "twin/sas.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define SAS_PREFIX "SharedAccessSignature "
#define TARGET     "myhub.azure-devices.net/devices/dev1"
#define EXPIRY     1735689600

/* The keys of tests/unit/test_sas.c, so its Node SDK tokens seed the corpus
 * with signatures that verify: bytes 00 01 … 1f and ff fe … e0. */
static const char K1[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
static const char K2[] = "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=";

/* A field buffer holds a C string: a NUL within its bounds. */
#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- References ---------------------------------------------------------- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) into out (room for n + 1): %XX with hex digits,
 * never %00, '+' kept. 0 when malformed. */
static int ref_url_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		if (i + 2 >= n || hex_digit(s[i + 1]) < 0 || hex_digit(s[i + 2]) < 0)
			return 0;
		out[o] = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
		if (out[o++] == '\0')
			return 0;
		i += 2;
	}
	out[o] = '\0';
	return 1;
}

/* Bytes that padded base64 s decodes to, or -1. Bits left over by the
 * padding are not checked: neither does sas.c. */
static long ref_b64_len(const char *s)
{
	static const char digits[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s), pad = 0;

	while (pad < n && s[n - 1 - pad] == '=')
		pad++;
	if (n == 0 || n % 4 != 0 || pad > 2)
		return -1;
	for (size_t i = 0; i < n - pad; i++)
		if (strchr(digits, s[i]) == NULL)
			return -1;
	return (long)(n / 4 * 3 - pad);
}

/* §1.2 step 6: prefix equals s, or s goes on with '/', ignoring ASCII case. */
static int ref_segment_prefix(const char *prefix, const char *s)
{
	size_t n = strlen(prefix);

	if (strlen(s) < n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char a = prefix[i], b = s[i];

		if (a >= 'A' && a <= 'Z')
			a = (char)(a - 'A' + 'a');
		if (b >= 'A' && b <= 'Z')
			b = (char)(b - 'A' + 'a');
		if (a != b)
			return 0;
	}
	return s[n] == '\0' || s[n] == '/';
}

/* Does one of keys sign sr_raw "\n" se_raw into sig? Keys that are not
 * base64 of 1–64 bytes sign nothing. */
static int ref_signed(const twin_sas *t, const char *const keys[], size_t nkeys)
{
	size_t sr_len = strlen(t->sr_raw), se_len = strlen(t->se_raw);
	char *msg = malloc(sr_len + 1 + se_len);
	int found = 0;

	CHECK(msg != NULL);
	memcpy(msg, t->sr_raw, sr_len);
	msg[sr_len] = '\n';
	memcpy(msg + sr_len + 1, t->se_raw, se_len);
	for (size_t i = 0; i < nkeys && !found; i++) {
		unsigned char key[80], mac[EVP_MAX_MD_SIZE];
		unsigned int mac_len = 0;
		long klen = keys[i] ? ref_b64_len(keys[i]) : -1;

		if (klen < 1 || klen > TWIN_SYM_KEY_MAX_BYTES)
			continue;
		/* EVP_DecodeBlock counts the padding as zero bytes. */
		CHECK(EVP_DecodeBlock(key, (const unsigned char *)keys[i], (int)strlen(keys[i])) >=
		      klen);
		CHECK(HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg,
		           sr_len + 1 + se_len, mac, &mac_len) != NULL);
		found = mac_len == TWIN_SAS_SIG_BYTES && memcmp(mac, t->sig, mac_len) == 0;
	}
	free(msg);
	return found;
}

/* ---- SAS token (§1.2) ---------------------------------------------------- */

/* "name=value" is one whole pair of text's '&' list (after the prefix). */
static int has_pair(const char *text, const char *name, const char *value)
{
	size_t nn = strlen(name), vn = strlen(value);

	for (const char *p = text; p != NULL; p = strchr(p, '&'), p = p ? p + 1 : NULL)
		if (strncmp(p, name, nn) == 0 && p[nn] == '=' &&
		    strncmp(p + nn + 1, value, vn) == 0 &&
		    (p[nn + 1 + vn] == '&' || p[nn + 1 + vn] == '\0'))
			return 1;
	return 0;
}

static void check_token_fields(const char *password, const twin_sas *t)
{
	const char *rest = password + strlen(SAS_PREFIX);
	char *decoded;
	int64_t se = 0;

	CHECK(starts(password, SAS_PREFIX) && *rest != ' ');
	CHECK(strlen(password) <= TWIN_SAS_TOKEN_MAX);
	CHECK(TERMINATED(t->sr_raw) && TERMINATED(t->sr) && TERMINATED(t->se_raw) &&
	      TERMINATED(t->skn));
	CHECK(t->sr[0] != '\0' && has_pair(rest, "sr", t->sr_raw));
	decoded = malloc(strlen(t->sr_raw) + 1);
	CHECK(decoded != NULL && ref_url_decode(t->sr_raw, strlen(t->sr_raw), decoded));
	CHECK(strcmp(decoded, t->sr) == 0);
	free(decoded);
	CHECK(has_pair(rest, "se", t->se_raw));
	CHECK(t->se_raw[0] != '\0' && strlen(t->se_raw) <= TWIN_SAS_SE_MAX);
	for (const char *d = t->se_raw; *d != '\0'; d++) {
		CHECK(*d >= '0' && *d <= '9');
		CHECK(se <= (INT64_MAX - (*d - '0')) / 10);
		se = se * 10 + (*d - '0');
	}
	CHECK(se == t->se);
	CHECK(t->has_skn == 0 || t->has_skn == 1);
	CHECK(t->has_skn ? t->skn[0] != '\0' : t->skn[0] == '\0');
}

/* Verify t against target at now with the fixed key lists and compare the
 * verdict with the reference. */
static void check_verify(const twin_sas *t, const char *target, int64_t now)
{
	static const char *const bad_keys[] = {NULL, "", "not base64!", "A===", "QUJD"};
	static const char *const good_keys[] = {NULL, "", "QUJD", K2, K1};
	const struct {
		const char *const *keys;
		size_t n;
	} lists[] = {{bad_keys, 5}, {good_keys, 5}, {good_keys + 3, 1}};

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		twin_error err;
		twin_err rc;
		int expired = t->se <= now, sig_ok = ref_signed(t, lists[i].keys, lists[i].n);
		int covers = target != NULL && ref_segment_prefix(t->sr, target);

		memset(&err, 0, sizeof(err));
		rc = twin_sas_verify(t, lists[i].keys, lists[i].n, target, now, &err);
		CHECK((rc == TWIN_OK) == (!expired && sig_ok && covers));
		if (rc == TWIN_OK)
			continue;
		CHECK(rc == TWIN_E_INVALID && err.err == rc);
		/* The steps run in order: expiry, signature, resource. */
		if (expired)
			CHECK(strstr(err.message, "expired") != NULL);
		else if (!sig_ok)
			CHECK(strstr(err.message, "signature") != NULL);
		else
			CHECK(strstr(err.message, "resource") != NULL);
	}
}

static void check_password(const char *password)
{
	twin_sas *t = malloc(sizeof(*t)), *again = malloc(sizeof(*again));
	twin_error err, err2;
	twin_err rc, rc2;

	CHECK(t != NULL && again != NULL);
	memset(t, 0xa5, sizeof(*t)); /* "always fully overwritten" */
	memset(again, 0x5a, sizeof(*again));
	memset(&err, 0, sizeof(err));
	memset(&err2, 0, sizeof(err2));
	rc = twin_sas_parse(password, t, &err);
	rc2 = twin_sas_parse(password, again, &err2);
	CHECK(rc == rc2 && memcmp(t, again, sizeof(*t)) == 0);
	if (rc != TWIN_OK) {
		CHECK(rc == TWIN_E_INVALID && err.err == rc && err.message[0] != '\0');
		CHECK(strcmp(err.message, err2.message) == 0);
	} else {
		check_token_fields(password, t);
		check_verify(t, TARGET, EXPIRY - 3600);
		check_verify(t, TARGET, t->se);
		check_verify(t, t->sr, t->se > INT64_MIN ? t->se - 1 : t->se);
		check_verify(t, NULL, 0);
	}
	free(again);
	free(t);
}

/* The bytes the Node SDK's encoding keeps; it writes %XX for the others. */
static int unreserved(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

/* twin_sas_make, then the token must parse back to its inputs and verify. */
static void check_make(const char *resource, const char *policy, const char *key)
{
	size_t enc_len = 0;
	long klen = ref_b64_len(key);
	int has_skn = policy[0] != '\0', want_ok;
	char *token = (char *)&token, *module;
	twin_sas *t;
	twin_err rc;

	for (const char *p = resource; *p != '\0'; p++)
		enc_len += unreserved(*p) ? 1 : 3;
	want_ok = resource[0] != '\0' && enc_len <= TWIN_SAS_SR_MAX &&
	          strlen(policy) <= TWIN_SAS_SKN_MAX && klen >= 1 && klen <= TWIN_SYM_KEY_MAX_BYTES;
	rc = twin_sas_make(resource, key, has_skn ? policy : NULL, EXPIRY, &token, NULL);
	CHECK((rc == TWIN_OK) == want_ok);
	if (rc != TWIN_OK) {
		CHECK(token == NULL);
		return;
	}
	t = malloc(sizeof(*t));
	CHECK(token != NULL && t != NULL);
	CHECK(twin_sas_parse(token, t, NULL) == TWIN_OK);
	check_token_fields(token, t);
	CHECK(strcmp(t->sr, resource) == 0 && t->se == EXPIRY);
	CHECK(t->has_skn == has_skn && strcmp(t->skn, policy) == 0);
	CHECK(twin_sas_verify(t, &key, 1, resource, EXPIRY - 1, NULL) == TWIN_OK);
	module = malloc(strlen(resource) + sizeof("/modules/m"));
	CHECK(module != NULL);
	strcpy(module, resource);
	strcat(module, "/modules/m");
	CHECK(twin_sas_verify(t, &key, 1, module, EXPIRY - 1, NULL) == TWIN_OK);
	CHECK(twin_sas_verify(t, &key, 1, resource, EXPIRY, NULL) == TWIN_E_INVALID);
	check_verify(t, resource, EXPIRY - 1);
	free(module);
	free(t);
	free(token);
}

/* ---- Username (§1.1) ----------------------------------------------------- */

static void check_username(const char *username, const char *client_id)
{
	twin_username u, again;
	char ids[2 * TWIN_DEVICE_ID_MAX + 2], path[TWIN_HOST_MAX + sizeof(ids) + 1];
	size_t n;
	twin_err rc;

	memset(&u, 0xa5, sizeof(u));
	memset(&again, 0x5a, sizeof(again));
	rc = twin_username_parse(username, &u, NULL);
	CHECK(twin_username_parse(username, &again, NULL) == rc);
	CHECK(memcmp(&u, &again, sizeof(u)) == 0);
	if (rc != TWIN_OK) {
		CHECK(rc == TWIN_E_INVALID);
		return;
	}
	CHECK(TERMINATED(u.host) && TERMINATED(u.device_id) && TERMINATED(u.module_id) &&
	      TERMINATED(u.api_version) && TERMINATED(u.client_type) && TERMINATED(u.model_id));
	CHECK(u.host[0] != '\0' && strpbrk(u.host, "/?") == NULL);
	CHECK(twin_device_id_valid(u.device_id));
	CHECK(u.module_id[0] == '\0' || twin_device_id_valid(u.module_id));
	CHECK(u.has_model_id == 0 || u.has_model_id == 1);
	CHECK(u.has_model_id || u.model_id[0] == '\0');

	/* The path is the username's start: {host}/{deviceId}[/{moduleId}], then
	 * the end, '/' or the query. */
	snprintf(ids, sizeof(ids), "%s%s%s", u.device_id, u.module_id[0] ? "/" : "", u.module_id);
	n = (size_t)snprintf(path, sizeof(path), "%s/%s", u.host, ids);
	CHECK(starts(username, path) && strchr("/?", username[n]) != NULL);

	CHECK(twin_username_check_client_id(&u, ids, NULL) == TWIN_OK);
	CHECK(twin_username_check_client_id(&u, NULL, NULL) == TWIN_E_INVALID);
	if (client_id != NULL)
		CHECK((twin_username_check_client_id(&u, client_id, NULL) == TWIN_OK) ==
		      (strcmp(client_id, ids) == 0));
}

/* ---- Connection strings -------------------------------------------------- */

static int host_chars(const char *h)
{
	return strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") ==
	       strlen(h);
}

/* A non-empty field came from one whole Name=Value part of text. */
static int from_part(const char *text, const char *name, const char *value)
{
	size_t nn = strlen(name), vn = strlen(value);

	if (vn == 0)
		return 1;
	for (const char *p = text; p != NULL; p = strchr(p, ';'), p = p ? p + 1 : NULL)
		if (strncmp(p, name, nn) == 0 && p[nn] == '=' &&
		    strncmp(p + nn + 1, value, vn) == 0 &&
		    (p[nn + 1 + vn] == ';' || p[nn + 1 + vn] == '\0'))
			return 1;
	return 0;
}

static void check_connstr(const char *text)
{
	static const twin_connstr zero;
	twin_connstr c, again;
	twin_error err;
	twin_err rc;
	long klen;

	memset(&c, 0xa5, sizeof(c));
	memset(&again, 0x5a, sizeof(again));
	memset(&err, 0, sizeof(err));
	rc = twin_connstr_parse(text, &c, &err);
	CHECK(twin_connstr_parse(text, &again, NULL) == rc);
	CHECK(memcmp(&c, &again, sizeof(c)) == 0);
	if (rc != TWIN_OK) {
		CHECK(rc == TWIN_E_INVALID && err.err == rc && err.message[0] != '\0');
		CHECK(memcmp(&c, &zero, sizeof(c)) == 0); /* "zeroed on failure" */
		return;
	}
	CHECK(TERMINATED(c.host_name) && TERMINATED(c.device_id) && TERMINATED(c.module_id) &&
	      TERMINATED(c.key_name) && TERMINATED(c.key) && TERMINATED(c.gateway_host));
	CHECK(from_part(text, "HostName", c.host_name) &&
	      from_part(text, "DeviceId", c.device_id) &&
	      from_part(text, "ModuleId", c.module_id) &&
	      from_part(text, "SharedAccessKeyName", c.key_name) &&
	      from_part(text, "SharedAccessKey", c.key) &&
	      from_part(text, "GatewayHostName", c.gateway_host));
	CHECK(c.host_name[0] != '\0' && host_chars(c.host_name) && host_chars(c.gateway_host));
	CHECK(c.device_id[0] == '\0' || twin_device_id_valid(c.device_id));
	CHECK(c.module_id[0] == '\0' || twin_device_id_valid(c.module_id));
	CHECK(c.key_name[0] == '\0' || twin_policy_name_valid(c.key_name));
	klen = ref_b64_len(c.key);
	CHECK(c.key[0] == '\0' ||
	      (klen >= TWIN_SYM_KEY_MIN_BYTES && klen <= TWIN_SYM_KEY_MAX_BYTES));
	CHECK(c.x509 == 0 || c.x509 == 1);
	if (c.device_id[0] == '\0') /* service */
		CHECK(c.key_name[0] && c.key[0] && !c.x509 && !c.module_id[0] &&
		      !c.gateway_host[0]);
	else /* device: a key or X.509, and a key name only with its key */
		CHECK((c.key[0] != '\0') != c.x509 && (!c.key_name[0] || c.key[0]));
}

/* ---- Entry --------------------------------------------------------------- */

/* The NUL-terminated field starting at *p in [*p, end), and *p past it. */
static char *next_field(const char **p, const char *end)
{
	size_t n = strnlen(*p, (size_t)(end - *p));
	char *s = malloc(n + 1);

	CHECK(s != NULL);
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += n < (size_t)(end - *p) ? n + 1 : n;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	char *a, *b, *c;
	int has_client_id;

	if (size == 0)
		return 0;
	switch (data[0] & 3) {
	case 0:
		a = next_field(&p, end);
		if (data[0] & 4) {
			b = malloc(strlen(SAS_PREFIX) + strlen(a) + 1);
			CHECK(b != NULL);
			strcpy(b, SAS_PREFIX);
			strcat(b, a);
			check_password(b);
			free(b);
		} else {
			check_password(a);
		}
		free(a);
		break;
	case 1:
		has_client_id = memchr(p, '\0', (size_t)(end - p)) != NULL;
		a = next_field(&p, end);
		b = has_client_id ? next_field(&p, end) : NULL;
		check_username(a, b);
		free(a);
		free(b);
		break;
	case 2:
		a = next_field(&p, end);
		check_connstr(a);
		free(a);
		break;
	default:
		a = next_field(&p, end);
		b = next_field(&p, end);
		c = next_field(&p, end);
		check_make(a, b, c[0] ? c : K1);
		free(a);
		free(b);
		free(c);
	}
	return 0;
}
