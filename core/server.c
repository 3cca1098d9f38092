/*
 * geokv-primary client connections: listener, framing, HELLO, dispatch of requests to the
 * pipeline (writes) or the store (reads), and buffered replies.
 *
 * Per connection: one read buffer and two output buffers used in turn: replies are appended
 * to one while the other is being written, so any number of pipelined replies go out in one
 * write(2) per round, with no allocation per reply once the buffers are warm.
 *
 * Input memory (what a peer can make us hold without sending a whole frame):
 *   before HELLO   at most the largest valid HELLO (HELLO_MAX_FRAME, 4373 bytes) is read; a
 *                  header announcing another type or a bigger HELLO is refused at once
 *   after HELLO    the read buffer grows (doubling, never past the frame being received) as
 *                  bytes arrive, never to the length a header merely announces; all buffers
 *                  grown past READ_CHUNK share one budget (prim__read_budget: 4 x max-frame,
 *                  at least 256 MiB); the connection whose growth would pass it gets
 *                  PROTO_EBUSY and is closed
 *   in time        a frame must be complete within hello-timeout-ms of its first byte, plus
 *                  1 s per FRAME_MIN_RATE bytes received (the sweep timer checks)
 *
 * Bad input, and what it gets (the daemon keeps serving everyone else):
 *   frame over max-frame             ERROR PROTO_ETOOBIG, then close (we cannot skip the body
 *                                    without reading it, and we refuse to buffer it)
 *   bad header, HELLO first missing,
 *   undecodable op                   ERROR PROTO_EBADMSG, then close (framing is suspect)
 *   unknown frame type / op, a field
 *   over its protocol maximum        ERROR PROTO_EBADTYPE / PROTO_ETOOBIG, connection kept
 *   too many writes in flight        ERROR PROTO_EBUSY for that request, connection kept
 *   version / cluster mismatch       ERROR PROTO_EVERSION / PROTO_ECLUSTER, then close
 *   wrong or missing token           ERROR PROTO_EAUTH, then close (when token-file is set)
 *   HELLO with an unknown role, a
 *   second HELLO, no HELLO first     ERROR PROTO_EBADMSG, then close
 *   read budget exhausted            ERROR PROTO_EBUSY, then close
 * Name rules, value sizes, unknown buckets are the store's to judge (KV_E* errors).
 */
#include "core/primary_int.h"
#include "core/prim_stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK      (64u << 10)
#define READ_KEEP_MAX   (1u << 20)   /* a read buffer above this is freed when drained */
#define OUT_HIGH_WATER  (16u << 20)  /* stop reading while this much output is queued */
#define DEFER_MAX       128          /* linearizable reads a connection may have waiting */
#define OUT_KEEP_MAX    (4u << 20)   /* an output buffer above this is freed when written */

/* The largest valid HELLO, from its fields' maxima: u16 version, u8 role, bytes(u8) cluster,
 * bytes(u16) token. Before HELLO a connection reads no more than this. */
#define HELLO_MAX_PAYLOAD (2u + 1u + 1u + PROTO_MAX_CLUSTER + 2u + PROTO_MAX_TOKEN) /* 4357 */
#define HELLO_MAX_FRAME   (PROTO_HDR_LEN + HELLO_MAX_PAYLOAD)
#define IN_HELLO_CAP      8192         /* the read buffer before HELLO */
_Static_assert(IN_HELLO_CAP >= HELLO_MAX_FRAME, "a whole HELLO fits the pre-HELLO buffer");
#define READ_BUDGET_MIN   (256ull << 20) /* read buffers past READ_CHUNK, all connections */
#define READ_BUDGET_FRAMES 4           /* ... or this many frames of max-frame, if more */
#define FRAME_MIN_RATE    (256u << 10) /* bytes/s: each such amount received earns 1 s more */
#define CIN_HANDSHAKE_MAX READ_CHUNK   /* TLS ciphertext left unconsumed during the handshake */

struct prim_conn {
	uv_tcp_t tcp;
	prim_t *p;
	prim_conn_t *prev, *next;
	prim_buf_t in;
	prim_buf_t out[2];
	int fill;                 /* out[fill] collects replies; out[!fill] is being written */
	bool writing;
	uv_write_t wreq;
	uint32_t refs;            /* 1 for the handle + 1 per proposal that will answer here */
	uint32_t inflight;
	uint32_t deferred;        /* linearizable reads waiting (ReadIndex round, or output room) */
	prim_read_t *ready;       /* confirmed reads waiting for output room, oldest first */
	prim_read_t *ready_tail;
	bool hello;
	bool reading;
	bool paused;              /* reading stopped for output back-pressure */
	bool close_after_flush;
	bool closing;             /* uv_close called */
	uint64_t opened_ms;       /* uv_now at accept: the HELLO deadline counts from here */
	uint64_t active_ms;       /* uv_now of the last read or completed write */
	uint64_t frame_ms;        /* uv_now when the partial frame at the front of `in` began */
	bool frame_open;          /* `in` holds part of a frame (its deadline runs) */
	bool over_budget;         /* on_alloc refused to grow `in`: on_read answers EBUSY */
	size_t want;              /* header + payload of that partial frame; 0 = header not in */
	uint64_t want_id;         /* its request id */
	char peer[64];
	/* TLS ([tls] cert set): ciphertext goes through these; frames still use in/out. */
	proto_tls_conn_t *tls;    /* NULL on a plain listener */
	prim_buf_t cin;           /* ciphertext received, not yet consumed by mbedTLS */
	prim_buf_t cout[2];       /* ciphertext of out[i], plus handshake records */
	bool tls_checked;         /* the connection's first byte has been looked at */
	bool plain_reply;         /* a plain client on the TLS port: answered in plain, closed */
};

static void conn_close(prim_conn_t *c);
static void flush(prim_conn_t *c);
static void serve_ready(prim_conn_t *c);

/* ---- the read buffer and its budget ----------------------------------------------------- */

uint64_t prim__read_budget(const prim_t *p)
{
	uint64_t b = (uint64_t)READ_BUDGET_FRAMES * p->cfg->max_frame;

	return b > READ_BUDGET_MIN ? b : READ_BUDGET_MIN;
}

/* What a read buffer of `cap` bytes costs the budget: the READ_CHUNK every connection reads
 * into is free (max-conns bounds those), a buffer grown past it counts whole. */
static uint64_t in_charge(size_t cap) { return cap > READ_CHUNK ? cap : 0; }

/* Resize c->in to cap bytes (>= its length). 0, -ENOMEM, or PROTO_EBUSY when growing would
 * pass the budget (nothing changed then). */
