/*
 * notify.c - desired-property notifications (PROTOCOL.md §3, §5.3).
 *
 * Only the device's live connection is notified, and only while it holds
 * the desired subscription; nothing is queued for offline devices. What the
 * device was last handed (L, §3.1) is saved in the same batch as the
 * notification, so a failed commit loses both together.
 */
#include "plugin.h"

static void hand_out(plg_ctx *ctx, plg_conn *c, int64_t version, char *body, size_t len)
{
	plg_notify(ctx, c, version, body, len);
	if (version > c->session.notified_version) {
		c->session.notified_version = version;
		plg_session_save(ctx, c);
	}
}

void plg_desired_changed(plg_ctx *ctx, const char *device_id, twin_write_result *res)
{
	plg_conn *c = plg_conn_by_device(&ctx->conns, device_id);

	if (c == NULL || c->session.desired_qos < 0 || res->notification == NULL)
		return;
	hand_out(ctx, c, res->desired_version, res->notification, res->notification_len);
	res->notification = NULL; /* taken by the outbox */
	res->notification_len = 0;
}

void plg_catchup(plg_ctx *ctx, plg_conn *c)
{
	int64_t version;
	twin_error err;
	size_t len;
	char *body;

	if (!ctx->opts.catchup)
		return;
	if (twin_desired_since(ctx->store, c->device_id, c->session.notified_version, &body, &len,
	                       &version, &err) != TWIN_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "catch-up for %s failed: %s",
		                     c->device_id, err.message);
		return;
	}
	if (body != NULL)
		hand_out(ctx, c, version, body, len);
}
