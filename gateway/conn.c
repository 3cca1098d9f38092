/*
 * One client connection on a worker's loop: bytes in -> TLS -> HTTP -> answers -> TLS ->
 * bytes out, plus its timeouts, rate limit and the ?min_rev wait.
 *
 * Buffers, and why each exists:
 *   - ciphertext arrives in the worker's shared read buffer; mbedTLS copies what it needs
 *     into its own record buffer, and only bytes left over while the connection is paused
 *     (waiting, or its output backed up) are copied into c->cin.
 *   - plaintext requests live in c->http's buffer (max header bytes + 4 KiB), because a
 *     request may arrive across many reads.
 *   - answers are staged in the worker's gw_out_t and encrypted once per batch; ciphertext
 *     goes to the socket with uv_try_write, and only what the kernel refused is copied into
 *     c->pbuf, written by uv_write. While a write is in flight its buffer (c->wbuf) is owned
 *     by libuv, so new bytes go to pbuf and the two swap when it completes.
 * None of these is allocated per request; connection structs and their mbedTLS contexts are
 * pooled, so a new connection allocates nothing once the pool is warm.
 *
 * Full TLS handshakes off the loop: the public-key steps of a full handshake (ECDHE and the
 * ECDSA signature, ~3 ms of CPU with mbedTLS 2.28) run on libuv's thread pool
 * (tls.handshake_threads), because on the loop thread they stalled every other connection
 * of the worker (keep-alive p99, and 377 ms connect p99 at 100 new connections/s); a
 * connection alone on its worker runs them inline, where they delay nobody. The cheap
 * steps (ClientHello, ServerHello, a whole resumed handshake) stay inline: queueing costs
 * more than they do. While a step runs (c->in_work) the connection is pinned: the loop
 * does not read from its socket, touch its TLS context, its cin bytes (the step's input) or
 * its hbuf (the step's output); it may still close it, and then the struct is released
 * only when both the handle's close_cb and the work's after_cb have run.
 * Handshake output is gathered in c->hbuf and sent as one write per flight (mbedTLS flushes
 * each handshake record separately).
 *
 * Fairness: a connection answers at most REQ_BURST requests per turn; with more buffered
 * it yields (reading paused) and w->resume (an idle handle) pumps it again after the loop
 * has polled everyone else.
 *
 * Order of answers: one request is answered at a time, in arrival order (the parser pauses
 * after each), so pipelined answers cannot be reordered, and a request waiting for ?min_rev
 * holds back the ones behind it, as HTTP/1.1 requires.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"

enum phase { PH_NONE, PH_HANDSHAKE, PH_HEADER, PH_IDLE, PH_WRITE, PH_LINGER };

#define LINGER_MS 1000

#define PENDING_PAUSE   (256u << 10) /* stop reading requests while this much is unsent */
#define PENDING_MAX     (16u << 20)  /* a client that lets this much pile up is dropped */
#define POOL_MAX        256
#define KEEP_BUF_MAX    (64u << 10)  /* pooled connections keep write buffers up to this */
/* Requests answered for one connection before the loop serves the others: one 64 KiB read
 * can hold ~1,500 pipelined GETs, ~15 ms of work at ~10 us each; libuv caps reads per
 * connection per iteration (32), not the requests they carry. */
#define REQ_BURST       64