static int in_resize(prim_conn_t *c, size_t cap)
{
	prim_stats_t *st = &c->p->st;
	uint64_t was = in_charge(c->in.cap), will = in_charge(cap);
	uint8_t *np;

	if (will > was && st->read_held - was + will > prim__read_budget(c->p))
		return PROTO_EBUSY;
	if ((np = realloc(c->in.p, cap)) == NULL)
		return -ENOMEM;
	c->in.p = np;
	c->in.cap = cap;
	st->read_held = st->read_held - was + will;
	return 0;
}

static void in_free(prim_conn_t *c)
{
	c->p->st.read_held -= in_charge(c->in.cap);
	prim__buf_free(&c->in);
}

/*
 * Room for `room` more bytes in c->in, growing as bytes arrive: doubling (so a frame of n
 * bytes costs O(n) copying), but never past the end of the partial frame being received when
 * that is enough, and never to what a header merely announces. 0, -ENOMEM or PROTO_EBUSY.
 */
static int in_grow(prim_conn_t *c, size_t room)
{
	size_t need = c->in.len + room, cap;

	if (need <= c->in.cap)
		return 0;
	cap = c->in.cap < READ_CHUNK ? READ_CHUNK : c->in.cap * 2;
	if (c->want >= need && cap > c->want)
		cap = c->want;
	while (cap < need)
		cap *= 2;
	return in_resize(c, cap);
}

static void close_after_flush(prim_conn_t *c);

/* Note where the partial frame at the front of c->in ends (c->want, 0 = its header is not in
 * or the front frame is whole) and its request id. */
static void note_front(prim_conn_t *c)
{
	proto_hdr_t h;

	c->want = 0;
	if (c->in.len >= PROTO_HDR_LEN &&
	    proto_hdr_decode(c->in.p, c->in.len, c->p->cfg->max_frame, &h) == PROTO_EAGAIN) {
		c->want = PROTO_HDR_LEN + (size_t)h.len;
		c->want_id = h.id;
	}
}

/* Bytes received of frames not yet complete (and of a partial TLS record). */
static size_t pending_bytes(const prim_conn_t *c)
{
	return c->in.len + (c->tls != NULL ? c->cin.len : 0);
}

/* The read budget is spent: this connection's partial frame is dropped (its buffer given
 * back at once), it is told why, and closed. */
static void refuse_memory(prim_conn_t *c)
{
	prim_t *p = c->p;
	uint64_t budget = prim__read_budget(p);
	char msg[192];

	GK_WARN("server", "read budget exhausted, closing",
		"peer=%s frame=%zu got=%zu held=%" PRIu64 " budget=%" PRIu64, c->peer, c->want,
		c->in.len, p->st.read_held, budget);
	snprintf(msg, sizeof msg,
		 "server busy: incomplete frames hold %" PRIu64 " MiB of read buffers (budget %"
		 PRIu64 " MiB); retry later", p->st.read_held >> 20, budget >> 20);
	prim__stat_reject(p, PRIM_REJ_MEMORY);
	in_free(c);
	c->frame_open = false;
	prim__reply_error(c, c->want ? c->want_id : 0, PROTO_EBUSY, msg, 0, 0);
	c->want = 0;
	close_after_flush(c);
}

/* ---- refs ----------------------------------------------------------------------------- */

void prim__conn_ref(prim_conn_t *c) { c->refs++; }

void prim__conn_unref(prim_conn_t *c)
{
	if (--c->refs > 0)
		return;
	prim__buf_free(&c->in);
	prim__buf_free(&c->out[0]);
	prim__buf_free(&c->out[1]);
	if (c->tls != NULL) {
		proto_tls_conn_free(c->tls);
		free(c->tls);
		prim__buf_free(&c->cin);
		prim__buf_free(&c->cout[0]);
		prim__buf_free(&c->cout[1]);
	}
	free(c);
}

static void on_closed(uv_handle_t *h)
{
	prim_conn_t *c = h->data;
	prim_t *p = c->p;

	in_free(c); /* nothing reads it past close: proposals and deferred reads hold copies */
	prim__conn_unref(c);
	prim__maybe_finish(p);
}

static void conn_close(prim_conn_t *c)
{
	prim_t *p = c->p;

	if (c->closing)
		return;
	c->closing = true;
	while (c->ready) { /* confirmed reads nobody will receive */
		prim_read_t *rd = c->ready;
		c->ready = rd->next;
		c->deferred--;
		free(rd);
		prim__conn_unref(c); /* never the last: the handle holds one until on_closed */
	}
	c->ready_tail = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->nconns--;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Is anything waiting in the fill buffers (replies, or TLS records)? */
static bool queued(const prim_conn_t *c)
{
	return c->out[c->fill].len > 0 || (c->tls != NULL && c->cout[c->fill].len > 0);
}

/* Close once every queued reply is written. */
static void close_after_flush(prim_conn_t *c)
{
	c->close_after_flush = true;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	if (!c->writing && !queued(c))
		conn_close(c);
}

/* ---- output --------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void process_input(prim_conn_t *c);

static void start_reading(prim_conn_t *c)
{
	if (c->reading || c->closing || c->close_after_flush || c->p->stopping)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

static void on_write(uv_write_t *req, int status)
{
	prim_conn_t *c = req->data;
	prim_buf_t *done = &c->out[!c->fill];

	c->writing = false;
	if (status == 0) {
		c->active_ms = uv_now(c->p->loop);
		c->p->st.bytes_out += done->len;
	}
	done->len = 0;
	if (done->cap > OUT_KEEP_MAX)
		prim__buf_free(done);
	if (c->tls != NULL) {
		c->cout[!c->fill].len = 0;
		if (c->cout[!c->fill].cap > OUT_KEEP_MAX)
			prim__buf_free(&c->cout[!c->fill]);
	}
	if (c->closing)
		return;
	if (status < 0) {
		GK_DEBUG("server", "write failed", "peer=%s err=%s", c->peer, uv_err_name(status));
		conn_close(c);
		return;
	}
	flush(c);
	serve_ready(c);
	if (c->closing)
		return;
	if (c->paused && !c->ready && c->deferred < DEFER_MAX &&
	    c->out[c->fill].len < OUT_HIGH_WATER) {
		c->paused = false;
		process_input(c); /* the frames left while paused; may pause again */
		if (!c->paused)
			start_reading(c);
		if (c->closing)
			return;
	}
	if (c->close_after_flush && !c->writing && !queued(c))
		conn_close(c);
}

