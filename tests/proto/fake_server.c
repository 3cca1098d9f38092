#include "fake_server.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/proto.h"

#define MAXREC 8192

typedef struct rec {
	char bucket[PROTO_MAX_BUCKET + 1];
	char key[PROTO_MAX_KEY + 1];
	uint8_t *val;
	uint32_t vlen;
	uint64_t rev, create_rev;
	uint8_t kind;
} rec_t;

typedef struct held {
	uint8_t *frame;
	size_t len;
} held_t;

struct fake_server {
	fake_cfg_t cfg;
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t stop;
	pthread_t thr;
	atomic_uint requests, connections, batches;
	uint64_t rev;
	rec_t recs[MAXREC];       /* history: every write appends */
	size_t nrecs;
	char buckets[16][PROTO_MAX_BUCKET + 1];
	size_t nbuckets;
	bool dropped_once;
	uint8_t out[1 << 20];     /* per server: tests run several at once, in threads */
	char *keys[MAXREC];
};

typedef struct fconn {
	fake_server_t *f;
	uv_tcp_t tcp;
	uint8_t *rbuf;
	size_t rlen, rcap;
	bool hello_done;
	uint32_t reqs;
	held_t held[64];
	uint32_t nheld;
	bool closing;
} fconn_t;

static void on_close(uv_handle_t *h)
{
	fconn_t *c = h->data;
	for (uint32_t i = 0; i < c->nheld; i++)
		free(c->held[i].frame);
	free(c->rbuf);
	free(c);
}

