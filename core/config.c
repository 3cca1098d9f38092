/*
 * geokv-primary configuration: defaults < INI file (libinih) < command-line flags.
 * One table describes every setting, so the INI key, the flag and --help cannot drift apart.
 */
#include "core/primary.h"

#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include <ini.h>

#include "proto/proto.h"

enum kind { K_STR, K_U64, K_U32, K_SIZE, K_SIZE32, K_LEVEL };

struct setting {
	const char *name;
	enum kind kind;
	size_t off;
	size_t cap;             /* K_STR: buffer size */
	const char *help;
};

#define S(field) offsetof(prim_config_t, field)
static const struct setting settings[] = {
	{"data", K_STR, S(data), sizeof(((prim_config_t *)0)->data),
	 "data directory (holds raft/ and state/)"},
	{"listen", K_STR, S(listen), sizeof(((prim_config_t *)0)->listen),
	 "client listener HOST:PORT"},
	{"advertise", K_STR, S(advertise), sizeof(((prim_config_t *)0)->advertise),
	 "HOST:PORT clients are told to use (default: listen)"},
	{"node-id", K_U64, S(node_id), 0, "this node's id (1..)"},
	{"cluster-id", K_STR, S(cluster_id), sizeof(((prim_config_t *)0)->cluster_id),
	 "cluster id a client's HELLO must match (or leave empty)"},
	{"max-frame", K_SIZE32, S(max_frame), 0, "largest frame accepted, bytes (K/M/G)"},
	{"log-level", K_LEVEL, S(log_level), 0, "debug|info|warn|error"},
	{"map-size", K_SIZE, S(map_size), 0, "state/ initial map size (K/M/G/T)"},
	{"map-max", K_SIZE, S(map_max), 0, "state/ size cap; writes beyond it fail KV_EFULL"},
	{"log-map-size", K_SIZE, S(log_map_size), 0, "raft/ log map size (K/M/G/T)"},
	{"max-inflight", K_U32, S(max_inflight), 0, "writes in flight per connection"},
	{"max-conns", K_U32, S(max_conns), 0, "client connections"},
	{"group-max-bytes", K_SIZE, S(group_max_bytes), 0, "entry bytes per commit group"},
	{"sync-interval-ms", K_U32, S(sync_interval_ms), 0, "store fsync + log compaction period"},
	{"log-keep", K_U64, S(log_keep), 0, "log entries kept behind the synced store"},
	{"ttl-interval-ms", K_U32, S(ttl_interval_ms), 0, "expiry scan period (0 = off)"},
	{"ttl-batch", K_U32, S(ttl_batch), 0, "expired keys deleted per scan"},
	{"hello-timeout-ms", K_U32, S(hello_timeout_ms), 0,
	 "ms to complete HELLO, else closed (0 = never)"},
	{"idle-timeout-ms", K_U32, S(idle_timeout_ms), 0,
	 "ms without traffic before a connection is closed (0 = never)"},
	{"metrics-listen", K_STR, S(metrics_listen), sizeof(((prim_config_t *)0)->metrics_listen),
	 "HOST:PORT for Prometheus GET /metrics, plain HTTP (default: off)"},
	{"token-file", K_STR, S(token_file), sizeof(((prim_config_t *)0)->token_file),
	 "file with the token every HELLO must carry (default: none)"},
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

void prim_config_defaults(prim_config_t *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->data, sizeof c->data, "./data");
	snprintf(c->listen, sizeof c->listen, "127.0.0.1:7400");
	snprintf(c->cluster_id, sizeof c->cluster_id, "geokv");
	c->node_id = 1;
	c->max_frame = PROTO_DEFAULT_MAX_FRAME;
	c->log_level = GEOKV_LOG_INFO;
	c->map_max = (size_t)1 << 40;
	c->max_inflight = 4096;
	c->max_conns = 10000;
	c->group_max_bytes = (size_t)64 << 20;
	c->sync_interval_ms = 1000;
	c->log_keep = 10000;
	c->ttl_interval_ms = 1000;
	c->ttl_batch = 1000;
	c->hello_timeout_ms = 10000;
	c->idle_timeout_ms = 300000;
}

int prim_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (s == NULL || *s == '\0' || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'B' || *end == 'b') /* accept KiB, MB, ... as binary */
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static const struct setting *find_setting(const char *name)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