/* TLS send callback: ciphertext joins the fill side, written by the next flush. */
static int tls_send(void *ctx, const uint8_t *p, size_t len)
{
	prim_conn_t *c = ctx;
	prim_buf_t *b = &c->cout[c->fill];

	if (prim__buf_reserve(b, len) != 0)
		return -ENOMEM;
	memcpy(b->p + b->len, p, len);
	b->len += len;
	return 0;
}

static void flush(prim_conn_t *c)
{
	prim_buf_t *b = &c->out[c->fill];
	uv_buf_t ub;

	if (c->writing || c->closing)
		return;
	if (c->tls != NULL && !c->plain_reply) {
		/* Encrypt the replies as a whole (records of up to 16 KiB); the plaintext stays in
		 * out[] until the write completes, so the byte counts and buffer swap are as in
		 * the plain case. Frames are only handled once the handshake is over. */
		if (b->len > 0 && proto_tls_write(c->tls, b->p, b->len) != 0) {
			GK_WARN("server", "TLS write failed, closing", "peer=%s err=\"%s\"", c->peer,
				proto_tls_strerror(c->tls->tls_err));
			b->len = 0;
			conn_close(c);
			return;
		}
		b = &c->cout[c->fill];
	}
	if (b->len == 0)
		return;
	ub = uv_buf_init((char *)b->p, (unsigned)b->len);
	c->wreq.data = c;
	c->writing = true;
	c->fill = !c->fill;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &ub, 1, on_write) != 0) {
		c->writing = false;
		b->len = 0;
		conn_close(c);
	}
}

/*
 * Append one frame to the fill buffer: `enc` writes the payload into w. Retries with a
 * bigger buffer while the encoder reports PROTO_ETOOBIG, up to max-frame. Returns 0 or the
 * encoder's error (nothing appended).
 */
typedef int (*enc_fn)(void *arg, proto_wbuf_t *w);

static int append_frame(prim_conn_t *c, uint16_t type, uint64_t id, enc_fn enc, void *arg)
{
	prim_buf_t *b = &c->out[c->fill];
	size_t want = 4096, limit = (size_t)c->p->cfg->max_frame + PROTO_HDR_LEN;
	proto_wbuf_t w;
	int rc;

	for (;;) {
		if (prim__buf_reserve(b, want) != 0)
			return PROTO_EINTERNAL;
		size_t room = b->cap - b->len > limit ? limit : b->cap - b->len;
		proto_wbuf_init(&w, b->p + b->len, room);
		size_t at = proto_frame_begin(&w);
		rc = enc(arg, &w);
		if (rc == 0)
			rc = w.err;
		if (rc == 0)
			rc = proto_frame_finish(&w, at, type, id);
		if (rc == 0) {
			b->len += proto_wbuf_len(&w);
			return 0;
		}
		if (rc != PROTO_ETOOBIG || room >= limit)
			return rc;
		want = room * 2;
	}
}

struct err_arg {
	int code;
	const char *msg;
	uint32_t index;
	int cause;
};

static int enc_error(void *arg, proto_wbuf_t *w)
{
	struct err_arg *a = arg;
	const char *m = a->msg ? a->msg : geokv_strerror(a->code);
	proto_error_t e = {.code = a->code,
			   .message = {(const uint8_t *)m, (uint32_t)strlen(m)},
			   .index = a->index,
			   .cause = a->cause};
	return proto_error_encode(w, &e);
}

void prim__reply_error(prim_conn_t *c, uint64_t id, int code, const char *msg, uint32_t index,
		       int cause)
{
	struct err_arg a = {code, msg, index, cause};

	if (c->closing)
		return;
	if (append_frame(c, PROTO_T_ERROR, id, enc_error, &a) != 0)
		conn_close(c); /* cannot even say why: out of memory */
	else
		flush(c);
}

static int enc_notleader(void *arg, proto_wbuf_t *w)
{
	prim_t *p = arg;
	const char *lead = prim__leader_addr(p);
	const char *m = lead[0] ? "not the leader" : "no leader known (election in progress)";
	proto_error_t e = {.code = PROTO_ENOTLEADER,
			   .message = {(const uint8_t *)m, (uint32_t)strlen(m)},
			   .leader = {(const uint8_t *)lead, (uint32_t)strlen(lead)}};
	return proto_error_encode(w, &e);
}

void prim__reply_notleader(prim_conn_t *c, uint64_t id)
{
	if (c->closing)
		return;
	if (append_frame(c, PROTO_T_ERROR, id, enc_notleader, c->p) != 0)
		conn_close(c);
	else
		flush(c);
}

bool prim__conn_open(const prim_conn_t *c) { return !c->closing; }

/* A deferred read was answered (or dropped): reading may resume. */
void prim__conn_read_done(prim_conn_t *c)
{
	if (c->deferred)
		c->deferred--;
	if (c->closing || !c->paused || c->ready || c->deferred >= DEFER_MAX ||
	    c->out[c->fill].len >= OUT_HIGH_WATER)
		return;
	c->paused = false;
	process_input(c);
	if (!c->paused && !c->closing)
		start_reading(c);
}

struct write_arg {
	uint8_t op;
	proto_write_resp_t r;
};

static int enc_write(void *arg, proto_wbuf_t *w)
{
	struct write_arg *a = arg;
	return proto_write_resp_encode(w, a->op, &a->r);
}

void prim__reply_write(prim_conn_t *c, uint64_t id, uint8_t op, const kv_result_t *r)
{
	struct write_arg a = {op, {.rev = r->rev, .count = r->count}};

	if (c->closing)
		return;
	if (append_frame(c, PROTO_T_RESP, id, enc_write, &a) != 0)
		conn_close(c);
	else
		flush(c);
}

void prim__conn_inflight_done(prim_conn_t *c)
{
	if (c->inflight)
		c->inflight--;
}

/* ---- requests ------------------------------------------------------------------------- */

static int enc_empty(void *arg, proto_wbuf_t *w) { (void)arg; (void)w; return 0; }

struct body_arg {
	const void *p;
	size_t len;
};

static int enc_body(void *arg, proto_wbuf_t *w)
{
	const struct body_arg *b = arg;

	if ((size_t)(w->end - w->p) < b->len)
		return w->err = PROTO_ETOOBIG;
	memcpy(w->p, b->p, b->len);
	w->p += b->len;
	return 0;
}

int prim__reply_body(prim_conn_t *c, uint64_t id, const void *body, size_t len)
{
	int rc = append_frame(c, PROTO_T_RESP, id, enc_body, &(struct body_arg){body, len});

	if (rc == 0)
		flush(c);
	return rc;
}

