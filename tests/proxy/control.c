/*
 * tests/proxy/control.c: the control port of geokv-proxy. One command per line, one reply
 * line per command: "ok ..." or "error ...". Commands (README.md has the semantics):
 *
 *   delay LINK DIR MS [JITTER_MS]    hold LINK DIR on|off       blackhole LINK DIR on|off
 *   partition LINK on|off            reset LINK                 corrupt LINK DIR N [BIT]
 *   clear LINK                       stats LINK                 ping
 *
 * LINK is a link name or `all`; DIR is up, down or both. Lines are at most PX_LINE_MAX bytes
 * (a longer one is answered with an error once its newline arrives); blank lines get no
 * reply. A control client that does not read its replies is disconnected once 256 KiB of
 * them are queued, and at most PX_CTL_MAX clients are served at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define PX_CTL_MAX    16
#define PX_CTL_QUEUE  (256 * 1024)
#define PX_ARGV_MAX   8

typedef struct ctl_conn {
	uv_tcp_t h;
	uv_shutdown_t sreq;
	struct ctl_conn *prev, *next;
	char line[PX_LINE_MAX];
	size_t len;
	bool overflow, closing;
} ctl_conn_t;

typedef struct ctl_reply {
	uv_write_t req;
	char data[];
} ctl_reply_t;

static uv_tcp_t listener;
static bool listening;
static ctl_conn_t *conns;
static unsigned nconns;
static char rbuf[4096];

/* ---- commands ----------------------------------------------------------------------------- */

