/*
 * sas.c - the IoT Hub CONNECT username and SAS token (PROTOCOL.md §1.1, §1.2).
 *
 * Everything works on bounded copies in fixed-size buffers: a CONNECT is
 * checked before the client is anyone, so an attacker chooses every byte,
 * and a fixed bound per field is simpler to reason about than allocations
 * sized by the input. The signature is computed over sr and se exactly as
 * received because that is what every SDK signs; the decoded sr is used only
 * for the resource check. Percent-decoding never turns '+' into a space:
 * '+' is a deviceId character and a base64 digit, and no SDK sends it for a
 * space.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "twin/registry.h"
#include "twin/sas.h"

#define SAS_PREFIX "SharedAccessSignature "

/* ---- Encodings ---------------------------------------------------------- */

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Percent-decode src[0..n) into out[0..cap), NUL-terminated. what names the
 * field in error messages. */
static twin_err url_decode(const char *src, size_t n, char *out, size_t cap, const char *what,
                           twin_error *err)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = src[i];

		if (c == '%') {
			int h = i + 2 < n ? hex_value(src[i + 1]) : -1;
			int l = h >= 0 ? hex_value(src[i + 2]) : -1;

			if (h < 0 || l < 0)
				return twin_error_set(err, TWIN_E_INVALID,
				                      "%s has an invalid percent escape.", what);
			c = (char)(h * 16 + l);
			if (c == '\0')
				return twin_error_set(err, TWIN_E_INVALID, "%s contains %%00.",
				                      what);
			i += 2;
		}
		if (o + 1 >= cap)
			return twin_error_set(err, TWIN_E_INVALID, "%s is longer than %zu bytes.",
			                      what, cap - 1);
		out[o++] = c;
	}
	out[o] = '\0';
	return TWIN_OK;
}

/* The Node SDK's encodeUriComponentStrict: encodeURIComponent (upper-case
 * hex) plus !'()* escaped with JavaScript's toString(16), which is lower
 * case; only '*' (%2a) shows the difference. Writes into out[0..cap);
 * returns 0, or -1 when it does not fit. */