typedef struct gw_conn {
	uv_tcp_t tcp;
	gw_worker_t *w;
	struct gw_conn *prev, *next;
	struct gw_conn *wnext;
	struct gw_conn *ynext;       /* w->yielded list */
	bool yielded;                /* requests left after a burst: resumed by w->resume */
	bool mconn;                  /* accepted on the metrics listener: plain HTTP, /metrics only */
	uint32_t burst;              /* requests answered in this pump */
	gw_http_t http;
	bool http_ready;
	proto_tls_conn_t tls;
	gw_tlsgen_t *gen;
	uint8_t *cin, *wbuf, *pbuf, *hbuf;
	size_t cin_len, cin_cap, wlen, wcap, plen, pcap, hlen, hcap;
	uv_work_t work;              /* a handshake step on the pool */
	int work_rc;
	bool in_work;                /* pinned: the pool owns tls, cin and hbuf */
	bool handle_closed;          /* close_cb ran while in_work: after_cb releases */
	bool hs_capture;             /* TLS output goes to hbuf (handshake flights) */
	uv_write_t wreq;
	uv_shutdown_t sreq;
	bool lingering;
	bool writing, closing, close_after, waiting, paused, reading, eof, had_error;
	uint8_t phase;
	uint64_t deadline;
	uint64_t rate_sec;
	uint32_t rate_n;
	gw_req_t req;
	gw_target_t target;
	int route_rc;
	uint64_t wait_until;
} gw_conn_t;

static void pump(gw_conn_t *c);
static void close_now(gw_conn_t *c);
static void start_reading(gw_conn_t *c);
static void close_soft(gw_conn_t *c);

static bool tls_on(const gw_conn_t *c) { return !c->w->m->cfg.plain && !c->mconn; }
static uint64_t now_ms(gw_conn_t *c) { return uv_now(&c->w->loop); }

/* ---- output ------------------------------------------------------------------------- */

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 4096;
	uint8_t *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = realloc(*buf, n);
	if (p == NULL)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

static void write_cb(uv_write_t *req, int status);

static void start_write(gw_conn_t *c)
{
	uint8_t *t = c->wbuf;
	size_t tc = c->wcap;
	uv_buf_t b;

	c->wbuf = c->pbuf;
	c->wcap = c->pcap;
	c->wlen = c->plen;
	c->pbuf = t;
	c->pcap = tc;
	c->plen = 0;
	b = uv_buf_init((char *)c->wbuf, (unsigned)c->wlen);
	c->writing = true;
	int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
	if (rc != 0) {
		c->writing = false;
		c->had_error = true;
		close_now(c);
	}
}

/* Transmit: try the socket now, keep only what it refused. Used by TLS and plain output. */
static int sock_send(void *ctx, const uint8_t *p, size_t n)
{
	gw_conn_t *c = ctx;

	if (c->closing && c->had_error)
		return -EPIPE;
	if (!c->writing && c->plen == 0) {
		uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
		int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (r == (int)n)
			return 0;
		if (r < 0 && r != UV_EAGAIN)
			return r;
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		}
	}
	if (c->plen + n > PENDING_MAX || grow(&c->pbuf, &c->pcap, c->plen + n) != 0)
		return -ENOBUFS;
	memcpy(c->pbuf + c->plen, p, n);
	c->plen += n;
	if (!c->writing && !c->closing)
		start_write(c);
	return 0;
}

/* TLS transmit: during the handshake gather a flight in hbuf (this may run on a pool thread,
 * where the socket must not be touched); afterwards straight to the socket. */
static int tls_send(void *ctx, const uint8_t *p, size_t n)
{
	gw_conn_t *c = ctx;

	if (!c->hs_capture)
		return sock_send(c, p, n);
	if (grow(&c->hbuf, &c->hcap, c->hlen + n) != 0)
		return -ENOBUFS;
	memcpy(c->hbuf + c->hlen, p, n);
	c->hlen += n;
	return 0;
}

/* Send the gathered handshake flight (loop thread). */
static int hs_flush(gw_conn_t *c)
{
	int rc = 0;

	if (c->hlen > 0)
		rc = sock_send(c, c->hbuf, c->hlen);
	c->hlen = 0;
	if (c->tls.established)
		c->hs_capture = false;
	return rc;
}

static int out_flush(void *ctx, const void *p, size_t n)
{
	gw_conn_t *c = ctx;

	if (c->closing && c->had_error)
		return -EPIPE;
	if (tls_on(c))
		return proto_tls_write(&c->tls, p, n);
	return sock_send(c, p, n);
}

