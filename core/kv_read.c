/*
 * The read path: key encoding, record decoding, bucket lookup, and the kv_read_* / kv_get /
 * iterator / kv_read_op API. Everything here only reads; apply (kv_apply.c) shares the
 * encoders and decoders so both sides agree on the layout of kv_format.h.
 */
#include "core/kv_format.h"

#include <errno.h>
#include <xxhash.h>

#define KV_LIST_DEFAULT 1000u   /* items per list response when the request says 0 */

/* ---- layout helpers ------------------------------------------------------------------ */

size_t kv__key_enc(uint8_t *out, const uint8_t *key, size_t klen)
{
	if (klen <= KV__KEY_DIRECT) {
		memcpy(out, key, klen);
		return klen;
	}
	memcpy(out, key, KV__KEY_DIRECT);
	kv__be64(out + KV__KEY_DIRECT, XXH64(key, klen, 0));
	return KV__ENC_MAX;
}

size_t kv__hist_prefix(uint8_t *out, uint32_t bid, const uint8_t *key, size_t klen)
{
	size_t n;

	kv__be32(out, bid);
	n = kv__key_enc(out + 6, key, klen);
	out[4] = (uint8_t)(n >> 8);
	out[5] = (uint8_t)n;
	return 6 + n;
}

int kv__rec_parse(const MDB_val *v, kv__rec_t *r)
{
	const uint8_t *p = v->mv_data;
	size_t n = v->mv_size, off = KV__REC_HDR;

	if (n < KV__REC_HDR)
		return KV_ECORRUPT;
	r->rev = kv__rle64(p);
	r->create_rev = kv__rle64(p + 8);
	r->time_ms = kv__rle64(p + 16);
	r->kind = p[24] & KV__REC_KINDMASK;
	r->key = NULL;
	r->klen = 0;
	if (p[24] & KV__REC_LONGKEY) {
		if (n < off + 2)
			return KV_ECORRUPT;
		r->klen = (uint16_t)(p[off] | p[off + 1] << 8);
		off += 2;
		if (n < off + r->klen)
			return KV_ECORRUPT;
		r->key = p + off;
		off += r->klen;
	}
	if (r->kind < PROTO_REC_PUT || r->kind > PROTO_REC_PURGE || n - off > UINT32_MAX)
		return KV_ECORRUPT;
	r->value = p + off;
	r->vlen = (uint32_t)(n - off);
	return 0;
}

int kv__bucket_parse(const MDB_val *v, kv__bucket_t *b)
{
	const uint8_t *p = v->mv_data;

	if (v->mv_size < KV__BUCKET_FIXED)
		return KV_ECORRUPT;
	b->id = kv__rle32(p);
	b->history = kv__rle32(p + 4);
	b->max_value = kv__rle32(p + 8);
	b->max_age_ms = kv__rle64(p + 12);
	b->created_rev = kv__rle64(p + 20);
	b->keys = kv__rle64(p + 28);
	b->bytes = kv__rle64(p + 36);
	b->ctlen = p[44];
	if (b->ctlen > PROTO_MAX_CTYPE || v->mv_size != KV__BUCKET_FIXED + b->ctlen)
		return KV_ECORRUPT;
	memcpy(b->ct, p + KV__BUCKET_FIXED, b->ctlen);
	return 0;
}

size_t kv__bucket_format(uint8_t *p, const kv__bucket_t *b)
{
	kv__le32(p, b->id);
	kv__le32(p + 4, b->history);
	kv__le32(p + 8, b->max_value);
	kv__le64(p + 12, b->max_age_ms);
	kv__le64(p + 20, b->created_rev);
	kv__le64(p + 28, b->keys);
	kv__le64(p + 36, b->bytes);
	p[44] = b->ctlen;
	memcpy(p + KV__BUCKET_FIXED, b->ct, b->ctlen);
	return KV__BUCKET_FIXED + b->ctlen;
}