static int enc_hello_ok(void *arg, proto_wbuf_t *w)
{
	prim_t *p = arg;
	proto_hello_ok_t m = {
		.version = PROTO_VERSION,
		.node_id = p->cfg->node_id,
		.revision = kv_revision(p->store),
		.cluster = {(const uint8_t *)p->cfg->cluster_id, (uint32_t)strlen(p->cfg->cluster_id)},
		.leader = {(const uint8_t *)prim__leader_addr(p),
			   (uint32_t)strlen(prim__leader_addr(p))},
	};
	return proto_hello_ok_encode(w, &m);
}

static int enc_status(void *arg, proto_wbuf_t *w)
{
	proto_status_t st;
	prim__status(arg, &st);
	return proto_status_encode(w, &st);
}

static int enc_hash(void *arg, proto_wbuf_t *w)
{
	return proto_hash_encode(w, arg);
}

struct read_arg {
	prim_t *p;
	const proto_op_t *op;
};

/* One read transaction per attempt: a retry with a bigger buffer sees a fresh snapshot,
 * which is as consistent as the first (each response is one snapshot). */
static int enc_read(void *arg, proto_wbuf_t *w)
{
	struct read_arg *a = arg;
	int rc = kv_read_begin(a->p->store, &a->p->rtxn);

	if (rc != 0)
		return rc;
	rc = kv_read_op(&a->p->rtxn, a->op, w);
	kv_read_end(&a->p->rtxn);
	return rc;
}

/*
 * Constant-time token check: the time taken depends only on the configured token's length,
 * never on where the first differing byte is, so a remote peer cannot guess the token one
 * byte at a time by timing HELLOs. A wrong length costs the same as a wrong byte.
 */
static bool token_ok(const prim_config_t *cfg, const proto_bytes_t *got)
{
	volatile uint8_t diff = got->len != cfg->token_len;
	uint32_t n = cfg->token_len;

	for (uint32_t i = 0; i < n; i++)
		diff |= cfg->token[i] ^ (got->len ? got->p[i % got->len] : 0);
	return diff == 0;
}

static void handle_hello(prim_conn_t *c, const proto_hdr_t *h, const uint8_t *pl)
{
	prim_t *p = c->p;
	proto_hello_t m;
	size_t clen = strlen(p->cfg->cluster_id);

	if (h->type != PROTO_T_HELLO) {
		prim__stat_reject(p, PRIM_REJ_NO_HELLO);
		prim__reply_error(c, h->id, PROTO_EBADMSG, "expected HELLO", 0, 0);
		close_after_flush(c);
		return;
	}
	if (proto_hello_decode(pl, h->len, &m) != 0) {
		prim__stat_reject(p, PRIM_REJ_BAD_HELLO);
		prim__reply_error(c, h->id, PROTO_EBADMSG, "malformed HELLO", 0, 0);
		close_after_flush(c);
		return;
	}
	if (m.version != PROTO_VERSION) {
		prim__stat_reject(p, PRIM_REJ_VERSION);
		prim__reply_error(c, h->id, PROTO_EVERSION, NULL, 0, 0);
		close_after_flush(c);
		return;
	}
	if (m.role < PROTO_ROLE_CLIENT || m.role > PROTO_ROLE_GATEWAY) {
		char msg[48];
		snprintf(msg, sizeof msg, "unknown role %u in HELLO", m.role);
		prim__stat_reject(p, PRIM_REJ_ROLE);
		prim__reply_error(c, h->id, PROTO_EBADMSG, msg, 0, 0);
		close_after_flush(c);
		return;
	}
	if (m.cluster.len && (m.cluster.len != clen || memcmp(m.cluster.p, p->cfg->cluster_id, clen))) {
		prim__stat_reject(p, PRIM_REJ_CLUSTER);
		prim__reply_error(c, h->id, PROTO_ECLUSTER, NULL, 0, 0);
		close_after_flush(c);
		return;
	}
	if (p->cfg->token_len && !token_ok(p->cfg, &m.token)) {
		GK_WARN("server", "bad credentials in HELLO, closing", "peer=%s", c->peer);
		prim__stat_reject(p, PRIM_REJ_AUTH);
		prim__reply_error(c, h->id, PROTO_EAUTH, NULL, 0, 0);
		close_after_flush(c);
		return;
	}
	c->hello = true;
	if (append_frame(c, PROTO_T_HELLO_OK, h->id, enc_hello_ok, p) != 0)
		conn_close(c);
}

/* A BATCH is decoded shallowly; check every inner op now, so the log never holds an entry
 * that apply cannot decode. */
static int check_batch(const proto_op_t *op)
{
	proto_batch_iter_t it;
	proto_op_t inner;
	int rc;

	proto_batch_iter_init(&it, op);
	while ((rc = proto_batch_next(&it, &inner)) == 1)
		;
	return rc;
}

static void handle_req(prim_conn_t *c, const proto_hdr_t *h, const uint8_t *pl)
{
	prim_t *p = c->p;
	proto_op_t op;
	int rc = proto_op_decode(pl, h->len, &op);

	if (rc == 0 && proto_op_is_batch(op.op))
		rc = check_batch(&op);
	if (rc != 0) {
		prim__stat_reject(p, rc == PROTO_EBADTYPE ? PRIM_REJ_UNKNOWN_OP :
				     rc == PROTO_ETOOBIG ? PRIM_REJ_FIELD_TOO_BIG : PRIM_REJ_BAD_OP);
		prim__reply_error(c, h->id, rc, NULL, 0, 0);
		if (rc != PROTO_EBADTYPE && rc != PROTO_ETOOBIG)
			close_after_flush(c);
		return;
	}
	if (proto_op_is_write(op.op)) {
		if (c->inflight >= p->cfg->max_inflight) {
			prim__stat_request(p, op.op, PROTO_EBUSY);
			prim__reply_error(c, h->id, PROTO_EBUSY, NULL, 0, 0);
			return;
		}
		rc = prim__propose(p, c, h->id, op.op, pl, h->len);
		if (rc != 0) {
			rc = rc == -ENOMEM ? PROTO_EINTERNAL : rc;
			prim__stat_request(p, op.op, rc);
			prim__reply_error(c, h->id, rc, NULL, 0, 0);
			return;
		}
		c->inflight++;
		return;
	}
	if (op.op == PROTO_OP_STATUS) {
		rc = append_frame(c, PROTO_T_RESP, h->id, enc_status, p);
	} else if (op.op == PROTO_OP_HASH) {
		/* This member's own content, whatever its role: never a ReadIndex round. */
		proto_hash_t hs;
		kv_snap_meta_t m;
		if ((rc = kv_checksum(p->store, &m, &hs.hash)) == 0) {
			hs.applied = m.applied;
			hs.revision = m.revision;
			hs.records = m.records;
			rc = append_frame(c, PROTO_T_RESP, h->id, enc_hash, &hs);
		} else if (rc < 0 && rc > -4096) {
			rc = PROTO_EINTERNAL;
		}
	} else if (op.op == PROTO_OP_WATCH) {
		/* this member's own changes, never a ReadIndex round; may wait for the next
		 * apply (core/prim_watch.c) */
		if ((rc = prim__watch_req(p, c, h->id, &op)) == 0)
			return;
	} else if (op.op == PROTO_OP_SNAPSHOT) {
		/* this member's snapshot stream, in chunks (core/prim_snap.c); counted there */
		if ((rc = prim__snap_req(p, c, h->id, &op)) == 0)
			return;
	} else if (!(h->flags & PROTO_F_STALE)) {
		/* Linearizable: served once a ReadIndex round confirms the leader and this
		 * member has applied up to it. */
		if ((rc = prim__read_defer(p, c, h->id, pl, h->len)) == 0) {
			c->deferred++;
			return;
		}
		rc = PROTO_EINTERNAL;
	} else {
		p->st.reads_stale++;
		rc = append_frame(c, PROTO_T_RESP, h->id, enc_read, &(struct read_arg){p, &op});
	}
	prim__stat_request(p, op.op, rc);
	if (rc != 0)
		prim__reply_error(c, h->id, rc, NULL, 0, 0);
}

