/*
 * Blocking client and pipelined loader (proto/client.h), on top of the async client.
 *
 * Each kvc_t owns a private uv loop and runs it only inside its own calls, so a blocking
 * call is: send one request, run the loop until its callback ran. Response bodies are
 * copied into one buffer per kvc_t (grown, never shrunk), which is what the views handed
 * back point into until the next call.
 */
#include "proto/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct kvc {
	uv_loop_t loop;
	kvc_client_t *c;
	uint8_t *resp;
	size_t resp_cap;
	uint32_t resp_len;
	char errmsg[256];
	uint32_t err_index;
};

typedef struct call {
	kvc_t *k;
	bool done;
	int status;
} call_t;

static int resp_store(kvc_t *k, const uint8_t *p, uint32_t len)
{
	if (len > k->resp_cap) {
		size_t cap = k->resp_cap ? k->resp_cap : 4096;
		while (cap < len)
			cap *= 2;
		uint8_t *n = realloc(k->resp, cap);
		if (!n)
			return -ENOMEM;
		k->resp = n;
		k->resp_cap = cap;
	}
	if (len)
		memcpy(k->resp, p, len);
	k->resp_len = len;
	return 0;
}

static void err_store(kvc_t *k, int status, const kvc_resp_t *r)
{
	size_t n = r->err.message.len;

	if (n >= sizeof k->errmsg)
		n = sizeof k->errmsg - 1;
	if (n)
		memcpy(k->errmsg, r->err.message.p, n);
	k->errmsg[n] = 0;
	k->err_index = r->err.index;
	(void)status;
}

static int check_op(const proto_op_t *op);

static void call_cb(kvc_req_t *req, int status, const kvc_resp_t *resp)
{
	call_t *cl = req->data;

	cl->done = true;
	cl->status = status;
	if (status == 0)
		cl->status = resp_store(cl->k, resp->body, resp->len);
	else
		err_store(cl->k, status, resp);
}

int kvc_call(kvc_t *k, const proto_op_t *op, const uint8_t **body, uint32_t *len)
{
	kvc_req_t req;
	call_t cl = {k, false, 0};
	int rc;

	k->errmsg[0] = 0;
	k->err_index = 0;
	if (!proto_op_is_batch(op->op) && (rc = check_op(op)) != 0)
		return rc;
	memset(&req, 0, sizeof req);
	req.data = &cl;
	if ((rc = kvc_send(k->c, &req, op, 0, call_cb)) != 0)
		return rc;
	while (!cl.done)
		uv_run(&k->loop, UV_RUN_ONCE);
	if (cl.status == 0) {
		if (body)
			*body = k->resp;
		if (len)
			*len = k->resp_len;
	}
	return cl.status;
}

int kvc_open(kvc_t **out, const char *servers, const kvc_opts_t *opts)
{
	kvc_t *k = calloc(1, sizeof *k);
	int rc;

	if (!k)
		return -ENOMEM;
	if ((rc = uv_loop_init(&k->loop)) != 0) {
		free(k);
		return rc;
	}
	if ((rc = kvc_client_new(&k->loop, servers, opts, &k->c)) != 0) {
		uv_loop_close(&k->loop);
		free(k);
		return rc;
	}
	*out = k;
	return 0;
}

void kvc_close(kvc_t *k)
{
	if (!k)
		return;
	kvc_client_close(k->c, NULL, NULL);
	uv_run(&k->loop, UV_RUN_DEFAULT); /* until every handle has closed */
	uv_loop_close(&k->loop);
	free(k->resp);
	free(k);
}

const char *kvc_errmsg(const kvc_t *k)
{
	return k->errmsg;
}

uint32_t kvc_err_index(const kvc_t *k)
{
	return k->err_index;
}

/* ---- typed calls ------------------------------------------------------------------- */

static proto_bytes_t str(const char *s)
{
	return (proto_bytes_t){(const uint8_t *)s, s ? (uint32_t)strnlen(s, PROTO_MAX_KEY + 1) : 0};
}

/*
 * The server checks names too; checking here with the same rules saves a round trip and
 * keeps an over-long name a KV_EBAD* (not an encoder's PROTO_ETOOBIG).
 */