#define OK(...)  (snprintf(reply, replylen, "ok " __VA_ARGS__), 0)
#define ERR(...) (snprintf(reply, replylen, "error " __VA_ARGS__), -1)

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (d > max || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* up -> [0,0], down -> [1,1], both -> [0,1] */
static bool parse_dir(const char *s, int *lo, int *hi)
{
	if (strcmp(s, "up") == 0)
		*lo = *hi = PX_UP;
	else if (strcmp(s, "down") == 0)
		*lo = *hi = PX_DOWN;
	else if (strcmp(s, "both") == 0)
		*lo = PX_UP, *hi = PX_DOWN;
	else
		return false;
	return true;
}

static bool parse_onoff(const char *s, bool *on)
{
	if (strcmp(s, "on") == 0)
		*on = true;
	else if (strcmp(s, "off") == 0)
		*on = false;
	else
		return false;
	return true;
}

/* The links a LINK argument names: one, or every link for `all`. */
static bool select_links(const char *name, px_link_t **first, size_t *n)
{
	if (strcmp(name, "all") == 0) {
		*first = px.links;
		*n = px.nlinks;
		return true;
	}
	*first = px_link_find(name);
	*n = 1;
	return *first != NULL;
}

int px_command(char *line, char *reply, size_t replylen)
{
	char *argv[PX_ARGV_MAX + 1];
	int argc = 0;
	for (char *save = NULL, *t = strtok_r(line, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (argc == PX_ARGV_MAX)
			return ERR("too many arguments");
		argv[argc++] = t;
	}
	if (argc == 0)
		return ERR("empty command");
	const char *cmd = argv[0];

	if (strcmp(cmd, "ping") == 0)
		return argc == 1 ? OK("pong") : ERR("usage: ping");

	static const struct { const char *name; int min, max; const char *usage; } tab[] = {
		{ "delay", 4, 5, "delay LINK up|down|both MS [JITTER_MS]" },
		{ "hold", 4, 4, "hold LINK up|down|both on|off" },
		{ "blackhole", 4, 4, "blackhole LINK up|down|both on|off" },
		{ "partition", 3, 3, "partition LINK on|off" },
		{ "reset", 2, 2, "reset LINK" },
		{ "corrupt", 4, 5, "corrupt LINK up|down|both N [BIT]" },
		{ "clear", 2, 2, "clear LINK" },
		{ "stats", 2, 2, "stats LINK" },
	};
	size_t ti;
	for (ti = 0; ti < sizeof tab / sizeof tab[0]; ti++)
		if (strcmp(cmd, tab[ti].name) == 0)
			break;
	if (ti == sizeof tab / sizeof tab[0])
		return ERR("unknown command '%.64s' (delay hold blackhole partition reset corrupt "
		           "clear stats ping)", cmd);
	if (argc < tab[ti].min || argc > tab[ti].max)
		return ERR("usage: %s", tab[ti].usage);

	px_link_t *ls;
	size_t nl;
	if (!select_links(argv[1], &ls, &nl))
		return ERR("no link '%.64s'", argv[1]);
	const char *lname = argv[1];
	int lo = 0, hi = 0;
	bool needs_dir = strcmp(cmd, "delay") == 0 || strcmp(cmd, "hold") == 0 ||
	                 strcmp(cmd, "blackhole") == 0 || strcmp(cmd, "corrupt") == 0;
	if (needs_dir && !parse_dir(argv[2], &lo, &hi))
		return ERR("bad direction '%.16s' (up, down or both)", argv[2]);
	const char *dname = needs_dir ? argv[2] : "";

	if (strcmp(cmd, "delay") == 0) {
		uint64_t ms, jit = 0;
		if (!parse_u64(argv[3], PX_MAX_MS, &ms))
			return ERR("bad delay '%.16s' (0..%u ms)", argv[3], PX_MAX_MS);
		if (argc == 5 && !parse_u64(argv[4], PX_MAX_MS, &jit))
			return ERR("bad jitter '%.16s' (0..%u ms)", argv[4], PX_MAX_MS);
		for (size_t i = 0; i < nl; i++)
			for (int d = lo; d <= hi; d++) {
				ls[i].fault[d].delay_ms = (uint32_t)ms;
				ls[i].fault[d].jitter_ms = (uint32_t)jit;
			}
		return OK("delay %s %s %llu %llu", lname, dname, (unsigned long long)ms,
		          (unsigned long long)jit);
	}
	if (strcmp(cmd, "hold") == 0 || strcmp(cmd, "blackhole") == 0) {
		bool on, hold = cmd[0] == 'h';
		if (!parse_onoff(argv[3], &on))
			return ERR("bad switch '%.16s' (on or off)", argv[3]);
		for (size_t i = 0; i < nl; i++) {
			for (int d = lo; d <= hi; d++)
				*(hold ? &ls[i].fault[d].hold : &ls[i].fault[d].blackhole) = on;
			px_link_kick(&ls[i]); /* hold off: release what is queued */
		}
		return OK("%s %s %s %s", cmd, lname, dname, on ? "on" : "off");
	}
	if (strcmp(cmd, "partition") == 0) {
		bool on;
		if (!parse_onoff(argv[2], &on))
			return ERR("bad switch '%.16s' (on or off)", argv[2]);
		unsigned n = 0;
		for (size_t i = 0; i < nl; i++) {
			ls[i].partitioned = on;
			if (on)
				n += px_link_reset(&ls[i]);
		}
		return OK("partition %s %s reset=%u", lname, on ? "on" : "off", n);
	}
	if (strcmp(cmd, "reset") == 0) {
		unsigned n = 0;
		for (size_t i = 0; i < nl; i++)
			n += px_link_reset(&ls[i]);
		return OK("reset %s conns=%u", lname, n);
	}
	if (strcmp(cmd, "corrupt") == 0) {
		uint64_t n, bit = 0;
		if (!parse_u64(argv[3], UINT64_MAX, &n) || n == 0)
			return ERR("bad byte count '%.24s' (1 = the next byte)", argv[3]);
		if (argc == 5 && !parse_u64(argv[4], 7, &bit))
			return ERR("bad bit '%.16s' (0..7)", argv[4]);
		for (size_t i = 0; i < nl; i++)
			for (int d = lo; d <= hi; d++) {
				ls[i].fault[d].corrupt_in = n;
				ls[i].fault[d].corrupt_bit = (unsigned)bit;
			}
		return OK("corrupt %s %s %llu %u", lname, dname, (unsigned long long)n, (unsigned)bit);
	}
	if (strcmp(cmd, "clear") == 0) {
		for (size_t i = 0; i < nl; i++)
			px_link_clear(&ls[i]);
		return OK("clear %s", lname);
	}
	/* stats: sums over the selected links */
	uint64_t conns_n = 0, up = 0, down = 0, held = 0, dropped = 0;
	for (size_t i = 0; i < nl; i++) {
		conns_n += ls[i].nconns;
		up += ls[i].fwd[PX_UP];
		down += ls[i].fwd[PX_DOWN];
		held += ls[i].held;
		dropped += ls[i].dropped;
	}
	return OK("conns=%llu up_bytes=%llu down_bytes=%llu held=%llu dropped=%llu",
	          (unsigned long long)conns_n, (unsigned long long)up, (unsigned long long)down,
	          (unsigned long long)held, (unsigned long long)dropped);
}

/* ---- the control port ------------------------------------------------------------------- */

static void on_ctl_closed(uv_handle_t *h)
{
	free(h->data);
}

static void ctl_close(ctl_conn_t *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nconns--;
	uv_close((uv_handle_t *)&c->h, on_ctl_closed);
}

static void on_reply_written(uv_write_t *req, int status)
{
	free(req->data);
}

static void ctl_reply(ctl_conn_t *c, const char *text)
{
	size_t n = strlen(text);
	ctl_reply_t *r = malloc(sizeof *r + n + 1);
	if (!r) {
		ctl_close(c);
		return;
	}
	memcpy(r->data, text, n);
	r->data[n] = '\n';
	r->req.data = r;
	uv_buf_t b = uv_buf_init(r->data, (unsigned)(n + 1));
	if (uv_write(&r->req, (uv_stream_t *)&c->h, &b, 1, on_reply_written) != 0) {
		free(r);
		ctl_close(c);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) > PX_CTL_QUEUE) {
		px_log("WARN", "control client not reading its replies: disconnected");
		ctl_close(c);
	}
}

static void ctl_line(ctl_conn_t *c)
{
	char reply[512];
	c->line[c->len] = '\0';
	if (c->len && c->line[c->len - 1] == '\r')
		c->line[--c->len] = '\0';
	if (c->overflow) {
		snprintf(reply, sizeof reply, "error line too long (max %d bytes)", PX_LINE_MAX - 1);
	} else {
		const char *s = c->line + strspn(c->line, " \t");
		if (!*s)
			return; /* blank line: no command, no reply */
		char logged[PX_LINE_MAX];
		snprintf(logged, sizeof logged, "%s", s);
		/* stats and ping are what pollers send: log them only when verbose */
		bool quiet = strncmp(s, "stats", 5) == 0 || strncmp(s, "ping", 4) == 0;
		int rc = px_command(c->line, reply, sizeof reply);
		if (rc != 0 || !quiet || px.cfg.verbose)
			px_log(rc == 0 ? "INFO" : "WARN", "command cmd=\"%s\" reply=\"%s\"", logged,
			       reply);
	}
	ctl_reply(c, reply);
}

static void on_ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	*buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_ctl_shutdown(uv_shutdown_t *req, int status)
{
	ctl_close(req->data);
}

static void on_ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	ctl_conn_t *c = s->data;
	if (c->closing)
		return;
	if (nread == UV_EOF) {
		/* flush the replies still queued, then close */
		c->sreq.data = c;
		if (uv_shutdown(&c->sreq, s, on_ctl_shutdown) != 0)
			ctl_close(c);
		return;
	}
	if (nread < 0) {
		ctl_close(c);
		return;
	}
	for (ssize_t i = 0; i < nread && !c->closing; i++) {
		char ch = buf->base[i];
		if (ch == '\n') {
			ctl_line(c);
			c->len = 0;
			c->overflow = false;
		} else if (c->len < PX_LINE_MAX - 1) {
			c->line[c->len++] = ch;
		} else {
			c->overflow = true;
		}
	}
}