int kv__bucket_get(MDB_txn *txn, kv_store_t *s, const void *name, size_t nlen, kv__bucket_t *b)
{
	uint8_t bk[4 + PROTO_MAX_BUCKET];
	MDB_val k, v;
	int rc;

	if (!proto_bucket_valid(name, nlen))
		return KV_EBADBUCKET;
	k.mv_data = bk;
	k.mv_size = kv__bdir_key(bk, name, nlen);
	rc = kv__get(txn, s, KV__DB_MAIN, &k, &v);
	if (rc == MDB_NOTFOUND)
		return KV_ENOBUCKET;
	if (rc)
		return kv__err(rc);
	return kv__bucket_parse(&v, b);
}

int kv__latest(MDB_txn *txn, kv_store_t *s, uint32_t bid, const uint8_t *key, size_t klen,
	       MDB_val *raw, kv__rec_t *r)
{
	uint8_t kb[KV__KEYS_KEY_MAX];
	MDB_val k = {4, kb};
	int rc;

	kv__be32(kb, bid);
	k.mv_size += kv__key_enc(kb + 4, key, klen);
	rc = kv__get(txn, s, KV__DB_MAIN, &k, raw);
	if (rc == MDB_NOTFOUND)
		return KV_ENOTFOUND;
	if (rc)
		return kv__err(rc);
	if ((rc = kv__rec_parse(raw, r)))
		return rc;
	/* A long key shares its stored name with any key of the same prefix and hash. */
	if (klen > KV__KEY_DIRECT && (r->klen != klen || memcmp(r->key, key, klen) != 0))
		return KV_ENOTFOUND;
	return 0;
}

static void rec_out(const kv__rec_t *r, const void *key, size_t klen, proto_rec_t *out)
{
	out->key.p = key;
	out->key.len = (uint32_t)klen;
	out->value.p = r->value;
	out->value.len = r->vlen;
	out->rev = r->rev;
	out->create_rev = r->create_rev;
	out->time_ms = r->time_ms;
	out->kind = r->kind;
}

/* ---- read transactions ---------------------------------------------------------------- */

int kv_read_begin(kv_store_t *s, kv_rtxn_t *t)
{
	int rc;

	if (t->active)
		return -EINVAL;
	if (t->s != s) {
		if (t->txn)
			mdb_txn_abort(t->txn);
		t->txn = NULL;
		t->blen = 0;
	}
	t->s = s;
	rc = kv__rtxn_begin(s, &t->txn);
	if (rc)
		return rc;
	t->active = true;
	return 0;
}

void kv_read_end(kv_rtxn_t *t)
{
	if (!t->active)
		return;
	kv__rtxn_end(t->s, t->txn, true);
	t->active = false;
}

void kv_read_close(kv_rtxn_t *t)
{
	if (t->active) {
		kv__rtxn_end(t->s, t->txn, false);
		t->active = false;
	} else if (t->txn) {
		mdb_txn_abort(t->txn);
	}
	t->txn = NULL;
}

uint64_t kv_txn_revision(kv_rtxn_t *t)
{
	uint64_t v = 0;

	kv__meta_get64(t->txn, t->s, "revision", &v);
	return v;
}

uint64_t kv_txn_applied(kv_rtxn_t *t)
{
	uint64_t v = 0;

	kv__meta_get64(t->txn, t->s, "applied", &v);
	return v;
}

/* ---- point reads ---------------------------------------------------------------------- */