static int check_op(const proto_op_t *op)
{
	switch (op->op) {
	case PROTO_OP_STATUS:
	case PROTO_OP_HASH:
	case PROTO_OP_BUCKET_LIST:
	case PROTO_OP_SNAPSHOT:
		return 0;
	default:
		break;
	}
	if (!proto_bucket_valid(op->bucket.p, op->bucket.len))
		return KV_EBADBUCKET;
	switch (op->op) {
	case PROTO_OP_BUCKET_ADD:
	case PROTO_OP_BUCKET_DEL:
	case PROTO_OP_BUCKET_INFO:
		return 0;
	case PROTO_OP_KEYS:
	case PROTO_OP_WATCH:
	case PROTO_OP_SCAN:
		return proto_prefix_valid(op->key.p, op->key.len) ? 0 : KV_EBADKEY;
	default:
		return proto_key_valid(op->key.p, op->key.len) ? 0 : KV_EBADKEY;
	}
}

static int write_op(kvc_t *k, const proto_op_t *op, uint64_t *rev)
{
	const uint8_t *b;
	uint32_t n;
	proto_write_resp_t r;
	int rc;

	if ((rc = kvc_call(k, op, &b, &n)) != 0)
		return rc;
	if ((rc = proto_write_resp_decode(b, n, op->op, &r)) != 0)
		return rc;
	if (rev)
		*rev = r.rev;
	return 0;
}

static int kv_write(kvc_t *k, uint8_t opc, const char *bucket, const char *key, const void *val,
		    size_t len, uint64_t exp, uint64_t *rev)
{
	proto_op_t op;

	if (len > PROTO_MAX_VALUE)
		return KV_ETOOBIG;
	memset(&op, 0, sizeof op);
	op.op = opc;
	op.bucket = str(bucket);
	op.key = str(key);
	op.value = (proto_bytes_t){val, (uint32_t)len};
	op.rev = exp;
	return write_op(k, &op, rev);
}

int kvc_put(kvc_t *k, const char *bucket, const char *key, const void *val, size_t len,
	    uint64_t *rev)
{
	return kv_write(k, PROTO_OP_PUT, bucket, key, val, len, 0, rev);
}

int kvc_create(kvc_t *k, const char *bucket, const char *key, const void *val, size_t len,
	       uint64_t *rev)
{
	return kv_write(k, PROTO_OP_CREATE, bucket, key, val, len, 0, rev);
}

int kvc_update(kvc_t *k, const char *bucket, const char *key, const void *val, size_t len,
	       uint64_t expect_rev, uint64_t *rev)
{
	return kv_write(k, PROTO_OP_UPDATE, bucket, key, val, len, expect_rev, rev);
}

int kvc_delete(kvc_t *k, const char *bucket, const char *key, uint64_t expect_rev,
	       uint64_t *rev)
{
	return kv_write(k, PROTO_OP_DELETE, bucket, key, NULL, 0, expect_rev, rev);
}

int kvc_purge(kvc_t *k, const char *bucket, const char *key, uint64_t expect_rev,
	      uint64_t *rev)
{
	return kv_write(k, PROTO_OP_PURGE, bucket, key, NULL, 0, expect_rev, rev);
}

int kvc_get(kvc_t *k, const char *bucket, const char *key, uint64_t rev, proto_rec_t *rec)
{
	proto_op_t op;
	const uint8_t *b;
	uint32_t n;
	int rc;

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_GET;
	op.bucket = str(bucket);
	op.key = str(key);
	op.rev = rev;
	if ((rc = kvc_call(k, &op, &b, &n)) != 0)
		return rc;
	return proto_rec_decode(b, n, rec);
}

int kvc_bucket_add(kvc_t *k, const char *bucket, const proto_bucket_cfg_t *cfg, uint64_t *rev)
{
	proto_op_t op;

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_BUCKET_ADD;
	op.bucket = str(bucket);
	if (cfg)
		op.cfg = *cfg;
	else
		op.cfg.history = 1;
	return write_op(k, &op, rev);
}

