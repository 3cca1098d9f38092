/*
 * tests/proxy/link.c: the forwarding engine of geokv-proxy: listeners, connections and the two
 * pipes of each connection, with the faults of proxy.h applied as bytes pass.
 *
 * A connection's life: accept (or, while partitioned or at max_conns, accept and reset at
 * once); connect to the target; only then read either side, so nothing is buffered for a
 * target that never answers. An EOF from one side becomes a shutdown of the write side
 * toward the other once everything queued before it is delivered; the connection closes
 * when both directions are shut down, and is reset (SO_LINGER 0, so the peers see RST) on
 * any error, partition or reset command: a reset from one peer reaches the other as a reset.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy.h"

/* What a chunk costs beyond its bytes (header and allocator rounding): counting it bounds
 * memory even for a peer that sends one byte per segment under a long delay. */
#define PX_CHUNK_OVERHEAD 64
#define PX_WRITE_BATCH    64
#define PX_RBUF           65536

static char rbuf[PX_RBUF];

static void conn_close(px_conn_t *c, bool reset);
static void pipe_pump(px_pipe_t *p);
static void pipe_update_reading(px_pipe_t *p);

static uint64_t now_us(void) { return uv_hrtime() / 1000; }

/* xorshift64*: jitter only needs to be uniform-ish and cheap */
static uint64_t rnd(void)
{
	uint64_t x = px.rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	px.rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static const char *dir_name(int dir) { return dir == PX_UP ? "up" : "down"; }

/* uv_tcp_close_reset refuses a handle with a shutdown in flight; set SO_LINGER 0 by hand
 * then, and plainly close one that has no socket yet. */
static void tcp_reset(uv_tcp_t *h, uv_close_cb cb)
{
	if (uv_tcp_close_reset(h, cb) == 0)
		return;
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)h, &fd) == 0) {
		struct linger lg = { 1, 0 };
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	uv_close((uv_handle_t *)h, cb);
}

/* Every pipe that stopped for the global cap gets another look once memory is back under
 * three quarters of it (the gap keeps pipes from flapping at the boundary). */
static void mem_sub(uint64_t n)
{
	px.mem -= n;
	if (!px.throttled || px.mem >= px.cfg.mem_cap / 4 * 3)
		return;
	px.throttled = false;
	for (size_t i = 0; i < px.nlinks; i++)
		for (px_conn_t *c = px.links[i].conns; c; c = c->next) {
			pipe_update_reading(&c->pipe[PX_UP]);
			pipe_update_reading(&c->pipe[PX_DOWN]);
		}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	*buf = uv_buf_init(rbuf, sizeof rbuf);
}

/* The release time of what was just read: now + delay + jitter, but never before what is
 * already queued, which is what keeps jitter (or a delay lowered at run time) from
 * reordering bytes. */
static uint64_t release_time(px_pipe_t *p, const px_fault_t *f)
{
	uint64_t t = now_us() + (uint64_t)f->delay_ms * 1000;
	if (f->jitter_ms)
		t += rnd() % ((uint64_t)f->jitter_ms * 1000 + 1);
	if (t < p->last_release_us)
		t = p->last_release_us;
	p->last_release_us = t;
	return t;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	px_pipe_t *p = s->data;
	px_conn_t *c = p->conn;
	px_link_t *l = c->link;
	px_fault_t *f = &l->fault[p->dir];

	if (c->closing || nread == 0)
		return;
	if (nread == UV_EOF) {
		p->eof = true;
		p->reading = false; /* libuv stops reading at EOF */
		p->eof_at_us = release_time(p, f);
		if (px.cfg.verbose)
			px_log("DEBUG", "eof link=%s conn=%llu dir=%s", l->name,
			       (unsigned long long)c->id, dir_name(p->dir));
		pipe_pump(p);
		return;
	}
	if (nread < 0) {
		if (px.cfg.verbose)
			px_log("DEBUG", "read failed link=%s conn=%llu dir=%s err=%s", l->name,
			       (unsigned long long)c->id, dir_name(p->dir), uv_err_name((int)nread));
		conn_close(c, true);
		return;
	}
	size_t n = (size_t)nread;
	if (f->blackhole) {
		l->dropped += n;
		return;
	}
	if (f->corrupt_in) {
		if (f->corrupt_in <= n) {
			buf->base[f->corrupt_in - 1] ^= (char)(1u << f->corrupt_bit);
			px_log("INFO", "corrupted link=%s conn=%llu dir=%s bit=%u", l->name,
			       (unsigned long long)c->id, dir_name(p->dir), f->corrupt_bit);
			f->corrupt_in = 0;
		} else {
			f->corrupt_in -= n;
		}
	}
	px_chunk_t *k = malloc(sizeof *k + n);
	if (!k) {
		px_log("ERROR", "out of memory link=%s conn=%llu", l->name, (unsigned long long)c->id);
		conn_close(c, true);
		return;
	}
	k->next = NULL;
	k->len = n;
	k->release_us = release_time(p, f);
	memcpy(k->data, buf->base, n);
	if (p->tail)
		p->tail->next = k;
	else
		p->head = k;
	p->tail = k;
	p->bytes += n;
	p->mem += n + PX_CHUNK_OVERHEAD;
	px.mem += n + PX_CHUNK_OVERHEAD;
	l->held += n;
	pipe_update_reading(p);
	pipe_pump(p);
}

