/*
 * geokv-gateway configuration: an INI file (libinih) and command-line overrides.
 *
 * Every setting has one name, used both as `key = value` in its [section] of the file and
 * as `--set section.key=value` on the command line; the common ones also have their own
 * flags (--listen, --data, ...). The file is read first, so flags win.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/log.h"

enum ktype { K_STR, K_U32, K_U64, K_INT, K_BOOL };

static const struct key {
	const char *section, *name;
	enum ktype type;
	size_t off;
	const char *help;
} keys[] = {
#define K(sec, name, type, field, help) {sec, name, type, offsetof(gw_config_t, field), help}
	K("gateway", "listen", K_STR, listen, "HOST:PORT to listen on (default 0.0.0.0:8443)"),
	K("gateway", "data", K_STR, data, "the node's state/ directory (LMDB store, nodestat)"),
	K("gateway", "bucket", K_STR, bucket, "bucket served by /kv/<key> (default \"default\")"),
	K("gateway", "workers", K_U32, workers, "worker threads; 0 = one per core"),
	K("gateway", "plain", K_BOOL, plain, "serve plain HTTP instead of HTTPS"),
	K("gateway", "max_conns", K_U32, max_conns, "open connections, whole process (10000)"),
	K("gateway", "backlog", K_U32, backlog, "listen backlog (1024)"),
	K("gateway", "shutdown_grace_ms", K_U32, shutdown_grace_ms, "SIGTERM: time to finish (10000)"),
	K("gateway", "log_level", K_STR, log_level, "debug|info|warn|error"),
	K("tls", "cert", K_STR, cert, "certificate chain (PEM)"),
	K("tls", "key", K_STR, key, "private key (PEM)"),
	K("tls", "ciphersuites", K_STR, ciphersuites, "comma list (OpenSSL or IANA names)"),
	K("tls", "curves", K_STR, curves, "comma list (default secp256r1,secp384r1)"),
	K("tls", "alpn", K_STR, alpn, "ALPN protocols (default http/1.1)"),
	K("tls", "tickets", K_BOOL, tickets, "issue session tickets (true)"),
	K("tls", "ticket_lifetime_s", K_U32, ticket_lifetime_s, "ticket key lifetime (86400)"),
	K("tls", "cache_size", K_INT, cache_size, "session-id cache entries; -1 = off (10000)"),
	K("tls", "handshake_threads", K_INT, handshake_threads,
	  "threads running full handshakes off the loops; 0 = one per core, -1 = inline (0)"),
	K("limits", "max_header_bytes", K_U32, lim.max_header_bytes, "request line + headers (8192)"),
	K("limits", "max_uri", K_U32, lim.max_uri, "request target bytes (4096)"),
	K("limits", "max_headers", K_U32, lim.max_headers, "header lines (64)"),
	K("limits", "max_body", K_U32, lim.max_body, "request body bytes accepted (1024)"),
	K("limits", "max_req_rate", K_U32, max_req_rate, "requests/s per connection; 0 = off (10000)"),
	K("limits", "handshake_timeout_ms", K_U32, handshake_timeout_ms, "(5000)"),
	K("limits", "header_timeout_ms", K_U32, header_timeout_ms, "first byte to end of headers (10000)"),
	K("limits", "idle_timeout_ms", K_U32, idle_timeout_ms, "keep-alive idle (60000)"),
	K("limits", "write_timeout_ms", K_U32, write_timeout_ms, "no write progress (30000)"),
	K("kv", "min_rev_wait_ms", K_U32, min_rev_wait_ms, "?min_rev wait without wait_ms (1000)"),
	K("kv", "min_rev_max_wait_ms", K_U32, min_rev_max_wait_ms, "cap on wait_ms (10000)"),
	K("health", "max_lag_ms", K_U32, health_max_lag_ms, "healthy while lag <= this (2000)"),
	K("health", "max_lag_entries", K_U64, health_max_lag_entries, "(100000)"),
	K("health", "max_contact_age_ms", K_U32, health_max_contact_age_ms,
	  "healthy while the node heard its feed/leader within this (3000)"),
	K("health", "require_node", K_BOOL, health_require_node,
	  "503 when no node status file exists (true; false for a static store)"),
#undef K
};

void gw_config_defaults(gw_config_t *c)
{
	memset(c, 0, sizeof *c);
	c->listen = strdup("0.0.0.0:8443");
	c->bucket = strdup("default");
	c->alpn = strdup("http/1.1");
	c->log_level = strdup("info");
	c->tickets = true;
	c->max_conns = 10000;
	c->backlog = 1024;
	c->lim = (gw_limits_t){.max_header_bytes = 8192, .max_uri = 4096, .max_headers = 64,
			       .max_body = 1024};
	c->max_req_rate = 10000;
	c->handshake_timeout_ms = 5000;
	c->header_timeout_ms = 10000;
	c->idle_timeout_ms = 60000;
	c->write_timeout_ms = 30000;
	c->min_rev_wait_ms = 1000;
	c->min_rev_max_wait_ms = 10000;
	c->health_max_lag_ms = 2000;
	c->health_max_lag_entries = 100000;
	c->health_max_contact_age_ms = 3000;
	c->health_require_node = true;
	c->shutdown_grace_ms = 10000;
}

void gw_config_free(gw_config_t *c)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (keys[i].type == K_STR) {
			char **p = (char **)((char *)c + keys[i].off);
			free(*p);
			*p = NULL;
		}
	free(c->config_file);
	c->config_file = NULL;
}

static int set_key(gw_config_t *c, const struct key *k, const char *v)
{
	void *p = (char *)c + k->off;
	char *end;

	errno = 0;
	switch (k->type) {
	case K_STR: {
		char *s = strdup(v);
		if (s == NULL)
			return -ENOMEM;
		free(*(char **)p);
		*(char **)p = s;
		return 0;
	}
	case K_U32: {
		unsigned long long n = strtoull(v, &end, 10);
		if (*v == '\0' || *end != '\0' || errno != 0 || n > UINT32_MAX || v[0] == '-')
			return -EINVAL;
		*(uint32_t *)p = (uint32_t)n;
		return 0;
	}
	case K_U64: {
		unsigned long long n = strtoull(v, &end, 10);
		if (*v == '\0' || *end != '\0' || errno != 0 || v[0] == '-')
			return -EINVAL;
		*(uint64_t *)p = n;
		return 0;
	}
	case K_INT: {
		long n = strtol(v, &end, 10);
		if (*v == '\0' || *end != '\0' || errno != 0 || n < -1 || n > 10000000)
			return -EINVAL;
		*(int *)p = (int)n;
		return 0;
	}
	case K_BOOL:
		if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1") ||
		    !strcasecmp(v, "on"))
			*(bool *)p = true;
		else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0") ||
			 !strcasecmp(v, "off"))
			*(bool *)p = false;
		else
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

static int set_named(gw_config_t *c, const char *section, const char *name, const char *v)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name)) {
			int rc = set_key(c, &keys[i], v);
			if (rc != 0)
				GK_ERROR("gateway", "invalid setting", "key=%s.%s value=\"%s\"", section,
					 name, v);
			return rc;
		}
	GK_ERROR("gateway", "unknown setting", "key=%s.%s", section, name);
	return -EINVAL;
}

static int ini_cb(void *ctx, const char *section, const char *name, const char *value)
{
	return set_named(ctx, section, name, value) == 0; /* inih: non-zero = ok */
}

