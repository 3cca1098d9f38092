/*
 * geokv-gateway configuration through the shared loader (proto/conf.h): defaults < INI file
 * (-c) < command line. Every setting is `key = value` in its [section] of the file,
 * `--key-name VALUE` and `--set section.key=VALUE` on the command line; docs/config.md.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/conf.h"
#include "proto/log.h"
#include "proto/version.h"

#define SET(sec, key, type, field, def, help, ...) \
	PROTO_CONF_SETTING(gw_config_t, sec, key, type, field, def, help, __VA_ARGS__)
#define STR PROTO_CONF_STR
#define BOOL PROTO_CONF_BOOL
#define U32 PROTO_CONF_U32
#define U64 PROTO_CONF_U64
#define INT PROTO_CONF_INT
#define SIZE PROTO_CONF_SIZE
#define DUR PROTO_CONF_DURATION

static const proto_conf_setting_t settings[] = {
	SET("gateway", "listen", STR, listen, "0.0.0.0:8443", "HOST:PORT to listen on",
	    .short_opt = 'l'),
	SET("gateway", "metrics_listen", STR, metrics_listen, NULL,
	    "HOST:PORT of a plain-HTTP listener serving only /metrics; empty = none"),
	SET("gateway", "metrics_on_public", BOOL, metrics_on_public, "false",
	    "also serve /metrics on the public (HTTPS) listener"),
	SET("gateway", "data", STR, data, NULL, "the node's state/ directory (LMDB store, nodestat)",
	    .short_opt = 'd'),
	SET("gateway", "bucket", STR, bucket, "default", "bucket served by /kv/<key>",
	    .short_opt = 'b'),
	SET("gateway", "workers", U32, workers, "0", "worker threads; 0 = one per core",
	    .short_opt = 'w'),
	SET("gateway", "plain", BOOL, plain, "false", "serve plain HTTP instead of HTTPS"),
	SET("gateway", "max_conns", U32, max_conns, "10000", "open connections, whole process"),
	SET("gateway", "backlog", U32, backlog, "1024", "listen backlog"),
	SET("gateway", "shutdown_grace_ms", DUR, shutdown_grace_ms, "10000", "SIGTERM: time to finish"),
	SET("gateway", "log_level", STR, log_level, "info", "debug|info|warn|error"),
	SET("tls", "cert", STR, cert, NULL, "certificate chain (PEM)"),
	SET("tls", "key", STR, key, NULL, "private key (PEM)"),
	SET("tls", "ciphersuites", STR, ciphersuites, NULL, "comma list (OpenSSL or IANA names)"),
	SET("tls", "curves", STR, curves, NULL, "comma list (default secp256r1,secp384r1)"),
	SET("tls", "alpn", STR, alpn, "http/1.1", "ALPN protocols"),
	SET("tls", "tickets", BOOL, tickets, "true", "issue session tickets"),
	SET("tls", "ticket_lifetime_s", U32, ticket_lifetime_s, "86400", "ticket key lifetime, s"),
	SET("tls", "cache_size", INT, cache_size, "10000", "session-id cache entries; -1 = off",
	    .min = -1, .max = 10000000),
	SET("tls", "handshake_threads", INT, handshake_threads, "0",
	    "threads running full handshakes off the loops; 0 = one per core, -1 = inline",
	    .min = -1, .max = 10000000),
	SET("limits", "max_header_bytes", SIZE, lim.max_header_bytes, "8192",
	    "request line + headers", .min = 256, .max = 1u << 20),
	SET("limits", "max_uri", SIZE, lim.max_uri, "4096", "request target bytes"),
	SET("limits", "max_headers", U32, lim.max_headers, "64", "header lines"),
	SET("limits", "max_body", SIZE, lim.max_body, "1024", "request body bytes accepted"),
	SET("limits", "max_req_rate", U32, max_req_rate, "10000", "requests/s per connection; 0 = off"),
	SET("limits", "handshake_timeout_ms", DUR, handshake_timeout_ms, "5000", "TLS handshake"),
	SET("limits", "header_timeout_ms", DUR, header_timeout_ms, "10000",
	    "first byte to end of headers"),
	SET("limits", "idle_timeout_ms", DUR, idle_timeout_ms, "60000", "keep-alive idle"),
	SET("limits", "write_timeout_ms", DUR, write_timeout_ms, "30000", "no write progress"),
	SET("kv", "min_rev_wait_ms", DUR, min_rev_wait_ms, "1000", "?min_rev wait without wait_ms"),
	SET("kv", "min_rev_max_wait_ms", DUR, min_rev_max_wait_ms, "10000", "cap on wait_ms"),
	SET("health", "max_lag_ms", DUR, health_max_lag_ms, "2000", "healthy while lag <= this"),
	SET("health", "max_lag_entries", U64, health_max_lag_entries, "100000",
	    "healthy while lag in entries <= this"),
	SET("health", "max_contact_age_ms", DUR, health_max_contact_age_ms, "3000",
	    "healthy while the node heard its feed/leader within this"),
	SET("health", "require_node", BOOL, health_require_node, "true",
	    "503 when no node status file exists (false for a static store)"),
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

static const char intro[] =
	"HTTPS gateway: GET/HEAD /kv/<key>, /healthz, /readyz, /livez; /metrics on\n"
	"--metrics-listen (plain HTTP), or on the public port with --metrics-on-public.\n"
	"Signals: SIGHUP reloads the certificate; SIGTERM/SIGINT stop gracefully.\n";

static void conf_init(proto_conf_t *pc, gw_config_t *c)
{
	proto_conf_init(pc, "geokv-gateway", settings, NSETTINGS, c);
	pc->intro = intro;
	pc->version = geokv_version();
}

void gw_config_defaults(gw_config_t *c)
{
	proto_conf_t pc;

	memset(c, 0, sizeof *c);
	conf_init(&pc, c);
	if (proto_conf_defaults(&pc) != 0)
		abort(); /* a bad default in the table above */
}