/* Read while connected, not at EOF, and under both caps. */
static void pipe_update_reading(px_pipe_t *p)
{
	px_conn_t *c = p->conn;
	bool want = !c->closing && c->connected && !p->eof && p->mem < px.cfg.buf_cap;
	if (want && px.mem >= px.cfg.mem_cap) {
		want = false;
		px.throttled = true;
	}
	if (want == p->reading)
		return;
	if (want) {
		int r = uv_read_start((uv_stream_t *)p->src, on_alloc, on_read);
		if (r) {
			px_log("WARN", "read start failed link=%s conn=%llu err=%s", c->link->name,
			       (unsigned long long)c->id, uv_err_name(r));
			return;
		}
	} else {
		uv_read_stop((uv_stream_t *)p->src);
	}
	p->reading = want;
}

static void on_timer(uv_timer_t *t) { pipe_pump(t->data); }

static void arm(px_pipe_t *p, uint64_t due_us, uint64_t now)
{
	/* libuv timers count from the loop's cached time: refresh it, and round up, so the
	 * timer fires at or after due_us (pipe_pump re-arms if the loop clock ran early). */
	uv_update_time(px.loop);
	uint64_t ms = (due_us - now + 999) / 1000;
	uv_timer_start(&p->timer, on_timer, ms ? ms : 1, 0);
}

static void on_write(uv_write_t *req, int status);
static void on_shutdown(uv_shutdown_t *req, int status);

/* Write what is due, or arm the timer for the next due chunk, or shut dst down. */
static void pipe_pump(px_pipe_t *p)
{
	px_conn_t *c = p->conn;
	px_link_t *l = c->link;

	if (c->closing || !c->connected || p->inflight || p->shut_sent)
		return;
	if (l->fault[p->dir].hold) {
		uv_timer_stop(&p->timer);
		return;
	}
	uint64_t now = now_us();
	uv_buf_t bufs[PX_WRITE_BATCH];
	unsigned n = 0;
	for (px_chunk_t *k = p->head; k && n < PX_WRITE_BATCH && k->release_us <= now; k = k->next)
		bufs[n++] = uv_buf_init(k->data, (unsigned)k->len);
	if (n) {
		int r = uv_write(&p->wreq, (uv_stream_t *)p->dst, bufs, n, on_write);
		if (r) {
			px_log("WARN", "write failed link=%s conn=%llu dir=%s err=%s", l->name,
			       (unsigned long long)c->id, dir_name(p->dir), uv_err_name(r));
			conn_close(c, true);
			return;
		}
		p->inflight = n;
		return;
	}
	if (p->head) {
		arm(p, p->head->release_us, now);
		return;
	}
	if (!p->eof)
		return;
	if (p->eof_at_us > now) {
		arm(p, p->eof_at_us, now);
		return;
	}
	int r = uv_shutdown(&p->sreq, (uv_stream_t *)p->dst, on_shutdown);
	if (r) {
		if (px.cfg.verbose)
			px_log("DEBUG", "shutdown failed link=%s conn=%llu dir=%s err=%s", l->name,
			       (unsigned long long)c->id, dir_name(p->dir), uv_err_name(r));
		conn_close(c, true);
		return;
	}
	p->shut_sent = true;
}