static void set_phase(gw_conn_t *c, enum phase ph)
{
	const gw_config_t *cfg = &c->w->m->cfg;
	uint32_t ms = 0;

	if (c->phase == ph && ph == PH_HEADER)
		return; /* the header deadline runs from the request's first byte, not the last */
	c->phase = (uint8_t)ph;
	switch (ph) {
	case PH_HANDSHAKE: ms = cfg->handshake_timeout_ms; break;
	case PH_HEADER: ms = cfg->header_timeout_ms; break;
	case PH_IDLE: ms = cfg->idle_timeout_ms; break;
	case PH_WRITE: ms = cfg->write_timeout_ms; break;
	default: break;
	}
	c->deadline = ms ? now_ms(c) + ms : 0;
}

static void write_cb(uv_write_t *req, int status)
{
	gw_conn_t *c = req->data;

	c->writing = false;
	c->wlen = 0;
	if (status < 0) {
		c->had_error = true;
		close_now(c);
		return;
	}
	if (c->closing)
		return;
	if (c->plen > 0) {
		start_write(c);
		set_phase(c, PH_WRITE);
		return;
	}
	if (c->close_after && !c->waiting) {
		close_soft(c);
		return;
	}
	if (c->paused) {
		c->paused = false;
		pump(c);
		return;
	}
	if (c->in_work || (tls_on(c) && !c->tls.established))
		return; /* the handshake deadline keeps running */
	set_phase(c, gw_http_partial(&c->http) ? PH_HEADER : PH_IDLE);
}

/* ---- answering ------------------------------------------------------------------------ */

static void use_out(gw_conn_t *c)
{
	gw_out_t *o = &c->w->out;

	o->ctx = c;
	o->flush = out_flush;
	o->err = 0;
}

/* Answer c->req. Returns true when the connection must stop processing (wait or close). */
static bool answer(gw_conn_t *c)
{
	gw_worker_t *w = c->w;
	bool close = false;
	uint64_t before = w->out.bytes;
	int st = gw_respond(&w->ctx, &c->req, &c->target, c->route_rc, &w->out, now_ms(c),
			    &c->wait_until, &close);

	if (st == GW_WAIT) {
		if (!c->waiting) {
			c->waiting = true;
			c->wnext = w->waiters;
			w->waiters = c;
			proto_metrics_inc(&w->stats.min_rev_waits, 1);
			if (!uv_is_active((uv_handle_t *)&w->wait_timer))
				uv_timer_start(&w->wait_timer, gw__worker_wait_cb, 1, 1);
		}
		return true;
	}
	proto_metrics_inc(&w->stats.bytes_out, w->out.bytes - before);
	gw_stats_request(&w->stats, c->target.route, st, c->req.t_start_ns);
	gw_http_done(&c->http);
	if (close || c->req.upgrade) {
		c->close_after = true;
		return true;
	}
	return false;
}

static bool rate_exceeded(gw_conn_t *c)
{
	uint32_t max = c->w->m->cfg.max_req_rate;
	uint64_t sec = now_ms(c) / 1000;

	if (max == 0)
		return false;
	if (sec != c->rate_sec) {
		c->rate_sec = sec;
		c->rate_n = 0;
	}
	return ++c->rate_n > max;
}

