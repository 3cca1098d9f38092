/*
 * tests/proxy/main.c: geokv-proxy's command line, event loop and shutdown, and the `ctl`
 * client (one command to a running proxy, so shell tests need no nc).
 *
 *   geokv-proxy --control HOST:PORT --link NAME=LISTEN_HOST:PORT>TARGET_HOST:PORT [--link ...]
 *               [--buffer BYTES] [--max-memory BYTES] [--max-conns N] [--seed N] [--verbose]
 *   geokv-proxy ctl HOST:PORT COMMAND...
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 when a listen fails, 2 on bad arguments. `ctl`: 0 on
 * an "ok" reply, 1 on "error", 2 when the proxy cannot be reached or does not answer.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

px_state_t px;

static const char usage[] =
	"usage: geokv-proxy --control HOST:PORT --link NAME=LISTEN_HOST:PORT>TARGET_HOST:PORT\n"
	"                   [--link ...] [--buffer BYTES] [--max-memory BYTES] [--max-conns N]\n"
	"                   [--seed N] [--verbose]\n"
	"       geokv-proxy ctl HOST:PORT COMMAND...\n"
	"\n"
	"Forwards each link's connections to its target; faults are set at run time on the\n"
	"control port, one command per line (see tests/proxy/README.md):\n"
	"  delay LINK DIR MS [JITTER_MS]   hold LINK DIR on|off   blackhole LINK DIR on|off\n"
	"  partition LINK on|off   reset LINK   corrupt LINK DIR N [BIT]   clear LINK   stats LINK\n"
	"LINK is a link name or 'all'; DIR is up (client->target), down or both.\n"
	"BYTES may end in K or M (KiB, MiB). Defaults: --buffer 8M (per connection and\n"
	"direction), --max-memory 256M (all queues), --max-conns 512.\n";

void px_log(const char *level, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char when[32], msg[1536];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ldZ %s proxy %s\n", when, ts.tv_nsec / 1000000, level, msg);
}

static int die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die_usage(const char *fmt, ...)
{
	va_list ap;
	fputs("geokv-proxy: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	fputs(usage, stderr);
	return 2;
}

int px_parse_addr(const char *s, struct sockaddr_storage *out, char *err, size_t errlen)
{
	char host[256];
	const char *port;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':') {
			snprintf(err, errlen, "bad address '%s' (want [v6]:PORT)", s);
			return -1;
		}
		hl = (size_t)(close - s - 1);
		memcpy(host, s + 1, hl < sizeof host ? hl : 0);
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon) {
			snprintf(err, errlen, "bad address '%s' (want HOST:PORT)", s);
			return -1;
		}
		hl = (size_t)(colon - s);
		memcpy(host, s, hl < sizeof host ? hl : 0);
		port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof host) {
		snprintf(err, errlen, "bad address '%s' (empty or long host)", s);
		return -1;
	}
	host[hl] = '\0';
	char *end;
	errno = 0;
	long p = strtol(port, &end, 10);
	if (!*port || *end || errno || p < 1 || p > 65535) {
		snprintf(err, errlen, "bad port in '%s' (1..65535)", s);
		return -1;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_NUMERICSERV }, *res;
	int r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(r));
		return -1;
	}
	memset(out, 0, sizeof *out);
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/* "NAME=LISTEN>TARGET" */
static int parse_link(const char *spec, px_link_t *l, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '='), *gt = eq ? strchr(eq, '>') : NULL;
	if (!eq || !gt) {
		snprintf(err, errlen, "bad --link '%s' (want NAME=LISTEN_HOST:PORT>TARGET_HOST:PORT)",
		         spec);
		return -1;
	}
	size_t nl = (size_t)(eq - spec), ll = (size_t)(gt - eq - 1), tl = strlen(gt + 1);
	if (nl == 0 || nl > PX_NAME_MAX || strspn(spec, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") < nl) {
		snprintf(err, errlen, "bad link name in '%s' ([A-Za-z0-9_.-]{1,%d})", spec, PX_NAME_MAX);
		return -1;
	}
	if (ll >= PX_ADDR_MAX || tl >= PX_ADDR_MAX) {
		snprintf(err, errlen, "address too long in '%s'", spec);
		return -1;
	}
	memcpy(l->name, spec, nl);
	l->name[nl] = '\0';
	if (strcmp(l->name, "all") == 0) {
		snprintf(err, errlen, "link name 'all' is reserved");
		return -1;
	}
	memcpy(l->listen_str, eq + 1, ll);
	l->listen_str[ll] = '\0';
	memcpy(l->target_str, gt + 1, tl + 1);
	if (px_parse_addr(l->listen_str, &l->listen_addr, err, errlen) ||
	    px_parse_addr(l->target_str, &l->target_addr, err, errlen))
		return -1;
	return 0;
}

