/*
 * test_connstr.c - IoT Hub connection strings (twin/connstr.h), one test
 * per rule.
 *
 * The accepted examples have the shapes the Azure portal, `az iot hub
 * connection-string show` and `az iot hub device-identity
 * connection-string show` print, with the keys of test_sas.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/connstr.h"

#define HOST "myhub.azure-devices.net"
/* Key bytes 00 01 … 1f and ff fe … e0 (as in test_sas.c). */
#define K1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define K2 "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA="
/* 16 bytes: two '=' of padding. */
#define K16 "AAECAwQFBgcICQoLDA0ODw=="
/* 64 bytes, the longest key. */
#define K64                                                                                        \
	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="

#define SERVICE "HostName=" HOST ";SharedAccessKeyName=iothubowner;SharedAccessKey=" K1
#define DEVICE  "HostName=" HOST ";DeviceId=dev1;SharedAccessKey=" K1

static twin_connstr c;

static void parse_ok(const char *text)
{
	twin_error err = {0};

	if (twin_connstr_parse(text, &c, &err) != TWIN_OK)
		fail_msg("'%s': %s", text, err.message);
}

/* Assert that text is refused with a message containing what, and that
 * the message holds no key. */
static void assert_refused(const char *text, const char *what)
{
	twin_error err;

	assert_int_equal(twin_connstr_parse(text, &c, &err), TWIN_E_INVALID);
	if (strstr(err.message, what) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", text ? text : "(null)", err.message,
		         what);
	if (strstr(err.message, "AAECAwQF") != NULL || strstr(err.message, "//79") != NULL)
		fail_msg("'%s': message '%s' echoes a key", text, err.message);
}

/* ---- Accepted shapes ------------------------------------------------------ */

static void test_connstr_service_string(void **state)
{
	(void)state;
	parse_ok(SERVICE);
	assert_string_equal(c.host_name, HOST);
	assert_string_equal(c.key_name, "iothubowner");
	assert_string_equal(c.key, K1);
	assert_string_equal(c.device_id, "");
	assert_string_equal(c.module_id, "");
	assert_string_equal(c.gateway_host, "");
	assert_int_equal(c.x509, 0);
}

static void test_connstr_device_string(void **state)
{
	(void)state;
	parse_ok(DEVICE);
	assert_string_equal(c.host_name, HOST);
	assert_string_equal(c.device_id, "dev1");
	assert_string_equal(c.key, K1);
	assert_string_equal(c.key_name, "");
	assert_string_equal(c.module_id, "");
	assert_int_equal(c.x509, 0);
}

static void test_connstr_module_string(void **state)
{
	(void)state;
	parse_ok("HostName=" HOST ";DeviceId=dev1;ModuleId=mod-A;SharedAccessKey=" K2);
	assert_string_equal(c.device_id, "dev1");
	assert_string_equal(c.module_id, "mod-A");
	assert_string_equal(c.key, K2);
}

static void test_connstr_device_string_with_x509(void **state)
{
	(void)state;
	parse_ok("HostName=" HOST ";DeviceId=dev1;x509=true");
	assert_string_equal(c.device_id, "dev1");
	assert_string_equal(c.key, "");
	assert_int_equal(c.x509, 1);
	parse_ok("HostName=" HOST ";DeviceId=dev1;x509=True");
	assert_int_equal(c.x509, 1);
}

static void test_connstr_x509_false_is_a_key_string(void **state)
{
	(void)state;
	parse_ok(DEVICE ";x509=false");
	assert_int_equal(c.x509, 0);
	assert_string_equal(c.key, K1);
	assert_refused("HostName=" HOST ";DeviceId=dev1;x509=FALSE", "SharedAccessKey");
}

static void test_connstr_gateway_host_name_kept(void **state)
{
	(void)state;
	parse_ok(DEVICE ";GatewayHostName=edge-gw.local");
	assert_string_equal(c.gateway_host, "edge-gw.local");
	assert_string_equal(c.host_name, HOST);
}

