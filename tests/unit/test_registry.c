/*
 * test_registry.c - device identities (PROTOCOL.md §7, §4.2 deviceEtag,
 * twin/registry.h), one test per rule.
 *
 * Every test runs on its own store in a fresh directory with the test clock,
 * and checks exact values: an etag, a key length, a timestamp, the exact
 * JSON of a twin section, so that a broken rule cannot pass as "no error".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "registry_record.h" /* the stored form */
#include "test_support.h"
#include "twin/doc.h"
#include "twin/registry.h"
#include "twin/twin.h"

static test_db db;

static int setup(void **state)
{
	(void)state;
	test_db_open(&db, "registry", 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_db_close(&db);
	return 0;
}

/* Create device id from spec_text (NULL: no spec). */
static twin_err create(const char *id, const char *spec_text, twin_identity *out, twin_error *err)
{
	cJSON *spec = spec_text ? test_json(spec_text) : NULL;
	twin_err rc = twin_device_create(db.s, id, spec, out, err);

	cJSON_Delete(spec);
	return rc;
}

static void create_ok(const char *id, const char *spec_text, twin_identity *out)
{
	twin_error err = {0};

	if (create(id, spec_text, out, &err) != TWIN_OK)
		fail_msg("create %s %s: %s", id, spec_text ? spec_text : "", err.message);
}

static twin_err update(const char *id, const char *spec_text, const char *if_match,
                       twin_identity *out, twin_error *err)
{
	cJSON *spec = spec_text ? test_json(spec_text) : NULL;
	twin_err rc = twin_device_update(db.s, id, spec, if_match, out, err);

	cJSON_Delete(spec);
	return rc;
}

static void commit(void)
{
	twin_error err = {0};

	if (twin_store_commit(db.s, &err) != TWIN_OK)
		fail_msg("commit: %s", err.message);
}

static void get_ok(const char *id, twin_identity *out)
{
	twin_error err = {0};

	if (twin_device_get(db.s, id, out, &err) != TWIN_OK)
		fail_msg("get %s: %s", id, err.message);
}

static void assert_etag(const twin_identity *id, const char *want)
{
	char etag[TWIN_ETAG_MAX];

	twin_identity_etag(id, etag);
	assert_string_equal(etag, want);
}

/* The identity JSON of device id as stored, malloc'd. */
static char *identity_text(const char *id)
{
	twin_identity ident;
	cJSON *j;
	char *text;

	get_ok(id, &ident);
	j = twin_identity_to_json(&ident);
	assert_non_null(j);
	text = cJSON_PrintUnformatted(j);
	assert_non_null(text);
	cJSON_Delete(j);
	return text;
}

/* Every field of two identities is equal (struct padding is not compared). */
static void assert_identity_equal(const twin_identity *a, const twin_identity *b)
{
	assert_string_equal(a->device_id, b->device_id);
	assert_string_equal(a->generation_id, b->generation_id);
	assert_int_equal(a->etag_counter, b->etag_counter);
	assert_int_equal(a->enabled, b->enabled);
	assert_string_equal(a->status_reason, b->status_reason);
	assert_int_equal(a->status_updated, b->status_updated);
	assert_int_equal(a->auth_type, b->auth_type);
	assert_string_equal(a->primary_key, b->primary_key);
	assert_string_equal(a->secondary_key, b->secondary_key);
	assert_string_equal(a->primary_thumbprint, b->primary_thumbprint);
	assert_string_equal(a->secondary_thumbprint, b->secondary_thumbprint);
	assert_int_equal(a->connected, b->connected);
	assert_int_equal(a->connection_state_updated, b->connection_state_updated);
	assert_int_equal(a->last_activity, b->last_activity);
	assert_string_equal(a->model_id, b->model_id);
}

/* b64 is canonical padded base64 of exactly nbytes bytes. */
static void assert_base64_of(const char *b64, int nbytes)
{
	unsigned char raw[3 * (TWIN_SYM_KEY_B64_MAX / 4) + 3];
	char again[TWIN_SYM_KEY_B64_MAX + 4];
	size_t n = strlen(b64);
	int len;

	assert_true(n > 0 && n % 4 == 0 && n <= TWIN_SYM_KEY_B64_MAX);
	len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
	assert_true(len >= 0);
	len -= (b64[n - 1] == '=') + (b64[n - 2] == '=');
	assert_int_equal(len, nbytes);
	EVP_EncodeBlock((unsigned char *)again, raw, len);
	assert_string_equal(again, b64);
}

/* Base64 of n random bytes into out. */
static void random_base64(int n, char *out)
{
	unsigned char raw[128];

	assert_true(n <= (int)sizeof(raw));
	assert_int_equal(RAND_bytes(raw, n), 1);
	EVP_EncodeBlock((unsigned char *)out, raw, n);
}

static void assert_err(twin_err got, twin_err want, const twin_error *err, int status, int code)
{
	assert_int_equal(got, want);
	assert_int_equal(err->err, want);
	assert_true(err->message[0] != '\0');
	assert_int_equal(twin_err_status(got), status);
	assert_int_equal(twin_err_code(got), code);
}

static void test_device_id_charset_and_length(void **state)
{
	static const char allowed[] = "-:.+%_#*?!(),=@;$'";
	static const char *const bad[] = {
	        "", " ", "a b", "a/b", "a&b", "caf\xc3\xa9", "a\tb", "a\177b", "a\"b", "a\\b",
	};
	char id[TWIN_DEVICE_ID_MAX + 2];
	twin_identity out;
	twin_error err;

	(void)state;
	/* Every allowed punctuation character, alone between letters. */
	for (const char *p = allowed; *p; p++) {
		snprintf(id, sizeof(id), "x%cy", *p);
		assert_true(twin_device_id_valid(id));
		create_ok(id, NULL, &out);
		assert_string_equal(out.device_id, id);
	}
	create_ok("AZaz09-:.+%_#*?!(),=@;$'", NULL, NULL);
	/* Every other printable ASCII character is refused. */
	for (int c = 0x20; c < 0x7f; c++) {
		if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    strchr(allowed, c) != NULL)
			continue;
		snprintf(id, sizeof(id), "x%cy", c);
		assert_false(twin_device_id_valid(id));
		assert_int_equal(create(id, NULL, NULL, &err), TWIN_E_INVALID);
	}
	memset(id, 'a', TWIN_DEVICE_ID_MAX);
	id[TWIN_DEVICE_ID_MAX] = '\0';
	assert_true(twin_device_id_valid(id));
	create_ok(id, NULL, &out);
	assert_string_equal(out.device_id, id);
	id[TWIN_DEVICE_ID_MAX] = 'b';
	id[TWIN_DEVICE_ID_MAX + 1] = '\0';
	assert_false(twin_device_id_valid(id));
	assert_err(create(id, NULL, NULL, &err), TWIN_E_INVALID, &err, 400, 400004);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(twin_device_id_valid(bad[i]));
		memset(&err, 0, sizeof(err));
		assert_err(create(bad[i], NULL, NULL, &err), TWIN_E_INVALID, &err, 400, 400004);
	}
	assert_false(twin_device_id_valid(NULL));
	commit();
	snprintf(id, sizeof(id), "x%cy", '\'');
	get_ok(id, &out);
	assert_string_equal(out.device_id, "x'y");
}