static void usage(void)
{
	printf("usage: geokv-gateway [options]\n"
	       "HTTPS gateway: GET/HEAD /kv/<key>, /healthz, /readyz, /livez, /metrics.\n\n"
	       "  -c, --config FILE     INI file (sections below), read before the flags\n"
	       "  -d, --data DIR        the node's state/ directory\n"
	       "  -l, --listen HOST:PORT\n"
	       "      --cert FILE       certificate chain (PEM)\n"
	       "      --key FILE        private key (PEM)\n"
	       "  -b, --bucket NAME     default bucket\n"
	       "  -w, --workers N       worker threads (0 = one per core)\n"
	       "      --plain           plain HTTP (no TLS)\n"
	       "      --log-level L     debug|info|warn|error\n"
	       "  -s, --set SEC.KEY=VAL any setting below\n"
	       "  -h, --help\n\nsettings ([section] key = value):\n");
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		printf("  %s.%-22s %s\n", keys[i].section, keys[i].name, keys[i].help);
}

int gw_config_load(gw_config_t *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"data", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'}, {"cert", required_argument, NULL, 'C'},
		{"key", required_argument, NULL, 'K'}, {"bucket", required_argument, NULL, 'b'},
		{"workers", required_argument, NULL, 'w'}, {"plain", no_argument, NULL, 'P'},
		{"log-level", required_argument, NULL, 'L'}, {"set", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0},
	};
	static const char *shortopts = "c:d:l:b:w:s:h";
	int o, rc;

	/* Pass 1: only the config file and help, so the file is applied before the flags. */
	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		if (o == 'h') {
			usage();
			return 1;
		}
		if (o == 'c') {
			free(c->config_file);
			c->config_file = strdup(optarg);
		}
	}
	if (c->config_file != NULL) {
		rc = ini_parse(c->config_file, ini_cb, c);
		if (rc != 0) {
			GK_ERROR("gateway", "cannot read config", "file=%s line=%d", c->config_file, rc);
			return -EINVAL;
		}
	}
	opterr = 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		rc = 0;
		switch (o) {
		case 'c': break;
		case 'd': rc = set_named(c, "gateway", "data", optarg); break;
		case 'l': rc = set_named(c, "gateway", "listen", optarg); break;
		case 'C': rc = set_named(c, "tls", "cert", optarg); break;
		case 'K': rc = set_named(c, "tls", "key", optarg); break;
		case 'b': rc = set_named(c, "gateway", "bucket", optarg); break;
		case 'w': rc = set_named(c, "gateway", "workers", optarg); break;
		case 'P': c->plain = true; break;
		case 'L': rc = set_named(c, "gateway", "log_level", optarg); break;
		case 's': {
			char buf[512];
			char *dot, *eq;
			snprintf(buf, sizeof buf, "%s", optarg);
			dot = strchr(buf, '.');
			eq = strchr(buf, '=');
			if (dot == NULL || eq == NULL || dot > eq) {
				GK_ERROR("gateway", "bad --set", "arg=\"%s\"", optarg);
				return -EINVAL;
			}
			*dot = *eq = '\0';
			rc = set_named(c, buf, dot + 1, eq + 1);
			break;
		}
		default:
			usage();
			return -EINVAL;
		}
		if (rc != 0)
			return -EINVAL;
	}
	if (optind < argc) {
		GK_ERROR("gateway", "unexpected argument", "arg=\"%s\"", argv[optind]);
		return -EINVAL;
	}
	if (c->data == NULL) {
		GK_ERROR("gateway", "missing setting", "key=gateway.data");
		return -EINVAL;
	}
	if (!c->plain && (c->cert == NULL || c->key == NULL)) {
		GK_ERROR("gateway", "missing setting", "key=tls.cert/tls.key hint=\"or --plain\"");
		return -EINVAL;
	}
	if (!proto_bucket_valid(c->bucket, strlen(c->bucket))) {
		GK_ERROR("gateway", "invalid setting", "key=gateway.bucket value=\"%s\"", c->bucket);
		return -EINVAL;
	}
	if (c->lim.max_header_bytes < 256 || c->lim.max_header_bytes > (1u << 20)) {
		GK_ERROR("gateway", "invalid setting", "key=limits.max_header_bytes");
		return -EINVAL;
	}
	return 0;
}