int kvc_bucket_del(kvc_t *k, const char *bucket, uint64_t *rev)
{
	proto_op_t op;

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_BUCKET_DEL;
	op.bucket = str(bucket);
	return write_op(k, &op, rev);
}

int kvc_bucket_info(kvc_t *k, const char *bucket, proto_bucket_info_t *info)
{
	proto_op_t op;
	const uint8_t *b;
	uint32_t n;
	int rc;

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_BUCKET_INFO;
	op.bucket = str(bucket);
	if ((rc = kvc_call(k, &op, &b, &n)) != 0)
		return rc;
	return proto_bucket_info_decode(b, n, info);
}

int kvc_status(kvc_t *k, proto_status_t *st)
{
	proto_op_t op;
	const uint8_t *b;
	uint32_t n;
	int rc;

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_STATUS;
	if ((rc = kvc_call(k, &op, &b, &n)) != 0)
		return rc;
	return proto_status_decode(b, n, st);
}

int kvc_hash(kvc_t *k, proto_hash_t *h)
{
	proto_op_t op;
	const uint8_t *b;
	uint32_t n;
	int rc;

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_HASH;
	if ((rc = kvc_call(k, &op, &b, &n)) != 0)
		return rc;
	return proto_hash_decode(b, n, h);
}

/*
 * Page through a list op. `after` must outlive each request, and the response buffer is
 * overwritten by the next page, so the last item of a page is copied out as the cursor.
 */
typedef struct pager {
	kvc_key_fn kfn;
	kvc_rec_fn rfn;
	kvc_bucket_fn bfn;
	void *ctx;
} pager_t;

static int page_all(kvc_t *k, proto_op_t *op, const pager_t *pg)
{
	uint8_t after[PROTO_MAX_KEY];
	uint64_t after_rev = 0;
	proto_list_reader_t lr;
	const uint8_t *b;
	uint32_t n, alen = 0;
	int rc;

	for (;;) {
		op->after = (proto_bytes_t){after, alen};
		op->rev = after_rev;
		if ((rc = kvc_call(k, op, &b, &n)) != 0)
			return rc;
		if ((rc = proto_list_reader_init(&lr, b, n, op->op)) != 0)
			return rc;
		uint32_t items = 0;
		for (;;) {
			proto_bytes_t key;
			proto_rec_t rec;
			proto_bucket_info_t bi;
			if (op->op == PROTO_OP_KEYS) {
				if ((rc = proto_list_next_key(&lr, &key)) != 1)
					break;
				if ((rc = pg->kfn(pg->ctx, &key)) != 0)
					return rc;
				memcpy(after, key.p, key.len);
				alen = key.len;
			} else if (op->op == PROTO_OP_HISTORY) {
				if ((rc = proto_list_next_rec(&lr, &rec)) != 1)
					break;
				if ((rc = pg->rfn(pg->ctx, &rec)) != 0)
					return rc;
				after_rev = rec.rev;
			} else {
				if ((rc = proto_list_next_bucket(&lr, &bi)) != 1)
					break;
				if ((rc = pg->bfn(pg->ctx, &bi)) != 0)
					return rc;
				memcpy(after, bi.name.p, bi.name.len);
				alen = bi.name.len;
			}
			items++;
		}
		if (rc < 0)
			return rc;
		/* A server that says "more" but sent nothing would loop us forever. */
		if (!lr.more || items == 0)
			return 0;
	}
}

int kvc_keys(kvc_t *k, const char *bucket, const char *prefix, kvc_key_fn fn, void *ctx)
{
	proto_op_t op;
	pager_t pg = {fn, NULL, NULL, ctx};

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_KEYS;
	op.bucket = str(bucket);
	op.key = str(prefix);
	return page_all(k, &op, &pg);
}

int kvc_history(kvc_t *k, const char *bucket, const char *key, kvc_rec_fn fn, void *ctx)
{
	proto_op_t op;
	pager_t pg = {NULL, fn, NULL, ctx};

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_HISTORY;
	op.bucket = str(bucket);
	op.key = str(key);
	return page_all(k, &op, &pg);
}