static void test_create_device_defaults(void **state)
{
	twin_identity a, b, stored;

	(void)state;
	create_ok("dev1", NULL, &a);
	assert_string_equal(a.device_id, "dev1");
	assert_int_equal(a.enabled, 1);
	assert_string_equal(a.status_reason, "");
	assert_int_equal(a.auth_type, TWIN_AUTH_SAS);
	assert_int_equal(strlen(a.primary_key), 44);
	assert_base64_of(a.primary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_base64_of(a.secondary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_string_not_equal(a.primary_key, a.secondary_key);
	assert_string_equal(a.primary_thumbprint, "");
	assert_string_equal(a.secondary_thumbprint, "");
	assert_int_equal(a.etag_counter, 1);
	assert_etag(&a, "MQ==");
	assert_int_equal(a.status_updated, 0);
	assert_int_equal(a.connected, 0);
	assert_int_equal(a.connection_state_updated, 0);
	assert_int_equal(a.last_activity, 0);
	assert_string_equal(a.model_id, "");
	assert_int_equal(strlen(a.generation_id), 18);
	assert_int_equal(strspn(a.generation_id, "0123456789"), 18);
	/* An empty spec object means the same as no spec. */
	create_ok("dev2", "{}", &b);
	assert_int_equal(b.enabled, 1);
	assert_int_equal(b.auth_type, TWIN_AUTH_SAS);
	assert_base64_of(b.primary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_string_not_equal(a.primary_key, b.primary_key);
	assert_string_not_equal(a.secondary_key, b.secondary_key);
	assert_string_not_equal(a.generation_id, b.generation_id);
	commit();
	get_ok("dev1", &stored);
	assert_identity_equal(&stored, &a);
}

static void test_create_device_with_given_keys(void **state)
{
	char primary[TWIN_SYM_KEY_B64_MAX + 1], secondary[TWIN_SYM_KEY_B64_MAX + 1], spec[512];
	twin_identity out, stored;

	(void)state;
	random_base64(32, primary);
	random_base64(20, secondary);
	snprintf(spec, sizeof(spec),
	         "{\"authentication\":{\"type\":\"sas\",\"symmetricKey\":"
	         "{\"primaryKey\":\"%s\",\"secondaryKey\":\"%s\"}}}",
	         primary, secondary);
	create_ok("dev1", spec, &out);
	assert_string_equal(out.primary_key, primary);
	assert_string_equal(out.secondary_key, secondary);
	commit();
	get_ok("dev1", &stored);
	assert_string_equal(stored.primary_key, primary);
	assert_string_equal(stored.secondary_key, secondary);
	assert_int_equal(stored.auth_type, TWIN_AUTH_SAS);
}

static twin_err create_with_keys(const char *id, const char *primary, const char *secondary,
                                 twin_identity *out, twin_error *err)
{
	char spec[512];

	snprintf(spec, sizeof(spec),
	         "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":%s,\"secondaryKey\":%s}}}",
	         primary, secondary);
	return create(id, spec, out, err);
}

static void test_create_device_rejects_bad_key(void **state)
{
	char good[128], key[128], b64[100];
	/* Each is long enough, but not well-formed base64. */
	static const char *const bad[] = {
	        "\"not base64!\"",
	        "\"QUJDREVGR0hJSktM!U5PUA==\"",         /* bad character */
	        "\"QUJDREVGR0hJSktMTU5PUA\"",           /* unpadded */
	        "\"QUJDREVG=0hJSktMTU5PUA==\"",         /* padding inside */
	        "\"QUJDREVGR0hJSktMTU5PUFFSU1RVV===\"", /* three pad characters, 21 bytes */
	        "\"QUJDREVGR0hJSktM TU5PUA=\"",         /* space */
	        "\"QUJDREVGR0hJSktMTU5-_A==\"",         /* base64url alphabet */
	        "12",
	        "true",
	        "{}",
	};
	twin_identity out;
	twin_error err;
	int n = 0;

	(void)state;
	random_base64(32, b64);
	snprintf(good, sizeof(good), "\"%s\"", b64);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_err(create_with_keys("dev1", bad[i], good, NULL, &err), TWIN_E_INVALID, &err,
		           400, 400004);
		assert_int_equal(create_with_keys("dev1", good, bad[i], NULL, &err),
		                 TWIN_E_INVALID);
	}
	/* Decoded length: 15 and 65 bytes refused, 16 and 64 accepted. */
	random_base64(15, b64);
	snprintf(key, sizeof(key), "\"%s\"", b64);
	assert_int_equal(create_with_keys("dev1", key, good, NULL, &err), TWIN_E_INVALID);
	assert_non_null(strstr(err.message, "primaryKey"));
	assert_int_equal(create_with_keys("dev1", good, key, NULL, &err), TWIN_E_INVALID);
	assert_non_null(strstr(err.message, "secondaryKey"));
	random_base64(65, b64);
	snprintf(key, sizeof(key), "\"%s\"", b64);
	assert_int_equal(create_with_keys("dev1", key, good, NULL, &err), TWIN_E_INVALID);
	assert_int_equal(create_with_keys("dev1", good, key, NULL, &err), TWIN_E_INVALID);
	commit();
	assert_int_equal(twin_device_get(db.s, "dev1", &out, &err), TWIN_E_NOT_FOUND);
	for (int bytes = TWIN_SYM_KEY_MIN_BYTES; bytes <= TWIN_SYM_KEY_MAX_BYTES; bytes += 48) {
		char id[8];

		random_base64(bytes, b64);
		snprintf(key, sizeof(key), "\"%s\"", b64);
		snprintf(id, sizeof(id), "ok%d", n++);
		assert_int_equal(create_with_keys(id, key, key, &out, &err), TWIN_OK);
		assert_string_equal(out.primary_key, b64);
		assert_base64_of(out.secondary_key, bytes);
	}
	assert_int_equal(n, 2);
}

static void test_create_device_empty_keys_are_generated(void **state)
{
	twin_identity a, b;

	(void)state;
	/* The Node SDK sends "" keys on create. */
	create_ok("dev1",
	          "{\"authentication\":{\"type\":\"sas\",\"symmetricKey\":"
	          "{\"primaryKey\":\"\",\"secondaryKey\":\"\"}}}",
	          &a);
	assert_base64_of(a.primary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_base64_of(a.secondary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_string_not_equal(a.primary_key, a.secondary_key);
	create_ok("dev2",
	          "{\"authentication\":{\"symmetricKey\":"
	          "{\"primaryKey\":null,\"secondaryKey\":null}}}",
	          &b);
	assert_base64_of(b.primary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_base64_of(b.secondary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_string_not_equal(a.primary_key, b.primary_key);
}

#define THUMB40 "0123456789abcdefABCDEF0123456789ABCDEF01"
#define THUMB64 "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"

static twin_err create_self_signed(const char *id, const char *primary, const char *secondary,
                                   twin_identity *out, twin_error *err)
{
	char spec[512];

	snprintf(spec, sizeof(spec),
	         "{\"authentication\":{\"type\":\"selfSigned\",\"x509Thumbprint\":"
	         "{\"primaryThumbprint\":%s,\"secondaryThumbprint\":%s}}}",
	         primary, secondary);
	return create(id, spec, out, err);
}

static void test_create_self_signed_device_with_thumbprints(void **state)
{
	static const char *const bad[] = {
	        "\"0123456789ABCDEF0123456789ABCDEF0123456\"",   /* 39 */
	        "\"0123456789ABCDEF0123456789ABCDEF012345678\"", /* 41 */
	        "\"0123456789ABCDEF0123456789ABCDEF0123456G\"",  /* non-hex */
	        "\"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDE\"",
	        "\"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0\"",
	        "40",
	};
	twin_identity out;
	twin_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_err(create_self_signed("dev1", bad[i], "null", NULL, &err), TWIN_E_INVALID,
		           &err, 400, 400004);
		assert_int_equal(create_self_signed("dev1", "\"" THUMB64 "\"", bad[i], NULL, &err),
		                 TWIN_E_INVALID);
	}
	/* selfSigned needs at least one thumbprint. */
	assert_int_equal(create_self_signed("dev1", "null", "null", NULL, &err), TWIN_E_INVALID);
	assert_int_equal(create_self_signed("dev1", "\"\"", "\"\"", NULL, &err), TWIN_E_INVALID);
	assert_int_equal(
	        create("dev1", "{\"authentication\":{\"type\":\"selfSigned\"}}", NULL, &err),
	        TWIN_E_INVALID);

	assert_int_equal(
	        create_self_signed("dev1", "\"" THUMB40 "\"", "\"" THUMB64 "\"", &out, &err),
	        TWIN_OK);
	assert_int_equal(out.auth_type, TWIN_AUTH_SELF_SIGNED);
	assert_int_equal(strlen(out.primary_thumbprint), 40);
	assert_string_equal(out.secondary_thumbprint, THUMB64);
	/* Keys belong to sas identities only, even when given. */
	assert_string_equal(out.primary_key, "");
	assert_string_equal(out.secondary_key, "");
	assert_int_equal(create("dev2",
	                        "{\"authentication\":{\"type\":\"selfSigned\",\"symmetricKey\":"
	                        "{\"primaryKey\":\"QUJDREVGR0hJSktMTU5PUA==\"},\"x509Thumbprint\":"
	                        "{\"secondaryThumbprint\":\"" THUMB64 "\"}}}",
	                        &out, &err),
	                 TWIN_OK);
	assert_string_equal(out.primary_key, "");
	assert_string_equal(out.secondary_key, "");
	assert_string_equal(out.primary_thumbprint, "");
	assert_string_equal(out.secondary_thumbprint, THUMB64);
	commit();
	get_ok("dev1", &out);
	assert_int_equal(out.auth_type, TWIN_AUTH_SELF_SIGNED);
	assert_string_equal(out.secondary_thumbprint, THUMB64);
	assert_string_equal(out.primary_key, "");
}

/* twin/registry.h: thumbprints are kept as "hex, upper case", so that the
 * case-insensitive comparison of PROTOCOL.md §1.3 can be a plain strcmp. */
static void test_thumbprints_stored_upper_case(void **state)
{
	twin_identity out;
	twin_error err;

	(void)state;
	assert_int_equal(create_self_signed("dev1", "\"" THUMB40 "\"", "null", &out, &err),
	                 TWIN_OK);
	commit();
	get_ok("dev1", &out);
	assert_string_equal(out.primary_thumbprint, "0123456789ABCDEFABCDEF0123456789ABCDEF01");
}

static void test_create_ca_and_none_devices(void **state)
{
	twin_identity out;
	twin_error err;
	cJSON *j;

	(void)state;
	create_ok("ca1",
	          "{\"authentication\":{\"type\":\"certificateAuthority\",\"symmetricKey\":"
	          "{\"primaryKey\":\"QUJDREVGR0hJSktMTU5PUA==\"},\"x509Thumbprint\":"
	          "{\"primaryThumbprint\":\"" THUMB40 "\"}}}",
	          &out);
	assert_int_equal(out.auth_type, TWIN_AUTH_CA);
	assert_string_equal(out.primary_key, "");
	assert_string_equal(out.secondary_key, "");
	assert_string_equal(out.primary_thumbprint, "");
	create_ok("none1", "{\"authentication\":{\"type\":\"none\"}}", &out);
	assert_int_equal(out.auth_type, TWIN_AUTH_NONE);
	assert_string_equal(out.primary_key, "");
	assert_string_equal(out.secondary_thumbprint, "");
	assert_int_equal(create("bad1", "{\"authentication\":{\"type\":\"x509\"}}", NULL, &err),
	                 TWIN_E_INVALID);
	assert_int_equal(create("bad2", "{\"authentication\":{\"type\":\"Sas\"}}", NULL, &err),
	                 TWIN_E_INVALID);
	assert_int_equal(create("bad3", "{\"authentication\":{\"type\":1}}", NULL, &err),
	                 TWIN_E_INVALID);
	assert_int_equal(create("bad4", "{\"authentication\":\"sas\"}", NULL, &err),
	                 TWIN_E_INVALID);
	commit();
	get_ok("ca1", &out);
	assert_int_equal(out.auth_type, TWIN_AUTH_CA);
	j = twin_identity_to_json(&out);
	test_assert_json(cJSON_GetObjectItemCaseSensitive(j, "authentication"),
	                 "{\"symmetricKey\":{\"primaryKey\":null,\"secondaryKey\":null},"
	                 "\"x509Thumbprint\":{\"primaryThumbprint\":null,\"secondaryThumbprint\":"
	                 "null},\"type\":\"certificateAuthority\"}");
	cJSON_Delete(j);
	get_ok("none1", &out);
	assert_int_equal(out.auth_type, TWIN_AUTH_NONE);
	assert_string_equal(twin_auth_type_name(out.auth_type), "none");
	assert_int_equal(twin_device_get(db.s, "bad1", &out, &err), TWIN_E_NOT_FOUND);
}

static void test_create_existing_device_fails_409(void **state)
{
	twin_identity original, again, stored;
	twin_error err = {0};
	char *before, *twin_before, *after, *twin_after;

	(void)state;
	create_ok("dev1", "{\"statusReason\":\"first\"}", &original);
	/* Within the same batch… */
	assert_err(create("dev1", NULL, &again, &err), TWIN_E_EXISTS, &err, 409, 409001);
	commit();
	before = identity_text("dev1");
	twin_before = test_twin_text(db.s, "dev1");
	/* …and after it was committed. */
	memset(&err, 0, sizeof(err));
	assert_err(create("dev1",
	                  "{\"status\":\"disabled\",\"statusReason\":\"second\",\"authentication\":"
	                  "{\"type\":\"none\"}}",
	                  &again, &err),
	           TWIN_E_EXISTS, &err, 409, 409001);
	assert_non_null(strstr(err.message, "dev1"));
	commit();
	get_ok("dev1", &stored);
	assert_identity_equal(&stored, &original);
	after = identity_text("dev1");
	twin_after = test_twin_text(db.s, "dev1");
	assert_string_equal(after, before);
	assert_string_equal(twin_after, twin_before);
	free(before);
	free(after);
	free(twin_before);
	free(twin_after);
}

static void test_create_device_creates_empty_twin(void **state)
{
	static const char never[] =
	        "{\"$metadata\":{\"$lastUpdated\":\"0001-01-01T00:00:00Z\"},\"$version\":1}";
	twin_error err = {0};
	cJSON *twin = NULL, *props;
	char *body = NULL;
	size_t len = 0;

	(void)state;
	create_ok("dev1", NULL, NULL);
	commit();
	assert_int_equal(twin_get(db.s, "dev1", &twin, &err), TWIN_OK);
	assert_string_equal(
	        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(twin, "deviceId")), "dev1");
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(twin, "version")) == 2.0);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(twin, "etag")),
	                    "AAAAAAAAAAE=");
	assert_string_equal(
	        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(twin, "deviceEtag")), "MQ==");
	test_assert_json(cJSON_GetObjectItemCaseSensitive(twin, "tags"), "{}");
	props = cJSON_GetObjectItemCaseSensitive(twin, "properties");
	test_assert_json(cJSON_GetObjectItemCaseSensitive(props, "desired"), never);
	test_assert_json(cJSON_GetObjectItemCaseSensitive(props, "reported"), never);
	cJSON_Delete(twin);
	assert_int_equal(twin_get_device_body(db.s, "dev1", &body, &len, NULL, &err), TWIN_OK);
	assert_string_equal(body, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
	assert_int_equal(len, strlen(body));
	free(body);
}

