/*
 * test_topic.c - the plugin's topic classification (plugin/topic.c): which
 * tree a topic belongs to and whether a devices/ topic is the device's own
 * (PROTOCOL.md §2.1, §2.2, §11). Pure string functions, tested without a
 * broker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>

#include <cmocka.h>

#include "topic.h"

static void test_zone_of_owned_trees(void **state)
{
	(void)state;
	assert_int_equal(plg_zone_of("$iothub/twin/GET/?$rid=1"), PLG_ZONE_IOTHUB);
	assert_int_equal(plg_zone_of("devices/d1/messages/events/"), PLG_ZONE_DEVICES);
	assert_int_equal(plg_zone_of("$CONTROL/twin/v1"), PLG_ZONE_CONTROL);
	assert_int_equal(plg_zone_of("$twin/events/updateTwin/d1"), PLG_ZONE_EVENTS);
}

static void test_zone_of_everything_else_is_the_brokers(void **state)
{
	(void)state;
	assert_int_equal(plg_zone_of("plant/1/temp"), PLG_ZONE_OTHER);
	assert_int_equal(plg_zone_of("$CONTROL/dynamic-security/v1"), PLG_ZONE_OTHER);
	assert_int_equal(plg_zone_of("device/d1"), PLG_ZONE_OTHER);
	assert_int_equal(plg_zone_of("$iothubx/"), PLG_ZONE_OTHER);
	assert_int_equal(plg_zone_of("#"), PLG_ZONE_OTHER);
}

static void test_device_topic_own_telemetry(void **state)
{
	(void)state;
	assert_int_equal(plg_device_topic_of("devices/d1/messages/events/", "d1"),
	                 PLG_DEVTOPIC_EVENTS);
	assert_int_equal(plg_device_topic_of("devices/d1/messages/events/%24.ct=json", "d1"),
	                 PLG_DEVTOPIC_EVENTS);
}

static void test_device_topic_own_c2d_and_its_filter(void **state)
{
	(void)state;
	assert_int_equal(plg_device_topic_of("devices/d1/messages/devicebound/#", "d1"),
	                 PLG_DEVTOPIC_C2D_FILTER);
	assert_int_equal(plg_device_topic_of("devices/d1/messages/devicebound/%24.mid=1", "d1"),
	                 PLG_DEVTOPIC_C2D);
}

static void test_device_topic_id_prefix_is_not_the_device(void **state)
{
	(void)state;
	/* d1 must not reach d10's topics, nor d10 d1's. */
	assert_int_equal(plg_device_topic_of("devices/d10/messages/events/", "d1"),
	                 PLG_DEVTOPIC_FOREIGN);
	assert_int_equal(plg_device_topic_of("devices/d1/messages/events/", "d10"),
	                 PLG_DEVTOPIC_FOREIGN);
}

static void test_device_topic_other_shapes_are_foreign(void **state)
{
	(void)state;
	assert_int_equal(plg_device_topic_of("devices/d1/messages/events", "d1"),
	                 PLG_DEVTOPIC_FOREIGN);
	assert_int_equal(plg_device_topic_of("devices/d1/other", "d1"), PLG_DEVTOPIC_FOREIGN);
	assert_int_equal(plg_device_topic_of("devices/+/messages/devicebound/#", "d1"),
	                 PLG_DEVTOPIC_FOREIGN);
	assert_int_equal(plg_device_topic_of("devices/d1/messages/devicebound/+", "d1"),
	                 PLG_DEVTOPIC_C2D); /* a narrower filter: its own C2D */
	assert_int_equal(plg_device_topic_of("devices/d1", "d1"), PLG_DEVTOPIC_FOREIGN);
}

static void test_c2d_topic_for_back_ends(void **state)
{
	(void)state;
	assert_true(plg_is_c2d_topic("devices/d1/messages/devicebound/x"));
	assert_false(plg_is_c2d_topic("devices/d1/messages/events/"));
	assert_false(plg_is_c2d_topic("devices//messages/devicebound/x"));
	assert_false(plg_is_c2d_topic("devices/d1"));
}

static void test_filter_classify_twin_filters_exactly(void **state)
{
	(void)state;
	assert_int_equal(plg_filter_classify("$iothub/twin/res/#"), PLG_FILTER_TWIN_RES);
	assert_int_equal(plg_filter_classify("$iothub/twin/PATCH/properties/desired/#"),
	                 PLG_FILTER_DESIRED);
	assert_int_equal(plg_filter_classify("$iothub/methods/POST/#"), PLG_FILTER_METHODS);
	assert_int_equal(plg_filter_classify("$iothub/#"), PLG_FILTER_FORBIDDEN);
	assert_int_equal(plg_filter_classify("$iothub/twin/res/200/#"), PLG_FILTER_FORBIDDEN);
	assert_int_equal(plg_filter_classify("plant/#"), PLG_FILTER_NOT_IOTHUB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_zone_of_owned_trees),
	        cmocka_unit_test(test_zone_of_everything_else_is_the_brokers),
	        cmocka_unit_test(test_device_topic_own_telemetry),
	        cmocka_unit_test(test_device_topic_own_c2d_and_its_filter),
	        cmocka_unit_test(test_device_topic_id_prefix_is_not_the_device),
	        cmocka_unit_test(test_device_topic_other_shapes_are_foreign),
	        cmocka_unit_test(test_c2d_topic_for_back_ends),
	        cmocka_unit_test(test_filter_classify_twin_filters_exactly),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
