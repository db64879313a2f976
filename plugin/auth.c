/*
 * auth.c - who a connecting client is, in sas mode (PROTOCOL.md §1).
 *
 * The username says what a client claims to be:
 *   {host}/{deviceId}/?…  a device (IoT Hub's form): the password is a SAS
 *                         token signed with the identity's key or with a
 *                         deviceConnect policy's key (a gateway), or the
 *                         TLS client certificate speaks for X.509 identities;
 *   {policyName}          a back end: the password is a service SAS token
 *                         (skn = that policy, sr = the hub host name);
 *   anything else         not ours: the broker's other authenticators decide.
 * A claim that fails is refused (CONNACK 5) with a log line saying why; the
 * client is never told. A NULL username is never ours, so the plugin cannot
 * admit an anonymous client by accident (DESIGN.md §2).
 *
 * Everything here runs inside BASIC_AUTH on the broker's one thread: one
 * identity read, at most two HMACs or two digests, no allocation beyond
 * OpenSSL's own.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "plugin.h"
#include "twin/registry.h"
#include "twin/sas.h"

#define SAS_PREFIX "SharedAccessSignature "

#define SERVICE_RIGHTS                                                                             \
	(TWIN_RIGHT_REGISTRY_READ | TWIN_RIGHT_REGISTRY_WRITE | TWIN_RIGHT_SERVICE_CONNECT)

static int64_t now_seconds(plg_ctx *ctx)
{
	return twin_store_now(ctx->store) / 10000000;
}

static int refuse(struct mosquitto *client, const char *why)
{
	const char *id = mosquitto_client_id(client);

	mosquitto_log_printf(MOSQ_LOG_NOTICE, PLG_LOG_PREFIX "refused client %s: %s",
	                     id ? id : "(none)", why);
	return MOSQ_ERR_AUTH;
}

twin_err plg_policy_find(plg_ctx *ctx, const char *name, twin_policy *out)
{
	for (size_t i = 0; i < ctx->opts.npolicies; i++) {
		if (strcmp(ctx->opts.policies[i].name, name) == 0) {
			*out = ctx->opts.policies[i];
			return TWIN_OK;
		}
	}
	return twin_policy_get(ctx->store, name, out, NULL);
}

unsigned plg_client_rights(plg_ctx *ctx, const struct mosquitto *client)
{
	plg_conn *c;

	if (ctx->opts.auth != PLG_AUTH_SAS)
		return TWIN_RIGHTS_ALL;
	c = plg_conn_by_client(&ctx->conns, client);
	return c != NULL && c->kind == PLG_CONN_BACKEND ? c->rights : 0;
}

/* Verify token t for target (§1.2 steps 2–6). With skn the named policy
 * signs, and it must grant need (*rights, if not NULL, gets all it grants);
 * without, the identity's keys sign. */
static twin_err verify_token(plg_ctx *ctx, const twin_sas *t, const twin_identity *id,
                             unsigned need, const char *target, unsigned *rights, twin_error *err)
{
	const char *keys[2];
	twin_policy p;
	twin_err rc;

	if (t->has_skn) {
		if (plg_policy_find(ctx, t->skn, &p) != TWIN_OK)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "unknown shared access policy '%s'.", t->skn);
		if ((p.rights & need) == 0) {
			OPENSSL_cleanse(&p, sizeof(p));
			return twin_error_set(err, TWIN_E_INVALID,
			                      "policy '%s' does not grant the rights needed "
			                      "here.",
			                      t->skn);
		}
		keys[0] = p.primary_key;
		keys[1] = p.secondary_key;
		if (rights != NULL)
			*rights = p.rights;
	} else if (id != NULL && id->auth_type == TWIN_AUTH_SAS) {
		keys[0] = id->primary_key;
		keys[1] = id->secondary_key;
	} else {
		return twin_error_set(err, TWIN_E_INVALID,
		                      "the token names no policy and the identity has no "
		                      "SAS keys.");
	}
	rc = twin_sas_verify(t, keys, 2, target, now_seconds(ctx), err);
	OPENSSL_cleanse(&p, sizeof(p));
	return rc;
}

