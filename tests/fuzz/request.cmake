# fuzz_request: the plugin's whole request path (ACL check, MESSAGE/CONTROL,
# TICK, publishes) against mock_broker.c, a stand-in for Mosquitto 2.0.11.
# Included by tests/fuzz/CMakeLists.txt after twin_fuzz_target().
#
# Every plugin source is compiled into the target, so a new plugin file is
# fuzzed without an edit here; if it calls a broker function the mock lacks,
# the link fails and names it.
find_package(Threads REQUIRED) # the plugin's query worker

file(GLOB TWIN_FUZZ_PLUGIN_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/plugin/*.c)

twin_fuzz_target(fuzz_request fuzz_request.c mock_broker.c ${TWIN_FUZZ_PLUGIN_SOURCES})
target_include_directories(fuzz_request PRIVATE ${MOSQUITTO_PLUGIN_INCLUDE_DIR})
# libmosquitto provides the real properties API, topic checks and UTF-8
# validation; mock_broker.c the broker-only functions.
target_link_libraries(fuzz_request PRIVATE twin_store PkgConfig::MOSQ Threads::Threads)

# fuzz_control: the same harness with every input a control API request body
# (command decoding, every command's arguments).
twin_fuzz_target(fuzz_control fuzz_request.c mock_broker.c ${TWIN_FUZZ_PLUGIN_SOURCES})
target_compile_definitions(fuzz_control PRIVATE FUZZ_CONTROL)
target_include_directories(fuzz_control PRIVATE ${MOSQUITTO_PLUGIN_INCLUDE_DIR})
target_link_libraries(fuzz_control PRIVATE twin_store PkgConfig::MOSQ Threads::Threads)