static void test_spec_device_id_mismatch_rejected(void **state)
{
	twin_identity out;
	twin_error err = {0};

	(void)state;
	assert_err(create("dev1", "{\"deviceId\":\"dev2\"}", NULL, &err), TWIN_E_INVALID, &err, 400,
	           400004);
	assert_int_equal(create("dev1", "{\"deviceId\":\"DEV1\"}", NULL, &err), TWIN_E_INVALID);
	assert_int_equal(create("dev1", "{\"deviceId\":1}", NULL, &err), TWIN_E_INVALID);
	assert_int_equal(create("dev1", "{\"deviceId\":null}", NULL, &err), TWIN_E_INVALID);
	assert_int_equal(twin_device_get(db.s, "dev1", &out, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_device_get(db.s, "dev2", &out, &err), TWIN_E_NOT_FOUND);
	create_ok("dev1", "{\"deviceId\":\"dev1\"}", NULL);
	commit();
	assert_int_equal(
	        update("dev1", "{\"deviceId\":\"dev2\",\"status\":\"disabled\"}", NULL, NULL, &err),
	        TWIN_E_INVALID);
	commit();
	get_ok("dev1", &out);
	assert_int_equal(out.enabled, 1);
	assert_int_equal(out.etag_counter, 1);
}

static void test_status_must_be_enabled_or_disabled(void **state)
{
	static const char *const bad[] = {"{\"status\":\"Enabled\"}", "{\"status\":\"DISABLED\"}",
	                                  "{\"status\":\"\"}",        "{\"status\":\"paused\"}",
	                                  "{\"status\":1}",           "{\"status\":null}",
	                                  "{\"status\":true}"};
	twin_identity out;
	twin_error err = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_err(create("dev1", bad[i], NULL, &err), TWIN_E_INVALID, &err, 400, 400004);
	}
	create_ok("dev1", "{\"status\":\"disabled\"}", &out);
	assert_int_equal(out.enabled, 0);
	create_ok("dev2", "{\"status\":\"enabled\"}", &out);
	assert_int_equal(out.enabled, 1);
	commit();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(update("dev1", bad[i], NULL, NULL, &err), TWIN_E_INVALID);
	commit();
	get_ok("dev1", &out);
	assert_int_equal(out.enabled, 0);
	assert_int_equal(out.etag_counter, 1);
}

