/*
 * geokv-leaf configuration: defaults < INI file < command line, through the shared loader
 * (proto/conf.h), in the convention every geokv daemon shares (docs/config.md).
 */
#include "leaf/leaf.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/conf.h"

#define SET(sec, key, type, field, def, help, ...) \
	PROTO_CONF_SETTING(leaf_config_t, sec, key, type, field, def, help, __VA_ARGS__)
#define STR PROTO_CONF_STRBUF
#define U32 PROTO_CONF_U32
#define U64 PROTO_CONF_U64
#define SIZE PROTO_CONF_SIZE
#define DUR PROTO_CONF_DURATION

static const proto_conf_setting_t settings[] = {
	SET("leaf", "data", STR, data, "./leaf-data", "data directory (holds state/)",
	    .short_opt = 'd'),
	SET("leaf", "primaries", STR, sources, NULL,
	    "feed sources HOST:PORT,... (primaries' or other leaves' feed listeners)",
	    .short_opt = 'p'),
	SET("leaf", "node_id", U64, node_id, "1", "this leaf's id, reported to its sources", .min = 1),
	SET("leaf", "name", STR, name, NULL, "name reported to sources (default: listen or leaf-ID)"),
	SET("leaf", "cluster_id", STR, cluster_id, "geokv", "cluster id the sources must have"),
	SET("leaf", "log_level", PROTO_CONF_LEVEL, log_level, "info", "debug|info|warn|error"),
	SET("leaf", "token_file", STR, token_file, NULL,
	    "file with the token sent in HELLO, also required from leaves below (default: none)"),
	SET("leaf", "listen", STR, listen, NULL,
	    "feed listener HOST:PORT for leaves following this one (default: none)", .short_opt = 'l'),
	SET("leaf", "metrics_listen", STR, metrics_listen, NULL,
	    "HOST:PORT for /metrics, /healthz, /readyz, /livez, plain HTTP (default: off)"),
	SET("feed", "stall_ms", DUR, stall_ms, "3000",
	    "no frame from the source for this long: switch to the next one", .min = 100),
	SET("feed", "backoff_min_ms", DUR, backoff_min_ms, "100", "first reconnect delay", .min = 10),
	SET("feed", "backoff_max_ms", DUR, backoff_max_ms, "5000", "reconnect delay cap", .min = 10),
	SET("feed", "ack_ms", DUR, ack_ms, "100", "position report period", .min = 10),
	SET("feed", "ring_bytes", SIZE, ring_bytes, "64M",
	    "recent entries kept to feed leaves below (further behind: a snapshot)"),
	SET("feed", "max_out", SIZE, max_out, "4M", "output queued per leaf below", .min = 65536),
	SET("feed", "max_frame", SIZE, max_frame, "64M", "largest frame accepted from a source",
	    .min = 1 << 20),
	SET("health", "max_lag_ms", DUR, max_lag_ms, "2000", "/healthz: healthy while lag <= this"),
	SET("health", "max_lag_entries", U64, max_lag_entries, "100000",
	    "/healthz: healthy while lag in entries <= this"),
	SET("store", "map_size", SIZE, map_size, NULL, "state/ initial map size (default: 1G)"),
	SET("store", "map_max", SIZE, map_max, "1T", "state/ size cap"),
	SET("store", "sync_interval_ms", DUR, sync_interval_ms, "1000", "state/ fsync period",
	    .min = 1),
	SET("tls", "ca", STR, tls_ca, NULL,
	    "verify sources against this CA, PEM (default: plain TCP to sources)"),
	SET("tls", "cert", STR, tls_cert, NULL,
	    "certificate chain: client certificate to sources, server certificate below"),
	SET("tls", "key", STR, tls_key, NULL, "its private key, PEM"),
	SET("tls", "client_ca", STR, tls_client_ca, NULL,
	    "require certificates of this CA from leaves below"),
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

static const char intro[] =
	"The geokv leaf daemon: follows the primary group's committed log (or another leaf's)\n"
	"into its own state/, which a gateway beside it serves; serves the same feed to\n"
	"leaves below it. Signals: SIGTERM/SIGINT stop gracefully.\n";

static int read_token(leaf_config_t *c)
{
	FILE *f = fopen(c->token_file, "rb");
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "geokv-leaf: cannot read token-file '%s': %s\n", c->token_file,
			strerror(errno));
		return -EINVAL;
	}
	n = fread(c->token, 1, sizeof c->token, f);
	fclose(f);
	while (n > 0 && (c->token[n - 1] == '\n' || c->token[n - 1] == '\r' ||
			 c->token[n - 1] == ' ' || c->token[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= sizeof c->token) {
		fprintf(stderr, "geokv-leaf: token-file '%s' is empty or too long\n", c->token_file);
		return -EINVAL;
	}
	c->token_len = (uint32_t)n;
	return 0;
}

int leaf_config_parse(leaf_config_t *c, int argc, char **argv)
{
	proto_conf_t pc;
	int rc;

	memset(c, 0, sizeof *c);
	proto_conf_init(&pc, "geokv-leaf", settings, NSETTINGS, c);
	pc.intro = intro;
	pc.version = LEAF_VERSION;
	if (proto_conf_defaults(&pc) != 0)
		abort();
	if ((rc = proto_conf_parse_args(&pc, argc, argv)) != 0)
		return rc;
	if (c->sources[0] == '\0') {
		fprintf(stderr, "geokv-leaf: [leaf] primaries is required (--primaries HOST:PORT,...)\n");
		return -EINVAL;
	}
	if (c->token_file[0] != '\0' && read_token(c) != 0)
		return -EINVAL;
	if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0') ||
	    (c->tls_client_ca[0] != '\0' && c->tls_cert[0] == '\0') ||
	    (c->listen[0] != '\0' && c->tls_ca[0] != '\0' && c->tls_cert[0] == '\0')) {
		fprintf(stderr, "geokv-leaf: [tls] cert and key go together; client_ca needs them; "
				"a TLS leaf that serves leaves below needs a cert\n");
		return -EINVAL;
	}
	if (c->backoff_max_ms < c->backoff_min_ms)
		c->backoff_max_ms = c->backoff_min_ms;
	if (c->name[0] == '\0') {
		if (c->listen[0] != '\0')
			snprintf(c->name, sizeof c->name, "%.63s", c->listen);
		else
			snprintf(c->name, sizeof c->name, "leaf-%llu", (unsigned long long)c->node_id);
	}
	return 0;
}