void prim__serve_read(prim_conn_t *c, uint64_t id, const uint8_t *pl, size_t len)
{
	prim_t *p = c->p;
	proto_op_t op;
	int rc = proto_op_decode(pl, len, &op);

	if (rc == 0)
		rc = append_frame(c, PROTO_T_RESP, id, enc_read, &(struct read_arg){p, &op});
	prim__stat_request(p, op.op, rc);
	if (rc != 0)
		prim__reply_error(c, id, rc, NULL, 0, 0);
	else
		flush(c);
}

/*
 * Serve confirmed reads while the output is under its high-water mark. A ReadIndex round can
 * confirm DEFER_MAX reads of one connection at once, and each may be a 1 MiB value: answered
 * together they would buffer far past OUT_HIGH_WATER for a peer that is not reading. Served
 * later they are still linearizable (they read state at least as new as their read index).
 */
static void serve_ready(prim_conn_t *c)
{
	while (c->ready && !c->closing && c->out[c->fill].len < OUT_HIGH_WATER) {
		prim_read_t *rd = c->ready;

		if ((c->ready = rd->next) == NULL)
			c->ready_tail = NULL;
		prim__serve_read(c, rd->req_id, rd->data, rd->len);
		free(rd);
		prim__conn_read_done(c);
		prim__conn_unref(c); /* the read's; the handle's keeps c alive here */
	}
}

/* A read whose ReadIndex round is confirmed and applied; takes rd and its reference. */
void prim__conn_read_ready(prim_conn_t *c, prim_read_t *rd)
{
	rd->next = NULL;
	if (c->ready_tail)
		c->ready_tail->next = rd;
	else
		c->ready = rd;
	c->ready_tail = rd;
	serve_ready(c);
}

static void handle_frame(prim_conn_t *c, const proto_hdr_t *h, const uint8_t *pl)
{
	if (!c->hello) {
		handle_hello(c, h, pl);
		return;
	}
	switch (h->type) {
	case PROTO_T_REQ:
		handle_req(c, h, pl);
		break;
	case PROTO_T_PING:
		if (append_frame(c, PROTO_T_PONG, h->id, enc_empty, NULL) != 0)
			conn_close(c);
		break;
	case PROTO_T_HELLO:
		/* A session error (id 0), and like every one after the handshake it closes the
		 * connection (docs/protocol.md, "Session"). */
		prim__stat_reject(c->p, PRIM_REJ_DUP_HELLO);
		prim__reply_error(c, 0, PROTO_EBADMSG, "session already open", 0, 0);
		close_after_flush(c);
		break;
	default:
		prim__stat_reject(c->p, PRIM_REJ_UNKNOWN_TYPE);
		prim__reply_error(c, h->id, PROTO_EBADTYPE, NULL, 0, 0);
		break;
	}
}

/* ---- reading -------------------------------------------------------------------------- */

/*
 * Where the next read goes. Plain: into c->in, at most up to the largest HELLO before HELLO,
 * else growing as bytes arrive (in_grow). TLS: into c->cin, which holds at most a partial
 * record once the handshake is over (tls_input decrypts every whole one), and at most
 * CIN_HANDSHAKE_MAX unconsumed bytes before. A NULL buffer makes libuv report UV_ENOBUFS.
 */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	prim_conn_t *c = h->data;
	prim_buf_t *b = &c->in;
	size_t room;

	(void)suggested;
	*buf = uv_buf_init(NULL, 0);
	if (c->tls != NULL) {
		b = &c->cin;
		if (!c->tls->established && b->len >= CIN_HANDSHAKE_MAX)
			return; /* the handshake never needs that much at once: we close */
		if (b->cap - b->len < READ_CHUNK / 4 && prim__buf_reserve(b, READ_CHUNK) != 0)
			return;
		room = b->cap - b->len;
	} else if (!c->hello) {
		if (b->cap < IN_HELLO_CAP && in_resize(c, IN_HELLO_CAP) != 0)
			return;
		if (b->len >= HELLO_MAX_FRAME)
			return; /* cannot happen: process_input judged any such frame */
		room = HELLO_MAX_FRAME - b->len;
	} else {
		size_t need = READ_CHUNK / 4;
		int rc;
		if (c->want > b->len && c->want - b->len < need)
			need = c->want - b->len; /* the rest of the frame fits: no need to grow */
		if ((rc = in_grow(c, need)) != 0) {
			c->over_budget = rc == PROTO_EBUSY; /* on_read answers it */
			return;
		}
		room = b->cap - b->len;
	}
	if (room > (1u << 30))
		room = 1u << 30;
	*buf = uv_buf_init((char *)b->p + b->len, (unsigned)room);
}

/*
 * Before HELLO a header is judged as soon as it is in, not once its payload is: only a HELLO
 * may come, and no valid HELLO is longer than HELLO_MAX_PAYLOAD, so nothing bigger is ever
 * buffered for a peer that has not opened a session. False when refused (closing).
 */