static void test_status_reason_max_128(void **state)
{
	char reason[TWIN_STATUS_REASON_MAX + 2], spec[256];
	twin_identity out;
	twin_error err = {0};

	(void)state;
	memset(reason, 'r', TWIN_STATUS_REASON_MAX + 1);
	reason[TWIN_STATUS_REASON_MAX + 1] = '\0';
	snprintf(spec, sizeof(spec), "{\"statusReason\":\"%s\"}", reason);
	assert_err(create("dev1", spec, NULL, &err), TWIN_E_INVALID, &err, 400, 400004);
	assert_int_equal(create("dev1", "{\"statusReason\":5}", NULL, &err), TWIN_E_INVALID);
	reason[TWIN_STATUS_REASON_MAX] = '\0';
	snprintf(spec, sizeof(spec), "{\"statusReason\":\"%s\"}", reason);
	create_ok("dev1", spec, &out);
	assert_string_equal(out.status_reason, reason);
	commit();
	get_ok("dev1", &out);
	assert_string_equal(out.status_reason, reason);
	/* The same limit on update; the stored reason stays. */
	reason[TWIN_STATUS_REASON_MAX] = 'x';
	snprintf(spec, sizeof(spec), "{\"statusReason\":\"%s\"}", reason);
	assert_int_equal(update("dev1", spec, NULL, NULL, &err), TWIN_E_INVALID);
	commit();
	get_ok("dev1", &out);
	assert_int_equal(strlen(out.status_reason), TWIN_STATUS_REASON_MAX);
	assert_int_equal(out.etag_counter, 1);
	/* null clears it. */
	assert_int_equal(update("dev1", "{\"statusReason\":null}", NULL, &out, &err), TWIN_OK);
	assert_string_equal(out.status_reason, "");
}

static void test_get_unknown_device_404(void **state)
{
	twin_identity out;
	twin_error err = {0};
	cJSON *twin = (cJSON *)&err;
	char *body = (char *)&err;
	size_t len;

	(void)state;
	create_ok("dev1", NULL, NULL);
	commit();
	assert_err(twin_device_get(db.s, "dev2", &out, &err), TWIN_E_NOT_FOUND, &err, 404, 404001);
	assert_non_null(strstr(err.message, "dev2"));
	memset(&err, 0, sizeof(err));
	assert_err(twin_get(db.s, "dev2", &twin, &err), TWIN_E_NOT_FOUND, &err, 404, 404001);
	assert_null(twin);
	assert_int_equal(twin_get_device_body(db.s, "dev2", &body, &len, NULL, &err),
	                 TWIN_E_NOT_FOUND);
	assert_null(body);
	/* Ids differ by case. */
	assert_int_equal(twin_device_get(db.s, "DEV1", &out, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(update("dev2", "{}", NULL, NULL, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_device_delete(db.s, "dev2", NULL, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_device_set_connected(db.s, "dev2", 1, &err), TWIN_E_NOT_FOUND);
	commit();
	assert_int_equal(twin_device_get(db.s, "dev2", &out, &err), TWIN_E_NOT_FOUND);
}

static const char *member_string(const cJSON *obj, const char *name)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, name));

	if (v == NULL)
		fail_msg("member %s is not a string", name);
	return v;
}

static void test_update_device_changes_device_etag_not_twin_etag(void **state)
{
	char ts[TWIN_TIMESTAMP_MAX];
	twin_identity out, stored;
	twin_error err = {0};
	int64_t disabled_at;
	cJSON *twin = NULL;

	(void)state;
	create_ok("dev1", NULL, NULL);
	commit();
	test_now += 123456789;
	disabled_at = test_now;
	assert_int_equal(update("dev1",
	                        "{\"status\":\"disabled\",\"statusReason\":\"maintenance\"}", NULL,
	                        &out, &err),
	                 TWIN_OK);
	assert_int_equal(out.enabled, 0);
	assert_string_equal(out.status_reason, "maintenance");
	assert_int_equal(out.status_updated, disabled_at);
	assert_etag(&out, "Mg==");
	commit();
	get_ok("dev1", &stored);
	assert_identity_equal(&stored, &out);
	assert_int_equal(twin_get(db.s, "dev1", &twin, &err), TWIN_OK);
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(twin, "version")) == 2.0);
	assert_string_equal(member_string(twin, "etag"), "AAAAAAAAAAE=");
	assert_string_equal(member_string(twin, "deviceEtag"), "Mg==");
	assert_string_equal(member_string(twin, "status"), "disabled");
	assert_string_equal(member_string(twin, "statusReason"), "maintenance");
	twin_timestamp_format(disabled_at, ts);
	assert_string_equal(member_string(twin, "statusUpdateTime"), ts);
	cJSON_Delete(twin);
	/* A reason change alone moves the etag, not statusUpdateTime. */
	test_now += 1000;
	assert_int_equal(update("dev1", "{\"statusReason\":\"still\"}", NULL, &out, &err), TWIN_OK);
	assert_etag(&out, "Mw==");
	assert_int_equal(out.status_updated, disabled_at);
	assert_int_equal(out.enabled, 0);
}