static void test_connstr_device_string_with_key_name_is_a_policy_string(void **state)
{
	(void)state;
	parse_ok("HostName=" HOST ";DeviceId=dev1;SharedAccessKeyName=device;SharedAccessKey=" K2);
	assert_string_equal(c.device_id, "dev1");
	assert_string_equal(c.key_name, "device");
	assert_string_equal(c.key, K2);
}

/* ---- Syntax --------------------------------------------------------------- */

static void test_connstr_key_keeps_base64_padding(void **state)
{
	(void)state;
	parse_ok("HostName=" HOST ";DeviceId=d;SharedAccessKey=" K16);
	assert_string_equal(c.key, K16);
	parse_ok("HostName=" HOST ";DeviceId=d;SharedAccessKey=" K64 ";");
	assert_string_equal(c.key, K64);
}

static void test_connstr_splits_at_first_equals(void **state)
{
	(void)state;
	/* '=' is a deviceId character. */
	parse_ok("HostName=" HOST ";DeviceId=a=b;SharedAccessKey=" K1);
	assert_string_equal(c.device_id, "a=b");
}

static void test_connstr_fields_in_any_order(void **state)
{
	(void)state;
	parse_ok("SharedAccessKey=" K1 ";SharedAccessKeyName=service;HostName=" HOST);
	assert_string_equal(c.host_name, HOST);
	assert_string_equal(c.key_name, "service");
	assert_string_equal(c.key, K1);
}

static void test_connstr_trailing_semicolon_allowed(void **state)
{
	(void)state;
	parse_ok(SERVICE ";");
	assert_string_equal(c.key, K1);
	assert_refused(SERVICE ";;", "Part 4");
}

static void test_connstr_unknown_names_ignored(void **state)
{
	(void)state;
	parse_ok("Foo=bar;" DEVICE ";Foo=again;Empty=;hostname=other;Transport=Mqtt");
	assert_string_equal(c.host_name, HOST);
	assert_string_equal(c.device_id, "dev1");
}

static void test_connstr_names_are_case_sensitive(void **state)
{
	(void)state;
	assert_refused("hostname=" HOST ";DeviceId=dev1;SharedAccessKey=" K1,
	               "HostName is missing");
	assert_refused("HostName=" HOST ";deviceId=dev1;SharedAccessKey=" K1,
	               "SharedAccessKeyName is missing");
	assert_refused("HostName=" HOST ";DeviceId=dev1;X509=true", "SharedAccessKey");
}

static void test_connstr_refuses_duplicate_name(void **state)
{
	(void)state;
	assert_refused(SERVICE ";HostName=" HOST, "HostName is given twice");
	assert_refused(DEVICE ";DeviceId=dev1", "DeviceId is given twice");
	assert_refused(DEVICE ";SharedAccessKey=" K1, "SharedAccessKey is given twice");
	assert_refused(DEVICE ";x509=false;x509=false", "x509 is given twice");
}

static void test_connstr_refuses_empty_value(void **state)
{
	(void)state;
	assert_refused("HostName=;DeviceId=dev1;SharedAccessKey=" K1, "HostName is empty");
	assert_refused(DEVICE ";ModuleId=", "ModuleId is empty");
	assert_refused(DEVICE ";GatewayHostName=", "GatewayHostName is empty");
	assert_refused("HostName=" HOST ";DeviceId=d;SharedAccessKey=", "SharedAccessKey is empty");
	assert_refused(DEVICE ";x509=", "x509 is empty");
}

static void test_connstr_refuses_empty_part(void **state)
{
	(void)state;
	assert_refused("", "empty");
	assert_refused(NULL, "empty");
	assert_refused(";", "Part 1");
	assert_refused(";" DEVICE, "Part 1");
	assert_refused("HostName=" HOST ";;DeviceId=dev1;SharedAccessKey=" K1, "Part 2");
}