static void conn_drop(fconn_t *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void wr_done(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

static void send_raw(fconn_t *c, uint8_t *frame, size_t len)
{
	uv_write_t *w = malloc(sizeof *w);
	uv_buf_t b = uv_buf_init((char *)frame, (unsigned)len);
	w->data = frame;
	if (c->closing || uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, wr_done) != 0) {
		free(frame);
		free(w);
	}
}

/* Build a frame with a payload from `body`. */
static void send_frame(fconn_t *c, uint16_t type, uint64_t id, const uint8_t *body, size_t n)
{
	uint8_t *f = malloc(PROTO_HDR_LEN + n);
	proto_hdr_t h = {(uint32_t)n, type, 0, id};
	proto_hdr_encode(f, &h);
	memcpy(f + PROTO_HDR_LEN, body, n);
	if (c->f->cfg.reverse_every && type != PROTO_T_HELLO_OK) {
		c->held[c->nheld].frame = f;
		c->held[c->nheld++].len = PROTO_HDR_LEN + n;
		if (c->nheld == c->f->cfg.reverse_every) {
			while (c->nheld > 0) {
				c->nheld--;
				send_raw(c, c->held[c->nheld].frame, c->held[c->nheld].len);
			}
		}
		return;
	}
	send_raw(c, f, PROTO_HDR_LEN + n);
}

static void send_error(fconn_t *c, uint64_t id, int code, const char *msg, const char *leader,
		       uint32_t index, int cause)
{
	uint8_t buf[512];
	proto_wbuf_t w;
	proto_error_t e = {code, {(const uint8_t *)msg, (uint32_t)strlen(msg)},
			   {(const uint8_t *)leader, (uint32_t)strlen(leader)}, index, cause};
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_error_encode(&w, &e);
	send_frame(c, PROTO_T_ERROR, id, buf, proto_wbuf_len(&w));
}

static bool eq(const char *s, proto_bytes_t b)
{
	return strlen(s) == b.len && memcmp(s, b.p, b.len) == 0;
}

static bool has_bucket(fake_server_t *f, proto_bytes_t b)
{
	for (size_t i = 0; i < f->nbuckets; i++)
		if (eq(f->buckets[i], b))
			return true;
	return false;
}

/* Latest record of a key, or NULL. */
static rec_t *latest(fake_server_t *f, proto_bytes_t b, proto_bytes_t k)
{
	for (size_t i = f->nrecs; i-- > 0;)
		if (eq(f->recs[i].bucket, b) && eq(f->recs[i].key, k))
			return &f->recs[i];
	return NULL;
}

static int write_check(fake_server_t *f, const proto_op_t *op)
{
	rec_t *r;

	if (!has_bucket(f, op->bucket))
		return KV_ENOBUCKET;
	if (!proto_key_valid(op->key.p, op->key.len))
		return KV_EBADKEY;
	if (f->cfg.fail_key_bad && op->key.len >= 3 && memcmp(op->key.p, "bad", 3) == 0)
		return KV_ETOOBIG;
	r = latest(f, op->bucket, op->key);
	if (op->op == PROTO_OP_CREATE && r && r->kind == PROTO_REC_PUT)
		return KV_EEXIST;
	if (op->op == PROTO_OP_UPDATE && (!r || r->rev != op->rev))
		return KV_EREVISION;
	if ((op->op == PROTO_OP_DELETE || op->op == PROTO_OP_PURGE) && op->rev && (!r || r->rev != op->rev))
		return KV_EREVISION;
	if (f->nrecs == MAXREC)
		return KV_EFULL;
	return 0;
}

static uint64_t write_apply(fake_server_t *f, const proto_op_t *op)
{
	rec_t *prev = latest(f, op->bucket, op->key), *r = &f->recs[f->nrecs++];

	memset(r, 0, sizeof *r);
	memcpy(r->bucket, op->bucket.p, op->bucket.len);
	memcpy(r->key, op->key.p, op->key.len);
	r->vlen = op->value.len;
	r->val = malloc(op->value.len + 1);
	if (op->value.len)
		memcpy(r->val, op->value.p, op->value.len);
	r->rev = ++f->rev;
	r->create_rev = prev && prev->kind == PROTO_REC_PUT ? prev->create_rev : r->rev;
	r->kind = op->op == PROTO_OP_DELETE ? PROTO_REC_DEL :
		  op->op == PROTO_OP_PURGE ? PROTO_REC_PURGE : PROTO_REC_PUT;
	return r->rev;
}

static void put_rec(proto_wbuf_t *w, const rec_t *r)
{
	proto_rec_t pr = {{(const uint8_t *)r->key, (uint32_t)strlen(r->key)},
			  {r->val, r->vlen}, r->rev, r->create_rev, 1000 * r->rev, r->kind};
	proto_rec_encode(w, &pr);
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void handle_req(fconn_t *c, uint64_t id, const uint8_t *p, uint32_t len)
{
	fake_server_t *f = c->f;
	uint8_t *out = f->out;
	proto_wbuf_t w;
	proto_op_t op;
	int rc;

	atomic_fetch_add(&f->requests, 1);
	c->reqs++;
	if (f->cfg.drop_after && !f->dropped_once && c->reqs >= f->cfg.drop_after) {
		f->dropped_once = true;
		conn_drop(c);
		return;
	}
	if (f->cfg.silent)
		return;
	if ((rc = proto_op_decode(p, len, &op)) != 0) {
		send_error(c, id, rc, "bad request", "", 0, 0);
		return;
	}
	if (proto_op_is_write(op.op) && (f->cfg.follower || f->cfg.notleader_hint[0])) {
		send_error(c, id, PROTO_ENOTLEADER, "not the leader", f->cfg.notleader_hint, 0, 0);
		return;
	}
	proto_wbuf_init(&w, out, sizeof f->out);
	switch (op.op) {
	case PROTO_OP_BUCKET_ADD:
		if (!has_bucket(f, op.bucket) && f->nbuckets < 16) {
			memcpy(f->buckets[f->nbuckets], op.bucket.p, op.bucket.len);
			f->buckets[f->nbuckets++][op.bucket.len] = 0;
		}
		proto_put_u64(&w, ++f->rev);
		break;
	case PROTO_OP_BUCKET_DEL:
		proto_put_u64(&w, ++f->rev);
		break;
	case PROTO_OP_PUT: case PROTO_OP_CREATE: case PROTO_OP_UPDATE:
	case PROTO_OP_DELETE: case PROTO_OP_PURGE:
		if ((rc = write_check(f, &op)) != 0) {
			send_error(c, id, rc, "refused", "", 0, 0);
			return;
		}
		proto_put_u64(&w, write_apply(f, &op));
		break;
	case PROTO_OP_BATCH:
	case PROTO_OP_SBATCH: { /* no sessions here: a resent SBATCH applies again */
		proto_batch_iter_t it;
		proto_op_t in;
		uint32_t i = 0;
		proto_batch_iter_init(&it, &op);
		while ((rc = proto_batch_next(&it, &in)) == 1) {
			if ((rc = write_check(f, &in)) != 0) {
				send_error(c, id, KV_EBATCH, "batch op failed", "", i, rc);
				return;
			}
			i++;
		}
		if (rc) {
			send_error(c, id, rc, "bad batch", "", 0, 0);
			return;
		}
		proto_batch_iter_init(&it, &op);
		uint64_t first = f->rev + 1;
		while (proto_batch_next(&it, &in) == 1)
			write_apply(f, &in);
		atomic_fetch_add(&f->batches, 1);
		proto_write_resp_t r = {first, op.count};
		proto_write_resp_encode(&w, PROTO_OP_BATCH, &r);
		break;
	}
	case PROTO_OP_GET: {
		rec_t *r = NULL;
		if (op.rev) {
			for (size_t i = 0; i < f->nrecs; i++)
				if (eq(f->recs[i].bucket, op.bucket) && eq(f->recs[i].key, op.key) &&
				    f->recs[i].rev <= op.rev)
					r = &f->recs[i];
		} else {
			r = latest(f, op.bucket, op.key);
		}
		if (!r || r->kind != PROTO_REC_PUT) {
			send_error(c, id, KV_ENOTFOUND, "key not found", "", 0, 0);
			return;
		}
		put_rec(&w, r);
		break;
	}
	case PROTO_OP_KEYS: {
		char **keys = f->keys;
		size_t n = 0;
		uint32_t limit = f->cfg.page_limit ? f->cfg.page_limit : 1000;
		proto_list_writer_t l;
		for (size_t i = 0; i < f->nrecs; i++) {
			rec_t *r = &f->recs[i];
			if (!eq(r->bucket, op.bucket) || latest(f, op.bucket,
			    (proto_bytes_t){(const uint8_t *)r->key, (uint32_t)strlen(r->key)}) != r ||
			    r->kind != PROTO_REC_PUT)
				continue;
			if (strncmp(r->key, (const char *)op.key.p, op.key.len) != 0)
				continue;
			keys[n++] = r->key;
		}
		qsort(keys, n, sizeof keys[0], cmpstr);
		proto_list_begin(&l, &w);
		size_t i = 0;
		char after[PROTO_MAX_KEY + 1];
		if (op.after.len)
			memcpy(after, op.after.p, op.after.len);
		after[op.after.len] = 0;
		while (i < n && op.after.len && strcmp(keys[i], after) <= 0)
			i++;
		uint32_t sent = 0;
		for (; i < n && sent < limit; i++, sent++) {
			proto_put_bytes(&w, 2, keys[i], strlen(keys[i]));
			proto_list_item_done(&l);
		}
		proto_list_finish(&l, i < n);
		break;
	}
	case PROTO_OP_HISTORY: {
		proto_list_writer_t l;
		uint32_t limit = f->cfg.page_limit ? f->cfg.page_limit : 1000, sent = 0;
		bool more = false;
		proto_list_begin(&l, &w);
		for (size_t i = 0; i < f->nrecs; i++) {
			rec_t *r = &f->recs[i];
			if (!eq(r->bucket, op.bucket) || !eq(r->key, op.key) || r->rev <= op.rev)
				continue;
			if (sent == limit) {
				more = true;
				break;
			}
			put_rec(&w, r);
			proto_list_item_done(&l);
			sent++;
		}
		proto_list_finish(&l, more);
		break;
	}
	case PROTO_OP_BUCKET_INFO: {
		if (!has_bucket(f, op.bucket)) {
			send_error(c, id, KV_ENOBUCKET, "bucket not found", "", 0, 0);
			return;
		}
		proto_bucket_info_t bi = {op.bucket, {1, 1 << 20, 0, {NULL, 0}}, 0, 0, 1};
		proto_bucket_info_encode(&w, &bi);
		break;
	}
	case PROTO_OP_BUCKET_LIST: {
		proto_list_writer_t l;
		proto_list_begin(&l, &w);
		for (size_t i = 0; i < f->nbuckets; i++) {
			proto_bucket_info_t bi = {{(const uint8_t *)f->buckets[i],
						   (uint32_t)strlen(f->buckets[i])},
						  {1, 1 << 20, 0, {NULL, 0}}, 0, 0, 1};
			proto_bucket_info_encode(&w, &bi);
			proto_list_item_done(&l);
		}
		proto_list_finish(&l, false);
		break;
	}
	case PROTO_OP_STATUS: {
		proto_status_t st = {1, PROTO_ROLE_PRIMARY, true, 1, f->rev, f->rev, f->rev, 1,
				     f->rev, {(const uint8_t *)"fake", 4}, {(const uint8_t *)"test", 4}, 0,
				     {{0}}, 0, {{0}}};
		proto_status_encode(&w, &st);
		break;
	}
	default:
		send_error(c, id, PROTO_EBADTYPE, "unknown op", "", 0, 0);
		return;
	}
	send_frame(c, PROTO_T_RESP, id, out, proto_wbuf_len(&w));
}

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b)
{
	fconn_t *c = h->data;
	(void)sug;
	if (c->rcap - c->rlen < 65536) {
		c->rcap = c->rcap ? c->rcap * 2 : 131072;
		c->rbuf = realloc(c->rbuf, c->rcap);
	}
	*b = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	fconn_t *c = s->data;
	size_t off = 0;
	proto_hdr_t h;

	(void)b;
	if (n < 0) {
		conn_drop(c);
		return;
	}
	c->rlen += (size_t)n;
	while (!c->closing &&
	       proto_hdr_decode(c->rbuf + off, c->rlen - off, PROTO_DEFAULT_MAX_FRAME, &h) ==
		       PROTO_HDR_LEN) {
		const uint8_t *p = c->rbuf + off + PROTO_HDR_LEN;
		off += PROTO_HDR_LEN + h.len;
		if (!c->hello_done) {
			if (h.type != PROTO_T_HELLO) {
				conn_drop(c);
				return;
			}
			if (c->f->cfg.hello_error) {
				send_error(c, 0, c->f->cfg.hello_error, "go away", "", 0, 0);
				continue;
			}
			c->hello_done = true;
			uint8_t buf[128];
			proto_wbuf_t w;
			proto_hello_ok_t ok = {PROTO_VERSION, 1, c->f->rev, {NULL, 0}, {NULL, 0}};
			proto_wbuf_init(&w, buf, sizeof buf);
			proto_hello_ok_encode(&w, &ok);
			send_frame(c, PROTO_T_HELLO_OK, 0, buf, proto_wbuf_len(&w));
		} else if (h.type == PROTO_T_REQ) {
			handle_req(c, h.id, p, h.len);
		}
	}
	if (c->closing)
		return;
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
}

static void on_conn(uv_stream_t *l, int status)
{
	fake_server_t *f = l->data;
	fconn_t *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	c->f = f;
	uv_tcp_init(&f->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_close);
		return;
	}
	atomic_fetch_add(&f->connections, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, h->type == UV_TCP && h->data && h->data != arg ? on_close : NULL);
}