int kvc_bucket_list(kvc_t *k, kvc_bucket_fn fn, void *ctx)
{
	proto_op_t op;
	pager_t pg = {NULL, NULL, fn, ctx};

	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_BUCKET_LIST;
	return page_all(k, &op, &pg);
}

/* ---- loader -------------------------------------------------------------------------- */

typedef struct lslot {
	kvc_req_t req;
	struct kvc_loader *l;
	uint8_t *buf;
	size_t cap;
	proto_wbuf_t w;
	proto_batch_writer_t bw;
	uint64_t *tags;
	uint32_t count;
	uint64_t seq;                 /* its number in the loader's session (SBATCH) */
	proto_op_t op;                /* as sent: a retry resends exactly this */
	uint64_t retry_deadline;      /* uv_now ms; 0 = not failed yet */
	struct lslot *rnext;          /* waiting for the retry timer */
	bool busy;                    /* sent (or waiting to be resent), awaiting its answer */
} lslot_t;

struct kvc_loader {
	kvc_t *k;
	char bucket[PROTO_MAX_BUCKET + 1];
	kvc_load_opts_t o;
	lslot_t *slots;
	lslot_t *cur;                 /* being filled, or NULL */
	uint32_t busy;
	uint64_t last_tag;            /* of the last op added */
	uint64_t client, seq;         /* the session: random id, last batch number sent */
	uv_timer_t retry;             /* resends batches whose outcome was unknown */
	lslot_t *rhead;
	kvc_load_stats_t st;
};

/*
 * Errors after which a batch's outcome is unknown or it was not applied: a lost connection,
 * a timeout (ours or the member's while the group elects), no leader yet, a member shutting
 * down. Batches carry a session number (SBATCH), so resending is safe: the group applies a
 * batch at most once. That is what makes a load ride out a leader failure.
 */
static bool retriable(int status)
{
	switch (status) {
	case PROTO_ECLOSED: case PROTO_ETIMEDOUT: case PROTO_ENOTLEADER: case PROTO_ESHUTDOWN:
	case PROTO_EBUSY: case UV_ECONNREFUSED: case UV_ECONNRESET: case UV_ETIMEDOUT:
	case UV_EPIPE: case UV_EHOSTUNREACH:
		return true;
	default:
		return false;
	}
}

static void load_cb(kvc_req_t *req, int status, const kvc_resp_t *resp);

static void on_retry(uv_timer_t *t)
{
	kvc_loader_t *l = t->data;
	lslot_t *s;

	while ((s = l->rhead) != NULL) {
		l->rhead = s->rnext;
		int rc = l->st.err ? l->st.err :
			 kvc_send(l->k->c, &s->req, &s->op, KVC_F_IDEMPOTENT, load_cb);
		if (rc) {
			kvc_resp_t none;
			memset(&none, 0, sizeof none);
			s->retry_deadline = 1; /* no more tries */
			load_cb(&s->req, rc, &none);
		}
	}
}

static void load_cb(kvc_req_t *req, int status, const kvc_resp_t *resp)
{
	lslot_t *s = req->data;
	kvc_loader_t *l = s->l;
	proto_write_resp_t wr;

	if (status != 0 && retriable(status) && !l->st.err && l->o.retry_ms) {
		uint64_t now = uv_now(&l->k->loop);
		if (!s->retry_deadline)
			s->retry_deadline = now + l->o.retry_ms;
		if (now < s->retry_deadline) {
			l->st.retries++;
			s->rnext = l->rhead;
			l->rhead = s;
			if (!uv_is_active((uv_handle_t *)&l->retry))
				uv_timer_start(&l->retry, on_retry, 200, 0);
			return; /* still busy: the window stays full while the group recovers */
		}
	}
	s->retry_deadline = 0;
	s->busy = false;
	l->busy--;
	if (status == 0 && (status = proto_write_resp_decode(resp->body, resp->len,
							     PROTO_OP_BATCH, &wr)) == 0) {
		l->st.acked += wr.count;
		l->st.batches++;
		/* rev 0: a duplicate the group had applied already (its revisions came then) */
		if (wr.count && wr.rev && wr.rev + wr.count - 1 > l->st.last_rev)
			l->st.last_rev = wr.rev + wr.count - 1;
	}
	/* The first line not acknowledged is the lowest first tag of any failed batch, whatever
	 * order the answers came in: a batch is all-or-nothing, so its first op is unapplied
	 * even when the culprit (failed_tag) sits further in. */
	if (status != 0 && s->count && (!l->st.first_unacked || s->tags[0] < l->st.first_unacked))
		l->st.first_unacked = s->tags[0];
	if (status != 0 && l->st.err == 0) {
		l->st.err = status;
		l->st.failed_status = status;
		l->st.failed_tag = s->count ? s->tags[0] : 0;
		if (status == KV_EBATCH && resp->err.index < s->count) {
			l->st.failed_tag = s->tags[resp->err.index];
			if (resp->err.cause)
				l->st.failed_status = resp->err.cause;
		}
		err_store(l->k, status, resp);
	}
	s->count = 0;
}