static void test_connstr_refuses_part_without_name_value(void **state)
{
	(void)state;
	/* A bare key pasted without its name: refused, and not echoed. One
	 * ending in '=' reads as an unknown name, so the key is missing. */
	assert_refused("HostName=" HOST ";DeviceId=dev1;AAECAwQFBgcICQoLDA0ODw", "Part 3");
	assert_refused("HostName=" HOST ";DeviceId=dev1;" K1, "SharedAccessKey (or x509=true)");
	assert_refused("=" HOST ";DeviceId=dev1;SharedAccessKey=" K1, "Part 1");
	assert_refused(DEVICE ";x509", "Part 4");
}

static void test_connstr_refuses_shared_access_signature(void **state)
{
	twin_error err;

	(void)state;
	assert_int_equal(twin_connstr_parse("HostName=" HOST ";DeviceId=dev1;SharedAccessSignature="
	                                    "SharedAccessSignature sr=x&sig=y&se=1",
	                                    &c, &err),
	                 TWIN_E_INVALID);
	assert_string_equal(err.message, "SharedAccessSignature connection strings are not "
	                                 "supported; give the key.");
}

/* ---- Values --------------------------------------------------------------- */

static void test_connstr_refuses_overlong_values(void **state)
{
	char text[1024], long_value[300];

	(void)state;
	memset(long_value, 'h', TWIN_HOST_MAX);
	long_value[TWIN_HOST_MAX] = '\0';
	snprintf(text, sizeof(text), "HostName=%s;DeviceId=d;x509=true", long_value);
	parse_ok(text);
	snprintf(text, sizeof(text), "HostName=%sh;DeviceId=d;x509=true", long_value);
	assert_refused(text, "HostName is longer than 255 bytes");
	snprintf(text, sizeof(text), "HostName=h;DeviceId=d;x509=true;GatewayHostName=%sh",
	         long_value);
	assert_refused(text, "GatewayHostName is longer than 255 bytes");
	long_value[TWIN_DEVICE_ID_MAX] = '\0';
	snprintf(text, sizeof(text), "HostName=h;DeviceId=%s;x509=true", long_value);
	parse_ok(text);
	snprintf(text, sizeof(text), "HostName=h;DeviceId=%sd;x509=true", long_value);
	assert_refused(text, "DeviceId is longer than 128 bytes");
	snprintf(text, sizeof(text), "HostName=h;DeviceId=d;ModuleId=%sd;x509=true", long_value);
	assert_refused(text, "ModuleId is longer than 128 bytes");
	long_value[TWIN_POLICY_NAME_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "HostName=h;SharedAccessKeyName=%s;SharedAccessKey=" K1,
	         long_value);
	assert_refused(text, "SharedAccessKeyName is longer than 64 bytes");
	assert_refused("HostName=h;DeviceId=d;SharedAccessKey=" K64 "AAAA",
	               "SharedAccessKey is longer than 88 bytes");
}

static void test_connstr_refuses_invalid_host_name(void **state)
{
	(void)state;
	assert_refused("HostName=my hub;DeviceId=d;x509=true", "HostName may hold only");
	assert_refused("HostName=hub/devices;DeviceId=d;x509=true", "HostName may hold only");
	assert_refused("HostName=hub:8883;DeviceId=d;x509=true", "HostName may hold only");
	assert_refused(DEVICE ";GatewayHostName=gw?x", "GatewayHostName may hold only");
	parse_ok("HostName=127.0.0.1;DeviceId=d;x509=true");
	parse_ok("HostName=localhost;DeviceId=d;x509=true");
}

static void test_connstr_refuses_invalid_ids(void **state)
{
	(void)state;
	assert_refused("HostName=h;DeviceId=d 1;x509=true", "DeviceId is not a valid id");
	assert_refused("HostName=h;DeviceId=d/1;x509=true", "DeviceId is not a valid id");
	assert_refused("HostName=h;DeviceId=d;ModuleId=m\xc3\xa9;x509=true",
	               "ModuleId is not a valid id");
}

