/*
 * test_json_print.c - the fast printer (store/json_print.c) prints exactly
 * what cJSON_PrintUnformatted prints, for chosen edge cases and for many
 * random trees, and fails cleanly.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twin/json.h"

static void assert_same_as_cjson(const cJSON *item)
{
	char *want = cJSON_PrintUnformatted(item);
	char *got = twin_json_print(item);

	assert_non_null(want);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(want);
	cJSON_free(got);
}

static void test_print_numbers_as_cjson(void **state)
{
	static const double v[] = {0,
	                           -0.0,
	                           1,
	                           -1,
	                           42,
	                           2147483647.0,
	                           2147483648.0,
	                           -2147483648.0,
	                           -2147483649.0,
	                           4503599627370496.0, /* 2^52 */
	                           9007199254740991.0, /* 2^53 - 1 */
	                           -9007199254740991.0,
	                           999999999999999.0,
	                           1e15,
	                           1e16,
	                           1e300,
	                           -1e-300,
	                           0.1,
	                           0.5,
	                           1.0 / 3.0,
	                           2.0 / 3.0,
	                           3.14159,
	                           123456.789,
	                           DBL_MIN,
	                           DBL_MAX,
	                           -DBL_MAX,
	                           5e-324,
	                           1.7976931348623157e308,
	                           0.30000000000000004,
	                           20.37,
	                           -20.37,
	                           0.05,
	                           1e-4,
	                           -1e-4,
	                           9.99e-5,
	                           0.00012,
	                           1003.25,
	                           99999999999999.9,
	                           999999999999999.9,
	                           0.1 + 0.2,
	                           1.5e-7,
	                           12345678.125,
	                           0.000123456789012345};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cJSON *n = cJSON_CreateNumber(v[i]);

		assert_same_as_cjson(n);
		cJSON_Delete(n);
	}
}

/* Every decimal of a grid: readings with up to six fractional digits. */
static void test_print_decimal_grid_as_cjson(void **state)
{
	static const double scale[] = {1, 10, 100, 1000, 1e4, 1e5, 1e6};

	(void)state;
	for (size_t s = 0; s < sizeof(scale) / sizeof(scale[0]); s++)
		for (long i = -20000; i <= 20000; i += 7) {
			cJSON *n = cJSON_CreateNumber((double)i / scale[s]);

			assert_same_as_cjson(n);
			cJSON_Delete(n);
		}
}

static void test_print_nonfinite_as_null(void **state)
{
	cJSON *a = cJSON_CreateArray();
	char *got;

	(void)state;
	cJSON_AddItemToArray(a, cJSON_CreateNumber(NAN));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(INFINITY));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(-INFINITY));
	got = twin_json_print(a);
	assert_string_equal(got, "[null,null,null]");
	assert_same_as_cjson(a);
	cJSON_free(got);
	cJSON_Delete(a);
}

static void test_print_string_escapes_as_cjson(void **state)
{
	char all[256];
	cJSON *o = cJSON_CreateObject();

	(void)state;
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	cJSON_AddStringToObject(o, "all bytes", all);
	cJSON_AddStringToObject(o, "quote\"back\\slash", "\b\f\n\r\t\x01\x1f/\x7f");
	cJSON_AddStringToObject(o, "utf8 \xc3\xa9", "\xe2\x82\xac \xf0\x9f\x98\x80");
	cJSON_AddStringToObject(o, "", "");
	assert_same_as_cjson(o);
	cJSON_Delete(o);
}

