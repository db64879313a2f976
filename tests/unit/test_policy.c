/*
 * test_policy.c - shared access policies (PROTOCOL.md §1.2 step 5, §7,
 * twin/policy.h), one test per rule.
 *
 * Keys of a chosen decoded length are built with OpenSSL's encoder, not our
 * own, so the 16..64-byte rule is checked against an independent base64.
 * Tests that touch the store run on a fresh store each (setup/teardown);
 * the pure ones ignore it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "test_support.h"
#include "twin/policy.h"
#include "twin/registry.h"

/* Key bytes 00 01 … 1f and ff fe … e0 (as in test_sas.c). */
static const char K1[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
static const char K2[] = "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=";

static test_db db;

static int setup(void **state)
{
	(void)state;
	test_db_open(&db, "policy", 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_db_close(&db);
	return 0;
}

/* Base64 (OpenSSL) of nbytes bytes 0x41, 0x42, … into out. */
static void key_of(size_t nbytes, char out[TWIN_SYM_KEY_B64_MAX + 8])
{
	unsigned char raw[TWIN_SYM_KEY_MAX_BYTES + 3];

	assert_true(nbytes <= sizeof(raw));
	for (size_t i = 0; i < nbytes; i++)
		raw[i] = (unsigned char)(0x41 + i);
	EVP_EncodeBlock((unsigned char *)out, raw, (int)nbytes);
}

static twin_err spec(const char *name, const char *text, twin_policy *out, twin_error *err)
{
	return twin_policy_spec_parse(name, text, out, err);
}

/* Assert that spec text for policy "p" is refused with a message containing
 * what and no key. */
static void assert_spec_refused(const char *text, const char *what)
{
	twin_policy p;
	twin_error err;

	assert_int_equal(spec("p", text, &p, &err), TWIN_E_INVALID);
	if (strstr(err.message, what) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", text, err.message, what);
	if (strstr(err.message, K1) != NULL || strstr(err.message, "AAECAwQF") != NULL)
		fail_msg("'%s': message '%s' echoes a key", text, err.message);
}

static void assert_rights_refused(const char *text, const char *what)
{
	unsigned rights = 12345;
	twin_error err;

	assert_int_equal(twin_rights_parse(text, &rights, &err), TWIN_E_INVALID);
	assert_int_equal(rights, 12345); /* untouched on failure */
	if (strstr(err.message, what) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", text ? text : "(null)", err.message,
		         what);
}

static twin_policy policy(const char *name, unsigned rights, const char *primary,
                          const char *secondary)
{
	twin_policy p;

	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "%s", name);
	snprintf(p.primary_key, sizeof(p.primary_key), "%s", primary);
	snprintf(p.secondary_key, sizeof(p.secondary_key), "%s", secondary);
	p.rights = rights;
	return p;
}

static void put_ok(const twin_policy *p)
{
	twin_error err = {0};

	if (twin_policy_put(db.s, p, &err) != TWIN_OK)
		fail_msg("put %s: %s", p->name, err.message);
}

static void commit(void)
{
	twin_error err = {0};

	if (twin_store_commit(db.s, &err) != TWIN_OK)
		fail_msg("commit: %s", err.message);
}

static void assert_policy_equal(const twin_policy *a, const twin_policy *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->primary_key, b->primary_key);
	assert_string_equal(a->secondary_key, b->secondary_key);
	assert_int_equal(a->rights, b->rights);
}

/* ---- Names ---------------------------------------------------------------- */

static void test_policy_name_allows_letters_digits_dot_dash_underscore(void **state)
{
	char name[TWIN_POLICY_NAME_MAX + 1];

	(void)state;
	assert_true(twin_policy_name_valid("iothubowner"));
	assert_true(twin_policy_name_valid("registryReadWrite"));
	assert_true(twin_policy_name_valid("a"));
	assert_true(twin_policy_name_valid("Edge_01.gw-2"));
	memset(name, 'x', TWIN_POLICY_NAME_MAX);
	name[TWIN_POLICY_NAME_MAX] = '\0';
	assert_true(twin_policy_name_valid(name));
}

static void test_policy_name_refuses_empty_overlong_and_other_characters(void **state)
{
	char name[TWIN_POLICY_NAME_MAX + 2];
	static const char *const bad[] = {"",    "a b",  "a/b",  "a:b",         "a;b",
	                                  "a=b", "a%20", "a+b",  "caf\xc3\xa9", "a\tb",
	                                  "a&b", "a,b",  "a\nb", "a*"};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (twin_policy_name_valid(bad[i]))
			fail_msg("'%s' accepted", bad[i]);
	assert_false(twin_policy_name_valid(NULL));
	memset(name, 'x', TWIN_POLICY_NAME_MAX + 1);
	name[TWIN_POLICY_NAME_MAX + 1] = '\0';
	assert_false(twin_policy_name_valid(name));
}

/* ---- Rights --------------------------------------------------------------- */

static void test_rights_parse_each_name(void **state)
{
	unsigned r;

	(void)state;
	assert_int_equal(twin_rights_parse("registryRead", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_REGISTRY_READ);
	assert_int_equal(twin_rights_parse("registryWrite", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_REGISTRY_WRITE);
	assert_int_equal(twin_rights_parse("serviceConnect", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_SERVICE_CONNECT);
	assert_int_equal(twin_rights_parse("deviceConnect", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_DEVICE_CONNECT);
	assert_int_equal(twin_rights_parse("registryRead,deviceConnect", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_REGISTRY_READ | TWIN_RIGHT_DEVICE_CONNECT);
}

static void test_rights_parse_is_case_insensitive(void **state)
{
	unsigned r;

	(void)state;
	assert_int_equal(twin_rights_parse("RegistryRead,SERVICECONNECT,deviceconnect", &r, NULL),
	                 TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_REGISTRY_READ | TWIN_RIGHT_SERVICE_CONNECT |
	                            TWIN_RIGHT_DEVICE_CONNECT);
	assert_int_equal(twin_rights_parse("ALL", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHTS_ALL);
}

static void test_rights_parse_all_means_every_right(void **state)
{
	unsigned r;

	(void)state;
	assert_int_equal(twin_rights_parse("all", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_REGISTRY_READ | TWIN_RIGHT_REGISTRY_WRITE |
	                            TWIN_RIGHT_SERVICE_CONNECT | TWIN_RIGHT_DEVICE_CONNECT);
	assert_int_equal(twin_rights_parse("deviceConnect,all", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHTS_ALL);
}

static void test_rights_parse_allows_spaces_around_items(void **state)
{
	unsigned r;

	(void)state;
	assert_int_equal(
	        twin_rights_parse("  registryRead , \tregistryWrite\t,serviceConnect ", &r, NULL),
	        TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_REGISTRY_READ | TWIN_RIGHT_REGISTRY_WRITE |
	                            TWIN_RIGHT_SERVICE_CONNECT);
	/* …but not inside a name. */
	assert_rights_refused("registry Read", "'registry Read'");
}

static void test_rights_parse_repeated_item_is_harmless(void **state)
{
	unsigned r;

	(void)state;
	assert_int_equal(twin_rights_parse("deviceConnect,DeviceConnect", &r, NULL), TWIN_OK);
	assert_int_equal(r, TWIN_RIGHT_DEVICE_CONNECT);
}

static void test_rights_parse_refuses_empty_list(void **state)
{
	(void)state;
	assert_rights_refused("", "empty");
	assert_rights_refused("  \t ", "empty");
	assert_rights_refused(NULL, "missing");
}

static void test_rights_parse_refuses_empty_item(void **state)
{
	(void)state;
	assert_rights_refused("registryRead,,deviceConnect", "Item 2");
	assert_rights_refused("registryRead,", "Item 2");
	assert_rights_refused(",registryRead", "Item 1");
	assert_rights_refused("all, ,all", "Item 2");
	assert_rights_refused(",", "Item 1");
}

static void test_rights_parse_refuses_unknown_name_naming_it(void **state)
{
	(void)state;
	assert_rights_refused("registryRead,registryReadWrite", "'registryReadWrite'");
	assert_rights_refused("DeviceConnect,none", "'none'");
	assert_rights_refused("read", "'read'");
	assert_rights_refused("all;", "'all;'");
}

static void test_rights_parse_never_echoes_a_key_sized_item(void **state)
{
	unsigned r;
	twin_error err;

	(void)state;
	assert_int_equal(twin_rights_parse(K1, &r, &err), TWIN_E_INVALID);
	assert_null(strstr(err.message, "AAECAwQF"));
	assert_non_null(strstr(err.message, "44 characters"));
	/* The shortest key, 16 bytes, is 24 characters. */
	assert_int_equal(twin_rights_parse("all,AAECAwQFBgcICQoLDA0ODw==", &r, &err),
	                 TWIN_E_INVALID);
	assert_null(strstr(err.message, "AAECAwQF"));
	assert_non_null(strstr(err.message, "item 2"));
}

static void test_rights_format_in_fixed_order(void **state)
{
	char text[TWIN_RIGHTS_TEXT_MAX];

	(void)state;
	assert_int_equal(twin_rights_format(TWIN_RIGHTS_ALL, text, sizeof(text)),
	                 strlen("registryRead,registryWrite,serviceConnect,deviceConnect"));
	assert_string_equal(text, "registryRead,registryWrite,serviceConnect,deviceConnect");
	twin_rights_format(TWIN_RIGHT_DEVICE_CONNECT | TWIN_RIGHT_REGISTRY_READ, text,
	                   sizeof(text));
	assert_string_equal(text, "registryRead,deviceConnect");
	twin_rights_format(TWIN_RIGHT_SERVICE_CONNECT | 0x100u, text, sizeof(text));
	assert_string_equal(text, "serviceConnect");
	assert_int_equal(twin_rights_format(0, text, sizeof(text)), 0);
	assert_string_equal(text, "");
}

static void test_rights_format_truncates_like_snprintf(void **state)
{
	char text[8];

	(void)state;
	memset(text, 'x', sizeof(text));
	assert_int_equal(twin_rights_format(TWIN_RIGHT_REGISTRY_READ | TWIN_RIGHT_REGISTRY_WRITE,
	                                    text, sizeof(text)),
	                 strlen("registryRead,registryWrite"));
	assert_string_equal(text, "registr");
	assert_int_equal(twin_rights_format(TWIN_RIGHTS_ALL, NULL, 0), TWIN_RIGHTS_TEXT_MAX - 1);
}

static void test_rights_format_round_trips_through_parse(void **state)
{
	char text[TWIN_RIGHTS_TEXT_MAX];
	unsigned r;

	(void)state;
	for (unsigned rights = 1; rights <= TWIN_RIGHTS_ALL; rights++) {
		twin_rights_format(rights, text, sizeof(text));
		assert_int_equal(twin_rights_parse(text, &r, NULL), TWIN_OK);
		assert_int_equal(r, rights);
	}
}

/* ---- Option spec RIGHTS:PRIMARYKEY[:SECONDARYKEY] -------------------------- */

static void test_policy_spec_with_primary_key_only(void **state)
{
	twin_policy p;

	(void)state;
	memset(&p, 'x', sizeof(p));
	assert_int_equal(spec("device",
	                      "deviceConnect:"
	                      "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	                      &p, NULL),
	                 TWIN_OK);
	assert_string_equal(p.name, "device");
	assert_int_equal(p.rights, TWIN_RIGHT_DEVICE_CONNECT);
	assert_string_equal(p.primary_key, K1);
	assert_string_equal(p.secondary_key, "");
}

static void test_policy_spec_with_both_keys(void **state)
{
	char text[256];
	twin_policy p;

	(void)state;
	snprintf(text, sizeof(text), " registryRead , registryWrite :%s:%s", K1, K2);
	assert_int_equal(spec("registryReadWrite", text, &p, NULL), TWIN_OK);
	assert_string_equal(p.name, "registryReadWrite");
	assert_int_equal(p.rights, TWIN_RIGHT_REGISTRY_READ | TWIN_RIGHT_REGISTRY_WRITE);
	assert_string_equal(p.primary_key, K1);
	assert_string_equal(p.secondary_key, K2);
}

static void test_policy_spec_accepts_keys_of_16_to_64_bytes(void **state)
{
	char key[TWIN_SYM_KEY_B64_MAX + 8], text[256];
	twin_policy p;

	(void)state;
	for (size_t n = TWIN_SYM_KEY_MIN_BYTES; n <= TWIN_SYM_KEY_MAX_BYTES; n++) {
		key_of(n, key);
		snprintf(text, sizeof(text), "all:%s:%s", key, key);
		if (spec("p", text, &p, NULL) != TWIN_OK)
			fail_msg("%zu-byte key refused", n);
		assert_string_equal(p.primary_key, key);
		assert_string_equal(p.secondary_key, key);
	}
}

static void test_policy_spec_refuses_short_key(void **state)
{
	char key[TWIN_SYM_KEY_B64_MAX + 8], text[256];

	(void)state;
	key_of(TWIN_SYM_KEY_MIN_BYTES - 1, key);
	snprintf(text, sizeof(text), "all:%s", key);
	assert_spec_refused(text, "primary key must be base64 of 16 to 64 bytes");
	snprintf(text, sizeof(text), "all:%s:%s", K1, key);
	assert_spec_refused(text, "secondary key must be base64 of 16 to 64 bytes");
}

static void test_policy_spec_refuses_long_key(void **state)
{
	char key[TWIN_SYM_KEY_B64_MAX + 8], text[256];

	(void)state;
	key_of(TWIN_SYM_KEY_MAX_BYTES + 1, key);
	snprintf(text, sizeof(text), "all:%s", key);
	assert_spec_refused(text, "primary key must be base64");
	snprintf(text, sizeof(text), "all:%s:%s", K1, key);
	assert_spec_refused(text, "secondary key must be base64");
}

static void test_policy_spec_refuses_non_strict_base64(void **state)
{
	static const char *const bad[] = {
	        "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",   /* no padding */
	        "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==", /* too much */
	        "all:AAECAwQFBgcICQoLDA0OD=AREhMUFRYXGBkaGxwdHh8=",  /* '=' inside */
	        "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw Hh8=",  /* space */
	        "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 ",  /* space for '=' */
	        "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= ", /* trailing space */
	        "all:__79_Pv6-fj39vX08_Lx8O_u7ezr6uno5-bl5OPi4eA=",  /* URL-safe alphabet */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_spec_refused(bad[i], "primary key must be base64");
}

static void test_policy_spec_refuses_missing_or_empty_key(void **state)
{
	(void)state;
	assert_spec_refused("all", "RIGHTS:PRIMARYKEY[:SECONDARYKEY]");
	assert_spec_refused("", "RIGHTS:PRIMARYKEY[:SECONDARYKEY]");
	assert_spec_refused("all:", "primary key is empty");
	assert_spec_refused("all::AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	                    "primary key is empty");
	assert_spec_refused("all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:",
	                    "secondary key is empty");
	assert_spec_refused(NULL, "RIGHTS:PRIMARYKEY[:SECONDARYKEY]");
}

static void test_policy_spec_refuses_extra_part(void **state)
{
	(void)state;
	assert_spec_refused("all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:"
	                    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:x",
	                    "RIGHTS:PRIMARYKEY[:SECONDARYKEY]");
}

static void test_policy_spec_refuses_bad_rights(void **state)
{
	(void)state;
	assert_spec_refused("readAll:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	                    "Policy 'p': Unknown right 'readAll'");
	assert_spec_refused(":AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	                    "list of rights is empty");
	assert_spec_refused("all,:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "Item 2");
}

static void test_policy_spec_refuses_invalid_name(void **state)
{
	twin_policy p;
	twin_error err;

	(void)state;
	assert_int_equal(
	        spec("my policy", "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &p, &err),
	        TWIN_E_INVALID);
	assert_non_null(strstr(err.message, "policy name"));
	assert_int_equal(spec("", "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &p, NULL),
	                 TWIN_E_INVALID);
	assert_int_equal(spec(NULL, "all:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &p, NULL),
	                 TWIN_E_INVALID);
}

static void test_policy_spec_error_never_echoes_key(void **state)
{
	char text[512];
	static const char *const forms[] = {
	        "%s",         /* the key alone */
	        "%s:all",     /* swapped */
	        "all:%s:",    /* empty secondary */
	        "all:%s:x:y", /* extra parts */
	        "bogus:%s",   /* bad rights */
	        "all:x%s",    /* bad primary */
	        "all,%s:x",   /* the key in the rights */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(text, sizeof(text), forms[i], K1);
		assert_spec_refused(text, "Policy 'p'");
	}
}

static void test_policy_spec_failure_leaves_no_key_behind(void **state)
{
	char text[256];
	twin_policy p;

	(void)state;
	snprintf(text, sizeof(text), "all:%s:%s=", K1, K2);
	memset(&p, 'x', sizeof(p));
	assert_int_equal(spec("p", text, &p, NULL), TWIN_E_INVALID);
	assert_string_equal(p.primary_key, "");
	assert_string_equal(p.name, "");
	assert_int_equal(p.rights, 0);
}

/* ---- Key generation ------------------------------------------------------- */

static void test_policy_generate_keys_gives_two_fresh_32_byte_keys(void **state)
{
	twin_policy a = policy("p", TWIN_RIGHTS_ALL, K1, K2), b = a;
	char text[256];
	twin_policy parsed;

	(void)state;
	assert_int_equal(twin_policy_generate_keys(&a, NULL), TWIN_OK);
	assert_int_equal(twin_policy_generate_keys(&b, NULL), TWIN_OK);
	assert_int_equal(strlen(a.primary_key), 44);
	assert_int_equal(strlen(a.secondary_key), 44);
	assert_string_not_equal(a.primary_key, K1);
	assert_string_not_equal(a.primary_key, a.secondary_key);
	assert_string_not_equal(a.primary_key, b.primary_key);
	assert_string_not_equal(a.secondary_key, b.secondary_key);
	assert_string_equal(a.name, "p");
	assert_int_equal(a.rights, TWIN_RIGHTS_ALL);
	/* Generated keys obey the key rule. */
	snprintf(text, sizeof(text), "all:%s:%s", a.primary_key, a.secondary_key);
	assert_int_equal(spec("p", text, &parsed, NULL), TWIN_OK);
}

/* ---- Persistence ---------------------------------------------------------- */

static void test_policy_put_then_get(void **state)
{
	twin_policy p = policy("service", TWIN_RIGHT_SERVICE_CONNECT, K1, K2), got;

	(void)state;
	put_ok(&p);
	assert_int_equal(twin_policy_get(db.s, "service", &got, NULL), TWIN_OK);
	assert_policy_equal(&got, &p);
	commit();
	memset(&got, 0, sizeof(got));
	assert_int_equal(twin_policy_get(db.s, "service", &got, NULL), TWIN_OK);
	assert_policy_equal(&got, &p);
}

static void test_policy_get_absent_is_not_found(void **state)
{
	twin_policy got;
	twin_error err;

	(void)state;
	assert_int_equal(twin_policy_get(db.s, "iothubowner", &got, &err), TWIN_E_NOT_FOUND);
	assert_non_null(strstr(err.message, "'iothubowner'"));
}

static void test_policy_names_are_case_sensitive(void **state)
{
	twin_policy p = policy("device", TWIN_RIGHT_DEVICE_CONNECT, K1, ""), got;

	(void)state;
	put_ok(&p);
	commit();
	assert_int_equal(twin_policy_get(db.s, "Device", &got, NULL), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_policy_get(db.s, "device", &got, NULL), TWIN_OK);
}

static void test_policy_get_refuses_invalid_name(void **state)
{
	twin_policy got;

	(void)state;
	assert_int_equal(twin_policy_get(db.s, "a b", &got, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_policy_get(db.s, "", &got, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_policy_get(db.s, NULL, &got, NULL), TWIN_E_INVALID);
}

static void test_policy_put_replaces_whole_policy(void **state)
{
	twin_policy a = policy("p", TWIN_RIGHTS_ALL, K1, K2);
	twin_policy b = policy("p", TWIN_RIGHT_REGISTRY_READ, K2, ""), got;

	(void)state;
	put_ok(&a);
	commit();
	put_ok(&b);
	commit();
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_OK);
	assert_policy_equal(&got, &b);
}

static void test_policy_put_joins_the_batch(void **state)
{
	twin_policy p = policy("p", TWIN_RIGHTS_ALL, K1, K2), got;

	(void)state;
	assert_false(twin_store_batch_open(db.s));
	put_ok(&p);
	assert_true(twin_store_batch_open(db.s));
	/* Reads in the batch see it… */
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_OK);
	/* …and an abort leaves nothing. */
	twin_store_abort(db.s);
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_E_NOT_FOUND);
	test_db_reopen(&db);
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_E_NOT_FOUND);
}

static void test_policy_survives_reopen(void **state)
{
	twin_policy a = policy("iothubowner", TWIN_RIGHTS_ALL, K1, K2);
	twin_policy b = policy("device", TWIN_RIGHT_DEVICE_CONNECT, K2, ""), got;

	(void)state;
	put_ok(&a);
	put_ok(&b);
	commit();
	test_db_reopen(&db);
	assert_int_equal(twin_policy_get(db.s, "iothubowner", &got, NULL), TWIN_OK);
	assert_policy_equal(&got, &a);
	assert_int_equal(twin_policy_get(db.s, "device", &got, NULL), TWIN_OK);
	assert_policy_equal(&got, &b);
}

static void test_policy_put_refuses_invalid_policy(void **state)
{
	char short_key[TWIN_SYM_KEY_B64_MAX + 8];
	twin_policy bad[6], got;
	twin_error err;

	(void)state;
	key_of(TWIN_SYM_KEY_MIN_BYTES - 1, short_key);
	bad[0] = policy("a b", TWIN_RIGHTS_ALL, K1, K2);
	bad[1] = policy("p", 0, K1, K2);
	bad[2] = policy("p", TWIN_RIGHTS_ALL | 16u, K1, K2);
	bad[3] = policy("p", TWIN_RIGHTS_ALL, "", K2);
	bad[4] = policy("p", TWIN_RIGHTS_ALL, short_key, K2);
	bad[5] = policy("p", TWIN_RIGHTS_ALL, K1, "not base64");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(twin_policy_put(db.s, &bad[i], &err), TWIN_E_INVALID);
		assert_null(strstr(err.message, "AAECAwQF"));
		assert_null(strstr(err.message, "//79"));
	}
	/* Nothing was written, not even a batch opened. */
	assert_false(twin_store_batch_open(db.s));
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_E_NOT_FOUND);
}

static void test_policy_put_refuses_unterminated_fields(void **state)
{
	twin_policy p = policy("p", TWIN_RIGHTS_ALL, K1, "");

	(void)state;
	memset(p.name, 'n', sizeof(p.name));
	assert_int_equal(twin_policy_put(db.s, &p, NULL), TWIN_E_INVALID);
	p = policy("p", TWIN_RIGHTS_ALL, K1, "");
	memset(p.secondary_key, 'A', sizeof(p.secondary_key));
	assert_int_equal(twin_policy_put(db.s, &p, NULL), TWIN_E_INVALID);
	assert_false(twin_store_batch_open(db.s));
}

static void test_policy_delete_removes_it(void **state)
{
	twin_policy p = policy("p", TWIN_RIGHTS_ALL, K1, K2), got;
	twin_error err;

	(void)state;
	put_ok(&p);
	commit();
	assert_int_equal(twin_policy_delete(db.s, "p", &err), TWIN_OK);
	assert_true(twin_store_batch_open(db.s));
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_E_NOT_FOUND);
	/* Abort brings it back; commit makes the delete durable. */
	twin_store_abort(db.s);
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_OK);
	assert_int_equal(twin_policy_delete(db.s, "p", &err), TWIN_OK);
	commit();
	test_db_reopen(&db);
	assert_int_equal(twin_policy_get(db.s, "p", &got, NULL), TWIN_E_NOT_FOUND);
}

static void test_policy_delete_absent_is_not_found(void **state)
{
	twin_error err;

	(void)state;
	assert_int_equal(twin_policy_delete(db.s, "nope", &err), TWIN_E_NOT_FOUND);
	assert_non_null(strstr(err.message, "'nope'"));
	assert_int_equal(twin_policy_delete(db.s, "a/b", NULL), TWIN_E_INVALID);
}

static void test_policies_and_devices_do_not_collide(void **state)
{
	twin_policy p = policy("same", TWIN_RIGHTS_ALL, K1, K2), got;
	twin_identity id;

	(void)state;
	assert_int_equal(twin_device_create(db.s, "same", NULL, &id, NULL), TWIN_OK);
	put_ok(&p);
	commit();
	assert_int_equal(twin_device_get(db.s, "same", &id, NULL), TWIN_OK);
	assert_int_equal(twin_policy_delete(db.s, "same", NULL), TWIN_OK);
	commit();
	assert_int_equal(twin_device_get(db.s, "same", &id, NULL), TWIN_OK);
	assert_int_equal(twin_policy_get(db.s, "same", &got, NULL), TWIN_E_NOT_FOUND);
}

#define STORE_TEST(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_policy_name_allows_letters_digits_dot_dash_underscore),
	        cmocka_unit_test(test_policy_name_refuses_empty_overlong_and_other_characters),
	        cmocka_unit_test(test_rights_parse_each_name),
	        cmocka_unit_test(test_rights_parse_is_case_insensitive),
	        cmocka_unit_test(test_rights_parse_all_means_every_right),
	        cmocka_unit_test(test_rights_parse_allows_spaces_around_items),
	        cmocka_unit_test(test_rights_parse_repeated_item_is_harmless),
	        cmocka_unit_test(test_rights_parse_refuses_empty_list),
	        cmocka_unit_test(test_rights_parse_refuses_empty_item),
	        cmocka_unit_test(test_rights_parse_refuses_unknown_name_naming_it),
	        cmocka_unit_test(test_rights_parse_never_echoes_a_key_sized_item),
	        cmocka_unit_test(test_rights_format_in_fixed_order),
	        cmocka_unit_test(test_rights_format_truncates_like_snprintf),
	        cmocka_unit_test(test_rights_format_round_trips_through_parse),
	        cmocka_unit_test(test_policy_spec_with_primary_key_only),
	        cmocka_unit_test(test_policy_spec_with_both_keys),
	        cmocka_unit_test(test_policy_spec_accepts_keys_of_16_to_64_bytes),
	        cmocka_unit_test(test_policy_spec_refuses_short_key),
	        cmocka_unit_test(test_policy_spec_refuses_long_key),
	        cmocka_unit_test(test_policy_spec_refuses_non_strict_base64),
	        cmocka_unit_test(test_policy_spec_refuses_missing_or_empty_key),
	        cmocka_unit_test(test_policy_spec_refuses_extra_part),
	        cmocka_unit_test(test_policy_spec_refuses_bad_rights),
	        cmocka_unit_test(test_policy_spec_refuses_invalid_name),
	        cmocka_unit_test(test_policy_spec_error_never_echoes_key),
	        cmocka_unit_test(test_policy_spec_failure_leaves_no_key_behind),
	        cmocka_unit_test(test_policy_generate_keys_gives_two_fresh_32_byte_keys),
	        STORE_TEST(test_policy_put_then_get),
	        STORE_TEST(test_policy_get_absent_is_not_found),
	        STORE_TEST(test_policy_names_are_case_sensitive),
	        STORE_TEST(test_policy_get_refuses_invalid_name),
	        STORE_TEST(test_policy_put_replaces_whole_policy),
	        STORE_TEST(test_policy_put_joins_the_batch),
	        STORE_TEST(test_policy_survives_reopen),
	        STORE_TEST(test_policy_put_refuses_invalid_policy),
	        STORE_TEST(test_policy_put_refuses_unterminated_fields),
	        STORE_TEST(test_policy_delete_removes_it),
	        STORE_TEST(test_policy_delete_absent_is_not_found),
	        STORE_TEST(test_policies_and_devices_do_not_collide),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