static void test_connstr_refuses_invalid_key_name(void **state)
{
	(void)state;
	assert_refused("HostName=h;SharedAccessKeyName=my policy;SharedAccessKey=" K1,
	               "SharedAccessKeyName is not a valid policy name");
	assert_refused("HostName=h;SharedAccessKeyName=a/b;SharedAccessKey=" K1,
	               "SharedAccessKeyName is not a valid policy name");
}

static void test_connstr_refuses_bad_key(void **state)
{
	static const char *const bad[] = {
	        "AAECAwQFBgcICQoLDA0O",                          /* 15 bytes */
	        K1 "=",                                          /* too much padding */
	        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",   /* no padding */
	        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw Hh8=",  /* space */
	        "__79_Pv6-fj39vX08_Lx8O_u7ezr6uno5-bl5OPi4eA=",  /* URL-safe alphabet */
	        "AAECAwQFBgcICQoLDA0OD%3DAREhMUFRYXGBkaGxwdHh8", /* URL-encoded */
	};
	char text[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "HostName=h;DeviceId=d;SharedAccessKey=%s", bad[i]);
		assert_refused(text, "SharedAccessKey must be base64 of 16 to 64 bytes");
	}
}

static void test_connstr_refuses_bad_x509_value(void **state)
{
	(void)state;
	assert_refused("HostName=h;DeviceId=d;x509=yes", "x509 must be true or false");
	assert_refused("HostName=h;DeviceId=d;x509=1", "x509 must be true or false");
	assert_refused("HostName=h;DeviceId=d;x509=truetrue", "x509 must be true or false");
	assert_refused("HostName=h;DeviceId=d;x509= true", "x509 must be true or false");
}

/* ---- Combinations --------------------------------------------------------- */

static void test_connstr_requires_host_name(void **state)
{
	(void)state;
	assert_refused("DeviceId=dev1;SharedAccessKey=" K1, "HostName is missing");
	assert_refused("SharedAccessKeyName=service;SharedAccessKey=" K1, "HostName is missing");
}

static void test_connstr_service_string_needs_key_name_and_key(void **state)
{
	(void)state;
	assert_refused("HostName=h", "DeviceId (device) or SharedAccessKeyName and "
	                             "SharedAccessKey (service) are missing");
	assert_refused("HostName=h;SharedAccessKey=" K1, "SharedAccessKeyName is missing");
	assert_refused("HostName=h;SharedAccessKeyName=service", "SharedAccessKey is missing");
}

static void test_connstr_device_string_needs_key_or_x509(void **state)
{
	(void)state;
	assert_refused("HostName=h;DeviceId=d", "SharedAccessKey (or x509=true) is missing");
	assert_refused("HostName=h;DeviceId=d;ModuleId=m", "SharedAccessKey (or x509=true)");
	assert_refused("HostName=h;DeviceId=d;x509=false", "SharedAccessKey (or x509=true)");
}

static void test_connstr_refuses_key_and_x509_together(void **state)
{
	(void)state;
	assert_refused(DEVICE ";x509=true", "not both");
}

static void test_connstr_key_name_needs_key(void **state)
{
	(void)state;
	assert_refused("HostName=h;DeviceId=d;SharedAccessKeyName=device;x509=true",
	               "SharedAccessKeyName needs it");
	assert_refused("HostName=h;DeviceId=d;SharedAccessKeyName=device",
	               "SharedAccessKey is missing");
}

static void test_connstr_refuses_device_fields_without_device_id(void **state)
{
	(void)state;
	assert_refused(SERVICE ";ModuleId=m", "ModuleId needs DeviceId");
	assert_refused(SERVICE ";GatewayHostName=gw", "GatewayHostName needs DeviceId");
	assert_refused("HostName=h;x509=true", "x509=true needs DeviceId");
}