static void on_write(uv_write_t *req, int status)
{
	px_pipe_t *p = req->data;
	px_conn_t *c = p->conn;
	px_link_t *l = c->link;

	if (status == UV_ECANCELED || c->closing)
		return; /* conn_close accounted for the queue; conn_free frees it */
	if (status < 0) {
		if (px.cfg.verbose)
			px_log("DEBUG", "write failed link=%s conn=%llu dir=%s err=%s", l->name,
			       (unsigned long long)c->id, dir_name(p->dir), uv_err_name(status));
		conn_close(c, true);
		return;
	}
	uint64_t freed = 0;
	for (unsigned i = 0; i < p->inflight; i++) {
		px_chunk_t *k = p->head;
		p->head = k->next;
		p->bytes -= k->len;
		l->held -= k->len;
		l->fwd[p->dir] += k->len;
		freed += k->len + PX_CHUNK_OVERHEAD;
		free(k);
	}
	if (!p->head)
		p->tail = NULL;
	p->inflight = 0;
	p->mem -= freed;
	mem_sub(freed);
	pipe_update_reading(p);
	pipe_pump(p);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	px_pipe_t *p = req->data;
	px_conn_t *c = p->conn;

	if (status == UV_ECANCELED || c->closing)
		return;
	if (status < 0) {
		conn_close(c, true);
		return;
	}
	p->shut_done = true;
	if (c->pipe[PX_UP].shut_done && c->pipe[PX_DOWN].shut_done)
		conn_close(c, false);
}

static void conn_free(px_conn_t *c)
{
	for (int d = 0; d < 2; d++) {
		px_chunk_t *k = c->pipe[d].head;
		while (k) {
			px_chunk_t *next = k->next;
			free(k);
			k = next;
		}
	}
	free(c);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
	px_pipe_t *p = h->data;
	px_conn_t *c = p->conn;
	if (--c->open_handles == 0)
		conn_free(c);
}

/* Unlinks the connection at once (so stats and commands no longer see it), counts what was
 * still queued as dropped, and closes its handles; libuv cancels pending requests before the
 * close callbacks, so the memory lives until the last one. */
static void conn_close(px_conn_t *c, bool reset)
{
	if (c->closing)
		return;
	c->closing = true;
	px_link_t *l = c->link;
	if (c->prev)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	l->nconns--;
	px.nconns--;
	uint64_t mem = 0;
	for (int d = 0; d < 2; d++) {
		px_pipe_t *p = &c->pipe[d];
		l->held -= p->bytes;
		l->dropped += p->bytes;
		mem += p->mem;
		p->bytes = p->mem = 0;
	}
	if (px.cfg.verbose)
		px_log("DEBUG", "close link=%s conn=%llu reset=%d", l->name, (unsigned long long)c->id,
		       reset);
	if (reset) {
		tcp_reset(&c->client, on_conn_handle_closed);
		tcp_reset(&c->target, on_conn_handle_closed);
	} else {
		uv_close((uv_handle_t *)&c->client, on_conn_handle_closed);
		uv_close((uv_handle_t *)&c->target, on_conn_handle_closed);
	}
	uv_close((uv_handle_t *)&c->pipe[PX_UP].timer, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->pipe[PX_DOWN].timer, on_conn_handle_closed);
	mem_sub(mem);
}

static void on_connect(uv_connect_t *req, int status)
{
	px_conn_t *c = req->data;

	if (status == UV_ECANCELED || c->closing)
		return;
	if (status < 0) {
		/* the client sees what a refused connection looks like: a reset */
		px_log("INFO", "target connect failed link=%s conn=%llu target=%s err=%s",
		       c->link->name, (unsigned long long)c->id, c->link->target_str,
		       uv_err_name(status));
		conn_close(c, true);
		return;
	}
	c->connected = true;
	uv_tcp_nodelay(&c->target, 1);
	pipe_update_reading(&c->pipe[PX_UP]);
	pipe_update_reading(&c->pipe[PX_DOWN]);
}

static void on_refused_closed(uv_handle_t *h) { free(h); }