/* Non-zero if the hex digest of cert by md equals a thumbprint of id. */
static int thumbprint_matches(X509 *cert, const EVP_MD *md, const twin_identity *id)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	unsigned len = 0;

	if (X509_digest(cert, md, digest, &len) != 1)
		return 0;
	for (unsigned i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02X", digest[i]);
	return (id->primary_thumbprint[0] && strcasecmp(hex, id->primary_thumbprint) == 0) ||
	       (id->secondary_thumbprint[0] && strcasecmp(hex, id->secondary_thumbprint) == 0);
}

/* The subject CN of cert equals device_id, and it is the only CN. */
static int common_name_is(X509 *cert, const char *device_id)
{
	X509_NAME *subject = X509_get_subject_name(cert);
	int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	const ASN1_STRING *cn;

	if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0)
		return 0;
	cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
	return (size_t)ASN1_STRING_length(cn) == strlen(device_id) &&
	       memcmp(ASN1_STRING_get0_data(cn), device_id, strlen(device_id)) == 0;
}

/* §1.3: the TLS client certificate of an X.509 identity. The listener
 * (require_certificate true) has verified the chain and the key. */
static twin_err verify_certificate(struct mosquitto *client, const twin_identity *id,
                                   twin_error *err)
{
	X509 *cert = mosquitto_client_certificate(client);
	int ok;

	if (cert == NULL)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "no client certificate (the identity is X.509; the "
		                      "listener needs require_certificate true).");
	if (id->auth_type == TWIN_AUTH_SELF_SIGNED)
		ok = thumbprint_matches(cert, EVP_sha1(), id) ||
		     thumbprint_matches(cert, EVP_sha256(), id);
	else /* A self-signed certificate the listener trusts is no CA's word. */
		ok = X509_check_issued(cert, cert) != X509_V_OK &&
		     common_name_is(cert, id->device_id);
	X509_free(cert);
	if (!ok)
		return twin_error_set(err, TWIN_E_INVALID,
		                      id->auth_type == TWIN_AUTH_SELF_SIGNED
		                              ? "the certificate matches neither thumbprint."
		                              : "the certificate is not CA-issued with CN = "
		                                "deviceId.");
	return TWIN_OK;
}

static int is_token(const char *password)
{
	return password != NULL && strncmp(password, SAS_PREFIX, strlen(SAS_PREFIX)) == 0;
}

/* The credential of a device whose identity is id. */
static twin_err device_credential(plg_ctx *ctx, struct mosquitto *client, const twin_identity *id,
                                  const char *password, int64_t *expires, twin_error *err)
{
	char target[TWIN_SAS_TARGET_MAX];
	twin_sas t;
	int x509 = id->auth_type == TWIN_AUTH_SELF_SIGNED || id->auth_type == TWIN_AUTH_CA;
	twin_err parsed = is_token(password) ? twin_sas_parse(password, &t, err)
	                                     : twin_error_set(err, TWIN_E_INVALID,
	                                                      "the password is not a SAS token.");

	*expires = 0;
	/* An X.509 identity ignores a password unless it is a policy token
	 * (§1.3). */
	if (x509 && !(parsed == TWIN_OK && t.has_skn))
		return verify_certificate(client, id, err);
	if (parsed != TWIN_OK ||
	    twin_sas_target(target, sizeof(target), ctx->opts.hostname, id->device_id, NULL, err) !=
	            TWIN_OK ||
	    verify_token(ctx, &t, id, TWIN_RIGHT_DEVICE_CONNECT, target, NULL, err) != TWIN_OK)
		return TWIN_E_INVALID;
	*expires = t.se;
	return TWIN_OK;
}