/* The retained record of a key with the greatest rev <= at (history), or KV_ENOTFOUND. */
static int hist_at(MDB_txn *txn, kv_store_t *s, uint32_t bid, const uint8_t *key, size_t klen,
		   uint64_t at, kv__rec_t *r)
{
	uint8_t hk[KV__HIST_KEY_MAX];
	size_t plen = kv__hist_prefix(hk, bid, key, klen);
	MDB_cursor *c;
	MDB_val k = {plen + 8, hk}, v;
	int rc;

	if (at == UINT64_MAX)
		return KV_ENOTFOUND;
	kv__be64(hk + plen, at + 1);
	if ((rc = mdb_cursor_open(txn, s->dbi[KV__DB_HIST], &c)))
		return kv__err(rc);
	/* First entry past the wanted revision, then one back. */
	rc = kv__cget(c, s, KV__DB_HIST, &k, &v, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		rc = kv__cget(c, s, KV__DB_HIST, &k, &v, MDB_LAST);
	else if (rc == 0)
		rc = kv__cget(c, s, KV__DB_HIST, &k, &v, MDB_PREV);
	if (rc == 0 && (k.mv_size != plen + 8 || memcmp(k.mv_data, hk, plen) != 0 ||
			kv__rbe64((uint8_t *)k.mv_data + plen) > at))
		rc = MDB_NOTFOUND;
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		return KV_ENOTFOUND;
	if (rc)
		return kv__err(rc);
	return kv__rec_parse(&v, r);
}

int kv_get_rec(kv_rtxn_t *t, const void *bucket, size_t blen, const void *key, size_t klen,
	       uint64_t rev, proto_rec_t *rec)
{
	kv__bucket_t b;
	kv__rec_t r;
	MDB_val raw;
	int rc;

	if (!proto_bucket_valid(bucket, blen))
		return KV_EBADBUCKET;
	if (!proto_key_valid(key, klen))
		return KV_EBADKEY;
	/* Hot path: the bucket this txn resolved last (see kv_rtxn_t), one search. */
	if (t->blen == blen && memcmp(t->bname, bucket, blen) == 0) {
		b.id = t->bid;
		rc = kv__latest(t->txn, t->s, b.id, key, klen, &raw, &r);
		if (rc != KV_ENOTFOUND)
			goto found;
	}
	if ((rc = kv__bucket_get(t->txn, t->s, bucket, blen, &b))) {
		t->blen = 0;
		return rc;
	}
	t->bid = b.id;
	t->blen = (uint8_t)blen;
	memcpy(t->bname, bucket, blen);
	rc = kv__latest(t->txn, t->s, b.id, key, klen, &raw, &r);
found:
	if (rc)
		return rc;
	if (rev && r.rev > rev && (rc = hist_at(t->txn, t->s, b.id, key, klen, rev, &r)))
		return rc;
	rec_out(&r, key, klen, rec);
	return 0;
}

int kv_get(kv_rtxn_t *t, const void *bucket, size_t blen, const void *key, size_t klen,
	   uint64_t rev, proto_rec_t *rec)
{
	int rc = kv_get_rec(t, bucket, blen, key, klen, rev, rec);

	if (rc == 0 && rec->kind != PROTO_REC_PUT)
		return KV_ENOTFOUND;
	return rc;
}

static void info_out(const kv__bucket_t *b, const void *name, size_t nlen, const uint8_t *ct,
		     proto_bucket_info_t *info)
{
	info->name.p = name;
	info->name.len = (uint32_t)nlen;
	info->cfg.history = b->history;
	info->cfg.max_value = b->max_value;
	info->cfg.max_age_ms = b->max_age_ms;
	info->cfg.content_type.p = ct;
	info->cfg.content_type.len = b->ctlen;
	info->keys = b->keys;
	info->bytes = b->bytes;
	info->created_rev = b->created_rev;
}

int kv_bucket_info(kv_rtxn_t *t, const void *bucket, size_t blen, proto_bucket_info_t *info)
{
	uint8_t bk[4 + PROTO_MAX_BUCKET];
	MDB_val k, v;
	kv__bucket_t b;
	int rc;

	if (!proto_bucket_valid(bucket, blen))
		return KV_EBADBUCKET;
	k.mv_data = bk;
	k.mv_size = kv__bdir_key(bk, bucket, blen);
	rc = kv__get(t->txn, t->s, KV__DB_MAIN, &k, &v);
	if (rc == MDB_NOTFOUND)
		return KV_ENOBUCKET;
	if (rc)
		return kv__err(rc);
	if ((rc = kv__bucket_parse(&v, &b)))
		return rc;
	/* Name and content type as views into the map, as kv.h promises. */
	info_out(&b, bucket, blen, (const uint8_t *)v.mv_data + KV__BUCKET_FIXED, info);
	return 0;
}

/* ---- iterators ------------------------------------------------------------------------ */

int kv_keys(kv_rtxn_t *t, const void *bucket, size_t blen, const void *prefix, size_t plen,
	    const void *after, size_t alen, size_t limit, kv_key_cb cb, void *ctx, bool *more)
{
	uint8_t start[KV__KEYS_KEY_MAX], akey[KV__KEYS_KEY_MAX];
	size_t slen, aklen = 0, n = 0;
	kv__bucket_t b;
	MDB_cursor *c;
	MDB_val k, v;
	int rc, op;

	*more = false;
	if (!proto_bucket_valid(bucket, blen))
		return KV_EBADBUCKET;
	if (!proto_prefix_valid(prefix, plen) || (alen && !proto_key_valid(after, alen)))
		return KV_EBADKEY;
	if ((rc = kv__bucket_get(t->txn, t->s, bucket, blen, &b)))
		return rc;
	/* Every key with this prefix has an encoding starting with the prefix's first
	 * KV__KEY_DIRECT bytes; beyond that only the stored full key can tell. */
	kv__be32(start, b.id);
	slen = 4 + (plen < KV__KEY_DIRECT ? plen : KV__KEY_DIRECT);
	if (slen > 4)
		memcpy(start + 4, prefix, slen - 4);
	k.mv_data = start;
	k.mv_size = slen;
	if (alen) {
		kv__be32(akey, b.id);
		aklen = 4 + kv__key_enc(akey + 4, after, alen);
		MDB_val a = {aklen, akey};
		if (mdb_cmp(t->txn, t->s->dbi[KV__DB_MAIN], &a, &k) > 0)
			k = a;
	}
	if ((rc = mdb_cursor_open(t->txn, t->s->dbi[KV__DB_MAIN], &c)))
		return kv__err(rc);
	for (op = MDB_SET_RANGE; (rc = kv__cget(c, t->s, KV__DB_MAIN, &k, &v, op)) == 0; op = MDB_NEXT) {
		kv__rec_t r;
		proto_bytes_t key;

		if (k.mv_size < slen || memcmp(k.mv_data, start, slen) != 0)
			break;
		if (aklen && k.mv_size == aklen && memcmp(k.mv_data, akey, aklen) == 0)
			continue;
		if ((rc = kv__rec_parse(&v, &r)))
			goto out;
		if (r.kind != PROTO_REC_PUT)
			continue;
		if (r.key) {
			key.p = r.key;
			key.len = r.klen;
		} else {
			key.p = (const uint8_t *)k.mv_data + 4;
			key.len = (uint32_t)(k.mv_size - 4);
		}
		if (key.len < plen || memcmp(key.p, prefix, plen) != 0)
			continue;
		if ((limit && n == limit) || cb(ctx, &key) != 0) {
			*more = true;
			break;
		}
		n++;
	}
	rc = (rc == 0 || rc == MDB_NOTFOUND) ? 0 : kv__err(rc);
out:
	mdb_cursor_close(c);
	return rc;
}

int kv_history(kv_rtxn_t *t, const void *bucket, size_t blen, const void *key, size_t klen,
	       uint64_t after_rev, size_t limit, kv_rec_cb cb, void *ctx, bool *more)
{
	uint8_t hk[KV__HIST_KEY_MAX];
	kv__bucket_t b;
	kv__rec_t r, latest;
	proto_rec_t out;
	MDB_cursor *c;
	MDB_val k, v, raw;
	size_t plen, n = 0;
	int rc, op;

	*more = false;
	if (!proto_bucket_valid(bucket, blen))
		return KV_EBADBUCKET;
	if (!proto_key_valid(key, klen))
		return KV_EBADKEY;
	if ((rc = kv__bucket_get(t->txn, t->s, bucket, blen, &b)))
		return rc;
	if ((rc = kv__latest(t->txn, t->s, b.id, key, klen, &raw, &latest)))
		return rc;
	plen = kv__hist_prefix(hk, b.id, key, klen);
	kv__be64(hk + plen, after_rev == UINT64_MAX ? after_rev : after_rev + 1);
	k.mv_data = hk;
	k.mv_size = plen + 8;
	if ((rc = mdb_cursor_open(t->txn, t->s->dbi[KV__DB_HIST], &c)))
		return kv__err(rc);
	for (op = MDB_SET_RANGE; (rc = kv__cget(c, t->s, KV__DB_HIST, &k, &v, op)) == 0; op = MDB_NEXT) {
		if (k.mv_size != plen + 8 || memcmp(k.mv_data, hk, plen) != 0)
			break;
		if ((rc = kv__rec_parse(&v, &r)))
			goto out;
		if (r.rev <= after_rev)
			continue;
		rec_out(&r, key, klen, &out);
		if ((limit && n == limit) || cb(ctx, &out) != 0) {
			*more = true;
			rc = 0;
			goto out;
		}
		n++;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		rc = kv__err(rc);
		goto out;
	}
	rc = 0;
	if (latest.rev > after_rev) {
		rec_out(&latest, key, klen, &out);
		if ((limit && n == limit) || cb(ctx, &out) != 0)
			*more = true;
	}
out:
	mdb_cursor_close(c);
	return rc;
}

int kv_buckets(kv_rtxn_t *t, const void *after, size_t alen, size_t limit, kv_bucket_cb cb,
	       void *ctx, bool *more)
{
	uint8_t ak[4 + PROTO_MAX_BUCKET];
	MDB_cursor *c;
	MDB_val k, v;
	proto_bucket_info_t info;
	kv__bucket_t b;
	size_t n = 0;
	int rc, op;

	*more = false;
	if (alen && !proto_bucket_valid(after, alen))
		return KV_EBADBUCKET;
	k.mv_data = ak;
	k.mv_size = kv__bdir_key(ak, after, alen);
	if ((rc = mdb_cursor_open(t->txn, t->s->dbi[KV__DB_MAIN], &c)))
		return kv__err(rc);
	for (op = MDB_SET_RANGE; (rc = kv__cget(c, t->s, KV__DB_MAIN, &k, &v, op)) == 0; op = MDB_NEXT) {
		const uint8_t *kp = k.mv_data;
		if (k.mv_size < 4 || memcmp(kp, "\0\0\0\0", 4) != 0)
			break;
		if (alen && k.mv_size == 4 + alen && memcmp(kp + 4, after, alen) == 0)
			continue;
		if ((rc = kv__bucket_parse(&v, &b)))
			goto out;
		info_out(&b, kp + 4, k.mv_size - 4, (const uint8_t *)v.mv_data + KV__BUCKET_FIXED, &info);
		if ((limit && n == limit) || cb(ctx, &info) != 0) {
			*more = true;
			break;
		}
		n++;
	}
	rc = (rc == 0 || rc == MDB_NOTFOUND) ? 0 : kv__err(rc);
out:
	mdb_cursor_close(c);
	return rc;
}

/* ---- kv_read_op: RESP bodies ------------------------------------------------------------ */

/*
 * List items are appended until one does not fit: that one is rolled back and the list
 * ends with more=1, keeping a byte for the trailing `more` flag.
 */
typedef struct list_ctx {
	proto_wbuf_t *w;
	proto_list_writer_t lw;
	bool overflow;
} list_ctx_t;

static int list_fit(list_ctx_t *lc, uint8_t *mark)
{
	proto_wbuf_t *w = lc->w;

	if (w->err || w->end - w->p < 1) {
		w->p = mark;
		w->err = 0;
		lc->overflow = true;
		return 1;
	}
	proto_list_item_done(&lc->lw);
	return 0;
}

static int list_key(void *ctx, const proto_bytes_t *key)
{
	list_ctx_t *lc = ctx;
	uint8_t *mark = lc->w->p;

	proto_put_bytes(lc->w, 2, key->p, key->len);
	return list_fit(lc, mark);
}

static int list_rec(void *ctx, const proto_rec_t *rec)
{
	list_ctx_t *lc = ctx;
	uint8_t *mark = lc->w->p;

	proto_rec_encode(lc->w, rec);
	return list_fit(lc, mark);
}

static int list_bucket(void *ctx, const proto_bucket_info_t *info)
{
	list_ctx_t *lc = ctx;
	uint8_t *mark = lc->w->p;

	proto_bucket_info_encode(lc->w, info);
	return list_fit(lc, mark);
}

/* SCAN: each live key of the listing, with its latest record. */
typedef struct scan_ctx {
	list_ctx_t *lc;
	kv_rtxn_t *t;
	const proto_op_t *op;
	int err;
} scan_ctx_t;

static int scan_key(void *ctx, const proto_bytes_t *key)
{
	scan_ctx_t *sc = ctx;
	proto_rec_t rec;
	int rc = kv_get(sc->t, sc->op->bucket.p, sc->op->bucket.len, key->p, key->len, 0, &rec);

	if (rc == KV_ENOTFOUND)
		return 0;
	if (rc != 0) {
		sc->err = rc;
		return 1;
	}
	return list_rec(sc->lc, &rec);
}

int kv_read_op(kv_rtxn_t *t, const proto_op_t *op, proto_wbuf_t *w)
{
	uint8_t *start = w->p;
	size_t limit = op->limit ? op->limit : KV_LIST_DEFAULT;
	list_ctx_t lc = {.w = w};
	proto_bucket_info_t info;
	proto_rec_t rec;
	bool more = false;
	int rc;

	if (w->err)
		return w->err;
	switch (op->op) {
	case PROTO_OP_GET:
		if ((rc = kv_get(t, op->bucket.p, op->bucket.len, op->key.p, op->key.len, op->rev, &rec)))
			goto fail;
		rc = proto_rec_encode(w, &rec);
		break;
	case PROTO_OP_BUCKET_INFO:
		if ((rc = kv_bucket_info(t, op->bucket.p, op->bucket.len, &info)))
			goto fail;
		rc = proto_bucket_info_encode(w, &info);
		break;
	case PROTO_OP_KEYS:
	case PROTO_OP_HISTORY:
	case PROTO_OP_BUCKET_LIST:
	case PROTO_OP_SCAN:
	case PROTO_OP_WATCH: {
		uint8_t *next_at = w->p;
		uint64_t next = 0;
		if (op->op == PROTO_OP_WATCH)
			proto_put_u64(w, 0); /* next_rev, patched below */
		if ((op->op == PROTO_OP_WATCH || op->op == PROTO_OP_SCAN) &&
		    !proto_prefix_valid(op->key.p, op->key.len)) {
			rc = KV_EBADKEY;
			goto fail;
		}
		proto_list_begin(&lc.lw, w);
		if (w->err || w->end - w->p < 1) {
			rc = PROTO_ETOOBIG;
			goto fail;
		}
		if (op->op == PROTO_OP_KEYS)
			rc = kv_keys(t, op->bucket.p, op->bucket.len, op->key.p, op->key.len,
				     op->after.p, op->after.len, limit, list_key, &lc, &more);
		else if (op->op == PROTO_OP_HISTORY)
			rc = kv_history(t, op->bucket.p, op->bucket.len, op->key.p, op->key.len,
					op->rev, limit, list_rec, &lc, &more);
		else if (op->op == PROTO_OP_SCAN) {
			scan_ctx_t sc = {&lc, t, op, 0};
			rc = kv_keys(t, op->bucket.p, op->bucket.len, op->key.p, op->key.len,
				     op->after.p, op->after.len, limit, scan_key, &sc, &more);
			if (rc == 0)
				rc = sc.err;
		} else if (op->op == PROTO_OP_WATCH)
			/* at most 100,000 revisions looked at per answer: a watch of a quiet
			 * bucket in a busy store still answers fast, and resumes from next */
			rc = kv_changes(t, op->bucket.p, op->bucket.len, op->key.p, op->key.len,
					op->rev, limit, 100000, list_rec, &lc, &next, &more);
		else
			rc = kv_buckets(t, op->after.p, op->after.len, limit, list_bucket, &lc, &more);
		if (rc)
			goto fail;
		if (op->op == PROTO_OP_WATCH)
			for (int i = 0; i < 8; i++)
				next_at[i] = (uint8_t)(next >> (8 * i));
		/* Not even one item fit: more=1 with nothing would make a client loop forever. */
		if (lc.overflow && lc.lw.count == 0) {
			rc = PROTO_ETOOBIG;
			goto fail;
		}
		proto_list_finish(&lc.lw, more);
		rc = w->err;
		break;
	}
	default:
		rc = PROTO_EBADTYPE;
		goto fail;
	}
	if (rc == 0)
		return 0;
fail:
	/* Leave w as it was, so the caller can encode an ERROR in its place. */
	w->p = start;
	w->err = 0;
	return rc;
}

/* ---- expiry ------------------------------------------------------------------------- */

int kv_expired(kv_store_t *s, uint64_t now_ms, size_t limit, kv_expired_cb cb, void *ctx)
{
	MDB_txn *txn = NULL;
	MDB_cursor *c = NULL;
	MDB_val k, v, nv = {0, NULL};
	uint32_t last_bid = 0;
	int rc, op, found = 0;

	if ((rc = kv__rtxn_begin(s, &txn)))
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[KV__DB_TTL], &c))) {
		rc = kv__err(rc);
		goto out;
	}
	for (op = MDB_FIRST; (rc = kv__cget(c, s, KV__DB_TTL, &k, &v, op)) == 0; op = MDB_NEXT) {
		const uint8_t *kp = k.mv_data, *vp = v.mv_data;
		proto_bytes_t bucket, key;
		uint32_t bid;

		if (k.mv_size != 16 || v.mv_size < 5) {
			rc = KV_ECORRUPT;
			goto out;
		}
		if (kv__rbe64(kp) > now_ms || (limit && (size_t)found == limit))
			break;
		bid = kv__rbe32(vp);
		if (bid != last_bid || !nv.mv_data) {
			uint8_t bk[4];
			MDB_val bv = {4, bk};

			kv__be32(bk, bid);
			if ((rc = kv__get(txn, s, KV__DB_BIDS, &bv, &nv))) {
				rc = rc == MDB_NOTFOUND ? KV_ECORRUPT : kv__err(rc);
				goto out;
			}
			last_bid = bid;
		}
		bucket.p = nv.mv_data;
		bucket.len = (uint32_t)nv.mv_size;
		key.p = vp + 4;
		key.len = (uint32_t)(v.mv_size - 4);
		cb(ctx, &bucket, &key, kv__rbe64(kp + 8));
		found++;
	}
	rc = (rc == 0 || rc == MDB_NOTFOUND) ? found : kv__err(rc);
out:
	if (c)
		mdb_cursor_close(c);
	kv__rtxn_end(s, txn, false);
	return rc;
}