static bool hello_header_ok(prim_conn_t *c, const proto_hdr_t *h)
{
	prim_t *p = c->p;
	char msg[96];

	if (h->type != PROTO_T_HELLO) {
		prim__stat_reject(p, PRIM_REJ_NO_HELLO);
		prim__reply_error(c, h->id, PROTO_EBADMSG, "expected HELLO", 0, 0);
		close_after_flush(c);
		return false;
	}
	if (h->len > HELLO_MAX_PAYLOAD) {
		snprintf(msg, sizeof msg, "HELLO of %" PRIu32 " bytes exceeds the largest valid HELLO (%u)",
			 h->len, HELLO_MAX_PAYLOAD);
		GK_WARN("server", "HELLO too big, closing", "peer=%s len=%" PRIu32, c->peer, h->len);
		prim__stat_reject(p, PRIM_REJ_TOO_BIG);
		prim__reply_error(c, h->id, PROTO_ETOOBIG, msg, 0, 0);
		close_after_flush(c);
		return false;
	}
	return true;
}

/*
 * Handle every complete frame in c->in, but stop while OUT_HIGH_WATER bytes of replies wait
 * for a write already in progress: a peer that pipelines requests for large values without
 * reading the replies would otherwise make one 64 KiB read turn into gigabytes of buffered
 * replies (2,000 GETs of a 1 MiB value). The frames left over stay in c->in, reading stops
 * (`paused`), and on_write resumes here once the output drains.
 */