static void test_update_device_if_match(void **state)
{
	twin_identity out, stored;
	twin_error err = {0};
	char *before;

	(void)state;
	create_ok("dev1", NULL, NULL);
	commit();
	assert_int_equal(update("dev1", "{\"statusReason\":\"a\"}", "*", &out, &err), TWIN_OK);
	assert_etag(&out, "Mg==");
	assert_int_equal(update("dev1", "{\"statusReason\":\"b\"}", "\"Mg==\"", &out, &err),
	                 TWIN_OK);
	assert_etag(&out, "Mw==");
	assert_int_equal(update("dev1", "{\"statusReason\":\"c\"}", "Mw==", &out, &err), TWIN_OK);
	assert_etag(&out, "NA==");
	commit();
	before = identity_text("dev1");
	memset(&err, 0, sizeof(err));
	assert_err(update("dev1", "{\"status\":\"disabled\",\"statusReason\":\"d\"}", "\"Mw==\"",
	                  NULL, &err),
	           TWIN_E_PRECONDITION, &err, 412, 412001);
	assert_int_equal(update("dev1", "{\"statusReason\":\"d\"}", "MQ==", NULL, &err),
	                 TWIN_E_PRECONDITION);
	/* The twin etag is not the device etag. */
	assert_int_equal(update("dev1", "{\"statusReason\":\"d\"}", "\"AAAAAAAAAAE=\"", NULL, &err),
	                 TWIN_E_PRECONDITION);
	commit();
	get_ok("dev1", &stored);
	assert_etag(&stored, "NA==");
	assert_string_equal(stored.status_reason, "c");
	assert_int_equal(stored.enabled, 1);
	{
		char *after = identity_text("dev1");

		assert_string_equal(after, before);
		free(after);
	}
	free(before);
}

static void test_update_device_regenerates_empty_keys(void **state)
{
	char p[TWIN_SYM_KEY_B64_MAX + 1], sec[TWIN_SYM_KEY_B64_MAX + 1], spec[512];
	twin_identity out, stored;
	twin_error err = {0};

	(void)state;
	random_base64(16, p);
	random_base64(16, sec);
	snprintf(spec, sizeof(spec),
	         "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":\"%s\",\"secondaryKey\":"
	         "\"%s\"}}}",
	         p, sec);
	create_ok("dev1", spec, NULL);
	commit();
	assert_int_equal(update("dev1",
	                        "{\"authentication\":{\"type\":\"sas\",\"symmetricKey\":"
	                        "{\"primaryKey\":\"\",\"secondaryKey\":\"\"}}}",
	                        NULL, &out, &err),
	                 TWIN_OK);
	assert_base64_of(out.primary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_base64_of(out.secondary_key, TWIN_SYM_KEY_GEN_BYTES);
	assert_string_not_equal(out.primary_key, out.secondary_key);
	assert_etag(&out, "Mg==");
	commit();
	get_ok("dev1", &stored);
	assert_string_equal(stored.primary_key, out.primary_key);
	assert_string_equal(stored.secondary_key, out.secondary_key);
}

static void test_update_device_keeps_absent_fields(void **state)
{
	twin_identity created, out, stored;
	twin_error err = {0};

	(void)state;
	create_ok("dev1", "{\"status\":\"disabled\",\"statusReason\":\"r\"}", &created);
	create_ok("x509",
	          "{\"authentication\":{\"type\":\"selfSigned\",\"x509Thumbprint\":"
	          "{\"primaryThumbprint\":\"" THUMB64 "\"}}}",
	          NULL);
	commit();
	/* No spec, an empty spec and broker-maintained fields change nothing
	 * but the device etag. */
	assert_int_equal(update("dev1", NULL, NULL, &out, &err), TWIN_OK);
	assert_int_equal(update("dev1", "{}", NULL, &out, &err), TWIN_OK);
	assert_int_equal(update("dev1",
	                        "{\"etag\":\"eHl6\",\"generationId\":\"1\",\"connectionState\":"
	                        "\"Connected\",\"statusUpdatedTime\":\"2020-01-01T00:00:00Z\","
	                        "\"lastActivityTime\":\"2020-01-01T00:00:00Z\","
	                        "\"cloudToDeviceMessageCount\":7}",
	                        NULL, &out, &err),
	                 TWIN_OK);
	assert_int_equal(out.etag_counter, 4);
	created.etag_counter = 4;
	assert_identity_equal(&out, &created);
	/* status alone keeps reason and keys; reason alone keeps status. */
	assert_int_equal(update("dev1", "{\"status\":\"enabled\"}", NULL, &out, &err), TWIN_OK);
	assert_int_equal(out.enabled, 1);
	assert_string_equal(out.status_reason, "r");
	assert_string_equal(out.primary_key, created.primary_key);
	assert_string_equal(out.secondary_key, created.secondary_key);
	assert_int_equal(update("dev1", "{\"statusReason\":\"s\"}", NULL, &out, &err), TWIN_OK);
	assert_int_equal(out.enabled, 1);
	assert_string_equal(out.status_reason, "s");
	assert_string_equal(out.primary_key, created.primary_key);
	assert_int_equal(update("x509", "{\"status\":\"disabled\"}", NULL, &out, &err), TWIN_OK);
	assert_int_equal(out.auth_type, TWIN_AUTH_SELF_SIGNED);
	assert_string_equal(out.primary_thumbprint, THUMB64);
	commit();
	get_ok("dev1", &stored);
	assert_string_equal(stored.generation_id, created.generation_id);
	assert_string_equal(stored.primary_key, created.primary_key);
	assert_int_equal(stored.auth_type, TWIN_AUTH_SAS);
	assert_int_equal(stored.connected, 0);
	assert_etag(&stored, "Ng==");
}

static void test_delete_device_deletes_twin(void **state)
{
	static const char rep[] = "{\"fw\":\"1.0\"}";
	twin_identity first, again, out;
	twin_error err = {0};
	cJSON *twin = NULL;
	char *body = NULL;
	size_t len = 0;

	(void)state;
	create_ok("dev1", NULL, &first);
	assert_int_equal(twin_patch_reported(db.s, "dev1", rep, strlen(rep), NULL, &err), TWIN_OK);
	create_ok("dev2", NULL, NULL);
	commit();
	assert_int_equal(twin_device_delete(db.s, "dev1", NULL, &err), TWIN_OK);
	commit();
	assert_err(twin_device_get(db.s, "dev1", &out, &err), TWIN_E_NOT_FOUND, &err, 404, 404001);
	assert_int_equal(twin_get(db.s, "dev1", &twin, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_get_device_body(db.s, "dev1", &body, &len, NULL, &err),
	                 TWIN_E_NOT_FOUND);
	assert_int_equal(twin_patch_reported(db.s, "dev1", rep, strlen(rep), NULL, &err),
	                 TWIN_E_NOT_FOUND);
	assert_int_equal(twin_device_delete(db.s, "dev1", NULL, &err), TWIN_E_NOT_FOUND);
	get_ok("dev2", &out); /* the neighbour is untouched */
	commit();
	create_ok("dev1", NULL, &again);
	commit();
	assert_string_not_equal(again.generation_id, first.generation_id);
	assert_string_not_equal(again.primary_key, first.primary_key);
	assert_int_equal(twin_get(db.s, "dev1", &twin, &err), TWIN_OK);
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(twin, "version")) == 2.0);
	assert_string_equal(member_string(twin, "etag"), "AAAAAAAAAAE=");
	cJSON_Delete(twin);
	assert_int_equal(twin_get_device_body(db.s, "dev1", &body, &len, NULL, &err), TWIN_OK);
	assert_string_equal(body, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
	free(body);
}

static void test_delete_device_if_match(void **state)
{
	twin_identity out;
	twin_error err = {0};

	(void)state;
	create_ok("dev1", NULL, NULL);
	commit();
	assert_int_equal(update("dev1", "{\"statusReason\":\"x\"}", NULL, NULL, &err), TWIN_OK);
	commit();
	assert_err(twin_device_delete(db.s, "dev1", "\"MQ==\"", &err), TWIN_E_PRECONDITION, &err,
	           412, 412001);
	assert_int_equal(twin_device_delete(db.s, "dev1", "MQ==", &err), TWIN_E_PRECONDITION);
	commit();
	get_ok("dev1", &out);
	assert_etag(&out, "Mg==");
	assert_int_equal(twin_device_delete(db.s, "dev1", "\"Mg==\"", &err), TWIN_OK);
	commit();
	assert_int_equal(twin_device_get(db.s, "dev1", &out, &err), TWIN_E_NOT_FOUND);
	create_ok("dev2", NULL, NULL);
	commit();
	assert_int_equal(twin_device_delete(db.s, "dev2", "*", &err), TWIN_OK);
	commit();
	assert_int_equal(twin_device_get(db.s, "dev2", &out, &err), TWIN_E_NOT_FOUND);
}

static void test_activity_is_a_system_field_that_only_moves_forward(void **state)
{
	twin_identity out;
	twin_error err = {0};
	char *before, *after;

	(void)state;
	create_ok("dev1", NULL, NULL);
	commit();
	before = test_twin_text(db.s, "dev1");
	assert_int_equal(twin_device_set_activity(db.s, "dev1", TEST_T0 + 100, &err), TWIN_OK);
	assert_int_equal(twin_device_set_activity(db.s, "dev1", TEST_T0 + 50, &err), TWIN_OK);
	commit();
	get_ok("dev1", &out);
	assert_int_equal(out.last_activity, TEST_T0 + 100); /* never backwards */
	assert_etag(&out, "MQ==");                          /* deviceEtag unchanged */
	after = test_twin_text(db.s, "dev1");
	assert_non_null(strstr(after, "\"etag\":\"AAAAAAAAAAE=\",")); /* twin etag too */
	assert_string_not_equal(before, after); /* only lastActivityTime moved */
	free(before);
	free(after);
	assert_int_equal(twin_device_set_activity(db.s, "nobody", TEST_T0, &err), TWIN_E_NOT_FOUND);
}

static void test_reset_connections_marks_every_device_disconnected(void **state)
{
	twin_identity out;
	twin_error err = {0};
	size_t count = 0;

	(void)state;
	create_ok("dev1", NULL, NULL);
	create_ok("dev2", NULL, NULL);
	create_ok("dev3", NULL, NULL);
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 1, &err), TWIN_OK);
	assert_int_equal(twin_device_set_connected(db.s, "dev3", 1, &err), TWIN_OK);
	commit();
	assert_int_equal(twin_registry_reset_connections(db.s, &count, &err), TWIN_OK);
	commit();
	assert_int_equal(count, 2);
	get_ok("dev1", &out);
	assert_int_equal(out.connected, 0);
	get_ok("dev3", &out);
	assert_int_equal(out.connected, 0);
	assert_int_equal(twin_registry_reset_connections(db.s, &count, &err), TWIN_OK);
	assert_int_equal(count, 0);
}