static int authenticate_device(plg_ctx *ctx, struct mosquitto *client, const char *username,
                               const char *password, plg_principal *who)
{
	twin_username u;
	twin_identity id;
	twin_error err;
	twin_err rc;

	if (twin_username_parse(username, &u, &err) != TWIN_OK ||
	    twin_username_check_client_id(&u, mosquitto_client_id(client), &err) != TWIN_OK)
		return refuse(client, err.message);
	if (u.module_id[0] != '\0')
		return refuse(client, "module identities are not supported.");
	rc = twin_device_get(ctx->store, u.device_id, &id, &err);
	if (rc == TWIN_E_NOT_FOUND)
		return refuse(client, "no such device in the registry.");
	if (rc != TWIN_OK)
		return refuse(client, err.message);
	if (!id.enabled)
		return refuse(client, "the device is disabled.");
	rc = device_credential(ctx, client, &id, password, &who->expires, &err);
	OPENSSL_cleanse(&id, sizeof(id));
	if (rc != TWIN_OK)
		return refuse(client, err.message);
	who->kind = PLG_CONN_DEVICE;
	strcpy(who->device_id, u.device_id);
	return MOSQ_ERR_SUCCESS;
}

/* A back end: username = policy name, password = a token of that policy
 * for the hub itself (sr = hostname). */
static int authenticate_backend(plg_ctx *ctx, struct mosquitto *client, const char *username,
                                const char *password, plg_principal *who)
{
	twin_error err;
	twin_sas t;

	if (twin_sas_parse(password, &t, &err) != TWIN_OK)
		return refuse(client, err.message);
	if (!t.has_skn || strcmp(t.skn, username) != 0)
		return refuse(client, "a back end's username must be the token's policy (skn).");
	if (verify_token(ctx, &t, NULL, SERVICE_RIGHTS, ctx->opts.hostname, &who->rights, &err) !=
	    TWIN_OK)
		return refuse(client, err.message);
	who->kind = PLG_CONN_BACKEND;
	who->device_id[0] = '\0';
	who->expires = t.se;
	return MOSQ_ERR_SUCCESS;
}

int plg_authenticate(plg_ctx *ctx, struct mosquitto *client, const char *username,
                     const char *password, plg_principal *who)
{
	memset(who, 0, sizeof(*who));
	if (username == NULL)
		return MOSQ_ERR_PLUGIN_DEFER;
	if (strchr(username, '/') != NULL)
		return authenticate_device(ctx, client, username, password, who);
	if (is_token(password))
		return authenticate_backend(ctx, client, username, password, who);
	return MOSQ_ERR_PLUGIN_DEFER;
}

int plg_policies_init(plg_ctx *ctx)
{
	twin_policy p;
	twin_error err;
	twin_err rc;

	if (ctx->opts.auth != PLG_AUTH_SAS || plg_policy_find(ctx, "iothubowner", &p) == TWIN_OK) {
		OPENSSL_cleanse(&p, sizeof(p));
		return MOSQ_ERR_SUCCESS;
	}
	memset(&p, 0, sizeof(p));
	strcpy(p.name, "iothubowner");
	p.rights = TWIN_RIGHTS_ALL;
	rc = twin_policy_generate_keys(&p, &err);
	if (rc == TWIN_OK)
		rc = twin_policy_put(ctx->store, &p, &err);
	if (rc == TWIN_OK)
		rc = twin_store_commit(ctx->store, &err);
	if (rc != TWIN_OK) {
		OPENSSL_cleanse(&p, sizeof(p));
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "cannot create iothubowner: %s",
		                     err.message);
		return MOSQ_ERR_UNKNOWN;
	}
	/* Shown once, when made: the operator's way in to create devices. */
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
	                     PLG_LOG_PREFIX
	                     "created the shared access policy iothubowner (all rights). "
	                     "Its connection string, shown only now: "
	                     "HostName=%s;SharedAccessKeyName=iothubowner;SharedAccessKey=%s",
	                     ctx->opts.hostname, p.primary_key);
	OPENSSL_cleanse(&p, sizeof(p));
	return MOSQ_ERR_SUCCESS;
}