/* decimal, optional K or M suffix */
static int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		return -1;
	uint64_t mul = 1;
	if (*end == 'K' || *end == 'k')
		mul = 1024, end++;
	else if (*end == 'M' || *end == 'm')
		mul = 1024 * 1024, end++;
	if (*end || v > max / mul || v * mul < min)
		return -1;
	*out = v * mul;
	return 0;
}

/* ---- ctl: one command to a running proxy ---------------------------------------------------- */

static int ctl_main(int argc, char **argv)
{
	if (argc < 4) {
		fputs("usage: geokv-proxy ctl HOST:PORT COMMAND...\n", stderr);
		return 2;
	}
	const char *addr_s = argv[2];
	char line[PX_LINE_MAX + 1], err[400];
	size_t n = 0;
	for (int i = 3; i < argc; i++) {
		size_t al = strlen(argv[i]);
		if (n + al + 2 > PX_LINE_MAX || strpbrk(argv[i], "\r\n")) {
			fputs("geokv-proxy ctl: command too long or has a line break\n", stderr);
			return 2;
		}
		if (n)
			line[n++] = ' ';
		memcpy(line + n, argv[i], al);
		n += al;
	}
	line[n++] = '\n';

	struct sockaddr_storage ss;
	if (px_parse_addr(addr_s, &ss, err, sizeof err)) {
		fprintf(stderr, "geokv-proxy ctl: %s\n", err);
		return 2;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "geokv-proxy ctl: socket: %s\n", strerror(errno));
		return 2;
	}
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	socklen_t sl = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                        : sizeof(struct sockaddr_in);
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		fprintf(stderr, "geokv-proxy ctl: connect %s: %s\n", addr_s, strerror(errno));
		close(fd);
		return 2;
	}
	for (size_t off = 0; off < n;) {
		ssize_t w = send(fd, line + off, n - off, MSG_NOSIGNAL);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			fprintf(stderr, "geokv-proxy ctl: send to %s: %s\n", addr_s,
			        w < 0 ? strerror(errno) : "closed");
			close(fd);
			return 2;
		}
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	char reply[PX_LINE_MAX];
	size_t rl = 0;
	bool full = false;
	while (rl < sizeof reply - 1 && !full) {
		ssize_t r = recv(fd, reply + rl, sizeof reply - 1 - rl, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		char *nl = memchr(reply + rl, '\n', (size_t)r);
		rl += (size_t)r;
		if (nl) {
			rl = (size_t)(nl - reply);
			full = true;
		}
	}
	close(fd);
	if (!full) {
		fprintf(stderr, "geokv-proxy ctl: no reply from %s\n", addr_s);
		return 2;
	}
	reply[rl] = '\0';
	printf("%s\n", reply);
	return strncmp(reply, "ok", 2) == 0 && (reply[2] == ' ' || reply[2] == '\0') ? 0 : 1;
}

/* ---- the proxy ------------------------------------------------------------------------------ */

static uv_signal_t sig_term, sig_int;