static void test_connection_state_is_a_system_field(void **state)
{
	char ts[TWIN_TIMESTAMP_MAX];
	twin_identity out;
	twin_error err = {0};
	int64_t connected_at;
	cJSON *twin = NULL;

	(void)state;
	create_ok("dev1", NULL, NULL);
	commit();
	test_now += 50000000;
	connected_at = test_now;
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 1, &err), TWIN_OK);
	commit();
	get_ok("dev1", &out);
	assert_int_equal(out.connected, 1);
	assert_int_equal(out.connection_state_updated, connected_at);
	assert_int_equal(out.last_activity, connected_at);
	assert_etag(&out, "MQ==");
	assert_int_equal(twin_get(db.s, "dev1", &twin, &err), TWIN_OK);
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(twin, "version")) == 2.0);
	assert_string_equal(member_string(twin, "etag"), "AAAAAAAAAAE=");
	assert_string_equal(member_string(twin, "deviceEtag"), "MQ==");
	assert_string_equal(member_string(twin, "connectionState"), "Connected");
	twin_timestamp_format(connected_at, ts);
	assert_string_equal(member_string(twin, "lastActivityTime"), ts);
	cJSON_Delete(twin);

	test_now += 70000000;
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 0, &err), TWIN_OK);
	commit();
	get_ok("dev1", &out);
	assert_int_equal(out.connected, 0);
	assert_int_equal(out.connection_state_updated, test_now);
	assert_int_equal(out.last_activity, connected_at);
	assert_etag(&out, "MQ==");
	assert_int_equal(twin_get(db.s, "dev1", &twin, &err), TWIN_OK);
	assert_string_equal(member_string(twin, "etag"), "AAAAAAAAAAE=");
	assert_string_equal(member_string(twin, "connectionState"), "Disconnected");
	assert_string_equal(member_string(twin, "lastActivityTime"), ts);
	cJSON_Delete(twin);
	/* Any non-zero value means connected. */
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 7, &err), TWIN_OK);
	get_ok("dev1", &out);
	assert_int_equal(out.connected, 1);
}