static void process_input(prim_conn_t *c)
{
	prim_t *p = c->p;
	size_t off = 0;

	while (!c->close_after_flush && !c->closing) {
		proto_hdr_t h;
		int rc;

		if (c->deferred >= DEFER_MAX) {
			/* Each deferred read will become a reply at once: bound them like output. */
			c->paused = true;
			break;
		}
		if (c->out[c->fill].len >= OUT_HIGH_WATER) {
			flush(c); /* starts a write unless one runs: then fill is empty again */
			if (c->out[c->fill].len >= OUT_HIGH_WATER) {
				c->paused = true;
				break;
			}
		}
		rc = proto_hdr_decode(c->in.p + off, c->in.len - off, p->cfg->max_frame, &h);
		if (rc == PROTO_EAGAIN && c->in.len - off < PROTO_HDR_LEN)
			break;
		if (!c->hello && (rc == PROTO_EAGAIN || rc == PROTO_HDR_LEN) && !hello_header_ok(c, &h))
			break;
		if (rc == PROTO_EAGAIN)
			break;
		if (rc == PROTO_ETOOBIG) {
			char msg[96];
			snprintf(msg, sizeof msg, "frame of %" PRIu32 " bytes exceeds max-frame %" PRIu32,
				 h.len, p->cfg->max_frame);
			GK_WARN("server", "frame too big, closing", "peer=%s len=%" PRIu32, c->peer,
				h.len);
			prim__stat_reject(p, PRIM_REJ_TOO_BIG);
			prim__reply_error(c, h.id, PROTO_ETOOBIG, msg, 0, 0);
			close_after_flush(c);
			break;
		}
		if (rc < 0) {
			GK_WARN("server", "bad frame header, closing", "peer=%s", c->peer);
			prim__stat_reject(p, PRIM_REJ_BAD_HEADER);
			prim__reply_error(c, h.id, PROTO_EBADMSG, "bad frame header", 0, 0);
			close_after_flush(c);
			break;
		}
		handle_frame(c, &h, c->in.p + off + PROTO_HDR_LEN);
		off += PROTO_HDR_LEN + h.len;
	}
	if (c->closing)
		goto out;
	/* Keep what is left (a partial frame, or whole frames while paused) at the front. Its
	 * header, when in, says where the frame ends (in_grow grows no further for it); nothing
	 * is reserved for the bytes it announces: the buffer grows as they arrive. */
	if (off > 0) {
		memmove(c->in.p, c->in.p + off, c->in.len - off);
		c->in.len -= off;
	}
	note_front(c);
	/* The frame deadline runs from a frame's first byte (a partial TLS record counts): a new
	 * one began if this round consumed any frame, or if nothing was pending before. */
	if (pending_bytes(c) == 0) {
		c->frame_open = false;
	} else if (off > 0 || !c->frame_open) {
		c->frame_open = true;
		c->frame_ms = uv_now(p->loop);
	}
	if (c->in.len == 0 && c->in.cap > READ_KEEP_MAX) {
		in_free(c); /* one huge frame must not pin its buffer forever */
	} else if (c->in.cap > READ_KEEP_MAX && c->in.len < c->in.cap / 4 &&
		   c->want < c->in.cap / 4) {
		/* Mostly empty after a big frame: shrink (as growth doubles, with hysteresis). */
		size_t keep = c->in.len > c->want ? c->in.len : c->want, cap = READ_CHUNK;
		while (cap < 2 * keep)
			cap *= 2;
		if (cap < c->in.cap)
			(void)in_resize(c, cap); /* a failed shrink keeps the bigger buffer */
	}
	flush(c);
	if (c->paused && c->reading) {
		/* The peer is not reading its replies: stop taking requests until it does. */
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
out:
	prim__kick(p);
}

/*
 * A TLS ClientHello starts 16 03 0x LL LL 01 (handshake record, version 3.x, length, type
 * ClientHello). A geokv frame cannot: its bytes 4-5 are the frame type, little-endian, and
 * no type reaches 0x100.
 */
static bool looks_like_client_hello(const uint8_t *p)
{
	return p[0] == 0x16 && p[1] == 0x03 && p[5] == 0x01;
}

/*
 * TLS input: ciphertext in c->cin. The first bytes tell a TLS client from a geokv client
 * speaking plain (looks_like_client_hello): the latter gets a plain PROTO_ETLS answer it can
 * show, instead of a handshake failure it would see as a hang or a reset. Then the
 * handshake, then every whole record is decrypted into c->in for process_input.
 */
static void tls_input(prim_conn_t *c)
{
	proto_tls_conn_t *t = c->tls;
	size_t used;
	int rc;

	if (!c->tls_checked) {
		if (c->cin.len < 6)
			return; /* a ClientHello is longer; a HELLO frame too (16-byte header) */
		c->tls_checked = true;
		if (!looks_like_client_hello(c->cin.p)) {
			GK_WARN("server", "plain client on the TLS listener, closing", "peer=%s", c->peer);
			c->plain_reply = true;
			prim__reply_error(c, 0, PROTO_ETLS,
					  "this server requires TLS (give the client its CA: geokv --tls-ca)",
					  0, 0);
			close_after_flush(c);
			return;
		}
	}
	proto_tls_feed(t, c->cin.p, c->cin.len);
	if (!t->established) {
		rc = proto_tls_handshake(t);
		flush(c); /* the handshake's records, or its alert */
		if (c->closing)
			return;
		if (rc != 0 && rc != PROTO_EAGAIN) {
			GK_WARN("server", "TLS handshake failed, closing", "peer=%s err=\"%s\"", c->peer,
				proto_tls_strerror(t->tls_err));
			close_after_flush(c);
			return;
		}
	}
	while (t->established && !c->closing && !c->close_after_flush) {
		size_t room;
		long n;
		if (!c->hello && c->in.len >= HELLO_MAX_FRAME) {
			/* As much as a HELLO can be: judge it before decrypting more. */
			process_input(c);
			if (!c->hello)
				break;
			continue;
		}
		if (!c->hello) {
			if (c->in.cap < IN_HELLO_CAP && in_resize(c, IN_HELLO_CAP) != 0) {
				conn_close(c);
				return;
			}
			room = HELLO_MAX_FRAME - c->in.len; /* the rest waits in mbedTLS's record */
		} else {
			note_front(c); /* records decrypted in this loop may have begun a frame */
			rc = in_grow(c, 16384 + 64);
			if (rc == PROTO_EBUSY) {
				refuse_memory(c);
				break;
			}
			if (rc != 0) {
				conn_close(c);
				return;
			}
			room = c->in.cap - c->in.len;
		}
		n = proto_tls_read(t, c->in.p + c->in.len, room);
		if (n > 0) {
			c->in.len += (size_t)n;
			continue;
		}
		if (n == PROTO_EAGAIN)
			break;
		if (n != PROTO_ECLOSED)
			GK_WARN("server", "TLS read failed, closing", "peer=%s err=\"%s\"", c->peer,
				proto_tls_strerror(t->tls_err));
		conn_close(c); /* close_notify: like EOF on a plain connection */
		return;
	}
	used = c->cin.len - proto_tls_unconsumed(t);
	if (used > 0) {
		memmove(c->cin.p, c->cin.p + used, c->cin.len - used);
		c->cin.len -= used;
	}
	if (c->cin.len == 0 && c->cin.cap > READ_KEEP_MAX)
		prim__buf_free(&c->cin);
	if (t->established && !c->closing)
		process_input(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	prim_conn_t *c = s->data;
	prim_t *p = c->p;

	(void)buf;
	if (nread == UV_ENOBUFS && c->over_budget) {
		c->over_budget = false;
		refuse_memory(c);
		return;
	}
	if (nread < 0) {
		if (nread != UV_EOF)
			GK_DEBUG("server", "read failed", "peer=%s err=%s", c->peer,
				 uv_err_name((int)nread));
		/* Answers still owed are dropped with the socket; proposals still commit. */
		conn_close(c);
		return;
	}
	c->active_ms = uv_now(p->loop);
	p->st.bytes_in += (uint64_t)nread;
	if (c->tls != NULL) {
		c->cin.len += (size_t)nread;
		tls_input(c);
		return;
	}
	c->in.len += (size_t)nread;
	if (!c->hello && !c->tls_checked && c->in.len >= 6) {
		/* A TLS client on this plain listener: its ClientHello would read as a frame of
		 * ~64 KiB and the client would wait for the HELLO timeout. Say so at once. */
		c->tls_checked = true;
		if (looks_like_client_hello(c->in.p)) {
			GK_WARN("server", "TLS client on the plain listener, closing", "peer=%s", c->peer);
			prim__reply_error(c, 0, PROTO_ETLS, "this server does not speak TLS", 0, 0);
			close_after_flush(c);
			return;
		}
	}
	process_input(c);
}

/* ---- accept --------------------------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status)
{
	prim_t *p = server->data;
	prim_conn_t *c;
	struct sockaddr_storage ss;
	int namelen = sizeof ss;

	if (status < 0) {
		GK_WARN("server", "accept failed", "err=%s", uv_err_name(status));
		return;
	}
	if ((c = calloc(1, sizeof *c)) == NULL)
		return;
	c->p = p;
	c->refs = 1;
	c->opened_ms = c->active_ms = uv_now(p->loop);
	uv_tcp_init(p->loop, &c->tcp);
	c->tcp.data = c;
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	if (p->nconns > p->cfg->max_conns || p->stopping) {
		p->st.conns_refused++;
		GK_WARN("server", "too many connections, refusing", "max=%" PRIu32, p->cfg->max_conns);
		conn_close(c);
		return;
	}
	p->st.conns_accepted++;
	uv_tcp_nodelay(&c->tcp, 1);
	if (p->tls != NULL &&
	    ((c->tls = calloc(1, sizeof *c->tls)) == NULL ||
	     proto_tls_conn_init(c->tls, p->tls, tls_send, c) != 0)) {
		GK_WARN("server", "cannot set up TLS for a connection, closing", "err=ENOMEM");
		free(c->tls);
		c->tls = NULL;
		conn_close(c);
		return;
	}
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &namelen) == 0) {
		char ip[48];
		if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
			snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip,
				 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
		} else {
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
			snprintf(c->peer, sizeof c->peer, "%s:%u", ip,
				 ntohs(((struct sockaddr_in *)&ss)->sin_port));
		}
	}
	start_reading(c);
}

/* ---- timeouts ------------------------------------------------------------------------- */

/*
 * One timer sweeps every connection, as valkey's clientsCron does, instead of a timer per
 * connection: 10,000 connections cost one pass of a linked list a few times a second, and a
 * connection needs no second handle to close before it can be freed.
 *
 * HELLO deadline: counted from accept; a peer that connects and says nothing (or dribbles a
 * HELLO) holds a slot of max-conns, so it must not keep it for long.
 * Frame: a frame that has begun must be complete within hello-timeout-ms of its first byte,
 * plus one second per FRAME_MIN_RATE bytes of it received so far (a frame of n bytes gets at
 * most hello-timeout-ms + n / FRAME_MIN_RATE): every byte resets the idle clock, so without
 * this a peer dribbling a byte now and then would hold its connection and buffer forever.
 * Not while we are the ones not reading (paused for output room, shutting down).
 * Idle: no byte read and no write completed for idle-timeout-ms, and no write of its own
 * awaiting commit (that wait is ours, not the peer's). A peer that stopped reading its
 * replies completes no writes, so it is cut too instead of pinning its output buffers.
 */
static uint64_t frame_limit_ms(uint32_t hello_to, size_t got)
{
	return hello_to + (uint64_t)got * 1000 / FRAME_MIN_RATE;
}

static void on_sweep(uv_timer_t *t)
{
	prim_t *p = t->data;
	uint64_t now = uv_now(p->loop);
	uint32_t hello_to = p->cfg->hello_timeout_ms, idle_to = p->cfg->idle_timeout_ms;
	prim_conn_t *c, *next;

	for (c = p->conns; c; c = next) {
		const char *why = NULL;
		uint64_t since = 0;

		next = c->next;
		if (c->closing)
			continue;
		if (!c->hello && hello_to && now - c->opened_ms >= hello_to) {
			why = "hello";
			since = now - c->opened_ms;
		} else if (hello_to && c->frame_open && c->reading && !c->paused &&
			   now - c->frame_ms >= frame_limit_ms(hello_to, pending_bytes(c))) {
			GK_WARN("server", "frame not complete in time, closing",
				"peer=%s frame=%zu got=%zu ms=%" PRIu64 " limit_ms=%" PRIu64, c->peer,
				c->want, pending_bytes(c), now - c->frame_ms,
				frame_limit_ms(hello_to, pending_bytes(c)));
			p->st.timeouts_frame++;
			conn_close(c);
			continue;
		} else if (idle_to && c->inflight == 0 && now - c->active_ms >= idle_to) {
			why = "idle";
			since = now - c->active_ms;
		}
		if (why == NULL)
			continue;
		GK_DEBUG("server", "connection timed out, closing", "peer=%s reason=%s ms=%" PRIu64,
			 c->peer, why, since);
		if (why[0] == 'h')
			p->st.timeouts_hello++;
		else
			p->st.timeouts_idle++;
		conn_close(c);
	}
	prim__watch_sweep(p, now);
}

static void start_sweep(prim_t *p)
{
	uint32_t hello_to = p->cfg->hello_timeout_ms, idle_to = p->cfg->idle_timeout_ms;
	uint64_t every;

	if (hello_to == 0 && idle_to == 0)
		return;
	/* A quarter of the shortest timeout: a connection is cut at most 25% late. */
	every = hello_to && (idle_to == 0 || hello_to < idle_to) ? hello_to : idle_to;
	every /= 4;
	every = every < 10 ? 10 : every > 1000 ? 1000 : every;
	uv_timer_init(p->loop, &p->sweep_timer);
	p->sweep_timer.data = p;
	p->sweeping = true;
	uv_timer_start(&p->sweep_timer, on_sweep, every, every);
}

void prim__stop_sweep(prim_t *p)
{
	prim__stream_close(p);
	if (p->sweeping) {
		p->sweeping = false;
		uv_close((uv_handle_t *)&p->sweep_timer, NULL);
	}
}

/* Parse "host:port", "[v6]:port"; fills a sockaddr. */
int prim__parse_addr(const char *s, struct sockaddr_storage *ss)
{
	char host[256];
	const char *colon;
	long port;
	char *end;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host)
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || (size_t)(colon - s) >= sizeof host)
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
	}
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535 || end == colon + 1)
		return -EINVAL;
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		snprintf(host, sizeof host, "0.0.0.0");
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return -EINVAL;
}