/* Returns true when processing must stop (waiting, closing, or no more requests). */
static bool process_requests(gw_conn_t *c)
{
	gw_worker_t *w = c->w;

	for (;;) {
		int rc = gw_http_next(&c->http, &c->req);
		if (rc == GW_HTTP_MORE)
			return false;
		if (rc == GW_HTTP_ERROR) {
			int st = c->http.err_status;
			gw_respond_error(&w->ctx, &w->out, st, c->http.err_reason, true);
			gw_stats_request(&w->stats, GW_R_OTHER, st, 0);
			if (st == 400)
				proto_metrics_inc(&w->stats.protocol_errors, 1);
			c->close_after = true;
			return true;
		}
		if (rate_exceeded(c)) {
			gw_respond_error(&w->ctx, &w->out, 429, "too many requests", true);
			gw_stats_request(&w->stats, GW_R_OTHER, 429, c->req.t_start_ns);
			proto_metrics_inc(&w->stats.rate_limited, 1);
			c->close_after = true;
			return true;
		}
		c->route_rc = gw_route_parse(c->req.url, c->req.url_len, &c->target);
		gw_route_restrict(&c->target, &c->route_rc, c->mconn, w->m->cfg.metrics_on_public);
		c->wait_until = 0;
		if (answer(c))
			return true;
		if (++c->burst >= REQ_BURST && !c->yielded) {
			c->yielded = true;
			c->ynext = w->yielded;
			w->yielded = c;
			if (!uv_is_active((uv_handle_t *)&w->resume))
				uv_idle_start(&w->resume, gw__conn_resume_cb);
			return true;
		}
	}
}

/* After processing: flush, end the read txn, and decide reading, deadline, closing. */
static void settle(gw_conn_t *c)
{
	gw_worker_t *w = c->w;

	gw_out_flush(&w->out);
	gw_ctx_end_read(&w->ctx);
	gw__worker_store_sync(w);
	if (w->out.err != 0) {
		c->had_error = true;
		close_now(c);
		return;
	}
	if (c->closing)
		return;
	if (c->close_after && !c->waiting) {
		if (!c->writing) {
			close_soft(c);
			return;
		}
	}
	if (c->paused || c->waiting || c->close_after || c->eof || c->yielded) {
		if (c->reading) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			c->reading = false;
		}
	} else {
		start_reading(c);
	}
	if (c->waiting)
		set_phase(c, PH_NONE);
	else if (c->writing)
		set_phase(c, PH_WRITE);
	else if (tls_on(c) && !c->tls.established)
		; /* the handshake deadline keeps running */
	else if (gw_http_partial(&c->http))
		set_phase(c, PH_HEADER);
	else
		set_phase(c, PH_IDLE);
}

static void keep_cipher(gw_conn_t *c)
{
	size_t n = proto_tls_unconsumed(&c->tls);
	const uint8_t *p = c->tls.in;

	if (n == 0) {
		c->cin_len = 0;
		return;
	}
	if (p >= c->cin && p < c->cin + c->cin_cap) {
		memmove(c->cin, p, n);
	} else if (grow(&c->cin, &c->cin_cap, n) == 0) {
		memcpy(c->cin, p, n);
	} else {
		c->had_error = true;
		close_now(c);
		return;
	}
	c->cin_len = n;
	proto_tls_feed(&c->tls, c->cin, n);
}

static void hs_offload(gw_conn_t *c);

/* A handshake call returned rc: count it, send its flight. False: the connection closed. */
static bool hs_result(gw_conn_t *c, int rc)
{
	gw_worker_t *w = c->w;

	if (rc != 0 && rc != PROTO_EAGAIN) {
		proto_metrics_inc(&w->stats.hs_failed, 1);
		GK_DEBUG("gateway", "tls handshake failed", "err=\"%s\"",
			 proto_tls_strerror(c->tls.tls_err));
		(void)hs_flush(c); /* the alert, best effort */
		c->had_error = true;
		close_now(c);
		return false;
	}
	if (rc == 0)
		proto_metrics_inc(c->tls.resumed ? &w->stats.hs_resumed : &w->stats.hs_full, 1);
	if (hs_flush(c) != 0) {
		c->had_error = true;
		close_now(c);
		return false;
	}
	return !c->closing;
}