static void test_identity_json_shape(void **state)
{
	char ts[TWIN_TIMESTAMP_MAX], status_ts[TWIN_TIMESTAMP_MAX], activity_ts[TWIN_TIMESTAMP_MAX];
	char want[1024];
	twin_identity out;
	twin_error err = {0};
	cJSON *j;

	(void)state;
	create_ok("dev1",
	          "{\"authentication\":{\"symmetricKey\":{\"primaryKey\":"
	          "\"QUJDREVGR0hJSktMTU5PUA==\",\"secondaryKey\":\"UVJTVFVWV1hZWmFiY2RlZg==\"}}}",
	          &out);
	j = twin_identity_to_json(&out);
	assert_non_null(j);
	assert_string_equal(member_string(j, "deviceId"), "dev1");
	assert_string_equal(member_string(j, "generationId"), out.generation_id);
	assert_string_equal(member_string(j, "etag"), "MQ==");
	assert_string_equal(member_string(j, "connectionState"), "Disconnected");
	assert_string_equal(member_string(j, "status"), "enabled");
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "statusReason")));
	assert_string_equal(member_string(j, "connectionStateUpdatedTime"), "0001-01-01T00:00:00Z");
	assert_string_equal(member_string(j, "statusUpdatedTime"), "0001-01-01T00:00:00Z");
	assert_string_equal(member_string(j, "lastActivityTime"), "0001-01-01T00:00:00Z");
	assert_true(
	        cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "cloudToDeviceMessageCount")));
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
	                    j, "cloudToDeviceMessageCount")) == 0.0);
	test_assert_json(
	        cJSON_GetObjectItemCaseSensitive(j, "authentication"),
	        "{\"symmetricKey\":{\"primaryKey\":\"QUJDREVGR0hJSktMTU5PUA==\","
	        "\"secondaryKey\":\"UVJTVFVWV1hZWmFiY2RlZg==\"},\"x509Thumbprint\":"
	        "{\"primaryThumbprint\":null,\"secondaryThumbprint\":null},\"type\":\"sas\"}");
	test_assert_json(cJSON_GetObjectItemCaseSensitive(j, "capabilities"),
	                 "{\"iotEdge\":false}");
	cJSON_Delete(j);

	/* Set fields: reason string, each timestamp from its own event, in the
	 * 7-digit format. */
	commit();
	test_now += 10000001;
	assert_int_equal(update("dev1", "{\"status\":\"disabled\",\"statusReason\":\"why\"}", NULL,
	                        NULL, &err),
	                 TWIN_OK);
	twin_timestamp_format(test_now, status_ts);
	test_now += 20000002;
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 1, &err), TWIN_OK);
	twin_timestamp_format(test_now, activity_ts);
	test_now += 30000003;
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 0, &err), TWIN_OK);
	twin_timestamp_format(test_now, ts);
	get_ok("dev1", &out);
	j = twin_identity_to_json(&out);
	assert_string_equal(member_string(j, "statusReason"), "why");
	assert_string_equal(member_string(j, "status"), "disabled");
	assert_string_equal(member_string(j, "connectionState"), "Disconnected");
	assert_string_equal(member_string(j, "etag"), "Mg==");
	assert_int_equal(strlen(ts), strlen("2024-05-01T08:15:30.1234567Z"));
	assert_string_equal(member_string(j, "statusUpdatedTime"), status_ts);
	assert_string_equal(member_string(j, "lastActivityTime"), activity_ts);
	assert_string_equal(member_string(j, "connectionStateUpdatedTime"), ts);
	cJSON_Delete(j);
	assert_int_equal(twin_device_set_connected(db.s, "dev1", 1, &err), TWIN_OK);
	get_ok("dev1", &out);
	j = twin_identity_to_json(&out);
	assert_string_equal(member_string(j, "connectionState"), "Connected");
	cJSON_Delete(j);

	/* x509 identity: thumbprints given, keys null. */
	create_ok("x509",
	          "{\"authentication\":{\"type\":\"selfSigned\",\"x509Thumbprint\":"
	          "{\"primaryThumbprint\":\"" THUMB64 "\"}}}",
	          &out);
	j = twin_identity_to_json(&out);
	snprintf(want, sizeof(want),
	         "{\"symmetricKey\":{\"primaryKey\":null,\"secondaryKey\":null},\"x509Thumbprint\":"
	         "{\"primaryThumbprint\":\"%s\",\"secondaryThumbprint\":null},\"type\":"
	         "\"selfSigned\"}",
	         THUMB64);
	test_assert_json(cJSON_GetObjectItemCaseSensitive(j, "authentication"), want);
	cJSON_Delete(j);
}

static void test_rejected_identity_write_changes_nothing(void **state)
{
	static const char *const rejected[] = {
	        "{\"status\":\"disabled\",\"statusReason\":\"x\",\"authentication\":"
	        "{\"symmetricKey\":{\"primaryKey\":\"bad key\"}}}",
	        "{\"status\":\"disabled\",\"authentication\":{\"type\":\"selfSigned\"}}",
	        "{\"statusReason\":\"y\",\"authentication\":{\"type\":\"none\"},\"status\":"
	        "\"off\"}",
	        "{\"authentication\":{\"type\":\"kerberos\"}}",
	        "[]",
	};
	twin_identity created, stored;
	twin_error err = {0};
	char *id_before, *twin_before, *id_after, *twin_after;

	(void)state;
	create_ok("dev1", "{\"statusReason\":\"orig\"}", &created);
	commit();
	id_before = identity_text("dev1");
	twin_before = test_twin_text(db.s, "dev1");
	test_now += 10000000;
	for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_err(update("dev1", rejected[i], NULL, NULL, &err), TWIN_E_INVALID, &err, 400,
		           400004);
		/* Seen from inside the batch… */
		get_ok("dev1", &stored);
		assert_identity_equal(&stored, &created);
	}
	commit();
	/* …and after it. */
	get_ok("dev1", &stored);
	assert_identity_equal(&stored, &created);
	id_after = identity_text("dev1");
	twin_after = test_twin_text(db.s, "dev1");
	assert_string_equal(id_after, id_before);
	assert_string_equal(twin_after, twin_before);
	free(id_before);
	free(id_after);
	free(twin_before);
	free(twin_after);
}

static void test_reset_connections_counts_only_connected_devices(void **state)
{
	size_t count = 99;

	(void)state;
	create_ok("a", NULL, NULL);
	create_ok("b", NULL, NULL);
	create_ok("c", NULL, NULL);
	assert_int_equal(twin_device_set_connected(db.s, "a", 1, NULL), TWIN_OK);
	assert_int_equal(twin_device_set_connected(db.s, "b", 1, NULL), TWIN_OK);
	assert_int_equal(twin_device_set_connected(db.s, "b", 0, NULL), TWIN_OK);
	assert_int_equal(twin_device_set_connected(db.s, "c", 1, NULL), TWIN_OK);
	assert_int_equal(twin_device_delete(db.s, "c", NULL, NULL), TWIN_OK);
	assert_int_equal(twin_registry_reset_connections(db.s, &count, NULL), TWIN_OK);
	assert_int_equal(count, 1); /* a only: b disconnected, c deleted */
	assert_int_equal(twin_registry_reset_connections(db.s, &count, NULL), TWIN_OK);
	assert_int_equal(count, 0);
}

/* The ids on a listDevices page, "a,b,c", and its continuation token. */
static void list_page(const char *token, size_t max, char *ids, size_t n, char *next)
{
	twin_error err = {0};
	cJSON *page = NULL;
	const cJSON *d, *t;

	if (twin_device_list(db.s, token, max, &page, &err) != TWIN_OK)
		fail_msg("list: %s", err.message);
	ids[0] = '\0';
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(page, "devices"))
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(d, "deviceId");

		snprintf(ids + strlen(ids), n - strlen(ids), "%s%s", ids[0] ? "," : "",
		         id->valuestring);
	}
	t = cJSON_GetObjectItemCaseSensitive(page, "continuationToken");
	assert_true(cJSON_IsString(t) || cJSON_IsNull(t));
	snprintf(next, 64, "%s", cJSON_IsString(t) ? t->valuestring : "");
	cJSON_Delete(page);
}

static void test_list_devices_pages_in_id_order(void **state)
{
	char ids[256], token[64], token2[64];

	(void)state;
	create_ok("c", NULL, NULL);
	create_ok("a", NULL, NULL);
	create_ok("b10", NULL, NULL);
	create_ok("b", NULL, NULL);
	create_ok("d", NULL, NULL);
	list_page(NULL, 2, ids, sizeof(ids), token);
	assert_string_equal(ids, "a,b");
	assert_true(token[0]);
	list_page(token, 2, ids, sizeof(ids), token2);
	assert_string_equal(ids, "b10,c");
	list_page(token2, 2, ids, sizeof(ids), token);
	assert_string_equal(ids, "d");
	assert_string_equal(token, ""); /* the last page */
	list_page(NULL, TWIN_LIST_MAX, ids, sizeof(ids), token);
	assert_string_equal(ids, "a,b,b10,c,d");
	assert_string_equal(token, "");
}