int kvc_loader_new(kvc_t *k, const char *bucket, const kvc_load_opts_t *o, kvc_loader_t **out)
{
	kvc_loader_t *l;
	size_t blen = strlen(bucket);

	if (!proto_bucket_valid(bucket, blen))
		return KV_EBADBUCKET;
	if ((l = calloc(1, sizeof *l)) == NULL)
		return -ENOMEM;
	l->k = k;
	memcpy(l->bucket, bucket, blen + 1);
	if (o)
		l->o = *o;
	if (!l->o.batch_ops || l->o.batch_ops > PROTO_MAX_BATCH)
		l->o.batch_ops = 1000;
	if (!l->o.batch_bytes)
		l->o.batch_bytes = 4u << 20;
	if (l->o.batch_bytes > PROTO_DEFAULT_MAX_FRAME / 2)
		l->o.batch_bytes = PROTO_DEFAULT_MAX_FRAME / 2;
	if (!l->o.window)
		l->o.window = 4;
	if (!l->o.retry_ms)
		l->o.retry_ms = 30000;
	uv_timer_init(&k->loop, &l->retry);
	l->retry.data = l;
	if ((l->slots = calloc(l->o.window, sizeof *l->slots)) == NULL) {
		free(l);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < l->o.window; i++) {
		l->slots[i].l = l;
		l->slots[i].req.data = &l->slots[i];
	}
	/* A session id no other loader picks (64 random bits): the group applies each batch
	 * of this loader at most once however often it is resent. */
	l->client = l->o.client;
	while (l->client == 0)
		if (getrandom(&l->client, sizeof l->client, 0) != (ssize_t)sizeof l->client)
			l->client = (uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 40);
	*out = l;
	return 0;
}

static int slot_send(kvc_loader_t *l, lslot_t *s)
{
	proto_op_t op;
	int rc;

	proto_batch_finish(&s->bw);
	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_SBATCH;
	op.client = l->client;
	op.seq = s->seq = ++l->seq;
	op.count = s->count;
	op.batch = (proto_bytes_t){s->buf + 5, (uint32_t)(proto_wbuf_len(&s->w) - 5)};
	s->op = op;
	s->retry_deadline = 0;
	if (s->count && s->tags[s->count - 1] <= l->o.skip_through) {
		s->count = 0; /* acknowledged in the run being resumed: numbered, not sent */
		return 0;
	}
	rc = kvc_send(l->k->c, &s->req, &op, KVC_F_IDEMPOTENT, load_cb);
	if (rc) {
		if (!l->st.first_unacked || s->tags[0] < l->st.first_unacked)
			l->st.first_unacked = s->tags[0];
		if (!l->st.err) {
			l->st.err = l->st.failed_status = rc;
			l->st.failed_tag = s->tags[0];
		}
		s->count = 0;
		return rc;
	}
	s->busy = true;
	l->busy++;
	return 0;
}

/* A free slot, running the loop while every slot is in flight. */
static lslot_t *slot_get(kvc_loader_t *l)
{
	for (;;) {
		for (uint32_t i = 0; i < l->o.window; i++) {
			lslot_t *s = &l->slots[i];
			if (!s->busy) {
				if (!s->buf) {
					s->cap = l->o.batch_bytes + 64;
					s->buf = malloc(s->cap);
					s->tags = malloc(l->o.batch_ops * sizeof *s->tags);
					if (!s->buf || !s->tags)
						return NULL;
				}
				proto_wbuf_init(&s->w, s->buf, s->cap);
				proto_batch_begin(&s->bw, &s->w);
				s->count = 0;
				return s;
			}
		}
		uv_run(&l->k->loop, UV_RUN_ONCE);
	}
}