static void pump(gw_conn_t *c)
{
	gw_worker_t *w = c->w;

	if (c->in_work || c->yielded)
		return; /* hs_after_cb / gw__conn_resume_cb pumps */
	use_out(c);
	c->burst = 0;
	for (;;) {
		if (c->closing || c->waiting || c->close_after || c->yielded)
			break;
		if (c->plen >= PENDING_PAUSE) {
			c->paused = true;
			break;
		}
		if (tls_on(c) && !c->tls.established) {
			/* Alone on the worker, a costly step inline delays nobody, and the two pool
			 * round trips would only add latency (under load each waits for a CPU). */
			bool offload = w->m->cfg.handshake_threads >= 0 && w->nconns > 1;
			int rc = offload ? proto_tls_handshake_cheap(&c->tls)
					 : proto_tls_handshake(&c->tls);
			if (rc == PROTO_EBUSY) {
				hs_offload(c);
				return;
			}
			if (!hs_result(c, rc))
				return;
			if (rc == PROTO_EAGAIN)
				break;
			continue;
		}
		if (process_requests(c))
			break;
		if (!tls_on(c))
			break;
		size_t avail;
		char *space = gw_http_space(&c->http, &avail);
		if (avail == 0)
			break;
		long n = proto_tls_read(&c->tls, space, avail);
		if (n > 0) {
			gw_http_commit(&c->http, (size_t)n);
			continue;
		}
		if (n == PROTO_EAGAIN)
			break;
		if (n == PROTO_ECLOSED) {
			c->eof = true;
			c->close_after = true;
			break;
		}
		proto_metrics_inc(&w->stats.protocol_errors, 1);
		c->had_error = true;
		close_now(c);
		return;
	}
	if (tls_on(c) && !c->closing)
		keep_cipher(c);
	settle(c);
}

/* ---- handshakes on the pool ---------------------------------------------------------- */

static void conn_release(gw_conn_t *c);

/* Pool thread: the only code touching c->tls, c->cin and c->hbuf until hs_after_cb. */
static void hs_work_cb(uv_work_t *req)
{
	gw_conn_t *c = req->data;

	if (c->w->m->test_hs_delay_ms > 0) /* tests: a handshake slow enough to observe */
		uv_sleep(c->w->m->test_hs_delay_ms);
	c->work_rc = proto_tls_handshake(&c->tls);
}

static void hs_after_cb(uv_work_t *req, int status)
{
	gw_conn_t *c = req->data;

	c->in_work = false;
	if (c->handle_closed) {
		conn_release(c); /* closed meanwhile; close_cb left the release to us */
		return;
	}
	if (c->closing)
		return; /* close_cb will release */
	if (!hs_result(c, status < 0 ? PROTO_EBADMSG : c->work_rc))
		return;
	pump(c); /* next step, or requests that came with the client's Finished */
}

/* Run the rest of the handshake on the pool. Its input must outlive this callback, so the
 * unconsumed bytes move from the worker's shared read buffer into c->cin; reading stops
 * until the step returns, so nothing else writes c->cin meanwhile. */
static void hs_offload(gw_conn_t *c)
{
	gw_worker_t *w = c->w;

	keep_cipher(c);
	if (c->closing)
		return;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	c->work.data = c;
	c->in_work = true;
	if (uv_queue_work(&w->loop, &c->work, hs_work_cb, hs_after_cb) != 0) {
		c->in_work = false;
		if (hs_result(c, proto_tls_handshake(&c->tls)))
			pump(c);
	}
}