static void test_list_devices_continues_after_a_deleted_device(void **state)
{
	char ids[256], token[64];

	(void)state;
	create_ok("a", NULL, NULL);
	create_ok("b", NULL, NULL);
	create_ok("c", NULL, NULL);
	list_page(NULL, 2, ids, sizeof(ids), token);
	assert_int_equal(twin_device_delete(db.s, "b", NULL, NULL), TWIN_OK);
	list_page(token, 2, ids, sizeof(ids), token);
	assert_string_equal(ids, "c");
}

static void test_list_devices_of_an_empty_registry(void **state)
{
	char ids[16], token[64];

	(void)state;
	list_page(NULL, 5, ids, sizeof(ids), token);
	assert_string_equal(ids, "");
	assert_string_equal(token, "");
}

static void test_list_devices_refuses_bad_max_and_tokens(void **state)
{
	const char *bad[] = {"%%%%", "YQ", "////", "AAAA", "YS9i"}; /* YS9i = "a/b" */
	twin_error err = {0};
	cJSON *page = (cJSON *)1;

	(void)state;
	assert_int_equal(twin_device_list(db.s, NULL, 0, &page, &err), TWIN_E_INVALID);
	assert_null(page);
	assert_int_equal(twin_device_list(db.s, NULL, TWIN_LIST_MAX + 1, &page, &err),
	                 TWIN_E_INVALID);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(twin_device_list(db.s, bad[i], 5, &page, &err), TWIN_E_INVALID);
		assert_non_null(strstr(err.message, "continuationToken"));
	}
}

/* The stored form of an identity (store/registry_record.c). */

static twin_identity full_identity(void)
{
	twin_identity id;

	memset(&id, 0, sizeof(id));
	memset(id.device_id, 'd', TWIN_DEVICE_ID_MAX);
	strcpy(id.generation_id, "638012345678901234");
	id.etag_counter = 7;
	id.enabled = 1;
	memset(id.status_reason, 'r', TWIN_STATUS_REASON_MAX);
	id.status_updated = 1234567;
	id.auth_type = TWIN_AUTH_CA;
	memset(id.primary_key, 'k', TWIN_SYM_KEY_B64_MAX);
	memset(id.secondary_key, 'K', TWIN_SYM_KEY_B64_MAX);
	memset(id.primary_thumbprint, 'A', TWIN_THUMBPRINT_MAX);
	memset(id.secondary_thumbprint, 'B', TWIN_THUMBPRINT_MAX);
	id.connected = 1;
	id.connection_state_updated = -5;
	id.last_activity = INT64_MAX;
	memset(id.model_id, 'm', TWIN_MODEL_ID_MAX);
	return id;
}

static void test_identity_record_round_trips_every_field_at_its_maximum(void **state)
{
	unsigned char rec[REGISTRY_RECORD_MAX];
	twin_identity id = full_identity(), back;
	MDB_val v = {registry_record_encode(&id, rec), rec};

	(void)state;
	assert_true(v.mv_size <= REGISTRY_RECORD_MAX);
	assert_int_equal(registry_record_decode(&v, &back, NULL), TWIN_OK);
	assert_identity_equal(&back, &id);
}

static void test_identity_record_is_as_long_as_its_strings(void **state)
{
	unsigned char rec[REGISTRY_RECORD_MAX];
	twin_identity id;
	twin_error err;
	MDB_val v;

	(void)state;
	assert_int_equal(twin_device_get(db.s, "d-sas", &id, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_device_create(db.s, "d-sas", NULL, NULL, &err), TWIN_OK);
	assert_int_equal(twin_device_get(db.s, "d-sas", &id, &err), TWIN_OK);
	v.mv_size = registry_record_encode(&id, rec);
	v.mv_data = rec;
	/* Two 44-character keys, a 5-character id and the numbers. */
	assert_true(v.mv_size < 200);
}

static void test_identity_record_of_format_1_is_still_read(void **state)
{
	identity_record_v1 old;
	twin_identity back;
	MDB_val v = {sizeof(old), &old};

	(void)state;
	memset(&old, 0, sizeof(old));
	old.format = REGISTRY_FORMAT_1;
	old.id = full_identity();
	assert_int_equal(registry_record_decode(&v, &back, NULL), TWIN_OK);
	assert_identity_equal(&back, &old.id);
	v.mv_size--;
	assert_int_equal(registry_record_decode(&v, &back, NULL), TWIN_E_STORAGE);
}

static void test_identity_record_cut_or_padded_is_refused(void **state)
{
	unsigned char rec[REGISTRY_RECORD_MAX + 1];
	twin_identity id = full_identity(), back;
	size_t n = registry_record_encode(&id, rec);
	MDB_val v = {0, rec};

	(void)state;
	for (v.mv_size = 0; v.mv_size < n; v.mv_size++)
		assert_int_equal(registry_record_decode(&v, &back, NULL), TWIN_E_STORAGE);
	v.mv_size = n + 1;
	assert_int_equal(registry_record_decode(&v, &back, NULL), TWIN_E_STORAGE);
	rec[0] ^= 0x40; /* another format tag */
	v.mv_size = n;
	assert_int_equal(registry_record_decode(&v, &back, NULL), TWIN_E_STORAGE);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_device_id_charset_and_length),
	        T(test_create_device_defaults),
	        T(test_create_device_with_given_keys),
	        T(test_create_device_rejects_bad_key),
	        T(test_create_device_empty_keys_are_generated),
	        T(test_create_self_signed_device_with_thumbprints),
	        T(test_thumbprints_stored_upper_case),
	        T(test_create_ca_and_none_devices),
	        T(test_create_existing_device_fails_409),
	        T(test_create_device_creates_empty_twin),
	        T(test_spec_device_id_mismatch_rejected),
	        T(test_status_must_be_enabled_or_disabled),
	        T(test_status_reason_max_128),
	        T(test_get_unknown_device_404),
	        T(test_update_device_changes_device_etag_not_twin_etag),
	        T(test_update_device_if_match),
	        T(test_update_device_regenerates_empty_keys),
	        T(test_update_device_keeps_absent_fields),
	        T(test_delete_device_deletes_twin),
	        T(test_delete_device_if_match),
	        T(test_connection_state_is_a_system_field),
	        T(test_activity_is_a_system_field_that_only_moves_forward),
	        T(test_reset_connections_marks_every_device_disconnected),
	        T(test_identity_json_shape),
	        T(test_rejected_identity_write_changes_nothing),
	        T(test_reset_connections_counts_only_connected_devices),
	        T(test_list_devices_pages_in_id_order),
	        T(test_list_devices_continues_after_a_deleted_device),
	        T(test_list_devices_of_an_empty_registry),
	        T(test_list_devices_refuses_bad_max_and_tokens),
	        T(test_identity_record_round_trips_every_field_at_its_maximum),
	        T(test_identity_record_is_as_long_as_its_strings),
	        T(test_identity_record_of_format_1_is_still_read),
	        T(test_identity_record_cut_or_padded_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