static void on_ctl_refused(uv_handle_t *h) { free(h); }

static void on_ctl_accept(uv_stream_t *srv, int status)
{
	if (status < 0) {
		px_log("WARN", "control accept failed err=%s", uv_err_name(status));
		return;
	}
	ctl_conn_t *c = calloc(1, sizeof *c);
	if (!c)
		return;
	uv_tcp_init(px.loop, &c->h);
	c->h.data = c;
	if (uv_accept(srv, (uv_stream_t *)&c->h) != 0) {
		uv_close((uv_handle_t *)&c->h, on_ctl_refused);
		return;
	}
	if (nconns >= PX_CTL_MAX || px.stopping) {
		px_log("WARN", "control client refused why=too_many");
		uv_close((uv_handle_t *)&c->h, on_ctl_refused);
		return;
	}
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	nconns++;
	uv_tcp_nodelay(&c->h, 1);
	if (uv_read_start((uv_stream_t *)&c->h, on_ctl_alloc, on_ctl_read) != 0)
		ctl_close(c);
}

int px_control_listen(const struct sockaddr *addr, const char *addr_str, char *err,
                      size_t errlen)
{
	uv_tcp_init(px.loop, &listener);
	listening = true;
	int r = uv_tcp_bind(&listener, addr, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&listener, 16, on_ctl_accept);
	if (r)
		snprintf(err, errlen, "listen %s (control): %s", addr_str, uv_strerror(r));
	return r;
}

void px_control_close(void)
{
	while (conns)
		ctl_close(conns);
	if (listening && !uv_is_closing((uv_handle_t *)&listener))
		uv_close((uv_handle_t *)&listener, NULL);
}