/* ---- reading --------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	gw_conn_t *c = h->data;

	if (tls_on(c) || c->lingering) {
		*buf = uv_buf_init(c->w->rbuf, (unsigned)c->w->rbuf_cap);
	} else {
		size_t avail;
		char *p = gw_http_space(&c->http, &avail);
		*buf = uv_buf_init(p, (unsigned)avail);
	}
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	gw_conn_t *c = s->data;

	if (nread == 0 || c->closing)
		return;
	if (c->lingering) {
		if (nread < 0)
			close_now(c); /* the client has read our answer and closed */
		return;           /* discard: we answered and are closing */
	}
	if (nread < 0) {
		/* EOF (a client may half-close after pipelining): answer what is buffered, then
		 * close. Errors: close at once. */
		if (nread != UV_EOF)
			c->had_error = true;
		c->eof = true;
		c->close_after = true;
		if (c->had_error || (!c->waiting && !c->writing))
			close_now(c);
		else
			settle(c);
		return;
	}
	proto_metrics_inc(&c->w->stats.bytes_in, (uint64_t)nread);
	if (!tls_on(c)) {
		gw_http_commit(&c->http, (size_t)nread);
	} else if (c->cin_len > 0) {
		if (grow(&c->cin, &c->cin_cap, c->cin_len + (size_t)nread) != 0) {
			c->had_error = true;
			close_now(c);
			return;
		}
		memcpy(c->cin + c->cin_len, buf->base, (size_t)nread);
		c->cin_len += (size_t)nread;
		proto_tls_feed(&c->tls, c->cin, c->cin_len);
	} else {
		proto_tls_feed(&c->tls, (const uint8_t *)buf->base, (size_t)nread);
	}
	pump(c);
}

static void start_reading(gw_conn_t *c)
{
	if (!c->reading && !c->closing) {
		c->reading = true;
		uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	}
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void conn_free(gw_conn_t *c)
{
	if (c->gen != NULL) {
		proto_tls_conn_free(&c->tls);
		gw__worker_tls_release(c->w, c->gen);
		c->gen = NULL;
	}
	if (c->http_ready)
		gw_http_free(&c->http);
	free(c->cin);
	free(c->wbuf);
	free(c->pbuf);
	free(c->hbuf);
	free(c);
}

static void trim(uint8_t **buf, size_t *cap)
{
	if (*cap > KEEP_BUF_MAX) {
		free(*buf);
		*buf = NULL;
		*cap = 0;
	}
}

/* The handle is closed and no pool step holds the connection: unlink, then pool or free. */
static void conn_release(gw_conn_t *c)
{
	gw_worker_t *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	if (c->mconn)
		w->nmconns--;
	proto_metrics_inc(&w->stats.conns_open, (uint64_t)-1);
	if (w->npool >= POOL_MAX || (c->gen != NULL && c->gen != w->tls) || w->stopping) {
		conn_free(c);
		return;
	}
	trim(&c->cin, &c->cin_cap);
	trim(&c->wbuf, &c->wcap);
	trim(&c->pbuf, &c->pcap);
	trim(&c->hbuf, &c->hcap);
	c->next = w->pool;
	w->pool = c;
	w->npool++;
}

static void on_close(uv_handle_t *h)
{
	gw_conn_t *c = h->data;

	c->handle_closed = true;
	if (c->in_work)
		return; /* hs_after_cb releases: the pool thread still uses c */
	conn_release(c);
}

static void unwait(gw_conn_t *c)
{
	gw_conn_t **pp = &c->w->waiters;

	while (*pp != NULL && *pp != c)
		pp = &(*pp)->wnext;
	if (*pp == c)
		*pp = c->wnext;
	c->wnext = NULL;
	c->waiting = false;
}

static void unyield(gw_conn_t *c)
{
	gw_conn_t **pp = &c->w->yielded;

	while (*pp != NULL && *pp != c)
		pp = &(*pp)->ynext;
	if (*pp == c)
		*pp = c->ynext;
	c->ynext = NULL;
	c->yielded = false;
}

static void close_now(gw_conn_t *c)
{
	if (c->closing)
		return;
	if (c->waiting)
		unwait(c);
	if (c->yielded)
		unyield(c);
	if (tls_on(c) && !c->in_work && c->tls.established && !c->had_error && !c->lingering &&
	    !c->writing && c->plen == 0)
		proto_tls_close_notify(&c->tls); /* best effort: try_write, else dropped */
	c->closing = true;
	if (c->reading)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	gw_conn_t *c = req->data;

	if (status < 0 && !c->closing)
		close_now(c);
}

/*
 * Close after a final answer without losing it: closing a socket with unread input makes the
 * kernel send RST, and a client still sending (a too-large body, pipelined requests after a
 * protocol error) then loses the answer we wrote. So send FIN, read and discard for up to
 * LINGER_MS, then close (nginx's lingering_close does the same).
 */
static void close_soft(gw_conn_t *c)
{
	if (c->closing)
		return;
	if (c->eof || c->had_error || c->lingering) {
		close_now(c);
		return;
	}
	if (tls_on(c) && c->tls.established)
		proto_tls_close_notify(&c->tls);
	c->lingering = true;
	c->sreq.data = c;
	if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
		close_now(c);
		return;
	}
	if (!c->reading) {
		c->reading = true;
		uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	}
	c->phase = PH_LINGER;
	c->deadline = now_ms(c) + LINGER_MS;
}