static void stop_all(void)
{
	if (px.stopping)
		return;
	px.stopping = true;
	for (size_t i = 0; i < px.nlinks; i++)
		px_link_close(&px.links[i]);
	px_control_close();
	if (!uv_is_closing((uv_handle_t *)&sig_term))
		uv_close((uv_handle_t *)&sig_term, NULL);
	if (!uv_is_closing((uv_handle_t *)&sig_int))
		uv_close((uv_handle_t *)&sig_int, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	px_log("INFO", "stopping signal=%s", signum == SIGTERM ? "TERM" : "INT");
	stop_all();
}

static void close_any(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Runs the loop until every handle is closed, then releases what is left. */
static void finish(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	uv_walk(loop, close_any, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	if (uv_loop_close(loop) != 0)
		px_log("WARN", "loop closed with handles left");
	free(px.links);
	px.links = NULL;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
		return ctl_main(argc, argv);

	px.cfg.buf_cap = 8u << 20;
	px.cfg.mem_cap = 256u << 20;
	px.cfg.max_conns = 512;
	const char *control = NULL;
	char err[800];
	int rc = 0;

	px.links = calloc((size_t)argc, sizeof *px.links);
	if (!px.links) {
		fputs("geokv-proxy: out of memory\n", stderr);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			free(px.links);
			return 0;
		}
		if (strcmp(a, "--verbose") == 0) {
			px.cfg.verbose = true;
			continue;
		}
		static const char *with_value[] = { "--control", "--link", "--buffer", "--max-memory",
		                                    "--max-conns", "--seed" };
		const char *opt = NULL;
		for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
			size_t ol = strlen(with_value[k]);
			if (strncmp(a, with_value[k], ol) == 0 && (a[ol] == '\0' || a[ol] == '=')) {
				opt = with_value[k];
				v = a[ol] == '=' ? a + ol + 1 : (i + 1 < argc ? argv[++i] : NULL);
				break;
			}
		}
		if (!opt) {
			rc = die_usage("unknown argument '%s'", a);
			goto out;
		}
		if (!v) {
			rc = die_usage("%s needs a value", opt);
			goto out;
		}
		uint64_t n;
		if (strcmp(opt, "--control") == 0) {
			control = v;
		} else if (strcmp(opt, "--link") == 0) {
			px_link_t *l = &px.links[px.nlinks];
			if (parse_link(v, l, err, sizeof err)) {
				rc = die_usage("%s", err);
				goto out;
			}
			if (px_link_find(l->name)) {
				rc = die_usage("link '%s' given twice", l->name);
				goto out;
			}
			px.nlinks++;
		} else if (strcmp(opt, "--buffer") == 0) {
			if (parse_size(v, 4096, 1ull << 30, &n)) {
				rc = die_usage("bad --buffer '%s' (4K..1024M)", v);
				goto out;
			}
			px.cfg.buf_cap = (size_t)n;
		} else if (strcmp(opt, "--max-memory") == 0) {
			if (parse_size(v, 65536, 1ull << 40, &n)) {
				rc = die_usage("bad --max-memory '%s' (64K..)", v);
				goto out;
			}
			px.cfg.mem_cap = n;
		} else if (strcmp(opt, "--max-conns") == 0) {
			if (parse_size(v, 1, 1000000, &n)) {
				rc = die_usage("bad --max-conns '%s' (1..1000000)", v);
				goto out;
			}
			px.cfg.max_conns = (unsigned)n;
		} else {
			if (parse_size(v, 0, UINT64_MAX, &n)) {
				rc = die_usage("bad --seed '%s'", v);
				goto out;
			}
			px.cfg.seed = n;
		}
	}
	if (!control) {
		rc = die_usage("--control HOST:PORT is required");
		goto out;
	}
	if (px.nlinks == 0) {
		rc = die_usage("at least one --link is required");
		goto out;
	}
	struct sockaddr_storage caddr;
	if (px_parse_addr(control, &caddr, err, sizeof err)) {
		rc = die_usage("--control: %s", err);
		goto out;
	}
	px.rng = px.cfg.seed ? px.cfg.seed : (uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1;

	signal(SIGPIPE, SIG_IGN);
	static uv_loop_t loop;
	uv_loop_init(&loop);
	px.loop = &loop;
	uv_signal_init(&loop, &sig_term);
	uv_signal_init(&loop, &sig_int);
	if (px_control_listen((struct sockaddr *)&caddr, control, err, sizeof err) == 0) {
		for (size_t i = 0; i < px.nlinks && !rc; i++)
			if (px_link_listen(&px.links[i], err, sizeof err))
				rc = 1;
	} else {
		rc = 1;
	}
	if (rc) {
		fprintf(stderr, "geokv-proxy: %s\n", err);
		stop_all();
		finish(&loop);
		return 1;
	}
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	printf("proxy ready\n");
	fflush(stdout);
	px_log("INFO", "ready control=%s links=%zu buffer=%zu max_memory=%llu max_conns=%u", control,
	       px.nlinks, px.cfg.buf_cap, (unsigned long long)px.cfg.mem_cap, px.cfg.max_conns);
	for (size_t i = 0; i < px.nlinks; i++)
		px_log("INFO", "link name=%s listen=%s target=%s", px.links[i].name,
		       px.links[i].listen_str, px.links[i].target_str);
	finish(&loop);
	px_log("INFO", "stopped");
	return 0;
out:
	free(px.links);
	return rc;
}
