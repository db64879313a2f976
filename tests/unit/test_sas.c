/*
 * test_sas.c - the CONNECT username and SAS token (PROTOCOL.md §1.1, §1.2,
 * twin/sas.h), one test per rule.
 *
 * Wire compatibility is proven with tokens that did not come from our own
 * code: the NODE_* strings were produced by the official Azure IoT Node SDK
 * (azure-iot-device 1.18.4, SharedAccessSignature.create) and every
 * signature below was recomputed with the OpenSSL command line, e.g.
 *   printf 'myhub.azure-devices.net%%2Fdevices%%2Fdev1\n1735689600' |
 *     openssl dgst -sha256 -mac HMAC -macopt hexkey:000102…1f -binary | base64
 * so a verifier that only agrees with twin_sas_make cannot pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/sas.h"

#define HOST "myhub.azure-devices.net"
#define SE   1735689600
#define NOW  (SE - 3600)

/* Key bytes 00 01 … 1f and ff fe … e0. */
static const char K1[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
static const char K2[] = "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=";

/* Node SDK, device dev1, key K1. */
#define NODE_DEV                                                                                   \
	"SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1"                        \
	"&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D&se=1735689600"
/* Node SDK, module dev1/mod-A, key K1. */
#define NODE_MOD                                                                                   \
	"SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fmod-A"      \
	"&sig=ye0BNMHG25zDs8jPJbaqEpdy3THRBg6ihHkRuX5Qyjs%3D&se=1735689600"
/* Node SDK, device "d*(x)!'+ %", key K1: '*' is %2a, lower case. */
#define NODE_ESCAPES                                                                               \
	"SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fd%2a%28x%29%21%27%2B%20%25"  \
	"&sig=rIiuht6klJJ1GKY2iesA0ouU9l3w13Jm8ZIKPIRYvD8%3D&se=1735689600"
/* Node SDK, policy "device" on the hub, key K2: skn comes before se. */
#define NODE_POLICY                                                                                \
	"SharedAccessSignature sr=myhub.azure-devices.net"                                         \
	"&sig=yn4%2Bi7cR5Av4yHlIKSWmTm4weYUEnrHgcVPFTiHzp54%3D"                                    \
	"&skn=device&se=1735689600"

static const char *const KEYS_K1[] = {K1};
static const char TARGET_DEV1[] = HOST "/devices/dev1";

/* Parse and verify password against target with keys at NOW. */
static twin_err check(const char *password, const char *const keys[], size_t nkeys,
                      const char *target, int64_t now, twin_error *err)
{
	twin_sas t;
	twin_err rc = twin_sas_parse(password, &t, err);

	return rc == TWIN_OK ? twin_sas_verify(&t, keys, nkeys, target, now, err) : rc;
}

static twin_err check_k1(const char *password, const char *target)
{
	return check(password, KEYS_K1, 1, target, NOW, NULL);
}

/* Assert that password fails to parse with a message containing what. */
static void assert_parse_refused(const char *password, const char *what)
{
	twin_sas t;
	twin_error err;

	assert_int_equal(twin_sas_parse(password, &t, &err), TWIN_E_INVALID);
	if (strstr(err.message, what) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", password, err.message, what);
}

/* Assert that password parses but fails verification with a message
 * containing what. */
static void assert_verify_refused(const char *password, const char *target, const char *what)
{
	twin_sas t;
	twin_error err;

	assert_int_equal(twin_sas_parse(password, &t, &err), TWIN_OK);
	assert_int_equal(twin_sas_verify(&t, KEYS_K1, 1, target, NOW, &err), TWIN_E_INVALID);
	if (strstr(err.message, what) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", password, err.message, what);
}

static char *make(const char *resource, const char *key, const char *policy, int64_t se)
{
	char *token = NULL;

	assert_int_equal(twin_sas_make(resource, key, policy, se, &token, NULL), TWIN_OK);
	assert_non_null(token);
	return token;
}

/* ---- Wire compatibility --------------------------------------------------- */

static void test_sas_node_sdk_token_verifies(void **state)
{
	(void)state;
	assert_int_equal(check_k1(NODE_DEV, TARGET_DEV1), TWIN_OK);
	assert_int_equal(check_k1(NODE_MOD, HOST "/devices/dev1/modules/mod-A"), TWIN_OK);
	assert_int_equal(check_k1(NODE_ESCAPES, HOST "/devices/d*(x)!'+ %"), TWIN_OK);
}

static void test_sas_make_matches_node_sdk_byte_for_byte(void **state)
{
	char *t;

	(void)state;
	t = make(HOST "/devices/dev1", K1, NULL, SE);
	assert_string_equal(t, NODE_DEV);
	free(t);
	t = make(HOST "/devices/dev1/modules/mod-A", K1, "", SE);
	assert_string_equal(t, NODE_MOD);
	free(t);
	t = make(HOST "/devices/d*(x)!'+ %", K1, NULL, SE);
	assert_string_equal(t, NODE_ESCAPES);
	free(t);
}

static void test_sas_make_policy_token_puts_skn_before_se(void **state)
{
	char *t;

	(void)state;
	t = make(HOST, K2, "device", SE);
	assert_string_equal(t, NODE_POLICY);
	free(t);
}

static void test_sas_made_token_verifies(void **state)
{
	char *t;
	twin_error err;

	(void)state;
	t = make(HOST "/devices/dev-7/modules/m.1", K2, NULL, NOW + 60);
	assert_int_equal(check(t, (const char *const[]){K2}, 1, HOST "/devices/dev-7/modules/m.1",
	                       NOW, &err),
	                 TWIN_OK);
	free(t);
}

static void test_sas_policy_token_verifies_with_policy_key(void **state)
{
	twin_sas t;

	(void)state;
	assert_int_equal(twin_sas_parse(NODE_POLICY, &t, NULL), TWIN_OK);
	assert_true(t.has_skn);
	assert_string_equal(t.skn, "device");
	assert_int_equal(twin_sas_verify(&t, (const char *const[]){K2}, 1, TARGET_DEV1, NOW, NULL),
	                 TWIN_OK);
}

/* ---- Keys (§1.2 steps 4, 5) ----------------------------------------------- */

static void test_sas_secondary_key_accepted(void **state)
{
	(void)state;
	assert_int_equal(check(NODE_DEV, (const char *const[]){K2, K1}, 2, TARGET_DEV1, NOW, NULL),
	                 TWIN_OK);
}

static void test_sas_wrong_key_refused(void **state)
{
	twin_error err;

	(void)state;
	assert_int_equal(check(NODE_DEV, (const char *const[]){K2}, 1, TARGET_DEV1, NOW, &err),
	                 TWIN_E_INVALID);
	assert_non_null(strstr(err.message, "signature"));
	assert_int_equal(check(NODE_DEV, NULL, 0, TARGET_DEV1, NOW, NULL), TWIN_E_INVALID);
}

static void test_sas_null_empty_and_invalid_keys_skipped(void **state)
{
	(void)state;
	assert_int_equal(check(NODE_DEV, (const char *const[]){NULL, "", "not base64!", "AAAA", K1},
	                       5, TARGET_DEV1, NOW, NULL),
	                 TWIN_OK);
	assert_int_equal(
	        check(NODE_DEV, (const char *const[]){NULL, "", "%%%"}, 3, TARGET_DEV1, NOW, NULL),
	        TWIN_E_INVALID);
}

/* ---- Expiry (§1.2 step 2) ------------------------------------------------- */

static void test_sas_expired_when_se_equals_now_refused(void **state)
{
	twin_error err;

	(void)state;
	assert_int_equal(check(NODE_DEV, KEYS_K1, 1, TARGET_DEV1, SE, &err), TWIN_E_INVALID);
	assert_non_null(strstr(err.message, "expired"));
	assert_int_equal(check(NODE_DEV, KEYS_K1, 1, TARGET_DEV1, SE + 1, NULL), TWIN_E_INVALID);
}

static void test_sas_se_in_the_future_accepted(void **state)
{
	(void)state;
	assert_int_equal(check(NODE_DEV, KEYS_K1, 1, TARGET_DEV1, SE - 1, NULL), TWIN_OK);
}

/* ---- Signature covers raw sr and se (§1.2 step 3) ------------------------- */

static void test_sas_tampered_sr_refused(void **state)
{
	(void)state;
	assert_verify_refused("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev2"
	                      "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D&se=1735689600",
	                      HOST "/devices/dev2", "signature");
	/* Same decoded resource, different raw bytes: signed raw, so refused. */
	assert_verify_refused("SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdev1"
	                      "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D&se=1735689600",
	                      TARGET_DEV1, "signature");
}

static void test_sas_tampered_se_refused(void **state)
{
	(void)state;
	assert_verify_refused("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1"
	                      "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D&se=1735689601",
	                      TARGET_DEV1, "signature");
	/* Leading zero: same value, different raw se. */
	assert_verify_refused("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1"
	                      "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D&se=01735689600",
	                      TARGET_DEV1, "signature");
}

static void test_sas_tampered_sig_refused(void **state)
{
	(void)state;
	assert_verify_refused("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1"
	                      "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvKa4UqltWDa0%3D&se=1735689600",
	                      TARGET_DEV1, "signature");
}

/* ---- Every SDK encoding (§1.2) -------------------------------------------- */

static void test_sas_sr_lower_case_escapes_accepted(void **state)
{
	(void)state;
	/* sig and its %2F escape: openssl over "…%2fdevices%2fdev1\n1735689600". */
	assert_int_equal(
	        check_k1("SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdev1"
	                 "&sig=sAjHLj8t7QmTn9VNoDBneqbtGEarnAopEjuUa%2f6BmM0%3d&se=1735689600",
	                 TARGET_DEV1),
	        TWIN_OK);
}

static void test_sas_sr_unencoded_accepted(void **state)
{
	(void)state;
	assert_int_equal(
	        check_k1("SharedAccessSignature sr=myhub.azure-devices.net/devices/dev1"
	                 "&sig=65y4mv9lnTAUD9r271VS1tOCDszO9kbW474qEmUXilY%3D&se=1735689600",
	                 TARGET_DEV1),
	        TWIN_OK);
}

static void test_sas_sig_unencoded_accepted(void **state)
{
	(void)state;
	assert_int_equal(
	        check_k1("SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdev1"
	                 "&sig=sAjHLj8t7QmTn9VNoDBneqbtGEarnAopEjuUa/6BmM0=&se=1735689600",
	                 TARGET_DEV1),
	        TWIN_OK);
}

static void test_sas_resource_compared_case_insensitively(void **state)
{
	(void)state;
	/* A lower-cased resource (old samples) for a mixed-case hub and id. */
	assert_int_equal(
	        check_k1("SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdev1"
	                 "&sig=sAjHLj8t7QmTn9VNoDBneqbtGEarnAopEjuUa%2F6BmM0%3D&se=1735689600",
	                 "MyHub.azure-devices.net/devices/Dev1"),
	        TWIN_OK);
	/* And an upper-cased one. */
	assert_int_equal(
	        check_k1("SharedAccessSignature sr=MYHUB.azure-devices.net%2fdevices%2fDEV1"
	                 "&sig=qf0Lae81l1LH879hspPYCwmhXkJDQkaXKIVbq8VVkNc%3D&se=1735689600",
	                 TARGET_DEV1),
	        TWIN_OK);
}

/* ---- Resource is a segment prefix of the target (§1.2 step 6) ------------- */

static void test_sas_device_resource_covers_its_modules(void **state)
{
	char *t = make(HOST "/devices/d1", K1, NULL, SE);

	(void)state;
	assert_int_equal(check_k1(t, HOST "/devices/d1"), TWIN_OK);
	assert_int_equal(check_k1(t, HOST "/devices/d1/modules/m"), TWIN_OK);
	free(t);
}

static void test_sas_resource_does_not_cover_longer_id(void **state)
{
	char *t = make(HOST "/devices/d1", K1, NULL, SE);

	(void)state;
	assert_verify_refused(t, HOST "/devices/d10", "resource");
	assert_verify_refused(t, HOST "/devices/d", "resource");
	assert_verify_refused(t, "other.azure-devices.net/devices/d1", "resource");
	free(t);
}

static void test_sas_module_resource_does_not_cover_its_device(void **state)
{
	(void)state;
	assert_verify_refused(NODE_MOD, TARGET_DEV1, "resource");
	assert_verify_refused(NODE_MOD, HOST "/devices/dev1/modules/mod-AB", "resource");
}

static void test_sas_hub_resource_covers_every_device(void **state)
{
	char *hub = make(HOST, K1, "device", SE),
	     *devices = make(HOST "/devices", K1, "device", SE);
	char *slash = make(HOST "/devices/d1/", K1, NULL, SE);

	(void)state;
	assert_int_equal(check_k1(hub, TARGET_DEV1), TWIN_OK);
	assert_int_equal(check_k1(devices, HOST "/devices/x/modules/y"), TWIN_OK);
	/* A trailing '/' is not a segment boundary of the target. */
	assert_verify_refused(slash, HOST "/devices/d1", "resource");
	free(hub);
	free(devices);
	free(slash);
}

/* ---- Token syntax (§1.2 step 1) ------------------------------------------- */

static void test_sas_parse_keeps_raw_and_decoded_fields(void **state)
{
	twin_sas t;

	(void)state;
	assert_int_equal(twin_sas_parse("SharedAccessSignature se=0001735689600&skn=my%20policy"
	                                "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D"
	                                "&sr=h%2Fdevices%2fd%2B1",
	                                &t, NULL),
	                 TWIN_OK);
	assert_string_equal(t.sr_raw, "h%2Fdevices%2fd%2B1");
	assert_string_equal(t.sr, "h/devices/d+1");
	assert_string_equal(t.se_raw, "0001735689600");
	assert_int_equal(t.se, SE);
	assert_true(t.has_skn);
	assert_string_equal(t.skn, "my policy");
	assert_int_equal(t.sig[0], 0xb9);
	assert_int_equal(t.sig[31], 0xad);
}

static void test_sas_fields_in_any_order(void **state)
{
	(void)state;
	assert_int_equal(check_k1("SharedAccessSignature se=1735689600"
	                          "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D"
	                          "&sr=myhub.azure-devices.net%2Fdevices%2Fdev1",
	                          TARGET_DEV1),
	                 TWIN_OK);
}

static void test_sas_repeated_field_refused(void **state)
{
	(void)state;
	assert_parse_refused(NODE_DEV "&sr=myhub.azure-devices.net%2Fdevices%2Fdev1", "repeated");
	assert_parse_refused(NODE_DEV "&se=1735689600", "repeated");
	assert_parse_refused(NODE_DEV "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D",
	                     "repeated");
	assert_parse_refused(NODE_POLICY "&skn=device", "repeated");
}

static void test_sas_unknown_field_ignored(void **state)
{
	(void)state;
	assert_int_equal(check_k1(NODE_DEV "&foo=bar&foo=%zz&bare&&", TARGET_DEV1), TWIN_OK);
	assert_int_equal(
	        check_k1("SharedAccessSignature x=1&sr=myhub.azure-devices.net%2Fdevices%2Fdev1"
	                 "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D&se=1735689600",
	                 TARGET_DEV1),
	        TWIN_OK);
}

static void test_sas_missing_field_refused(void **state)
{
	(void)state;
	assert_parse_refused(
	        "SharedAccessSignature sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D"
	        "&se=1735689600",
	        "no sr");
	assert_parse_refused("SharedAccessSignature sr=h&se=1735689600", "no sig");
	assert_parse_refused("SharedAccessSignature sr=h"
	                     "&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D",
	                     "no se");
	assert_parse_refused("SharedAccessSignature ", "no sr");
	assert_parse_refused(NULL, "prefix");
}

static void test_sas_empty_field_refused(void **state)
{
	(void)state;
	assert_parse_refused(
	        "SharedAccessSignature sr=&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D"
	        "&se=1735689600",
	        "sr is empty");
	assert_parse_refused(
	        "SharedAccessSignature sr&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%3D"
	        "&se=1735689600",
	        "sr is empty");
	assert_parse_refused(NODE_DEV "&skn=", "skn is empty");
	assert_parse_refused("SharedAccessSignature sr=h&sig=&se=1", "sig");
}

static void test_sas_prefix_must_be_exact(void **state)
{
	(void)state;
	assert_parse_refused("SharedAccessSignaturesr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4Uq"
	                     "ltWDa0%3D&se=1735689600",
	                     "prefix");
	assert_parse_refused("SharedAccessSignature  sr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4Uq"
	                     "ltWDa0%3D&se=1735689600",
	                     "one space");
	assert_parse_refused("sharedaccesssignature sr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4Uq"
	                     "ltWDa0%3D&se=1735689600",
	                     "prefix");
	assert_parse_refused("SharedAccessSignature\tsr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4Uq"
	                     "ltWDa0%3D&se=1735689600",
	                     "prefix");
	assert_parse_refused("", "prefix");
}

static void test_sas_se_must_be_digits_fitting_int64(void **state)
{
	static const char *const bad[] = {
	        "",           "+1735689600", "-1",  " 1735689600", "1735689600 ",
	        "17356896OO", "1.5",         "1e9", "0x10",        "%31"};
	char password[256];
	twin_sas t;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(password, sizeof(password),
		         "SharedAccessSignature "
		         "sr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%%3D"
		         "&se=%s",
		         bad[i]);
		assert_parse_refused(password, "se");
	}
	assert_parse_refused("SharedAccessSignature sr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4U"
	                     "qltWDa0%3D&se=9223372036854775808",
	                     "out of range");
	assert_parse_refused("SharedAccessSignature sr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4U"
	                     "qltWDa0%3D&se=000000000000000000001",
	                     "digits");
	assert_int_equal(twin_sas_parse("SharedAccessSignature sr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfI"
	                                "M2egsvka4UqltWDa0%3D&se=9223372036854775807",
	                                &t, NULL),
	                 TWIN_OK);
	assert_true(t.se == INT64_MAX);
}

static void test_sas_invalid_percent_escape_refused(void **state)
{
	(void)state;
	assert_parse_refused("SharedAccessSignature sr=h%2&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4U"
	                     "qltWDa0%3D&se=1",
	                     "percent escape");
	assert_parse_refused(
	        "SharedAccessSignature sr=h%zzx&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4U"
	        "qltWDa0%3D&se=1",
	        "percent escape");
	assert_parse_refused("SharedAccessSignature sr=h%&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4U"
	                     "qltWDa0%3D&se=1",
	                     "percent escape");
	assert_parse_refused("SharedAccessSignature sr=h&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4U"
	                     "qltWDa0%3&se=1",
	                     "percent escape");
	assert_parse_refused(NODE_DEV "&skn=a%g1", "percent escape");
}

static void test_sas_decoded_nul_refused(void **state)
{
	(void)state;
	assert_parse_refused(
	        "SharedAccessSignature sr=h%00x&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4U"
	        "qltWDa0%3D&se=1",
	        "%00");
	assert_parse_refused(NODE_DEV "&skn=a%00", "%00");
}

static void test_sas_sig_must_be_base64_of_32_bytes(void **state)
{
	static const char *const bad[] = {
	        "uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0",      /* no padding */
	        "uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0==",    /* too much */
	        "uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWD=0=",     /* '=' inside */
	        "uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4Uqlt-Da0=",     /* base64url */
	        "uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0A=AAA", /* '=' mid-string */
	        "uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltW",         /* 30 bytes */
	        "uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0AAAAA", /* 36 bytes */
	        "uTALa8FnUUzTnR04 dkAPhRSjfIM2egsvka4UqltWDa0=",    /* space */
	        "uTA=La8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0",     /* padding, then more */
	};
	char password[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(password, sizeof(password), "SharedAccessSignature sr=h&sig=%s&se=1",
		         bad[i]);
		assert_parse_refused(password, "sig");
	}
}

static void test_sas_overlong_token_refused(void **state)
{
	char *password = malloc(TWIN_SAS_TOKEN_MAX + 64), *sr = malloc(TWIN_SAS_SR_MAX + 2);

	(void)state;
	memset(sr, 'a', TWIN_SAS_SR_MAX + 1);
	sr[TWIN_SAS_SR_MAX + 1] = '\0';
	snprintf(password, TWIN_SAS_TOKEN_MAX + 64,
	         "SharedAccessSignature sr=%s&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%%3D"
	         "&se=1",
	         sr);
	assert_parse_refused(password, "sr is longer");
	sr[TWIN_SAS_SR_MAX] = '\0';
	snprintf(password, TWIN_SAS_TOKEN_MAX + 64,
	         "SharedAccessSignature sr=%s&sig=uTALa8FnUUzTnR04dkAPhRSjfIM2egsvka4UqltWDa0%%3D"
	         "&se=1",
	         sr);
	assert_int_equal(twin_sas_parse(password, &(twin_sas){0}, NULL), TWIN_OK);
	memset(password, 'x', TWIN_SAS_TOKEN_MAX + 63);
	memcpy(password, "SharedAccessSignature ", 22);
	password[TWIN_SAS_TOKEN_MAX + 63] = '\0';
	assert_parse_refused(password, "longer than");
	free(password);
	free(sr);
}

/* ---- Target and generator ------------------------------------------------- */

static void test_sas_target_for_device_and_module(void **state)
{
	char out[TWIN_SAS_TARGET_MAX];

	(void)state;
	assert_int_equal(twin_sas_target(out, sizeof(out), HOST, "dev1", NULL, NULL), TWIN_OK);
	assert_string_equal(out, HOST "/devices/dev1");
	assert_int_equal(twin_sas_target(out, sizeof(out), HOST, "dev1", "", NULL), TWIN_OK);
	assert_string_equal(out, HOST "/devices/dev1");
	assert_int_equal(twin_sas_target(out, sizeof(out), HOST, "dev1", "m", NULL), TWIN_OK);
	assert_string_equal(out, HOST "/devices/dev1/modules/m");
}

static void test_sas_target_refuses_what_does_not_fit(void **state)
{
	char small[10], big[TWIN_SAS_TARGET_MAX], host[TWIN_HOST_MAX + 1],
	        id[TWIN_DEVICE_ID_MAX + 1];

	(void)state;
	assert_int_equal(twin_sas_target(small, sizeof(small), HOST, "dev1", NULL, NULL),
	                 TWIN_E_INVALID);
	assert_string_equal(small, "");
	assert_int_equal(twin_sas_target(big, sizeof(big), "", "dev1", NULL, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_sas_target(big, sizeof(big), HOST, NULL, NULL, NULL), TWIN_E_INVALID);
	memset(host, 'h', TWIN_HOST_MAX);
	host[TWIN_HOST_MAX] = '\0';
	memset(id, 'i', TWIN_DEVICE_ID_MAX);
	id[TWIN_DEVICE_ID_MAX] = '\0';
	assert_int_equal(twin_sas_target(big, sizeof(big), host, id, id, NULL), TWIN_OK);
	assert_int_equal(strlen(big), TWIN_SAS_TARGET_MAX - 1);
}

static void test_sas_make_refuses_bad_input(void **state)
{
	char *t = (char *)"unchanged";
	char long_name[TWIN_SAS_SKN_MAX + 2];

	(void)state;
	assert_int_equal(twin_sas_make("", K1, NULL, SE, &t, NULL), TWIN_E_INVALID);
	assert_null(t);
	assert_int_equal(twin_sas_make(NULL, K1, NULL, SE, &t, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_sas_make(HOST, "not base64", NULL, SE, &t, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_sas_make(HOST, "", NULL, SE, &t, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_sas_make(HOST, NULL, NULL, SE, &t, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_sas_make(HOST, K1, NULL, -1, &t, NULL), TWIN_E_INVALID);
	memset(long_name, 'p', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(twin_sas_make(HOST, K1, long_name, SE, &t, NULL), TWIN_E_INVALID);
	assert_null(t);
}

static void test_sas_made_token_with_longest_fields_parses(void **state)
{
	char resource[TWIN_SAS_SR_MAX / 3 + 1], policy[TWIN_SAS_SKN_MAX + 1], *t;
	twin_sas parsed;

	(void)state;
	memset(resource, '/', sizeof(resource) - 1);
	resource[sizeof(resource) - 1] = '\0';
	memset(policy, '*', sizeof(policy) - 1);
	policy[sizeof(policy) - 1] = '\0';
	t = make(resource, K1, policy, INT64_MAX);
	assert_int_equal(twin_sas_parse(t, &parsed, NULL), TWIN_OK);
	assert_string_equal(parsed.sr, resource);
	assert_string_equal(parsed.skn, policy);
	assert_int_equal(twin_sas_verify(&parsed, KEYS_K1, 1, resource, NOW, NULL), TWIN_OK);
	free(t);
}

/* ---- Username (§1.1) ------------------------------------------------------ */

static twin_username u;

static void assert_username_refused(const char *username, const char *what)
{
	twin_error err;

	assert_int_equal(twin_username_parse(username, &u, &err), TWIN_E_INVALID);
	if (strstr(err.message, what) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", username, err.message, what);
}

static void test_username_node_sdk_form(void **state)
{
	(void)state;
	assert_int_equal(
	        twin_username_parse(HOST
	                            "/dev1/?api-version=2021-04-12"
	                            "&model-id=dtmi:com:example:Thermostat;1&DeviceClientType="
	                            "azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012"
	                            "%3B%20x64)",
	                            &u, NULL),
	        TWIN_OK);
	assert_string_equal(u.host, HOST);
	assert_string_equal(u.device_id, "dev1");
	assert_string_equal(u.module_id, "");
	assert_string_equal(u.api_version, "2021-04-12");
	assert_true(u.has_model_id);
	assert_string_equal(u.model_id, "dtmi:com:example:Thermostat;1");
	assert_string_equal(u.client_type,
	                    "azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)");
}

static void test_username_current_form_module(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/dev1/mod-A/?api-version=2020-09-30", &u, NULL),
	                 TWIN_OK);
	assert_string_equal(u.device_id, "dev1");
	assert_string_equal(u.module_id, "mod-A");
	assert_string_equal(u.api_version, "2020-09-30");
	assert_false(u.has_model_id);
	assert_string_equal(u.model_id, "");
	assert_string_equal(u.client_type, "");
}

static void test_username_trailing_slash_optional(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/dev1?api-version=2019-10-01", &u, NULL),
	                 TWIN_OK);
	assert_string_equal(u.device_id, "dev1");
	assert_string_equal(u.api_version, "2019-10-01");
	assert_int_equal(twin_username_parse(HOST "/dev1/m?", &u, NULL), TWIN_OK);
	assert_string_equal(u.module_id, "m");
	assert_int_equal(twin_username_parse(HOST "/dev1/", &u, NULL), TWIN_OK);
	assert_string_equal(u.device_id, "dev1");
}

static void test_username_legacy_form(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/dev1/api-version=2016-11-14&DeviceClientType="
	                                          "iothubclient%2F1.1.0/x",
	                                     &u, NULL),
	                 TWIN_OK);
	assert_string_equal(u.device_id, "dev1");
	assert_string_equal(u.module_id, "");
	assert_string_equal(u.api_version, "2016-11-14");
	assert_string_equal(u.client_type, "iothubclient/1.1.0/x");
	assert_int_equal(twin_username_parse(HOST "/dev1/mod/api-version=2016-11-14", &u, NULL),
	                 TWIN_OK);
	assert_string_equal(u.module_id, "mod");
	assert_string_equal(u.api_version, "2016-11-14");
}

static void test_username_legacy_query_starts_after_device_id(void **state)
{
	(void)state;
	/* "api-version=1" is a valid deviceId: the query cannot start before it. */
	assert_int_equal(twin_username_parse("h/api-version=1/api-version=2", &u, NULL), TWIN_OK);
	assert_string_equal(u.device_id, "api-version=1");
	assert_string_equal(u.module_id, "");
	assert_string_equal(u.api_version, "2");
	assert_int_equal(twin_username_parse("h/api-version=1", &u, NULL), TWIN_OK);
	assert_string_equal(u.device_id, "api-version=1");
	assert_string_equal(u.api_version, "");
}

static void test_username_no_query(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/dev1", &u, NULL), TWIN_OK);
	assert_string_equal(u.host, HOST);
	assert_string_equal(u.device_id, "dev1");
	assert_string_equal(u.api_version, "");
	assert_int_equal(twin_username_parse(HOST "/dev1/mod", &u, NULL), TWIN_OK);
	assert_string_equal(u.module_id, "mod");
}

static void test_username_ids_are_raw(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/d%41+1/m%2F?model-id=a%41", &u, NULL), TWIN_OK);
	assert_string_equal(u.device_id, "d%41+1");
	assert_string_equal(u.module_id, "m%2F");
	assert_string_equal(u.model_id, "aA");
}

static void test_username_values_url_decoded(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/d/?api-version=2021%2D04%2d12&model-id="
	                                          "dtmi%3Acom%3Aexample%3AThermostat%3B1"
	                                          "&DeviceClientType=a+b%20c",
	                                     &u, NULL),
	                 TWIN_OK);
	assert_string_equal(u.api_version, "2021-04-12");
	assert_string_equal(u.model_id, "dtmi:com:example:Thermostat;1");
	assert_string_equal(u.client_type, "a+b c"); /* '+' is not a space */
}

static void test_username_unknown_params_ignored(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/d/?x=%zz&&bare&api-version=1&x=2&API-VERSION=3",
	                                     &u, NULL),
	                 TWIN_OK);
	assert_string_equal(u.api_version, "1");
}

static void test_username_model_id_present_but_empty(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/d/?model-id=", &u, NULL), TWIN_OK);
	assert_true(u.has_model_id);
	assert_string_equal(u.model_id, "");
	assert_int_equal(twin_username_parse(HOST "/d/?model-id", &u, NULL), TWIN_OK);
	assert_true(u.has_model_id);
}

static void test_username_repeated_param_refused(void **state)
{
	(void)state;
	assert_username_refused(HOST "/d/?api-version=1&api-version=1", "twice");
	assert_username_refused(HOST "/d/?model-id=a&model-id=b", "twice");
	assert_username_refused(HOST "/d/?DeviceClientType=a&DeviceClientType=a", "twice");
}

static void test_username_empty_host_refused(void **state)
{
	(void)state;
	assert_username_refused("/dev1/?api-version=2021-04-12", "empty host");
	assert_username_refused("/dev1", "empty host");
}

static void test_username_malformed_path_refused(void **state)
{
	(void)state;
	assert_username_refused(HOST, "{host}/{deviceId}");
	assert_username_refused(HOST "/?api-version=1", "{host}/{deviceId}");
	assert_username_refused(HOST "/a/b/c/?api-version=1", "more than three");
	assert_username_refused(HOST "//d/?api-version=1", "device id");
	assert_username_refused(HOST "/d//?api-version=1", "module id");
	assert_username_refused(HOST "/d/m//", "more than three");
	assert_username_refused("", "{host}/{deviceId}");
	assert_username_refused("?", "{host}/{deviceId}");
	assert_username_refused(NULL, "missing");
}

static void test_username_invalid_id_refused(void **state)
{
	(void)state;
	assert_username_refused(HOST "/d 1/?api-version=1", "device id");
	assert_username_refused(HOST "/d1/m\xc3\xa9/?api-version=1", "module id");
}

static void test_username_overlong_ids_refused(void **state)
{
	char id[TWIN_DEVICE_ID_MAX + 2], name[2 * TWIN_DEVICE_ID_MAX + 64];

	(void)state;
	memset(id, 'a', TWIN_DEVICE_ID_MAX);
	id[TWIN_DEVICE_ID_MAX] = '\0';
	snprintf(name, sizeof(name), "h/%s/%s/?api-version=1", id, id);
	assert_int_equal(twin_username_parse(name, &u, NULL), TWIN_OK);
	assert_int_equal(strlen(u.device_id), TWIN_DEVICE_ID_MAX);
	assert_int_equal(strlen(u.module_id), TWIN_DEVICE_ID_MAX);
	strcat(id, "a");
	snprintf(name, sizeof(name), "h/%s/?api-version=1", id);
	assert_username_refused(name, "device id is longer");
	snprintf(name, sizeof(name), "h/d/%s", id);
	assert_username_refused(name, "module id is longer");
}

static void test_username_overlong_fields_refused(void **state)
{
	static char name[TWIN_MODEL_ID_MAX + 600];
	char host[TWIN_HOST_MAX + 2];
	size_t n;

	(void)state;
	n = (size_t)snprintf(name, sizeof(name), "h/d/?model-id=");
	memset(name + n, 'm', TWIN_MODEL_ID_MAX);
	name[n + TWIN_MODEL_ID_MAX] = '\0';
	assert_int_equal(twin_username_parse(name, &u, NULL), TWIN_OK);
	strcat(name, "m");
	assert_username_refused(name, "model-id is longer");
	snprintf(name, sizeof(name), "h/d/?api-version=%0*d", TWIN_API_VERSION_MAX + 1, 0);
	assert_username_refused(name, "api-version is longer");
	n = (size_t)snprintf(name, sizeof(name), "h/d/?DeviceClientType=");
	memset(name + n, 'c', TWIN_CLIENT_TYPE_MAX + 1);
	name[n + TWIN_CLIENT_TYPE_MAX + 1] = '\0';
	assert_username_refused(name, "DeviceClientType is longer");
	memset(host, 'h', TWIN_HOST_MAX + 1);
	host[TWIN_HOST_MAX + 1] = '\0';
	snprintf(name, sizeof(name), "%s/d", host);
	assert_username_refused(name, "host is longer");
}

static void test_username_bad_escape_refused(void **state)
{
	(void)state;
	assert_username_refused(HOST "/d/?model-id=a%2", "percent escape");
	assert_username_refused(HOST "/d/?api-version=%g0", "percent escape");
	assert_username_refused(HOST "/d/?DeviceClientType=a%00b", "%00");
}

static void test_username_client_id_must_match(void **state)
{
	(void)state;
	assert_int_equal(twin_username_parse(HOST "/dev1/?api-version=1", &u, NULL), TWIN_OK);
	assert_int_equal(twin_username_check_client_id(&u, "dev1", NULL), TWIN_OK);
	assert_int_equal(twin_username_parse(HOST "/dev1/m/?api-version=1", &u, NULL), TWIN_OK);
	assert_int_equal(twin_username_check_client_id(&u, "dev1/m", NULL), TWIN_OK);
}

static void test_username_client_id_mismatch_refused(void **state)
{
	twin_error err;

	(void)state;
	assert_int_equal(twin_username_parse(HOST "/dev1/?api-version=1", &u, NULL), TWIN_OK);
	assert_int_equal(twin_username_check_client_id(&u, "Dev1", &err), TWIN_E_INVALID);
	assert_non_null(strstr(err.message, "'dev1'"));
	assert_int_equal(twin_username_check_client_id(&u, "dev10", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_check_client_id(&u, "dev", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_check_client_id(&u, "dev1/m", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_check_client_id(&u, "", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_check_client_id(&u, NULL, NULL), TWIN_E_INVALID);
	/* Ids are compared raw: %31 is not '1'. */
	assert_int_equal(twin_username_check_client_id(&u, "dev%31", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_parse(HOST "/dev1/m/?api-version=1", &u, NULL), TWIN_OK);
	assert_int_equal(twin_username_check_client_id(&u, "dev1", &err), TWIN_E_INVALID);
	assert_non_null(strstr(err.message, "'dev1/m'"));
	assert_int_equal(twin_username_check_client_id(&u, "dev1/m/", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_check_client_id(&u, "dev1/M", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_check_client_id(&u, "dev1m", NULL), TWIN_E_INVALID);
	assert_int_equal(twin_username_check_client_id(&u, "dev1:m", NULL), TWIN_E_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sas_node_sdk_token_verifies),
	        cmocka_unit_test(test_sas_make_matches_node_sdk_byte_for_byte),
	        cmocka_unit_test(test_sas_make_policy_token_puts_skn_before_se),
	        cmocka_unit_test(test_sas_made_token_verifies),
	        cmocka_unit_test(test_sas_policy_token_verifies_with_policy_key),
	        cmocka_unit_test(test_sas_secondary_key_accepted),
	        cmocka_unit_test(test_sas_wrong_key_refused),
	        cmocka_unit_test(test_sas_null_empty_and_invalid_keys_skipped),
	        cmocka_unit_test(test_sas_expired_when_se_equals_now_refused),
	        cmocka_unit_test(test_sas_se_in_the_future_accepted),
	        cmocka_unit_test(test_sas_tampered_sr_refused),
	        cmocka_unit_test(test_sas_tampered_se_refused),
	        cmocka_unit_test(test_sas_tampered_sig_refused),
	        cmocka_unit_test(test_sas_sr_lower_case_escapes_accepted),
	        cmocka_unit_test(test_sas_sr_unencoded_accepted),
	        cmocka_unit_test(test_sas_sig_unencoded_accepted),
	        cmocka_unit_test(test_sas_resource_compared_case_insensitively),
	        cmocka_unit_test(test_sas_device_resource_covers_its_modules),
	        cmocka_unit_test(test_sas_resource_does_not_cover_longer_id),
	        cmocka_unit_test(test_sas_module_resource_does_not_cover_its_device),
	        cmocka_unit_test(test_sas_hub_resource_covers_every_device),
	        cmocka_unit_test(test_sas_parse_keeps_raw_and_decoded_fields),
	        cmocka_unit_test(test_sas_fields_in_any_order),
	        cmocka_unit_test(test_sas_repeated_field_refused),
	        cmocka_unit_test(test_sas_unknown_field_ignored),
	        cmocka_unit_test(test_sas_missing_field_refused),
	        cmocka_unit_test(test_sas_empty_field_refused),
	        cmocka_unit_test(test_sas_prefix_must_be_exact),
	        cmocka_unit_test(test_sas_se_must_be_digits_fitting_int64),
	        cmocka_unit_test(test_sas_invalid_percent_escape_refused),
	        cmocka_unit_test(test_sas_decoded_nul_refused),
	        cmocka_unit_test(test_sas_sig_must_be_base64_of_32_bytes),
	        cmocka_unit_test(test_sas_overlong_token_refused),
	        cmocka_unit_test(test_sas_target_for_device_and_module),
	        cmocka_unit_test(test_sas_target_refuses_what_does_not_fit),
	        cmocka_unit_test(test_sas_make_refuses_bad_input),
	        cmocka_unit_test(test_sas_made_token_with_longest_fields_parses),
	        cmocka_unit_test(test_username_node_sdk_form),
	        cmocka_unit_test(test_username_current_form_module),
	        cmocka_unit_test(test_username_trailing_slash_optional),
	        cmocka_unit_test(test_username_legacy_form),
	        cmocka_unit_test(test_username_legacy_query_starts_after_device_id),
	        cmocka_unit_test(test_username_no_query),
	        cmocka_unit_test(test_username_ids_are_raw),
	        cmocka_unit_test(test_username_values_url_decoded),
	        cmocka_unit_test(test_username_unknown_params_ignored),
	        cmocka_unit_test(test_username_model_id_present_but_empty),
	        cmocka_unit_test(test_username_repeated_param_refused),
	        cmocka_unit_test(test_username_empty_host_refused),
	        cmocka_unit_test(test_username_malformed_path_refused),
	        cmocka_unit_test(test_username_invalid_id_refused),
	        cmocka_unit_test(test_username_overlong_ids_refused),
	        cmocka_unit_test(test_username_overlong_fields_refused),
	        cmocka_unit_test(test_username_bad_escape_refused),
	        cmocka_unit_test(test_username_client_id_must_match),
	        cmocka_unit_test(test_username_client_id_mismatch_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
