/*
 * mock_broker.h - a stand-in for the Mosquitto 2.0.11 broker around one
 * plugin, for fuzz_request.c.
 *
 * It implements the broker functions the plugin calls (callback
 * registration, targeted and broadcast publishes, client accessors, kicking
 * a client, logging) and drives the plugin's callbacks the way 2.0.11's
 * src/handle_publish.c, src/control.c, src/security.c and src/loop.c do:
 * the ACL WRITE check before MESSAGE or CONTROL, a disconnect for any
 * other non-success return, BASIC_AUTH then the old connection's
 * DISCONNECT on a session takeover, DISCONNECT before the will's ACL check,
 * a synchronous DISCONNECT from mosquitto_kick_client_by_clientid. The
 * properties API, topic checks and UTF-8 validation are libmosquitto's own.
 *
 * It knows nothing of twins: what the plugin answers is for the fuzz target
 * to judge. It aborts, naming the call, when the plugin breaks the broker
 * API's contract: an argument the broker would refuse, a callback
 * registered twice, a broker function called off the broker thread.
 *
 * Memory: clients are created and freed by the caller (mock_client_new,
 * mock_client_free); a client must be disconnected before it is freed.
 * Publishes are owned by the mock until mock_publishes_drain frees them.
 */
#ifndef TWIN_FUZZ_MOCK_BROKER_H
#define TWIN_FUZZ_MOCK_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

/* The identifier handed to mosquitto_plugin_init: global settings (no
 * listener), as with per_listener_settings false. */
mosquitto_plugin_id_t *mock_plugin_id(void);

/* Number of callbacks still registered (0 after a clean plugin cleanup). */
size_t mock_callbacks_registered(void);

/* A client context. id is required; username and password may be NULL
 * (anonymous); protocol_version is 3, 4 or 5. Copies the strings. Aborts
 * when out of memory. */
struct mosquitto *mock_client_new(const char *id, const char *username, const char *password,
                                  bool clean_start, int protocol_version);

/* Free a client that is not connected. NULL is accepted. */
void mock_client_free(struct mosquitto *client);

/* The broker exits: the connection ends without DISCONNECT (2.0 sends
 * none at shutdown). */
void mock_client_forget(struct mosquitto *client);

bool mock_client_connected(const struct mosquitto *client);

/* CONNECT: BASIC_AUTH as mosquitto_unpwd_check does it, with
 * allow_anonymous true and no password_file (a deferral admits only a
 * client without username). On success, a connected client with the same id
 * is taken over: its DISCONNECT follows the new client's BASIC_AUTH. On
 * refusal the client gets its DISCONNECT like any torn-down connection.
 * Returns the BASIC_AUTH verdict (MOSQ_ERR_SUCCESS when admitted). */
int mock_connect(struct mosquitto *client);

/* The connection ends: DISCONNECT, then, if will_topic is not NULL, the
 * will's ACL WRITE check. Returns that check's verdict (MOSQ_ERR_SUCCESS:
 * the broker would publish the will), or MOSQ_ERR_NOT_FOUND when there was
 * no will or the client was not connected. */
int mock_disconnect(struct mosquitto *client, const char *will_topic, const void *will_payload,
                    uint32_t will_len, int will_qos, bool will_retain);

/* One ACL check with every ACL_CHECK callback: the first non-deferral wins;
 * all deferring is a denial (MOSQ_ERR_ACL_DENIED). */
int mock_acl_check(struct mosquitto *client, int access, const char *topic, const void *payload,
                   uint32_t payloadlen, int qos, bool retain);

/* What became of an incoming PUBLISH. */
typedef enum mock_pub_fate {
	MOCK_PUB_DENIED = 0,   /* ACL denied or every check deferred: dropped */
	MOCK_PUB_CONTROL,      /* a $CONTROL/ topic: handled by CONTROL (or nobody) */
	MOCK_PUB_STORED,       /* MESSAGE returned success: stored and fanned out */
	MOCK_PUB_DISCONNECTED, /* a callback returned another error: client closed */
} mock_pub_fate;

/* An incoming PUBLISH, from after topic validation on (handle__publish).
 * topic is heap memory MESSAGE may edit in place; payload is
 * payloadlen+1 bytes with a 0 after the payload, NULL when payloadlen is 0
 * (what 2.0.11 allocates). properties may be NULL. The caller keeps
 * ownership of all three. *retain gets the retain flag MESSAGE left. */
mock_pub_fate mock_publish_in(struct mosquitto *client, char *topic, void *payload,
                              uint32_t payloadlen, int qos, bool *retain,
                              mosquitto_property *properties);

/* One broker loop iteration's TICK. */
void mock_tick(void);

/* SIGHUP: RELOAD, then BASIC_AUTH again for each of the n sessions; a
 * connected client that is refused is disconnected. */
void mock_reload(struct mosquitto **clients, size_t n);

/* A publish the plugin made. client_id is NULL for a broadcast. */
typedef struct mock_publish {
	char *client_id;
	char *topic;
	void *payload; /* len bytes, then a 0 */
	int len;
	int qos;
	bool retain;
	mosquitto_property *properties;
	bool connected; /* a client with client_id was connected at the call */
} mock_publish;

/* Hand each recorded publish, in order, to fn, then free them all. Returns
 * how many there were. */
size_t mock_publishes_drain(void (*fn)(const mock_publish *m, void *arg), void *arg);

#endif