static gw_conn_t *conn_get(gw_worker_t *w)
{
	gw_conn_t *c = w->pool;

	if (c != NULL) {
		w->pool = c->next;
		w->npool--;
	} else {
		c = calloc(1, sizeof *c);
		if (c == NULL)
			return NULL;
		if (gw_http_init(&c->http, &w->m->cfg.lim) != 0) {
			free(c);
			return NULL;
		}
		c->http_ready = true;
	}
	c->w = w;
	c->prev = c->next = c->wnext = c->ynext = NULL;
	c->yielded = c->mconn = false;
	c->burst = 0;
	c->cin_len = c->wlen = c->plen = c->hlen = 0;
	c->in_work = c->handle_closed = c->hs_capture = false;
	c->writing = c->closing = c->close_after = c->waiting = c->paused = false;
	c->reading = c->eof = c->had_error = c->lingering = false;
	c->phase = PH_NONE;
	c->deadline = 0;
	c->rate_sec = 0;
	c->rate_n = 0;
	gw_http_reset(&c->http);
	return c;
}

void gw__conn_accept(gw_worker_t *w, bool metrics)
{
	uv_stream_t *listener = metrics ? (uv_stream_t *)&w->mlistener : (uv_stream_t *)&w->listener;
	gw_conn_t *c = conn_get(w);
	bool over;
	int rc;

	if (c == NULL) {
		/* Out of memory: accept and drop, or the listener would spin on this client. */
		uv_tcp_t tmp;
		uv_tcp_init(&w->loop, &tmp);
		(void)uv_accept(listener, (uv_stream_t *)&tmp);
		uv_close((uv_handle_t *)&tmp, NULL);
		uv_run(&w->loop, UV_RUN_NOWAIT);
		return;
	}
	uv_tcp_init(&w->loop, &c->tcp);
	c->tcp.data = c;
	c->wreq.data = c;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	c->mconn = metrics;
	if (metrics)
		w->nmconns++;
	proto_metrics_inc(&w->stats.conns_open, 1);
	if ((rc = uv_accept(listener, (uv_stream_t *)&c->tcp)) != 0) {
		c->had_error = true;
		close_now(c);
		return;
	}
	proto_metrics_inc(&w->stats.conns_total, 1);
	/* Scrapes have their own small cap, so a full public side does not blind monitoring. */
	over = metrics ? w->nmconns > GW_METRICS_MAX_CONNS : w->nconns - w->nmconns > w->max_conns;
	if (over || w->stopping) {
		/* Graceful refusal: plain clients get a 503 they can act on; TLS clients get a
		 * clean close, because a handshake is the expensive thing we are short of. */
		proto_metrics_inc(&w->stats.conns_refused, 1);
		if (!tls_on(c)) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
				"Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n";
			uv_buf_t b = uv_buf_init((char *)busy, sizeof busy - 1);
			(void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		}
		c->had_error = true;
		close_now(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (tls_on(c)) {
		if (c->gen != w->tls) {
			if (c->gen != NULL) {
				proto_tls_conn_free(&c->tls);
				gw__worker_tls_release(w, c->gen);
			}
			c->gen = w->tls;
			c->gen->refs++;
		}
		c->hs_capture = true;
		if (proto_tls_conn_init(&c->tls, &c->gen->conf, tls_send, c) != 0) {
			c->had_error = true;
			close_now(c);
			return;
		}
		set_phase(c, PH_HANDSHAKE);
	} else {
		set_phase(c, PH_HEADER);
	}
	start_reading(c);
}

void gw__conn_tick(gw_worker_t *w, uint64_t now)
{
	gw_conn_t *c, *next;

	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		if (c->closing)
			continue;
		if (w->stopping && !c->waiting && !c->writing && !gw_http_partial(&c->http)) {
			close_now(c); /* idle during shutdown */
			continue;
		}
		if (c->deadline == 0 || now < c->deadline)
			continue;
		switch (c->phase) {
		case PH_HANDSHAKE:
			proto_metrics_inc(&w->stats.timeouts_handshake, 1);
			break;
		case PH_HEADER:
			proto_metrics_inc(&w->stats.timeouts_header, 1);
			if (!tls_on(c) || c->tls.established) {
				use_out(c);
				gw_respond_error(&w->ctx, &w->out, 408, "request timeout", true);
				gw_stats_request(&w->stats, GW_R_OTHER, 408, 0);
				gw_out_flush(&w->out);
			}
			break;
		case PH_IDLE:
			proto_metrics_inc(&w->stats.timeouts_idle, 1);
			break;
		case PH_WRITE:
			proto_metrics_inc(&w->stats.timeouts_write, 1);
			c->had_error = true;
			break;
		default:
			break;
		}
		close_now(c);
	}
}

void gw__conn_wait_tick(gw_worker_t *w, uint64_t now)
{
	gw_conn_t *c = w->waiters, *next;
	uint64_t rev;

	if (c == NULL) {
		uv_timer_stop(&w->wait_timer);
		return;
	}
	/* A fresh snapshot: the revision must be read after the node published it. */
	gw_ctx_end_read(&w->ctx);
	gw__worker_store_sync(w);
	rev = gw_node_revision(&w->ctx);
	gw_ctx_end_read(&w->ctx);
	for (; c != NULL; c = next) {
		next = c->wnext;
		if (rev < c->target.min_rev && now < c->wait_until)
			continue;
		unwait(c);
		use_out(c);
		if (!answer(c))
			pump(c);
		else
			settle(c);
	}
	if (w->waiters == NULL)
		uv_timer_stop(&w->wait_timer);
}

/* Idle callback: give each connection that yielded its next burst. Connections that yield
 * again go on a fresh list, so one pass serves each once and the loop polls in between. */
void gw__conn_resume_cb(uv_idle_t *h)
{
	gw_worker_t *w = h->data;
	gw_conn_t *c = w->yielded, *next;

	w->yielded = NULL;
	for (; c != NULL; c = next) {
		next = c->ynext;
		c->ynext = NULL;
		c->yielded = false;
		pump(c);
	}
	if (w->yielded == NULL)
		uv_idle_stop(&w->resume);
}

void gw__conn_stop_all(gw_worker_t *w, bool force)
{
	gw_conn_t *c, *next;

	w->ctx.stopping = true;
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		if (force || (!c->waiting && !c->writing && !gw_http_partial(&c->http)))
			close_now(c);
	}
}

void gw__conn_pool_free(gw_worker_t *w)
{
	while (w->pool != NULL) {
		gw_conn_t *c = w->pool;
		w->pool = c->next;
		conn_free(c);
	}
	w->npool = 0;
}
