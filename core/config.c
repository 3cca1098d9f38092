/*
 * geokv-primary configuration: defaults < INI file < command line, through the shared loader
 * (proto/conf.h). One table describes every setting, so the INI key, the flag and --help
 * cannot drift apart. The convention is the same in every daemon: docs/config.md.
 */
#include "core/primary.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include "proto/conf.h"
#include "proto/proto.h"

#define SET(sec, key, type, field, def, help, ...) \
	PROTO_CONF_SETTING(prim_config_t, sec, key, type, field, def, help, __VA_ARGS__)
#define STR PROTO_CONF_STRBUF
#define U32 PROTO_CONF_U32
#define U64 PROTO_CONF_U64
#define SIZE PROTO_CONF_SIZE
#define DUR PROTO_CONF_DURATION

/* Every setting of geokv-primary; docs/config.md and docs/primary.md describe them. */
static const proto_conf_setting_t settings[] = {
	SET("primary", "data", STR, data, "./data", "data directory (holds raft/ and state/)",
	    .short_opt = 'd'),
	SET("primary", "listen", STR, listen, "127.0.0.1:7400", "client listener HOST:PORT",
	    .short_opt = 'l'),
	SET("primary", "advertise", STR, advertise, NULL,
	    "HOST:PORT clients are told to use (default: listen)"),
	SET("primary", "node_id", U64, node_id, "1", "this node's id (1..)", .min = 1),
	SET("primary", "cluster_id", STR, cluster_id, "geokv",
	    "cluster id a client's HELLO must match (empty in HELLO = any)"),
	SET("primary", "log_level", PROTO_CONF_LEVEL, log_level, "info", "debug|info|warn|error"),
	SET("primary", "token_file", STR, token_file, NULL,
	    "file with the token every HELLO must carry (default: none)"),
	SET("primary", "metrics_listen", STR, metrics_listen, NULL,
	    "HOST:PORT for Prometheus GET /metrics, plain HTTP (default: off)"),
	SET("limits", "max_frame", SIZE, max_frame, "64M", "largest frame accepted", .min = 1024),
	SET("limits", "max_conns", U32, max_conns, "10000", "client connections", .min = 1),
	SET("limits", "max_inflight", U32, max_inflight, "4096", "writes in flight per connection",
	    .min = 1),
	SET("limits", "hello_timeout_ms", DUR, hello_timeout_ms, "10000",
	    "time to complete HELLO, else closed (0 = never)"),
	SET("limits", "idle_timeout_ms", DUR, idle_timeout_ms, "300000",
	    "time without traffic before a connection is closed (0 = never)"),
	SET("store", "map_size", SIZE, map_size, NULL, "state/ initial map size (default: 1G)"),
	SET("store", "map_max", SIZE, map_max, "1T", "state/ size cap; writes beyond it fail KV_EFULL"),
	SET("store", "sync_interval_ms", DUR, sync_interval_ms, "1000",
	    "state/ fsync + log compaction period", .min = 1),
	SET("store", "ttl_interval_ms", DUR, ttl_interval_ms, "1000", "expiry scan period (0 = off)"),
	SET("store", "ttl_batch", U32, ttl_batch, "1000", "expired keys deleted per scan"),
	SET("log", "log_map_size", SIZE, log_map_size, NULL, "raft/ log map size (default: 4G)"),
	SET("log", "group_max_bytes", SIZE, group_max_bytes, "64M", "entry bytes per commit group",
	    .min = 1),
	SET("log", "log_keep", U64, log_keep, "10000", "log entries kept behind the synced store"),
	SET("tls", "cert", STR, tls_cert, NULL,
	    "client listener certificate chain, PEM (default: none, plain TCP)"),
	SET("tls", "key", STR, tls_key, NULL, "its private key, PEM"),
	SET("tls", "client_ca", STR, tls_client_ca, NULL,
	    "require client certificates signed by this CA, PEM (default: not asked)"),
	SET("cluster", "peers", STR, peers, NULL,
	    "founding members ID=HOST:PORT,... (peer addresses, this node too; default: alone)"),
	SET("cluster", "peer_listen", STR, peer_listen, NULL,
	    "peer listener HOST:PORT (default: this node's address in peers)"),
	SET("cluster", "tick_ms", DUR, tick_ms, "20", "raft tick: heartbeat period", .min = 1),
	SET("cluster", "election_ticks", U32, election_ticks, "10",
	    "election timeout in ticks, randomized in [t, 2t)", .min = 3),
	SET("cluster", "proposal_timeout_ms", DUR, prop_timeout_ms, "5000",
	    "a write not committed within this gets PROTO_ETIMEDOUT (outcome unknown)", .min = 100),
	SET("feed", "feed_listen", STR, feed_listen, NULL,
	    "leaf feed listener HOST:PORT, TLS as [tls] (default: no feed)"),
	SET("feed", "feed_max_out", SIZE, feed_max_out, "4M",
	    "output queued per leaf before its stream waits", .min = 65536),
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

static const char intro[] =
	"The geokv primary daemon: takes client writes, makes them durable in its log,\n"
	"applies them to the store and answers reads.\n"
	"Signals: SIGTERM/SIGINT stop gracefully (in-flight writes finish, store synced).\n";

void prim_config_defaults(prim_config_t *c)
{
	proto_conf_t pc;

	memset(c, 0, sizeof *c);
	proto_conf_init(&pc, "geokv-primary", settings, NSETTINGS, c);
	if (proto_conf_defaults(&pc) != 0)
		abort(); /* a bad default in the table above */
}

_Static_assert(sizeof(((prim_config_t *)0)->token) == PROTO_MAX_TOKEN,
	       "token buffer must hold the protocol's largest HELLO token");

/*
 * Read the HELLO token from c->token_file. The token itself is never a flag: argv is
 * readable by every local user through /proc. Trailing whitespace (the newline an editor or
 * `echo` adds) is not part of it. A file others can read is accepted with a warning.
 */
static int read_token(prim_config_t *c)
{
	uint8_t buf[2 * PROTO_MAX_TOKEN]; /* room for the token plus generous whitespace */
	struct stat st;
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = open(c->token_file, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "geokv-primary: cannot read token-file '%s': %s\n", c->token_file,
			strerror(errno));
		return -EINVAL;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		fprintf(stderr, "geokv-primary: warning: token-file '%s' is readable by others "
				"(chmod 600 it)\n", c->token_file);
	while (n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "geokv-primary: cannot read token-file '%s': %s\n",
				c->token_file, strerror(errno));
			close(fd);
			return -EINVAL;
		}
		n += (size_t)r;
	}
	close(fd);
	if (n == sizeof buf)
		n = SIZE_MAX; /* more than we read: too long whatever its tail is */
	while (n > 0 && n != SIZE_MAX && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
					  buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	if (n == 0 || n > PROTO_MAX_TOKEN) {
		fprintf(stderr, "geokv-primary: token-file '%s' %s\n", c->token_file,
			n == 0 ? "is empty" : "holds more than 4096 bytes");
		return -EINVAL;
	}
	memcpy(c->token, buf, n);
	c->token_len = (uint32_t)n;
	return 0;
}

int prim_config_parse(prim_config_t *c, int argc, char **argv)
{
	proto_conf_t pc;
	int rc;

	prim_config_defaults(c);
	proto_conf_init(&pc, "geokv-primary", settings, NSETTINGS, c);
	pc.intro = intro;
	static char version[128];
	snprintf(version, sizeof version, "%s, protocol %d", geokv_version(), PROTO_VERSION);
	pc.version = version;
	if ((rc = proto_conf_parse_args(&pc, argc, argv)) != 0)
		return rc;
	if (c->advertise[0] == '\0')
		snprintf(c->advertise, sizeof c->advertise, "%s", c->listen);
	if (c->token_file[0] != '\0' && read_token(c) != 0)
		return -EINVAL;
	if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0') ||
	    (c->tls_client_ca[0] != '\0' && c->tls_cert[0] == '\0')) {
		fprintf(stderr, "geokv-primary: [tls] cert and key go together (--cert, --key), "
				"and client_ca needs them\n");
		return -EINVAL;
	}
	return 0;
}