/* Accept and reset at once: the client's connect succeeds, its first read sees RST. */
static void refuse(px_link_t *l, uv_stream_t *srv, const char *why)
{
	uv_tcp_t *t = malloc(sizeof *t);
	if (!t) {
		px_log("ERROR", "out of memory link=%s", l->name);
		return;
	}
	uv_tcp_init(px.loop, t);
	if (uv_accept(srv, (uv_stream_t *)t) != 0) {
		uv_close((uv_handle_t *)t, on_refused_closed);
		return;
	}
	l->refused++;
	if (px.cfg.verbose)
		px_log("DEBUG", "refused link=%s why=%s", l->name, why);
	tcp_reset(t, on_refused_closed);
}

static void pipe_init(px_conn_t *c, int dir, uv_tcp_t *src, uv_tcp_t *dst)
{
	px_pipe_t *p = &c->pipe[dir];
	p->conn = c;
	p->dir = dir;
	p->src = src;
	p->dst = dst;
	p->wreq.data = p;
	p->sreq.data = p;
	uv_timer_init(px.loop, &p->timer);
	p->timer.data = p;
}

static void on_accept(uv_stream_t *srv, int status)
{
	px_link_t *l = srv->data;

	if (status < 0) {
		px_log("WARN", "accept failed link=%s err=%s", l->name, uv_err_name(status));
		return;
	}
	if (l->partitioned) {
		refuse(l, srv, "partition");
		return;
	}
	if (px.nconns >= px.cfg.max_conns) {
		refuse(l, srv, "max_conns");
		return;
	}
	px_conn_t *c = calloc(1, sizeof *c);
	if (!c) {
		refuse(l, srv, "out_of_memory");
		return;
	}
	c->link = l;
	c->id = ++px.next_id;
	uv_tcp_init(px.loop, &c->client);
	uv_tcp_init(px.loop, &c->target);
	c->client.data = &c->pipe[PX_UP];
	c->target.data = &c->pipe[PX_DOWN];
	pipe_init(c, PX_UP, &c->client, &c->target);
	pipe_init(c, PX_DOWN, &c->target, &c->client);
	c->open_handles = 4;
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	l->conns = c;
	l->nconns++;
	px.nconns++;
	c->creq.data = c;

	int r = uv_accept(srv, (uv_stream_t *)&c->client);
	if (r == 0)
		r = uv_tcp_connect(&c->creq, &c->target, (const struct sockaddr *)&l->target_addr,
		                   on_connect);
	if (r) {
		px_log("WARN", "connection setup failed link=%s err=%s", l->name, uv_err_name(r));
		conn_close(c, true);
		return;
	}
	uv_tcp_nodelay(&c->client, 1);
	l->accepted++;
	if (px.cfg.verbose)
		px_log("DEBUG", "open link=%s conn=%llu", l->name, (unsigned long long)c->id);
}

int px_link_listen(px_link_t *l, char *err, size_t errlen)
{
	uv_tcp_init(px.loop, &l->listener);
	l->listener.data = l;
	l->listener_init = true;
	int r = uv_tcp_bind(&l->listener, (const struct sockaddr *)&l->listen_addr, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&l->listener, 128, on_accept);
	if (r)
		snprintf(err, errlen, "listen %s (link %s): %s", l->listen_str, l->name, uv_strerror(r));
	return r;
}

px_link_t *px_link_find(const char *name)
{
	for (size_t i = 0; i < px.nlinks; i++)
		if (strcmp(px.links[i].name, name) == 0)
			return &px.links[i];
	return NULL;
}

void px_link_kick(px_link_t *l)
{
	for (px_conn_t *c = l->conns; c; c = c->next) {
		pipe_pump(&c->pipe[PX_UP]);
		pipe_pump(&c->pipe[PX_DOWN]);
	}
}

unsigned px_link_reset(px_link_t *l)
{
	unsigned n = 0;
	while (l->conns) {
		conn_close(l->conns, true);
		n++;
	}
	return n;
}

void px_link_clear(px_link_t *l)
{
	memset(l->fault, 0, sizeof l->fault);
	l->partitioned = false;
	px_link_kick(l);
}

void px_link_close(px_link_t *l)
{
	while (l->conns)
		conn_close(l->conns, false);
	if (l->listener_init && !uv_is_closing((uv_handle_t *)&l->listener))
		uv_close((uv_handle_t *)&l->listener, NULL);
}