int prim__listen(prim_t *p)
{
	struct sockaddr_storage ss;
	int rc;

	if (prim__parse_addr(p->cfg->listen, &ss) != 0) {
		GK_ERROR("server", "bad listen address", "listen=%s hint=\"HOST:PORT\"", p->cfg->listen);
		return -EINVAL;
	}
	uv_tcp_init(p->loop, &p->listener);
	p->listener.data = p;
	if ((rc = uv_tcp_bind(&p->listener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&p->listener, 1024, on_connection)) != 0) {
		GK_ERROR("server", "cannot listen", "listen=%s err=\"%s\"", p->cfg->listen,
			 uv_strerror(rc));
		uv_close((uv_handle_t *)&p->listener, NULL);
		uv_run(p->loop, UV_RUN_NOWAIT);
		return rc;
	}
	start_sweep(p);
	return 0;
}

void prim__stop_accepting(prim_t *p)
{
	uv_close((uv_handle_t *)&p->listener, NULL);
	for (prim_conn_t *c = p->conns; c; c = c->next) {
		if (c->reading) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			c->reading = false;
		}
	}
}

void prim__close_all(prim_t *p)
{
	prim_conn_t *c = p->conns, *next;

	for (; c; c = next) {
		next = c->next;
		close_after_flush(c);
	}
}

void prim__close_all_now(prim_t *p)
{
	prim_conn_t *c = p->conns, *next;

	for (; c; c = next) {
		next = c->next;
		conn_close(c);
	}
}

/* ---- TLS set-up ----------------------------------------------------------------------- */

int prim__tls_init(prim_t *p)
{
	const prim_config_t *cfg = p->cfg;
	proto_tls_opts_t o = {.server = true, .tickets = true,
			      .verify_peer = cfg->tls_client_ca[0] != '\0'};
	proto_tls_pem_t pem;
	char err[256] = "";

	if (cfg->tls_cert[0] == '\0') {
		if (cfg->token_len > 0)
			GK_WARN("server", "HELLO tokens travel in clear: no TLS configured",
				"hint=\"set [tls] cert and key\"");
		return 0;
	}
	if (proto_tls_pem_load(&pem, cfg->tls_cert, cfg->tls_key,
			       o.verify_peer ? cfg->tls_client_ca : NULL, err, sizeof err) != 0) {
		GK_ERROR("server", "cannot load TLS files", "err=\"%s\"", err);
		return -EINVAL;
	}
	if ((p->tls_shared = calloc(1, sizeof *p->tls_shared)) == NULL ||
	    (p->tls = calloc(1, sizeof *p->tls)) == NULL) {
		proto_tls_pem_free(&pem);
		prim__tls_free(p);
		return -ENOMEM;
	}
	if (proto_tls_shared_init(p->tls_shared, &o, err, sizeof err) != 0) {
		free(p->tls_shared);
		p->tls_shared = NULL;
		goto fail;
	}
	if (proto_tls_conf_init(p->tls, &o, &pem, p->tls_shared, err, sizeof err) != 0) {
		free(p->tls);
		p->tls = NULL;
		goto fail;
	}
	proto_tls_pem_free(&pem);
	return 0;
fail:
	GK_ERROR("server", "cannot set up TLS", "err=\"%s\"", err);
	proto_tls_pem_free(&pem);
	prim__tls_free(p);
	return -EINVAL;
}

void prim__tls_free(prim_t *p)
{
	if (p->tls != NULL) {
		proto_tls_conf_free(p->tls);
		free(p->tls);
		p->tls = NULL;
	}
	if (p->tls_shared != NULL) {
		proto_tls_shared_free(p->tls_shared);
		free(p->tls_shared);
		p->tls_shared = NULL;
	}
}