static int url_encode_strict(const char *src, char *out, size_t cap)
{
	static const char upper[] = "0123456789ABCDEF", lower[] = "0123456789abcdef";
	size_t o = 0;

	for (const char *p = src; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
		const char *digits = strchr("!'()*", c) != NULL ? lower : upper;

		if (o + (keep ? 1 : 3) >= cap)
			return -1;
		if (keep) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = digits[c >> 4];
			out[o++] = digits[c & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

static int base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode strict, padded base64 src into out[0..cap). Returns the number of
 * bytes, or -1 when src is empty, not base64, or decodes to more than cap. */
static long base64_decode(const char *src, unsigned char *out, size_t cap)
{
	size_t n = strlen(src), o = 0;

	if (n == 0 || n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		uint32_t bits = 0;

		for (int k = 0; k < 4; k++) {
			if (src[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			v[k] = pad ? -1 : base64_value(src[i + k]);
			if (v[k] < 0)
				return -1;
			bits = bits << 6 | (uint32_t)v[k];
		}
		bits <<= 6 * pad;
		if (o + 3 - (size_t)pad > cap)
			return -1;
		out[o++] = (unsigned char)(bits >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(bits >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)bits;
	}
	return (long)o;
}

/* Copy s[0..n) into out[0..cap) or fail with "what is longer than …". */
static twin_err copy_bounded(const char *s, size_t n, char *out, size_t cap, const char *what,
                             twin_error *err)
{
	if (n >= cap)
		return twin_error_set(err, TWIN_E_INVALID, "%s is longer than %zu bytes.", what,
		                      cap - 1);
	memcpy(out, s, n);
	out[n] = '\0';
	return TWIN_OK;
}

/* One name=value pair of an '&'-separated list, split at its first '='. */
typedef struct query_pair {
	const char *name, *value;
	size_t name_len, value_len;
} query_pair;

/* Split the pair starting at *p (ending at '&' or end) and advance *p past
 * it. Returns 0 at the end of the list. */
static int query_next(const char **p, query_pair *q)
{
	const char *s = *p, *amp, *eq;

	if (s == NULL)
		return 0;
	amp = strchr(s, '&');
	q->name = s;
	q->name_len = amp ? (size_t)(amp - s) : strlen(s);
	eq = memchr(s, '=', q->name_len);
	if (eq != NULL) {
		q->value = eq + 1;
		q->value_len = q->name_len - (size_t)(eq + 1 - s);
		q->name_len = (size_t)(eq - s);
	} else {
		q->value = s + q->name_len;
		q->value_len = 0;
	}
	*p = amp ? amp + 1 : NULL;
	return 1;
}

static int pair_is(const query_pair *q, const char *name)
{
	return q->name_len == strlen(name) && memcmp(q->name, name, q->name_len) == 0;
}

/* ---- Username (§1.1) ---------------------------------------------------- */

/* In the legacy form (no '?') the query starts at the first segment after
 * the deviceId that begins with "api-version="; NULL when there is none. */
static const char *legacy_query(const char *username)
{
	int segment = 0;

	for (const char *p = username; (p = strchr(p, '/')) != NULL;) {
		p++;
		if (++segment >= 2 && strncmp(p, "api-version=", 12) == 0)
			return p;
	}
	return NULL;
}

static twin_err username_id(const char *s, size_t n, char *out, const char *what, twin_error *err)
{
	char id[TWIN_DEVICE_ID_MAX + 2];

	if (n > TWIN_DEVICE_ID_MAX)
		return twin_error_set(err, TWIN_E_INVALID, "Username %s is longer than %d bytes.",
		                      what, TWIN_DEVICE_ID_MAX);
	memcpy(id, s, n);
	id[n] = '\0';
	if (!twin_device_id_valid(id))
		return twin_error_set(err, TWIN_E_INVALID, "Username %s is not a valid id.", what);
	memcpy(out, id, n + 1);
	return TWIN_OK;
}

/* path[0..n) = {host}/{deviceId}[/{moduleId}] with an optional trailing '/'. */
static twin_err username_path(const char *path, size_t n, twin_username *out, twin_error *err)
{
	const char *seg[3], *end = path + n;
	size_t len[3];
	int count = 0;
	twin_err rc;

	if (n > 0 && path[n - 1] == '/')
		end--;
	for (const char *p = path, *slash = path; slash != NULL; count++) {
		if (count == 3)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "Username path has more than three segments.");
		slash = memchr(p, '/', (size_t)(end - p));
		seg[count] = p;
		len[count] = (size_t)((slash ? slash : end) - p);
		if (slash != NULL)
			p = slash + 1;
	}
	if (count < 2)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "Username must be {host}/{deviceId}[/{moduleId}]/?{query}.");
	if (len[0] == 0)
		return twin_error_set(err, TWIN_E_INVALID, "Username has an empty host.");
	rc = copy_bounded(seg[0], len[0], out->host, sizeof(out->host), "Username host", err);
	if (rc == TWIN_OK)
		rc = username_id(seg[1], len[1], out->device_id, "device id", err);
	if (rc == TWIN_OK && count == 3)
		rc = username_id(seg[2], len[2], out->module_id, "module id", err);
	return rc;
}

static twin_err username_query(const char *query, twin_username *out, twin_error *err)
{
	int seen_api = 0, seen_type = 0;
	query_pair q;
	twin_err rc = TWIN_OK;

	while (rc == TWIN_OK && query_next(&query, &q)) {
		char *dst;
		size_t cap;
		int *seen;
		const char *what;

		if (pair_is(&q, "api-version")) {
			dst = out->api_version;
			cap = sizeof(out->api_version);
			seen = &seen_api;
			what = "Username api-version";
		} else if (pair_is(&q, "DeviceClientType")) {
			dst = out->client_type;
			cap = sizeof(out->client_type);
			seen = &seen_type;
			what = "Username DeviceClientType";
		} else if (pair_is(&q, "model-id")) {
			dst = out->model_id;
			cap = sizeof(out->model_id);
			seen = &out->has_model_id;
			what = "Username model-id";
		} else {
			continue; /* unknown parameters are ignored unread */
		}
		if (*seen)
			return twin_error_set(err, TWIN_E_INVALID, "%s is given twice.", what);
		*seen = 1;
		rc = url_decode(q.value, q.value_len, dst, cap, what, err);
	}
	return rc;
}

twin_err twin_username_parse(const char *username, twin_username *out, twin_error *err)
{
	const char *query = NULL, *path_end;
	twin_err rc;

	memset(out, 0, sizeof(*out));
	if (username == NULL)
		return twin_error_set(err, TWIN_E_INVALID, "Username is missing.");
	path_end = strchr(username, '?');
	if (path_end != NULL) {
		query = path_end + 1;
	} else {
		query = legacy_query(username);
		path_end = query ? query : username + strlen(username);
	}
	rc = username_path(username, (size_t)(path_end - username), out, err);
	if (rc == TWIN_OK && query != NULL)
		rc = username_query(query, out, err);
	if (rc != TWIN_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

twin_err twin_username_check_client_id(const twin_username *u, const char *client_id,
                                       twin_error *err)
{
	size_t d = strlen(u->device_id);
	int same;

	if (client_id == NULL)
		return twin_error_set(err, TWIN_E_INVALID, "Client id is missing.");
	same = strncmp(client_id, u->device_id, d) == 0 &&
	       (u->module_id[0] == '\0'
	                ? client_id[d] == '\0'
	                : client_id[d] == '/' && strcmp(client_id + d + 1, u->module_id) == 0);
	if (!same)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "Client id does not equal the username's ids '%s%s%s'.",
		                      u->device_id, u->module_id[0] ? "/" : "", u->module_id);
	return TWIN_OK;
}

/* ---- SAS token parse (§1.2 steps 1, 2) ---------------------------------- */

static twin_err sas_se(const query_pair *q, twin_sas *out, twin_error *err)
{
	int64_t v = 0;

	if (q->value_len == 0 || q->value_len > TWIN_SAS_SE_MAX)
		return twin_error_set(err, TWIN_E_INVALID, "SAS token se must be 1 to %d digits.",
		                      TWIN_SAS_SE_MAX);
	for (size_t i = 0; i < q->value_len; i++) {
		int d = q->value[i] - '0';

		if (d < 0 || d > 9)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "SAS token se must be all digits.");
		if (v > (INT64_MAX - d) / 10)
			return twin_error_set(err, TWIN_E_INVALID, "SAS token se is out of range.");
		v = v * 10 + d;
	}
	memcpy(out->se_raw, q->value, q->value_len);
	out->se_raw[q->value_len] = '\0';
	out->se = v;
	return TWIN_OK;
}

static twin_err sas_sig(const query_pair *q, twin_sas *out, twin_error *err)
{
	char b64[128]; /* 44 digits expected */
	unsigned char bytes[TWIN_SAS_SIG_BYTES + 3];
	twin_err rc = url_decode(q->value, q->value_len, b64, sizeof(b64), "SAS token sig", err);

	if (rc != TWIN_OK)
		return rc;
	if (base64_decode(b64, bytes, sizeof(bytes)) != TWIN_SAS_SIG_BYTES)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS token sig is not the base64 of an HMAC-SHA256.");
	memcpy(out->sig, bytes, TWIN_SAS_SIG_BYTES);
	return TWIN_OK;
}

static twin_err sas_field(const query_pair *q, twin_sas *out, twin_error *err)
{
	twin_err rc;

	if (pair_is(q, "sr")) {
		rc = copy_bounded(q->value, q->value_len, out->sr_raw, sizeof(out->sr_raw),
		                  "SAS token sr", err);
		if (rc == TWIN_OK)
			rc = url_decode(q->value, q->value_len, out->sr, sizeof(out->sr),
			                "SAS token sr", err);
		if (rc == TWIN_OK && out->sr[0] == '\0')
			rc = twin_error_set(err, TWIN_E_INVALID, "SAS token sr is empty.");
		return rc;
	}
	if (pair_is(q, "sig"))
		return sas_sig(q, out, err);
	if (pair_is(q, "se"))
		return sas_se(q, out, err);
	/* skn */
	rc = url_decode(q->value, q->value_len, out->skn, sizeof(out->skn), "SAS token skn", err);
	if (rc == TWIN_OK && out->skn[0] == '\0')
		rc = twin_error_set(err, TWIN_E_INVALID, "SAS token skn is empty.");
	out->has_skn = 1;
	return rc;
}

twin_err twin_sas_parse(const char *password, twin_sas *out, twin_error *err)
{
	static const char *const names[] = {"sr", "sig", "se", "skn"};
	int seen[4] = {0};
	const char *rest;
	query_pair q;
	twin_err rc = TWIN_OK;

	memset(out, 0, sizeof(*out));
	if (password == NULL || strncmp(password, SAS_PREFIX, strlen(SAS_PREFIX)) != 0)
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "Password is not a SAS token: no 'SharedAccessSignature ' prefix.");
	if (strlen(password) > TWIN_SAS_TOKEN_MAX)
		return twin_error_set(err, TWIN_E_INVALID, "SAS token is longer than %d bytes.",
		                      TWIN_SAS_TOKEN_MAX);
	rest = password + strlen(SAS_PREFIX);
	if (*rest == ' ')
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS token must have exactly one space after its prefix.");
	while (rc == TWIN_OK && query_next(&rest, &q)) {
		int f = 0;

		while (f < 4 && !pair_is(&q, names[f]))
			f++;
		if (f == 4)
			continue; /* unknown fields are ignored unread */
		if (seen[f]++)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "SAS token field %s is repeated.", names[f]);
		rc = sas_field(&q, out, err);
	}
	for (int f = 0; rc == TWIN_OK && f < 3; f++)
		if (!seen[f])
			rc = twin_error_set(err, TWIN_E_INVALID, "SAS token has no %s field.",
			                    names[f]);
	if (rc != TWIN_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- Verification (§1.2 steps 2–6) -------------------------------------- */

/* Non-zero if prefix equals s or is followed in s by '/', ignoring ASCII case. */
static int segment_prefix(const char *prefix, const char *s)
{
	size_t i = 0;

	for (; prefix[i] != '\0'; i++)
		if (s[i] == '\0' || ascii_lower(prefix[i]) != ascii_lower(s[i]))
			return 0;
	return s[i] == '\0' || s[i] == '/';
}

/* HMAC-SHA256 of data[0..n) with base64 key into mac. Returns 0, or -1 when
 * the key is unusable. */
static int sas_hmac(const char *key_b64, const char *data, size_t n,
                    unsigned char mac[TWIN_SAS_SIG_BYTES])
{
	unsigned char key[TWIN_SYM_KEY_MAX_BYTES];
	unsigned int mac_len = 0;
	long key_len = base64_decode(key_b64, key, sizeof(key));
	int ok = key_len > 0 &&
	         HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, n, mac,
	              &mac_len) != NULL &&
	         mac_len == TWIN_SAS_SIG_BYTES;

	OPENSSL_cleanse(key, sizeof(key));
	return ok ? 0 : -1;
}

twin_err twin_sas_verify(const twin_sas *t, const char *const keys[], size_t nkeys,
                         const char *target, int64_t now_seconds, twin_error *err)
{
	char to_sign[TWIN_SAS_SR_MAX + 1 + TWIN_SAS_SE_MAX + 1];
	unsigned char want[TWIN_SAS_SIG_BYTES];
	size_t sr_len = strlen(t->sr_raw), se_len = strlen(t->se_raw);
	int match = 0;

	if (t->se <= now_seconds)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS token expired at %" PRId64 " (now %" PRId64 ").", t->se,
		                      now_seconds);
	memcpy(to_sign, t->sr_raw, sr_len);
	to_sign[sr_len] = '\n';
	memcpy(to_sign + sr_len + 1, t->se_raw, se_len);
	for (size_t i = 0; i < nkeys && !match; i++) {
		if (keys[i] == NULL || keys[i][0] == '\0' ||
		    sas_hmac(keys[i], to_sign, sr_len + 1 + se_len, want) != 0)
			continue;
		match = CRYPTO_memcmp(want, t->sig, sizeof(want)) == 0;
	}
	OPENSSL_cleanse(want, sizeof(want));
	if (!match)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS token signature does not match any key.");
	if (target == NULL || !segment_prefix(t->sr, target))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS token resource does not cover '%s'.",
		                      target ? target : "");
	return TWIN_OK;
}

twin_err twin_sas_target(char *out, size_t n, const char *hostname, const char *device_id,
                         const char *module_id, twin_error *err)
{
	int len;

	if (hostname == NULL || hostname[0] == '\0' || device_id == NULL || device_id[0] == '\0')
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS target needs a host name and a device id.");
	if (module_id != NULL && module_id[0] != '\0')
		len = snprintf(out, n, "%s/devices/%s/modules/%s", hostname, device_id, module_id);
	else
		len = snprintf(out, n, "%s/devices/%s", hostname, device_id);
	if (len < 0 || (size_t)len >= n) {
		if (n > 0)
			out[0] = '\0';
		return twin_error_set(err, TWIN_E_INVALID, "SAS target is longer than %zu bytes.",
		                      n ? n - 1 : 0);
	}
	return TWIN_OK;
}

/* ---- Token generation --------------------------------------------------- */

twin_err twin_sas_make(const char *resource_uri, const char *key_b64, const char *policy_name,
                       int64_t expiry_seconds, char **out, twin_error *err)
{
	char sr[TWIN_SAS_SR_MAX + 1], skn[3 * TWIN_SAS_SKN_MAX + 1], se[TWIN_SAS_SE_MAX + 1];
	char to_sign[sizeof(sr) + 1 + sizeof(se)], mac_b64[64], sig[3 * sizeof(mac_b64)];
	unsigned char mac[TWIN_SAS_SIG_BYTES];
	int has_skn = policy_name != NULL && policy_name[0] != '\0';
	size_t size;

	*out = NULL;
	if (resource_uri == NULL || resource_uri[0] == '\0' ||
	    url_encode_strict(resource_uri, sr, sizeof(sr)) != 0)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS resource must be 1 to %d bytes once encoded.",
		                      TWIN_SAS_SR_MAX);
	if (has_skn && (strlen(policy_name) > TWIN_SAS_SKN_MAX ||
	                url_encode_strict(policy_name, skn, sizeof(skn)) != 0))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS policy name is longer than %d bytes.", TWIN_SAS_SKN_MAX);
	if (expiry_seconds < 0)
		return twin_error_set(err, TWIN_E_INVALID, "SAS expiry must not be negative.");
	snprintf(se, sizeof(se), "%" PRId64, expiry_seconds);
	snprintf(to_sign, sizeof(to_sign), "%s\n%s", sr, se);
	if (key_b64 == NULL || sas_hmac(key_b64, to_sign, strlen(to_sign), mac) != 0)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "SAS key must be base64 of 1 to %d bytes.",
		                      TWIN_SYM_KEY_MAX_BYTES);
	EVP_EncodeBlock((unsigned char *)mac_b64, mac, sizeof(mac));
	url_encode_strict(mac_b64, sig, sizeof(sig));
	size = strlen(SAS_PREFIX "sr=&sig=&skn=&se=") + strlen(sr) + strlen(sig) +
	       (has_skn ? strlen(skn) : 0) + strlen(se) + 1;
	*out = malloc(size);
	if (*out == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	snprintf(*out, size, SAS_PREFIX "sr=%s&sig=%s%s%s&se=%s", sr, sig, has_skn ? "&skn=" : "",
	         has_skn ? skn : "", se);
	return TWIN_OK;
}