int kvc_loader_put(kvc_loader_t *l, const void *key, size_t klen, const void *val, size_t vlen,
		   uint64_t tag)
{
	proto_op_t op;
	int rc;

	if (l->st.err)
		return l->st.err;
	if (!proto_key_valid(key, klen))
		return KV_EBADKEY;
	if (vlen > PROTO_MAX_VALUE)
		return KV_ETOOBIG;
	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_PUT;
	op.bucket = (proto_bytes_t){(const uint8_t *)l->bucket, (uint32_t)strlen(l->bucket)};
	op.key = (proto_bytes_t){key, (uint32_t)klen};
	op.value = (proto_bytes_t){val, (uint32_t)vlen};
	for (;;) {
		if (!l->cur && (l->cur = slot_get(l)) == NULL)
			return l->st.err = -ENOMEM;
		if (l->st.err)
			return l->st.err; /* a batch failed while we waited for a slot */
		rc = proto_batch_add(&l->cur->bw, &op);
		if (rc == 0)
			break;
		if (rc != PROTO_ETOOBIG)
			return rc;
		if (l->cur->count == 0) {
			/* one value bigger than batch_bytes: this batch grows to hold it alone */
			lslot_t *s = l->cur;
			size_t need = 64 + 5 + klen + vlen + op.bucket.len;
			uint8_t *nb = realloc(s->buf, need);
			if (!nb)
				return l->st.err = -ENOMEM;
			s->buf = nb;
			s->cap = need;
			proto_wbuf_init(&s->w, s->buf, s->cap);
			proto_batch_begin(&s->bw, &s->w);
			continue;
		}
		lslot_t *full = l->cur;
		l->cur = NULL;
		if ((rc = slot_send(l, full)) != 0)
			return rc;
	}
	l->cur->tags[l->cur->count++] = tag;
	l->last_tag = tag;
	if (l->cur->count >= l->o.batch_ops) {
		lslot_t *full = l->cur;
		l->cur = NULL;
		return slot_send(l, full);
	}
	return 0;
}

/* The lowest tag not yet known acknowledged: in flight, being filled, or failed. */
static void fill_marks(const kvc_loader_t *l, kvc_load_stats_t *st)
{
	uint64_t low = l->st.first_unacked;

	for (uint32_t i = 0; i < l->o.window; i++) {
		const lslot_t *s = &l->slots[i];
		if ((s->busy || s == l->cur) && s->count && (!low || s->tags[0] < low))
			low = s->tags[0];
	}
	st->acked_through = low ? low - 1 : l->last_tag;
}

uint64_t kvc_loader_client(const kvc_loader_t *l)
{
	return l->client;
}

void kvc_loader_stats(const kvc_loader_t *l, kvc_load_stats_t *st)
{
	*st = l->st;
	fill_marks(l, st);
}

int kvc_loader_finish(kvc_loader_t *l, kvc_load_stats_t *st)
{
	int err;

	if (l->cur && l->cur->count && !l->st.err)
		slot_send(l, l->cur);
	else if (l->cur && l->cur->count && (!l->st.first_unacked ||
					     l->cur->tags[0] < l->st.first_unacked))
		l->st.first_unacked = l->cur->tags[0]; /* stopped: never sent */
	if (l->cur)
		l->cur->count = 0;
	l->cur = NULL;
	while (l->busy)
		uv_run(&l->k->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&l->retry, NULL);
	uv_run(&l->k->loop, UV_RUN_NOWAIT);
	if (st) {
		*st = l->st;
		fill_marks(l, st);
	}
	err = l->st.err;
	for (uint32_t i = 0; i < l->o.window; i++) {
		free(l->slots[i].buf);
		free(l->slots[i].tags);
	}
	free(l->slots);
	free(l);
	return err;
}