static void test_print_structure_as_cjson(void **state)
{
	cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray(), *inner = cJSON_CreateObject();

	(void)state;
	cJSON_AddItemToObject(o, "empty object", cJSON_CreateObject());
	cJSON_AddItemToObject(o, "empty array", cJSON_CreateArray());
	cJSON_AddItemToArray(a, cJSON_CreateNull());
	cJSON_AddItemToArray(a, cJSON_CreateTrue());
	cJSON_AddItemToArray(a, cJSON_CreateFalse());
	cJSON_AddItemToArray(a, cJSON_CreateString("x"));
	cJSON_AddItemToArray(a, cJSON_CreateArray());
	cJSON_AddItemToObject(inner, "$lastUpdated",
	                      cJSON_CreateString("2026-11-24T01:02:03.456Z"));
	cJSON_AddItemToObject(inner, "$lastUpdatedVersion", cJSON_CreateNumber(7));
	cJSON_AddItemToObject(o, "list", a);
	cJSON_AddItemToObject(o, "$metadata", inner);
	cJSON_AddItemToObject(o, "raw", cJSON_CreateRaw("{\"pre\":1}"));
	assert_same_as_cjson(o);
	assert_same_as_cjson(a);
	cJSON_Delete(o);
}

/* A deterministic generator, so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static char *random_string(void)
{
	size_t n = rnd(12);
	char *s = malloc(n + 1);

	for (size_t i = 0; i < n; i++)
		s[i] = (char)(1 + rnd(255));
	s[n] = '\0';
	return s;
}

static double random_number(void)
{
	switch (rnd(7)) {
	case 5:
		return (double)(int32_t)rnd(1u << 31) / 100.0; /* readings like 20.37 */
	case 6:
		return (double)rnd(1000000) / 1e6 * (rnd(2) ? 1 : -1) / (1 + rnd(3) * 1000.0);
	case 0:
		return (double)rnd(1000);
	case 1:
		return -(double)rnd(100000) * 1e6;
	case 2:
		return (double)rnd(1000000) / (1 + rnd(1000));
	case 3:
		return ldexp((double)rnd(1u << 30), (int)rnd(120) - 60);
	default:
		return (double)((int64_t)rnd(1u << 31) << rnd(22));
	}
}

static cJSON *random_tree(int depth)
{
	int kind = rnd(depth > 3 ? 5 : 7);
	cJSON *c;
	char *s;

	switch (kind) {
	case 0:
		return cJSON_CreateNull();
	case 1:
		return cJSON_CreateBool(rnd(2));
	case 2:
		return cJSON_CreateNumber(random_number());
	case 3:
	case 4:
		s = random_string();
		c = cJSON_CreateString(s);
		free(s);
		return c;
	case 5:
		c = cJSON_CreateArray();
		for (uint32_t i = rnd(5); i > 0; i--)
			cJSON_AddItemToArray(c, random_tree(depth + 1));
		return c;
	default:
		c = cJSON_CreateObject();
		for (uint32_t i = rnd(6); i > 0; i--) {
			s = random_string();
			cJSON_AddItemToObject(c, s, random_tree(depth + 1));
			free(s);
		}
		return c;
	}
}

static void test_print_random_trees_as_cjson(void **state)
{
	(void)state;
	for (int i = 0; i < 20000; i++) {
		cJSON *t = random_tree(0);

		assert_same_as_cjson(t);
		cJSON_Delete(t);
	}
}

static void test_print_append_keeps_what_was_there(void **state)
{
	twin_buf b = {0};
	cJSON *one = cJSON_CreateNumber(1), *bad = cJSON_CreateNull();

	(void)state;
	bad->type = cJSON_Invalid;
	assert_true(twin_buf_put(&b, "x=", 2));
	assert_true(twin_json_print_append(&b, one));
	assert_string_equal(b.data, "x=1");
	/* An unprintable item leaves the buffer as it was, as NULL does. */
	assert_false(twin_json_print_append(&b, bad));
	assert_false(twin_json_print_append(&b, NULL));
	assert_int_equal(b.len, 3);
	assert_string_equal(b.data, "x=1");
	assert_null(twin_json_print(bad));
	cJSON_free(b.data);
	cJSON_Delete(one);
	cJSON_Delete(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_print_numbers_as_cjson),
	        cmocka_unit_test(test_print_decimal_grid_as_cjson),
	        cmocka_unit_test(test_print_nonfinite_as_null),
	        cmocka_unit_test(test_print_string_escapes_as_cjson),
	        cmocka_unit_test(test_print_structure_as_cjson),
	        cmocka_unit_test(test_print_random_trees_as_cjson),
	        cmocka_unit_test(test_print_append_keeps_what_was_there),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