static void test_connstr_error_never_echoes_key(void **state)
{
	static const char *const bad[] = {
	        "HostName=" K1 ";DeviceId=d;x509=true",
	        "HostName=h;DeviceId=" K1 "/x;x509=true",
	        "HostName=h;DeviceId=d;ModuleId=" K2 ";x509=true",
	        "HostName=h;SharedAccessKeyName=" K1 ";SharedAccessKey=" K2,
	        "HostName=h;DeviceId=d;SharedAccessKey=" K1 "x",
	        "HostName=h;DeviceId=d;SharedAccessKey=" K1 ";x509=true",
	        "HostName=h;DeviceId=d;SharedAccessKey=" K1 ";SharedAccessKey=" K2,
	        "HostName=h;DeviceId=d;" K1,
	        "HostName=h;DeviceId=d;x509=" K1,
	        "HostName=h;DeviceId=d;GatewayHostName=" K2 ";SharedAccessKey=" K1,
	        K1,
	        K1 ";",
	};

	(void)state;
	/* assert_refused fails on any key in the message. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused(bad[i], "");
}

static void test_connstr_failure_leaves_out_zeroed(void **state)
{
	twin_connstr zero;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	memset(&c, 'x', sizeof(c));
	assert_int_equal(twin_connstr_parse(DEVICE ";x509=true", &c, NULL), TWIN_E_INVALID);
	assert_memory_equal(&c, &zero, sizeof(c));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_connstr_service_string),
	        cmocka_unit_test(test_connstr_device_string),
	        cmocka_unit_test(test_connstr_module_string),
	        cmocka_unit_test(test_connstr_device_string_with_x509),
	        cmocka_unit_test(test_connstr_x509_false_is_a_key_string),
	        cmocka_unit_test(test_connstr_gateway_host_name_kept),
	        cmocka_unit_test(test_connstr_device_string_with_key_name_is_a_policy_string),
	        cmocka_unit_test(test_connstr_key_keeps_base64_padding),
	        cmocka_unit_test(test_connstr_splits_at_first_equals),
	        cmocka_unit_test(test_connstr_fields_in_any_order),
	        cmocka_unit_test(test_connstr_trailing_semicolon_allowed),
	        cmocka_unit_test(test_connstr_unknown_names_ignored),
	        cmocka_unit_test(test_connstr_names_are_case_sensitive),
	        cmocka_unit_test(test_connstr_refuses_duplicate_name),
	        cmocka_unit_test(test_connstr_refuses_empty_value),
	        cmocka_unit_test(test_connstr_refuses_empty_part),
	        cmocka_unit_test(test_connstr_refuses_part_without_name_value),
	        cmocka_unit_test(test_connstr_refuses_shared_access_signature),
	        cmocka_unit_test(test_connstr_refuses_overlong_values),
	        cmocka_unit_test(test_connstr_refuses_invalid_host_name),
	        cmocka_unit_test(test_connstr_refuses_invalid_ids),
	        cmocka_unit_test(test_connstr_refuses_invalid_key_name),
	        cmocka_unit_test(test_connstr_refuses_bad_key),
	        cmocka_unit_test(test_connstr_refuses_bad_x509_value),
	        cmocka_unit_test(test_connstr_requires_host_name),
	        cmocka_unit_test(test_connstr_service_string_needs_key_name_and_key),
	        cmocka_unit_test(test_connstr_device_string_needs_key_or_x509),
	        cmocka_unit_test(test_connstr_refuses_key_and_x509_together),
	        cmocka_unit_test(test_connstr_key_name_needs_key),
	        cmocka_unit_test(test_connstr_refuses_device_fields_without_device_id),
	        cmocka_unit_test(test_connstr_error_never_echoes_key),
	        cmocka_unit_test(test_connstr_failure_leaves_out_zeroed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