void gw_config_free(gw_config_t *c)
{
	proto_conf_t pc;

	conf_init(&pc, c);
	proto_conf_free(&pc);
	free(c->config_file);
	c->config_file = NULL;
}

/* Settings that depend on each other or need more than their type; named as in the file. */
static int check(const gw_config_t *c)
{
	enum geokv_log_level lvl;

	if (c->data == NULL) {
		fprintf(stderr, "geokv-gateway: missing setting [gateway] data (--data DIR)\n");
		return -EINVAL;
	}
	if (!c->plain && (c->cert == NULL || c->key == NULL)) {
		fprintf(stderr, "geokv-gateway: missing setting [tls] cert and key (--cert, --key), "
				"or --plain for plain HTTP\n");
		return -EINVAL;
	}
	if (!proto_bucket_valid(c->bucket, strlen(c->bucket))) {
		fprintf(stderr, "geokv-gateway: [gateway] bucket: bad bucket name '%s'\n", c->bucket);
		return -EINVAL;
	}
	if (geokv_log_parse_level(c->log_level, &lvl) != 0) {
		fprintf(stderr, "geokv-gateway: [gateway] log_level: bad value '%s' "
				"(want debug, info, warn or error)\n", c->log_level);
		return -EINVAL;
	}
	return 0;
}

int gw_config_load(gw_config_t *c, int argc, char **argv)
{
	proto_conf_t pc;
	int rc;

	conf_init(&pc, c);
	if ((rc = proto_conf_parse_args(&pc, argc, argv)) != 0)
		return rc;
	if (pc.config_file != NULL) {
		free(c->config_file);
		if ((c->config_file = strdup(pc.config_file)) == NULL)
			return -ENOMEM;
	}
	return check(c);
}