static void on_stop(uv_async_t *a)
{
	fake_server_t *f = a->data;
	uv_close((uv_handle_t *)&f->listener, NULL);
	uv_close((uv_handle_t *)&f->stop, NULL);
	f->listener.data = f; /* marks it as not a fconn for close_walk */
	uv_walk(&f->loop, close_walk, f);
}

static void *run(void *arg)
{
	fake_server_t *f = arg;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	return NULL;
}

fake_server_t *fake_start(const fake_cfg_t *cfg, int *port)
{
	fake_server_t *f = calloc(1, sizeof *f);
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	int alen = sizeof ss;

	if (cfg)
		f->cfg = *cfg;
	uv_loop_init(&f->loop);
	uv_tcp_init(&f->loop, &f->listener);
	f->listener.data = f;
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_bind(&f->listener, (const struct sockaddr *)&a, 0);
	uv_listen((uv_stream_t *)&f->listener, 64, on_conn);
	uv_tcp_getsockname(&f->listener, (struct sockaddr *)&ss, &alen);
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	uv_async_init(&f->loop, &f->stop, on_stop);
	f->stop.data = f;
	pthread_create(&f->thr, NULL, run, f);
	return f;
}

void fake_stop(fake_server_t *f)
{
	uv_async_send(&f->stop);
	pthread_join(f->thr, NULL);
	uv_loop_close(&f->loop);
	for (size_t i = 0; i < f->nrecs; i++)
		free(f->recs[i].val);
	free(f);
}

uint32_t fake_requests(fake_server_t *f) { return atomic_load(&f->requests); }
uint32_t fake_connections(fake_server_t *f) { return atomic_load(&f->connections); }
uint32_t fake_batches(fake_server_t *f) { return atomic_load(&f->batches); }
