#include "samples.h"

#include <string.h>

#define B(s) ((proto_bytes_t){(const uint8_t *)(s), (uint32_t)(sizeof(s) - 1)})

static sample_t *add(sample_t *out, size_t *n, size_t max, const char *name, enum sample_kind k)
{
	if (*n >= max)
		return NULL;
	out[*n].name = name;
	out[*n].kind = k;
	out[*n].len = 0;
	return &out[(*n)++];
}

static void add_op(sample_t *out, size_t *n, size_t max, const char *name, const proto_op_t *op)
{
	sample_t *s = add(out, n, max, name, SK_OP);
	proto_wbuf_t w;

	if (!s)
		return;
	proto_wbuf_init(&w, s->buf, sizeof s->buf);
	proto_op_encode(&w, op);
	s->len = proto_wbuf_len(&w);
}

size_t samples_build(sample_t *out, size_t max)
{
	size_t n = 0;
	sample_t *s;
	proto_wbuf_t w;

	/* session */
	if ((s = add(out, &n, max, "hello", SK_HELLO))) {
		proto_hello_t m = {PROTO_VERSION, PROTO_ROLE_CLIENT, B("geo1"), B("secret")};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_hello_encode(&w, &m);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "hello_ok", SK_HELLO_OK))) {
		proto_hello_ok_t m = {PROTO_VERSION, 7, 12345, B("geo1"), B("10.0.0.1:7400")};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_hello_ok_encode(&w, &m);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "error", SK_ERROR))) {
		proto_error_t m = {KV_EBATCH, B("op 3 failed"), B("10.0.0.2:7400"), 3, KV_EBADKEY};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_error_encode(&w, &m);
		s->len = proto_wbuf_len(&w);
	}

	/* every op */
	{
		proto_op_t op;
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_BUCKET_ADD;
		op.bucket = B("cards");
		op.cfg = (proto_bucket_cfg_t){5, 4096, 86400000, B("application/json")};
		add_op(out, &n, max, "op_bucket_add", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_BUCKET_DEL;
		op.bucket = B("cards");
		add_op(out, &n, max, "op_bucket_del", &op);
		op.op = PROTO_OP_PUT;
		op.key = B("user.42/card=1");
		op.value = B("{\"pan\":\"enc:abcdef\"}");
		add_op(out, &n, max, "op_put", &op);
		op.op = PROTO_OP_CREATE;
		add_op(out, &n, max, "op_create", &op);
		op.op = PROTO_OP_UPDATE;
		op.rev = 99;
		add_op(out, &n, max, "op_update", &op);
		op.value = (proto_bytes_t){NULL, 0};
		op.op = PROTO_OP_DELETE;
		add_op(out, &n, max, "op_delete", &op);
		op.op = PROTO_OP_PURGE;
		op.rev = 0;
		add_op(out, &n, max, "op_purge", &op);
		op.op = PROTO_OP_GET;
		op.rev = 17;
		add_op(out, &n, max, "op_get", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_KEYS;
		op.bucket = B("cards");
		op.key = B("user.");
		op.after = B("user.41");
		op.limit = 100;
		add_op(out, &n, max, "op_keys", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_HISTORY;
		op.bucket = B("cards");
		op.key = B("user.42");
		op.rev = 3;
		op.limit = 10;
		add_op(out, &n, max, "op_history", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_BUCKET_INFO;
		op.bucket = B("cards");
		add_op(out, &n, max, "op_bucket_info", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_BUCKET_LIST;
		op.after = B("a");
		op.limit = 2;
		add_op(out, &n, max, "op_bucket_list", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_STATUS;
		add_op(out, &n, max, "op_status", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_WATCH;
		op.bucket = B("cards");
		op.key = B("user.");
		op.rev = 1234;
		op.limit = 1000;
		add_op(out, &n, max, "op_watch", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_SCAN;
		op.bucket = B("cards");
		op.key = B("user.");
		op.after = B("user.41");
		op.limit = 10000;
		add_op(out, &n, max, "op_scan", &op);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_SNAPSHOT;
		op.rev = 4194304;
		op.after = B("0123456789abcdef0123456789abcdef");
		op.limit = 4194304;
		add_op(out, &n, max, "op_snapshot", &op);
	}
	/* a batch of three writes */
	size_t batch_at = n;
	if ((s = add(out, &n, max, "op_batch", SK_OP))) {
		proto_batch_writer_t b;
		proto_op_t op;
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_batch_begin(&b, &w);
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_PUT;
		op.bucket = B("cards");
		op.key = B("a");
		op.value = B("1");
		proto_batch_add(&b, &op);
		op.key = B("b");
		op.value = B("22");
		proto_batch_add(&b, &op);
		op.op = PROTO_OP_DELETE;
		op.value = (proto_bytes_t){NULL, 0};
		op.rev = 5;
		proto_batch_add(&b, &op);
		proto_batch_finish(&b);
		s->len = proto_wbuf_len(&w);
	}
	/* the same batch in a session (client 7, batch 42) */
	if (batch_at < n && (s = add(out, &n, max, "op_sbatch", SK_OP))) {
		proto_op_t op;
		const sample_t *b = &out[batch_at];
		if (proto_op_decode(b->buf, b->len, &op) != 0)
			return 0; /* the batch sample did not build: the tests say so */
		op.op = PROTO_OP_SBATCH;
		op.client = 7;
		op.seq = 42;
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_op_encode(&w, &op);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "entry_put", SK_ENTRY))) {
		proto_op_t op;
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_PUT;
		op.bucket = B("cards");
		op.key = B("k");
		op.value = B("v");
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_entry_encode(&w, 1700000000123ull, &op);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "entry_batch", SK_ENTRY))) {
		/* raw: entry header followed by the batch sample's bytes */
		sample_t *bs = &out[batch_at];
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_entry_encode_raw(&w, 1700000000456ull, bs->buf, bs->len);
		s->len = proto_wbuf_len(&w);
	}

	/* responses */
	if ((s = add(out, &n, max, "resp_write", SK_WRITE_RESP))) {
		proto_write_resp_t r = {1234, 1};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_write_resp_encode(&w, PROTO_OP_PUT, &r);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_batch", SK_BATCH_RESP))) {
		proto_write_resp_t r = {1235, 1000};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_write_resp_encode(&w, PROTO_OP_BATCH, &r);
		s->len = proto_wbuf_len(&w);
	}
	proto_rec_t rec = {B("user.42"), B("value-bytes"), 44, 40, 1700000000000ull, PROTO_REC_PUT};
	if ((s = add(out, &n, max, "resp_rec", SK_REC))) {
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_rec_encode(&w, &rec);
		s->len = proto_wbuf_len(&w);
	}
	proto_bucket_info_t bi = {B("cards"), {3, 1 << 20, 0, B("text/plain")}, 10, 1000, 2};
	if ((s = add(out, &n, max, "resp_bucket_info", SK_BUCKET_INFO))) {
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_bucket_info_encode(&w, &bi);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_status", SK_STATUS))) {
		proto_status_t st = {1, PROTO_ROLE_PRIMARY, true, 3, 100, 120, 120, 1, 120,
				      B("127.0.0.1:7400"), B("0.1.0"), 2,
				      {{1, PROTO_MEMBER_SELF | PROTO_MEMBER_UP, 120, B("127.0.0.1:7400")},
				       {2, PROTO_MEMBER_MATCH, 118, B("127.0.0.1:7401")}},
				      0, {{0}}};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_status_encode(&w, &st);
		s->len = proto_wbuf_len(&w);
		/* the same with the optional leaves section */
		if ((s = add(out, &n, max, "resp_status_leaves", SK_STATUS))) {
			st.nleaves = 2;
			st.leaves[0] = (proto_leaf_info_t){7, PROTO_LEAF_CONNECTED, 119, 3, 40, B("leaf-a")};
			st.leaves[1] = (proto_leaf_info_t){8, 0, 90, 0, 60000, B("")};
			proto_wbuf_init(&w, s->buf, sizeof s->buf);
			proto_status_encode(&w, &st);
			s->len = proto_wbuf_len(&w);
		}
	}
	if ((s = add(out, &n, max, "resp_hash", SK_HASH))) {
		proto_hash_t h = {120, 100, 5000, 0x0123456789abcdefULL};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_hash_encode(&w, &h);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_keys", SK_LIST_KEYS))) {
		proto_list_writer_t l;
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_list_begin(&l, &w);
		proto_put_bytes(&w, 2, "a", 1);
		proto_list_item_done(&l);
		proto_put_bytes(&w, 2, "b.c", 3);
		proto_list_item_done(&l);
		proto_list_finish(&l, true);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_history", SK_LIST_HISTORY))) {
		proto_list_writer_t l;
		proto_rec_t del = {B("user.42"), {NULL, 0}, 45, 40, 1700000000001ull, PROTO_REC_DEL};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_list_begin(&l, &w);
		proto_rec_encode(&w, &rec);
		proto_list_item_done(&l);
		proto_rec_encode(&w, &del);
		proto_list_item_done(&l);
		proto_list_finish(&l, false);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_watch", SK_WATCH_RESP))) {
		proto_list_writer_t l;
		proto_rec_t del = {B("user.42"), {NULL, 0}, 45, 0, 1700000000001ull, PROTO_REC_DEL};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_put_u64(&w, 46);
		proto_list_begin(&l, &w);
		proto_rec_encode(&w, &rec);
		proto_list_item_done(&l);
		proto_rec_encode(&w, &del);
		proto_list_item_done(&l);
		proto_list_finish(&l, true);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_scan", SK_LIST_SCAN))) {
		proto_list_writer_t l;
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_list_begin(&l, &w);
		proto_rec_encode(&w, &rec);
		proto_list_item_done(&l);
		proto_list_finish(&l, false);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_snapshot", SK_SNAP_RESP))) {
		proto_snap_resp_t r = {B("0123456789abcdef0123456789abcdef"), 1000, 120, 100, 5000,
				       B("GKSNAPSHOT-chunk-bytes")};
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_snap_resp_encode(&w, &r);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_buckets", SK_LIST_BUCKETS))) {
		proto_list_writer_t l;
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_list_begin(&l, &w);
		proto_bucket_info_encode(&w, &bi);
		proto_list_item_done(&l);
		proto_list_finish(&l, false);
		s->len = proto_wbuf_len(&w);
	}
	if ((s = add(out, &n, max, "resp_keys_empty", SK_LIST_KEYS))) {
		proto_list_writer_t l;
		proto_wbuf_init(&w, s->buf, sizeof s->buf);
		proto_list_begin(&l, &w);
		proto_list_finish(&l, false);
		s->len = proto_wbuf_len(&w);
	}
	return n;
}

static int check_batch(const proto_op_t *op, proto_wbuf_t *w)
{
	proto_batch_iter_t it;
	proto_batch_writer_t b;
	proto_op_t in;
	int rc;

	proto_batch_begin(&b, w);
	proto_batch_iter_init(&it, op);
	while ((rc = proto_batch_next(&it, &in)) == 1)
		if ((rc = proto_batch_add(&b, &in)) != 0)
			return rc;
	if (rc)
		return rc;
	proto_batch_finish(&b);
	return b.count == op->count ? w->err : PROTO_EBADMSG;
}

static int check_op(const proto_op_t *op, proto_wbuf_t *w)
{
	if (op->op == PROTO_OP_BATCH)
		return check_batch(op, w);
	if (op->op == PROTO_OP_SBATCH) {
		/* the session header, then the inner ops rebuilt one by one as for BATCH */
		uint8_t tmp[8192];
		proto_wbuf_t t;
		proto_op_t in;
		int rc;
		proto_wbuf_init(&t, tmp, sizeof tmp);
		if ((rc = check_batch(op, &t)) != 0)
			return rc;
		if ((rc = proto_op_decode(tmp, proto_wbuf_len(&t), &in)) != 0)
			return rc;
		in.op = PROTO_OP_SBATCH;
		in.client = op->client;
		in.seq = op->seq;
		return proto_op_encode(w, &in);
	}
	return proto_op_encode(w, op);
}

static int check_list(enum sample_kind kind, const uint8_t *p, size_t len, proto_wbuf_t *w)
{
	static const uint8_t ops[] = {[SK_LIST_KEYS] = PROTO_OP_KEYS,
				      [SK_LIST_HISTORY] = PROTO_OP_HISTORY,
				      [SK_LIST_BUCKETS] = PROTO_OP_BUCKET_LIST,
				      [SK_LIST_SCAN] = PROTO_OP_SCAN};
	proto_list_reader_t r;
	proto_list_writer_t l;
	int rc;

	if ((rc = proto_list_reader_init(&r, p, len, ops[kind])) != 0)
		return rc;
	proto_list_begin(&l, w);
	for (;;) {
		proto_bytes_t k;
		proto_rec_t rec;
		proto_bucket_info_t b;
		if (kind == SK_LIST_KEYS) {
			rc = proto_list_next_key(&r, &k);
			if (rc == 1)
				proto_put_bytes(w, 2, k.p, k.len);
		} else if (kind == SK_LIST_HISTORY || kind == SK_LIST_SCAN) {
			rc = proto_list_next_rec(&r, &rec);
			if (rc == 1)
				proto_rec_encode(w, &rec);
		} else {
			rc = proto_list_next_bucket(&r, &b);
			if (rc == 1)
				proto_bucket_info_encode(w, &b);
		}
		if (rc != 1)
			break;
		proto_list_item_done(&l);
	}
	if (rc)
		return rc;
	proto_list_finish(&l, r.more);
	return w->err;
}

int sample_check(enum sample_kind kind, const uint8_t *p, size_t len, uint8_t *re, size_t recap,
		 size_t *relen)
{
	proto_wbuf_t w;
	int rc;

	proto_wbuf_init(&w, re, recap);
	switch (kind) {
	case SK_HELLO: {
		proto_hello_t m;
		if ((rc = proto_hello_decode(p, len, &m)) == 0)
			rc = proto_hello_encode(&w, &m);
		break;
	}
	case SK_HELLO_OK: {
		proto_hello_ok_t m;
		if ((rc = proto_hello_ok_decode(p, len, &m)) == 0)
			rc = proto_hello_ok_encode(&w, &m);
		break;
	}
	case SK_ERROR: {
		proto_error_t m;
		if ((rc = proto_error_decode(p, len, &m)) == 0)
			rc = proto_error_encode(&w, &m);
		break;
	}
	case SK_OP: {
		proto_op_t op;
		if ((rc = proto_op_decode(p, len, &op)) == 0)
			rc = check_op(&op, &w);
		break;
	}
	case SK_ENTRY: {
		proto_entry_t e;
		if ((rc = proto_entry_decode(p, len, &e)) == 0) {
			proto_put_u8(&w, PROTO_ENTRY_VERSION);
			proto_put_u64(&w, e.time_ms);
			rc = check_op(&e.op, &w);
		}
		break;
	}
	case SK_WRITE_RESP:
	case SK_BATCH_RESP: {
		proto_write_resp_t r;
		uint8_t op = kind == SK_BATCH_RESP ? PROTO_OP_BATCH : PROTO_OP_PUT;
		if ((rc = proto_write_resp_decode(p, len, op, &r)) == 0)
			rc = proto_write_resp_encode(&w, op, &r);
		break;
	}
	case SK_REC: {
		proto_rec_t r;
		if ((rc = proto_rec_decode(p, len, &r)) == 0)
			rc = proto_rec_encode(&w, &r);
		break;
	}
	case SK_BUCKET_INFO: {
		proto_bucket_info_t b;
		if ((rc = proto_bucket_info_decode(p, len, &b)) == 0)
			rc = proto_bucket_info_encode(&w, &b);
		break;
	}
	case SK_STATUS: {
		proto_status_t st;
		if ((rc = proto_status_decode(p, len, &st)) == 0)
			rc = proto_status_encode(&w, &st);
		break;
	}
	case SK_HASH: {
		proto_hash_t h;
		if ((rc = proto_hash_decode(p, len, &h)) == 0)
			rc = proto_hash_encode(&w, &h);
		break;
	}
	case SK_LIST_KEYS:
	case SK_LIST_HISTORY:
	case SK_LIST_BUCKETS:
	case SK_LIST_SCAN:
		rc = check_list(kind, p, len, &w);
		break;
	case SK_WATCH_RESP: {
		proto_list_reader_t r;
		proto_list_writer_t l;
		proto_rec_t rec;
		uint64_t next;
		if ((rc = proto_watch_resp_decode(p, len, &next, &r)) != 0)
			break;
		proto_put_u64(&w, next);
		proto_list_begin(&l, &w);
		while ((rc = proto_list_next_rec(&r, &rec)) == 1) {
			proto_rec_encode(&w, &rec);
			proto_list_item_done(&l);
		}
		if (rc == 0) {
			proto_list_finish(&l, r.more);
			rc = w.err;
		}
		break;
	}
	case SK_SNAP_RESP: {
		proto_snap_resp_t r;
		if ((rc = proto_snap_resp_decode(p, len, &r)) == 0)
			rc = proto_snap_resp_encode(&w, &r);
		break;
	}
	default:
		rc = PROTO_EBADTYPE;
	}
	*relen = proto_wbuf_len(&w);
	return rc;
}