/* Store one value; prints why to stderr and returns -EINVAL when it is bad. */
static int set_value(prim_config_t *c, const struct setting *st, const char *val,
		     const char *where)
{
	char *p = (char *)c + st->off;
	uint64_t v;
	int bad = 0;

	switch (st->kind) {
	case K_STR:
		if (strlen(val) >= st->cap)
			bad = 1;
		else
			snprintf(p, st->cap, "%s", val);
		break;
	case K_U64:
	case K_U32: {
		char *end;
		errno = 0;
		v = strtoull(val, &end, 10);
		if (errno || end == val || *end != '\0' || *val == '-' ||
		    (st->kind == K_U32 && v > UINT32_MAX))
			bad = 1;
		else if (st->kind == K_U64)
			*(uint64_t *)p = v;
		else
			*(uint32_t *)p = (uint32_t)v;
		break;
	}
	case K_SIZE:
		if (prim_parse_size(val, &v) != 0 || v > SIZE_MAX)
			bad = 1;
		else
			*(size_t *)p = (size_t)v;
		break;
	case K_SIZE32:
		if (prim_parse_size(val, &v) != 0 || v > UINT32_MAX)
			bad = 1;
		else
			*(uint32_t *)p = (uint32_t)v;
		break;
	case K_LEVEL:
		if (geokv_log_parse_level(val, (enum geokv_log_level *)p) != 0)
			bad = 1;
		break;
	}
	if (bad) {
		fprintf(stderr, "geokv-primary: %s: bad value for %s: '%s'\n", where, st->name, val);
		return -EINVAL;
	}
	return 0;
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

struct ini_ctx {
	prim_config_t *c;
	const char *path;
	int err;
};

static int on_ini_value(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *x = user;
	const struct setting *st;

	if (section[0] != '\0' && strcmp(section, "primary") != 0)
		return 1; /* other daemons' sections may share the file */
	if ((st = find_setting(name)) == NULL) {
		fprintf(stderr, "geokv-primary: %s: unknown key '%s'\n", x->path, name);
		x->err = -EINVAL;
		return 1;
	}
	if (set_value(x->c, st, value, x->path) != 0)
		x->err = -EINVAL;
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: geokv-primary [-c FILE] [--OPTION VALUE]...\n"
		"\n"
		"The geokv primary daemon. Settings come from defaults, then the INI file given\n"
		"with -c (keys at top level or in [primary], named as the flags below without\n"
		"'--'), then the flags.\n"
		"\n"
		"  -c, --config FILE              INI configuration file\n");
	for (size_t i = 0; i < NSETTINGS; i++) {
		char flag[40];
		snprintf(flag, sizeof flag, "--%s VALUE", settings[i].name);
		fprintf(f, "      %-26s %s\n", flag, settings[i].help);
	}
	fprintf(f,
		"  -h, --help                     this text\n"
		"  -V, --version                  print the version\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop gracefully (in-flight writes finish, store synced).\n");
}

int prim_config_parse(prim_config_t *c, int argc, char **argv)
{
	struct option opts[NSETTINGS + 4];
	const char *config = NULL;
	int ch, idx;

	prim_config_defaults(c);
	for (size_t i = 0; i < NSETTINGS; i++)
		opts[i] = (struct option){settings[i].name, required_argument, NULL, 1000 + (int)i};
	opts[NSETTINGS] = (struct option){"config", required_argument, NULL, 'c'};
	opts[NSETTINGS + 1] = (struct option){"help", no_argument, NULL, 'h'};
	opts[NSETTINGS + 2] = (struct option){"version", no_argument, NULL, 'V'};
	opts[NSETTINGS + 3] = (struct option){0};

	/* Pass 1: find -c, --help, --version, and reject unknown flags before anything. */
	opterr = 1;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "c:hV", opts, &idx)) != -1) {
		if (ch == 'c')
			config = optarg;
		else if (ch == 'h') {
			usage(stdout);
			return 1;
		} else if (ch == 'V') {
			printf("geokv-primary %s (protocol %d)\n", PRIM_VERSION, PROTO_VERSION);
			return 1;
		} else if (ch == '?') {
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "geokv-primary: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (config != NULL) {
		struct ini_ctx x = {c, config, 0};
		int rc = ini_parse(config, on_ini_value, &x);
		if (rc < 0) {
			fprintf(stderr, "geokv-primary: cannot read config '%s'\n", config);
			return -EINVAL;
		}
		if (rc > 0) {
			fprintf(stderr, "geokv-primary: %s:%d: syntax error\n", config, rc);
			return -EINVAL;
		}
		if (x.err)
			return x.err;
	}
	/* Pass 2: flags override the file. */
	optind = 0;
	while ((ch = getopt_long(argc, argv, "c:hV", opts, &idx)) != -1) {
		if (ch >= 1000 && ch < 1000 + (int)NSETTINGS &&
		    set_value(c, &settings[ch - 1000], optarg, "command line") != 0)
			return -EINVAL;
	}
	if (c->advertise[0] == '\0')
		snprintf(c->advertise, sizeof c->advertise, "%s", c->listen);
	if (c->token_file[0] != '\0' && read_token(c) != 0)
		return -EINVAL;
	if (c->node_id == 0 || c->max_frame < 1024 || c->max_inflight == 0 || c->max_conns == 0 ||
	    c->group_max_bytes == 0 || c->sync_interval_ms == 0) {
		fprintf(stderr, "geokv-primary: node-id, max-frame (>= 1K), max-inflight, max-conns, "
				"group-max-bytes and sync-interval-ms must be positive\n");
		return -EINVAL;
	}
	return 0;
}
