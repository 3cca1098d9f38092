/*
 * kv_apply: the only write path. A pure function of (store, committed entries): no clock,
 * no randomness, no iteration over anything unordered, so the same log gives the same store
 * on every node (kv_format.h has the layout it maintains).
 *
 * Invariants kept by every op (tests/core check them through the API):
 *   - keys holds one record per key ever written and not since purged-and-bucket-deleted;
 *     a key's retained records (keys + hist) number at most the bucket's history depth.
 *   - revs has exactly one item (in one of its runs) per retained record; ttl exactly one
 *     entry per live PUT record of a bucket with a max age.
 *   - the bucket record's keys/bytes count live PUT records and their value bytes.
 *   - an op that breaks a rule writes nothing: every check happens before the first write.
 *
 * Throughput: one write txn per kv_apply call; bucket records (looked up for every op,
 * updated by every put) live in a per-call cache and are written once before commit; a
 * batch of plain PUTs is checked first and then applied without a nested txn, since it can
 * no longer fail a rule. Other batches run in a nested txn that is aborted on the first
 * failing op.
 */
#include "core/kv_format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "proto/log.h"

typedef struct apply {
	kv_store_t *s;
	MDB_txn *txn;          /* the call's txn, or a batch's nested txn */
	MDB_cursor *cur;       /* on main in txn, opened on first use (no malloc per op) */
	MDB_cursor *rcur;      /* on revs in txn, opened on first use: see revs_flush */
	uint64_t time_ms;      /* the entry's leader time */
} apply_t;

/* Errors that mean "this op breaks a rule": reported per op, deterministic, not fatal. */
static bool rule_err(int rc)
{
	switch (rc) {
	case KV_ENOTFOUND: case KV_EEXIST: case KV_EREVISION: case KV_EBADKEY:
	case KV_EBADBUCKET: case KV_ENOBUCKET: case KV_EBUCKETEXISTS: case KV_ETOOBIG:
	case KV_EBADCONFIG:
		return true;
	default:
		return false;
	}
}

static int scratch_reserve(kv_store_t *s, size_t n)
{
	if (n <= s->scratch_cap)
		return 0;
	size_t cap = s->scratch_cap ? s->scratch_cap : 4096;
	while (cap < n)
		cap *= 2;
	uint8_t *p = realloc(s->scratch, cap);
	if (!p)
		return -ENOMEM;
	s->scratch = p;
	s->scratch_cap = cap;
	return 0;
}

/* ---- bucket cache ---------------------------------------------------------------------- */

static int bc_flush(apply_t *a)
{
	kv_store_t *s = a->s;
	uint8_t buf[KV__BUCKET_FIXED + PROTO_MAX_CTYPE], bk[4 + PROTO_MAX_BUCKET];

	for (unsigned i = 0; i < s->nbcache; i++) {
		kv__bcache_t *e = &s->bcache[i];
		if (!e->dirty)
			continue;
		MDB_val k = {kv__bdir_key(bk, e->name, e->nlen), bk};
		MDB_val v = {kv__bucket_format(buf, &e->b), buf};
		int rc = kv__put(a->txn, s, KV__DB_MAIN, &k, &v, 0);
		if (rc)
			return kv__err(rc);
		e->dirty = false;
	}
	return 0;
}

/*
 * The cache entry for a bucket name (loaded on a miss, absent buckets included).
 * Returns 0 with *out set, KV_EBADBUCKET, or a storage error.
 */
static int bc_find(apply_t *a, const proto_bytes_t *name, kv__bcache_t **out)
{
	kv_store_t *s = a->s;
	uint8_t bk[4 + PROTO_MAX_BUCKET];
	kv__bcache_t *e;
	int rc;

	if (!proto_bucket_valid(name->p, name->len))
		return KV_EBADBUCKET;
	for (unsigned i = 0; i < s->nbcache; i++) {
		e = &s->bcache[i];
		if (e->nlen == name->len && memcmp(e->name, name->p, name->len) == 0) {
			*out = e;
			return 0;
		}
	}
	if (s->nbcache == KV__BCACHE_MAX) {
		if ((rc = bc_flush(a)))
			return rc;
		s->nbcache = 0;
	}
	e = &s->bcache[s->nbcache];
	memset(e, 0, sizeof *e);
	memcpy(e->name, name->p, name->len);
	e->nlen = (uint8_t)name->len;
	MDB_val k = {kv__bdir_key(bk, name->p, name->len), bk}, v;
	rc = kv__get(a->txn, s, KV__DB_MAIN, &k, &v);
	if (rc == 0) {
		if ((rc = kv__bucket_parse(&v, &e->b)))
			return rc;
		e->exists = true;
	} else if (rc != MDB_NOTFOUND) {
		return kv__err(rc);
	}
	s->nbcache++;
	*out = e;
	return 0;
}

/* ---- index maintenance ----------------------------------------------------------------- */

static int revs_cursor(apply_t *a)
{
	int rc;

	if (!a->rcur && (rc = mdb_cursor_open(a->txn, a->s->dbi[KV__DB_REVS], &a->rcur)))
		return kv__err(rc);
	return 0;
}

/*
 * The revision index holds runs (kv_format.h): the revisions one entry (an op or a batch)
 * indexes are collected in s->run and written as one revs record of up to KV__RUN_MAX bytes,
 * when the run is full and at the end of the entry (revs_flush), so runs never depend on how
 * entries were grouped into kv_apply calls. One LMDB append per run instead of one per
 * revision: an append costs ~770 instructions even through a kept cursor (LMDB's append path
 * re-walks the tree's right edge each time) against ~30 to add an item to the run.
 *
 * Runs only grow at the end: MDB_APPEND, through one cursor kept open for the txn (it keeps
 * its root page and setup). Every revs write of the txn goes through this cursor, so its
 * position never depends on LMDB fixing it up after another cursor's write.
 */
static int revs_flush(apply_t *a)
{
	kv_store_t *s = a->s;
	uint8_t kb[8];
	MDB_val k = {8, kb}, v = {s->run_len, s->run};
	int rc;

	if (!s->run_len)
		return 0;
	if ((rc = revs_cursor(a)))
		return rc;
	kv__be64(kb, s->run_rev);
	s->run_len = 0;
	if ((rc = kv__cput(a->rcur, KV__DB_REVS, &k, &v, MDB_APPEND)))
		return rc == MDB_KEYEXIST ? KV_ECORRUPT : kv__err(rc);
	return 0;
}

static int revs_put(apply_t *a, uint64_t rev, uint32_t bid, const proto_bytes_t *key)
{
	kv_store_t *s = a->s;
	size_t n = KV__RUN_ITEM + key->len;
	uint8_t *p;
	int rc;

	if (s->run_len && (s->run_len + n > KV__RUN_MAX || rev - s->run_rev > 0xffff) &&
	    (rc = revs_flush(a)))
		return rc;
	if (!s->run_len)
		s->run_rev = rev;
	p = s->run + s->run_len;
	p[0] = (uint8_t)(rev - s->run_rev);
	p[1] = (uint8_t)((rev - s->run_rev) >> 8);
	p[2] = (uint8_t)key->len;
	p[3] = (uint8_t)(key->len >> 8);
	kv__be32(p + 4, bid);
	memcpy(p + 8, key->p, key->len);
	s->run_len += n;
	return 0;
}

/* The item of revision rev in run (base = the run's key): its offset, or -1. */
static long run_find(const uint8_t *run, size_t len, uint64_t base, uint64_t rev)
{
	size_t off = 0;

	while (off + KV__RUN_ITEM <= len) {
		uint64_t r = base + (run[off] | (uint32_t)run[off + 1] << 8);
		size_t n = KV__RUN_ITEM + (run[off + 2] | (size_t)run[off + 3] << 8);
		if (r == rev)
			return off + n <= len ? (long)off : -1;
		if (r > rev)
			return -1;
		off += n;
	}
	return -1;
}

static size_t run_item_len(const uint8_t *item)
{
	return KV__RUN_ITEM + (item[2] | (size_t)item[3] << 8);
}

/* Drop revision rev from the revision index: from the open run, or from its stored run (the
 * run is rewritten without it, or deleted when it was the last). Absent: nothing to do. */
static int revs_del(apply_t *a, uint64_t rev)
{
	kv_store_t *s = a->s;
	uint8_t kb[8], buf[KV__RUN_BUF];
	MDB_val k = {8, kb}, v;
	uint64_t base;
	long at;
	size_t n;
	int rc;

	if (s->run_len && rev >= s->run_rev) {
		/* Revisions from the open run's base up can only be in it (stored runs hold
		 * lower ones, earlier runs of this entry included). */
		if ((at = run_find(s->run, s->run_len, s->run_rev, rev)) >= 0) {
			n = run_item_len(s->run + at);
			memmove(s->run + at, s->run + at + n, s->run_len - (size_t)at - n);
			s->run_len -= n;
		}
		return 0;
	}
	if ((rc = revs_cursor(a)))
		return rc;
	/* The run holding rev is the last one whose key is <= rev. */
	kv__be64(kb, rev);
	rc = kv__cget(a->rcur, s, KV__DB_REVS, &k, &v, MDB_SET_RANGE);
	if (rc == 0 && (k.mv_size != 8 || kv__rbe64(k.mv_data) != rev))
		rc = kv__cget(a->rcur, s, KV__DB_REVS, &k, &v, MDB_PREV);
	else if (rc == MDB_NOTFOUND)
		rc = kv__cget(a->rcur, s, KV__DB_REVS, &k, &v, MDB_LAST);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return kv__err(rc);
	if (k.mv_size != 8 || v.mv_size > sizeof buf)
		return KV_ECORRUPT;
	base = kv__rbe64(k.mv_data);
	if (base > rev || (at = run_find(v.mv_data, v.mv_size, base, rev)) < 0)
		return 0;
	n = run_item_len((uint8_t *)v.mv_data + at);
	if (n == v.mv_size) {
		rc = mdb_cursor_del(a->rcur, 0);
		return kv__err(rc);
	}
	/* k and v point into the page the rewrite changes: build the shorter run aside. */
	memcpy(kb, k.mv_data, 8);
	k.mv_data = kb;
	memcpy(buf, v.mv_data, (size_t)at);
	memcpy(buf + at, (uint8_t *)v.mv_data + at + n, v.mv_size - (size_t)at - n);
	v.mv_data = buf;
	v.mv_size -= n;
	rc = kv__cput(a->rcur, KV__DB_REVS, &k, &v, MDB_CURRENT);
	return kv__err(rc);
}

static uint64_t expire_at(uint64_t time_ms, uint64_t max_age)
{
	return time_ms > UINT64_MAX - max_age ? UINT64_MAX : time_ms + max_age;
}

static int ttl_put(apply_t *a, const kv__bucket_t *b, uint64_t rev, uint64_t time_ms,
		   const proto_bytes_t *key)
{
	uint8_t kb[16];
	MDB_val k = {16, kb}, v = {4 + key->len, NULL};
	int rc;

	kv__be64(kb, expire_at(time_ms, b->max_age_ms));
	kv__be64(kb + 8, rev);
	if ((rc = kv__reserve(a->txn, a->s, KV__DB_TTL, &k, &v, 0)))
		return kv__err(rc);
	kv__be32(v.mv_data, b->id);
	memcpy((uint8_t *)v.mv_data + 4, key->p, key->len);
	kv__seal(KV__DB_TTL, &k, &v);
	return 0;
}

static int ttl_del(apply_t *a, const kv__bucket_t *b, uint64_t rev, uint64_t time_ms)
{
	uint8_t kb[16];
	MDB_val k = {16, kb};
	int rc;

	kv__be64(kb, expire_at(time_ms, b->max_age_ms));
	kv__be64(kb + 8, rev);
	rc = mdb_del(a->txn, a->s->dbi[KV__DB_TTL], &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : kv__err(rc);
}

/*
 * Drop the oldest history entries of a key (hist prefix hk/plen) until at most `keep` remain,
 * with their revision index entries. Re-seeks after each delete rather than trusting a cursor
 * position across deletes and writes to other databases.
 */
static int hist_trim(apply_t *a, const uint8_t *hk, size_t plen, size_t keep)
{
	MDB_cursor *c;
	MDB_val k, v;
	size_t count = 0;
	int rc;

	if ((rc = mdb_cursor_open(a->txn, a->s->dbi[KV__DB_HIST], &c)))
		return kv__err(rc);
	if (keep) {
		k.mv_data = (void *)hk;
		k.mv_size = plen;
		for (int op = MDB_SET_RANGE; (rc = mdb_cursor_get(c, &k, &v, op)) == 0; op = MDB_NEXT) {
			if (k.mv_size != plen + 8 || memcmp(k.mv_data, hk, plen) != 0)
				break;
			count++;
		}
		if (rc && rc != MDB_NOTFOUND)
			goto out;
		if (count <= keep) {
			rc = 0;
			goto out;
		}
	}
	for (;;) {
		uint64_t rev;

		if (keep && count <= keep) {
			rc = 0;
			break;
		}
		k.mv_data = (void *)hk;
		k.mv_size = plen;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != plen + 8 ||
						       memcmp(k.mv_data, hk, plen) != 0))) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		rev = kv__rbe64((uint8_t *)k.mv_data + plen);
		if ((rc = mdb_cursor_del(c, 0)) || (rc = revs_del(a, rev)))
			break;
		count--;
	}
out:
	mdb_cursor_close(c);
	return kv__err(rc);
}

/* ---- key ops ------------------------------------------------------------------------ */

/* Stateless checks of a key op: names, key, bucket existence, value size. */
static int key_check(apply_t *a, const proto_op_t *op, kv__bcache_t **bc)
{
	int rc;

	if (!proto_bucket_valid(op->bucket.p, op->bucket.len))
		return KV_EBADBUCKET;
	if (!proto_key_valid(op->key.p, op->key.len))
		return KV_EBADKEY;
	if ((rc = bc_find(a, &op->bucket, bc)))
		return rc;
	if (!(*bc)->exists)
		return KV_ENOBUCKET;
	if (op->op <= PROTO_OP_UPDATE && op->value.len > (*bc)->b.max_value)
		return KV_ETOOBIG;
	return 0;
}

/* bc: the op's bucket when key_check already passed (plain batches), else NULL. */
static int key_write(apply_t *a, const proto_op_t *op, kv__bcache_t *bc, uint64_t *rev_out)
{
	kv_store_t *s = a->s;
	kv__bucket_t *b;
	uint8_t kb[KV__KEYS_KEY_MAX], hk[KV__HIST_KEY_MAX];
	MDB_val k = {4, kb}, old, d;
	kv__rec_t o;
	bool found = false, inserted = false, live, longk = op->key.len > KV__KEY_DIRECT;
	bool blind = op->op == PROTO_OP_PUT || op->op == PROTO_OP_CREATE ||
		     (op->op == PROTO_OP_UPDATE && op->rev == 0);
	uint64_t cur, rev, orev = 0, otime = 0;
	uint32_t ovlen = 0;
	uint8_t okind = 0, kind;
	size_t hplen = 0, vlen, rlen;
	uint8_t *p;
	int rc;

	if (!bc && (rc = key_check(a, op, &bc)))
		return rc;
	b = &bc->b;
	kv__be32(kb, b->id);
	k.mv_size += kv__key_enc(kb + 4, op->key.p, op->key.len);
	kind = op->op == PROTO_OP_DELETE ? PROTO_REC_DEL :
	       op->op == PROTO_OP_PURGE ? PROTO_REC_PURGE : PROTO_REC_PUT;
	vlen = kind == PROTO_REC_PUT ? op->value.len : 0;
	rlen = KV__REC_HDR + (longk ? 2 + op->key.len : 0) + vlen;
	rev = s->wrev + 1;
	if (!a->cur && (rc = mdb_cursor_open(a->txn, s->dbi[KV__DB_MAIN], &a->cur)))
		return kv__err(rc);

	/*
	 * One B-tree search whatever the outcome: for an op that may go ahead on an absent key,
	 * insert-if-absent reserves the new record; if the key exists LMDB returns its record
	 * and leaves the cursor on it, for the checks below and an in-place replace.
	 */
	if (blind) {
		d.mv_size = rlen;
		rc = kv__creserve(a->cur, &k, &d, MDB_NOOVERWRITE);
		if (rc == 0)
			inserted = true;
		else if (rc == MDB_KEYEXIST && (rc = kv__check(s, KV__DB_MAIN, &k, &d)) == 0)
			old = d, rc = MDB_KEYEXIST;
		else
			return kv__err(rc);
	} else {
		/* MDB_SET, not MDB_SET_KEY: k must keep pointing at our bytes, not into the page */
		rc = kv__cget(a->cur, s, KV__DB_MAIN, &k, &old, MDB_SET);
		if (rc && rc != MDB_NOTFOUND)
			return kv__err(rc);
	}
	if ((rc == 0 && !inserted) || rc == MDB_KEYEXIST) {
		if ((rc = kv__rec_parse(&old, &o)))
			return rc;
		if (longk && (o.klen != op->key.len || memcmp(o.key, op->key.p, o.klen) != 0))
			return KV_EBADKEY; /* 64-bit hash collision of two long keys: refuse */
		found = true;
	}
	cur = found ? o.rev : 0;
	live = found && o.kind == PROTO_REC_PUT;
	switch (op->op) {
	case PROTO_OP_CREATE:
		if (live)
			return KV_EEXIST;
		break;
	case PROTO_OP_UPDATE:
		/* An absent key's revision is 0, as in NATS's expected-last-sequence. */
		if (cur != op->rev)
			return KV_EREVISION;
		break;
	case PROTO_OP_DELETE:
		if (op->rev && cur != op->rev)
			return KV_EREVISION;
		if (!live)
			return KV_ENOTFOUND;
		break;
	case PROTO_OP_PURGE:
		if (op->rev && cur != op->rev)
			return KV_EREVISION;
		if (!found || o.kind == PROTO_REC_PURGE)
			return KV_ENOTFOUND;
		break;
	default:
		break;
	}

	/* All rules passed: from here on the op is applied. */
	s->wrev = rev;
	if (found) {
		orev = o.rev;
		otime = o.time_ms;
		okind = o.kind;
		ovlen = o.vlen;
		if (b->history > 1 && kind != PROTO_REC_PURGE) {
			/* The replace below may reuse `old`'s bytes: keep a copy for history. */
			if ((rc = scratch_reserve(s, old.mv_size)))
				return rc;
			memcpy(s->scratch, old.mv_data, old.mv_size);
		}
		d.mv_size = rlen;
		if ((rc = kv__creserve(a->cur, &k, &d, MDB_CURRENT)))
			return kv__err(rc);
	} else if (!inserted) {
		d.mv_size = rlen;
		if ((rc = kv__creserve(a->cur, &k, &d, 0)))
			return kv__err(rc);
	}
	/* Fill the reserved record now: a later write may spill the dirty page it lives in. */
	p = d.mv_data;
	kv__le64(p, rev);
	kv__le64(p + 8, kind != PROTO_REC_PUT ? 0 : live ? o.create_rev : rev);
	kv__le64(p + 16, a->time_ms);
	p[24] = kind | (longk ? KV__REC_LONGKEY : 0);
	p += KV__REC_HDR;
	if (longk) {
		p[0] = (uint8_t)op->key.len;
		p[1] = (uint8_t)(op->key.len >> 8);
		memcpy(p + 2, op->key.p, op->key.len);
		p += 2 + op->key.len;
	}
	if (vlen)
		memcpy(p, op->value.p, vlen);
	kv__seal(KV__DB_MAIN, &k, &d);

	if (found) {
		if (okind == PROTO_REC_PUT) {
			b->keys--;
			b->bytes -= ovlen;
			if (b->max_age_ms && (rc = ttl_del(a, b, orev, otime)))
				return rc;
		}
		if (b->history > 1 || kind == PROTO_REC_PURGE)
			hplen = kv__hist_prefix(hk, b->id, op->key.p, op->key.len);
		if (kind == PROTO_REC_PURGE) {
			if ((rc = hist_trim(a, hk, hplen, 0)) || (rc = revs_del(a, orev)))
				return rc;
		} else if (b->history > 1) {
			MDB_val hkv = {hplen + 8, hk}, hv = {old.mv_size, s->scratch};
			kv__be64(hk + hplen, orev);
			if ((rc = kv__put(a->txn, s, KV__DB_HIST, &hkv, &hv, 0)))
				return kv__err(rc);
			if ((rc = hist_trim(a, hk, hplen, b->history - 1)))
				return rc;
		} else if ((rc = revs_del(a, orev))) {
			return rc;
		}
	}
	if ((rc = revs_put(a, rev, b->id, &op->key)))
		return rc;
	if (kind == PROTO_REC_PUT) {
		b->keys++;
		b->bytes += vlen;
		if (b->max_age_ms && (rc = ttl_put(a, b, rev, a->time_ms, &op->key)))
			return rc;
	}
	bc->dirty = true;
	*rev_out = rev;
	return 0;
}

/* ---- bucket ops ---------------------------------------------------------------------- */

static bool ctype_valid(const proto_bytes_t *ct)
{
	/* It goes into an HTTP header as is: printable ASCII only, no CR/LF injection. */
	for (uint32_t i = 0; i < ct->len; i++)
		if (ct->p[i] < 0x20 || ct->p[i] > 0x7e)
			return false;
	return true;
}

static int bucket_add(apply_t *a, const proto_op_t *op, uint64_t *rev_out)
{
	kv_store_t *s = a->s;
	const proto_bucket_cfg_t *cfg = &op->cfg;
	uint32_t history = cfg->history ? cfg->history : 1;
	uint32_t max_value = cfg->max_value ? cfg->max_value : PROTO_DEFAULT_MAX_VALUE;
	kv__bcache_t *bc;
	uint64_t next;
	int rc;

	if ((rc = bc_find(a, &op->bucket, &bc)))
		return rc;
	if (history > PROTO_MAX_HISTORY || cfg->content_type.len > PROTO_MAX_CTYPE ||
	    !ctype_valid(&cfg->content_type))
		return KV_EBADCONFIG;
	if (bc->exists) {
		kv__bucket_t *b = &bc->b;
		/* Adding the same bucket again is a no-op (idempotent retries); changing it is not. */
		if (b->history != history || b->max_value != max_value ||
		    b->max_age_ms != cfg->max_age_ms || b->ctlen != cfg->content_type.len ||
		    memcmp(b->ct, cfg->content_type.p, b->ctlen) != 0)
			return KV_EBUCKETEXISTS;
		*rev_out = b->created_rev;
		return 0;
	}
	if ((rc = kv__meta_get64(a->txn, s, "next_bucket", &next)))
		return rc;
	if (next == 0 || next >= KV__BID_SESS)
		return KV_EBADCONFIG; /* 500 million buckets created: no ids left */
	uint8_t idb[4];
	MDB_val k = {4, idb}, v = {op->bucket.len, (void *)op->bucket.p};
	kv__be32(idb, (uint32_t)next);
	if ((rc = kv__put(a->txn, s, KV__DB_BIDS, &k, &v, 0)))
		return kv__err(rc);
	if ((rc = kv__meta_put64(a->txn, s, "next_bucket", next + 1)))
		return rc;
	memset(&bc->b, 0, sizeof bc->b);
	bc->b.id = (uint32_t)next;
	bc->b.history = history;
	bc->b.max_value = max_value;
	bc->b.max_age_ms = cfg->max_age_ms;
	bc->b.created_rev = *rev_out = ++s->wrev;
	bc->b.ctlen = (uint8_t)cfg->content_type.len;
	memcpy(bc->b.ct, cfg->content_type.p, cfg->content_type.len);
	bc->exists = true;
	bc->dirty = true;
	return 0;
}

/* Delete every entry of db whose key starts with pre (plen bytes), calling each(a, k, v)
 * first so the indexes pointing at it can be cleaned. */
static int range_drop(apply_t *a, int db, const uint8_t *pre, size_t plen, const kv__bucket_t *b)
{
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(a->txn, a->s->dbi[db], &c)))
		return kv__err(rc);
	for (;;) {
		kv__rec_t r;

		k.mv_data = (void *)pre;
		k.mv_size = plen;
		rc = kv__cget(c, a->s, (unsigned)db, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size < plen || memcmp(k.mv_data, pre, plen)))) {
			rc = 0;
			break;
		}
		if (rc) {
			rc = kv__err(rc);
			break;
		}
		if ((rc = kv__rec_parse(&v, &r)))
			break;
		if ((rc = mdb_cursor_del(c, 0))) {
			rc = kv__err(rc);
			break;
		}
		if ((rc = revs_del(a, r.rev)))
			break;
		if (db == KV__DB_MAIN && r.kind == PROTO_REC_PUT && b->max_age_ms &&
		    (rc = ttl_del(a, b, r.rev, r.time_ms)))
			break;
	}
	mdb_cursor_close(c);
	return rc;
}

static int bucket_del(apply_t *a, const proto_op_t *op, uint64_t *rev_out)
{
	kv_store_t *s = a->s;
	kv__bcache_t *bc;
	uint8_t pre[4];
	int rc;

	if ((rc = bc_find(a, &op->bucket, &bc)))
		return rc;
	if (!bc->exists)
		return KV_ENOBUCKET;
	kv__be32(pre, bc->b.id);
	if ((rc = range_drop(a, KV__DB_MAIN, pre, 4, &bc->b)) ||
	    (rc = range_drop(a, KV__DB_HIST, pre, 4, &bc->b)))
		return rc;
	uint8_t bk[4 + PROTO_MAX_BUCKET];
	MDB_val k = {kv__bdir_key(bk, op->bucket.p, op->bucket.len), bk}, idk = {4, pre};
	rc = mdb_del(a->txn, s->dbi[KV__DB_MAIN], &k, NULL);
	if (rc && rc != MDB_NOTFOUND) /* absent when added earlier in this call */
		return kv__err(rc);
	if ((rc = mdb_del(a->txn, s->dbi[KV__DB_BIDS], &idk, NULL)) && rc != MDB_NOTFOUND)
		return kv__err(rc);
	bc->exists = false;
	bc->dirty = false;
	*rev_out = ++s->wrev;
	return 0;
}

static int op_apply(apply_t *a, const proto_op_t *op, uint64_t *rev)
{
	switch (op->op) {
	case PROTO_OP_BUCKET_ADD:
		return bucket_add(a, op, rev);
	case PROTO_OP_BUCKET_DEL:
		return bucket_del(a, op, rev);
	case PROTO_OP_PUT: case PROTO_OP_CREATE: case PROTO_OP_UPDATE:
	case PROTO_OP_DELETE: case PROTO_OP_PURGE:
		return key_write(a, op, NULL, rev);
	default:
		return KV_EBADCONFIG; /* unreachable: entries were checked by decode_all */
	}
}

/* ---- batches -------------------------------------------------------------------------- */

/* A PUT of a plain batch, kept from the check pass for the write pass. */
struct kv__plain {
	proto_bytes_t bucket, key, value;
};

static bool same_bucket(const kv__bcache_t *bc, const proto_bytes_t *name)
{
	return bc && bc->nlen == name->len && memcmp(bc->name, name->p, name->len) == 0;
}

static int batch_apply(apply_t *a, const proto_op_t *batch, kv_result_t *res)
{
	kv_store_t *s = a->s;
	MDB_txn *parent = a->txn, *child = NULL;
	proto_batch_iter_t it;
	proto_op_t op;
	kv__bcache_t *bc = NULL;
	uint64_t rev, saved_rev = s->wrev;
	unsigned saved_n;
	uint32_t i = 0, bad_at = 0;
	size_t np = 0;
	int rc, bad_rc = 0;
	bool plain = true;

	/*
	 * Pass 1 decodes every op (an undecodable batch fails the whole call, so nothing of it
	 * may be applied first) and checks the ops while the batch looks plain: PUTs of short
	 * keys, which cannot fail a rule once key_check passed. Such a batch is then written
	 * without a nested txn (pass 2) from the ops kept here, not decoded again; the bucket
	 * cache is not touched by the checks except for loads, so a refused plain batch leaves
	 * nothing behind. Consecutive ops mostly share a bucket: then only the key and the
	 * value size are checked (the same rules, in key_check's order).
	 */
	proto_batch_iter_init(&it, batch);
	for (i = 0; (rc = proto_batch_next(&it, &op)) == 1; i++) {
		if (!plain || bad_rc)
			continue;
		if (op.op != PROTO_OP_PUT || op.key.len > KV__KEY_DIRECT) {
			plain = false;
			continue;
		}
		if (same_bucket(bc, &op.bucket))
			rc = !proto_key_valid(op.key.p, op.key.len) ? KV_EBADKEY :
			     op.value.len > bc->b.max_value ? KV_ETOOBIG : 0;
		else
			rc = key_check(a, &op, &bc);
		if (rc) {
			if (!rule_err(rc))
				return rc;
			bad_rc = rc;
			bad_at = i;
			continue;
		}
		if (np == s->plain_cap) {
			size_t cap = s->plain_cap ? s->plain_cap * 2 : 1024;
			struct kv__plain *p = realloc(s->plain, cap * sizeof *p);
			if (!p)
				return -ENOMEM;
			s->plain = p;
			s->plain_cap = cap;
		}
		s->plain[np].bucket = op.bucket;
		s->plain[np].key = op.key;
		s->plain[np].value = op.value;
		np++;
	}
	if (rc != 0)
		return KV_ECORRUPT;
	if (plain && bad_rc) {
		i = bad_at;
		rc = bad_rc;
		goto failed;
	}
	if (plain) {
		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_PUT;
		bc = NULL;
		for (i = 0; i < np; i++) {
			const struct kv__plain *p = &s->plain[i];
			if (!same_bucket(bc, &p->bucket) && (rc = bc_find(a, &p->bucket, &bc)))
				return rule_err(rc) ? KV_EINTERNAL : rc;
			op.bucket = p->bucket;
			op.key = p->key;
			op.value = p->value;
			if ((rc = key_write(a, &op, bc, &rev)))
				return rule_err(rc) ? KV_EINTERNAL : rc; /* checked: cannot happen */
			if (i == 0)
				res->rev = rev;
		}
		res->count = i;
		return 0;
	}

	/* Not through LMDB's shadowing of a parent cursor: the child opens its own. */
	if (a->rcur) {
		mdb_cursor_close(a->rcur);
		a->rcur = NULL;
	}
	saved_n = s->nbcache;
	memcpy(s->bcache_save, s->bcache, saved_n * sizeof s->bcache[0]);
	if ((rc = mdb_txn_begin(s->env, parent, 0, &child)))
		return kv__err(rc);
	MDB_cursor *parent_cur = a->cur;
	a->txn = child;
	a->cur = NULL;
	proto_batch_iter_init(&it, batch);
	for (i = 0; proto_batch_next(&it, &op) == 1; i++) {
		rev = 0;
		if ((rc = op_apply(a, &op, &rev)))
			break;
		if (i == 0)
			res->rev = rev;
	}
	if (a->cur)
		mdb_cursor_close(a->cur);
	if (a->rcur)
		mdb_cursor_close(a->rcur);
	a->cur = parent_cur;
	a->rcur = NULL;
	a->txn = parent;
	if (rc == 0) {
		if ((rc = mdb_txn_commit(child)))
			return kv__err(rc);
		res->count = i;
		return 0;
	}
	mdb_txn_abort(child);
	/* Roll back what the failed ops did to the in-memory state too (the entry's run was
	 * empty when the batch began: entry_apply flushes it at the end of every entry). */
	memcpy(s->bcache, s->bcache_save, saved_n * sizeof s->bcache[0]);
	s->nbcache = saved_n;
	s->wrev = saved_rev;
	s->run_len = 0;
	if (!rule_err(rc))
		return rc;
failed:
	res->status = KV_EBATCH;
	res->rev = 0;
	res->count = 0;
	res->failed_at = i;
	res->failed_status = rc;
	return 0;
}

/*
 * A bucket cache that was flushed and cleared inside the nested txn (more than
 * KV__BCACHE_MAX buckets in one batch) is restored from bcache_save above, whose dirty
 * entries are still dirty: nothing written only in the aborted txn survives.
 */

/* ---- sessions ------------------------------------------------------------------------- */

/*
 * SBATCH: a batch applied at most once per (client, seq), as Raft's client sessions make
 * commands idempotent (Ongaro's thesis, 6.3). A loader numbers its batches 1, 2, 3, ... and
 * resends a batch whose answer it lost (leader failure, dropped connection) with the same
 * number; the group applies it only if that number has not been applied. The session record
 * lives in main under KV__BID_SESS and is written in the same write txn as the batch, so a
 * crash leaves both or neither, and snapshots carry it.
 *
 * The record keeps the highest number applied and a window of the KV__SESS_WINDOW numbers
 * below it (bit i: high - i applied), because batches in flight together may commit out of
 * order after a failover. A number further below than the window counts as applied: a
 * loader never has more than its window (at most 256 batches) unanswered, so every batch
 * that far behind its newest was answered, hence applied. A duplicate is answered as a
 * success without a revision (rev 0, count = its ops); a batch that failed a rule is not
 * recorded (nothing of it was applied; a resend fails the same way). seq 0: no session.
 * Deterministic: it depends only on the store and the entry.
 *
 * Expiry: when a session starts, the KV__SESS_SWEEP sessions after it in key order (client
 * ids are random, so that is a random sample) are dropped if unused for KV__SESS_TTL_MS of
 * leader time. Every start cleans as much as it adds, so sessions stay about as many as the
 * loads of the last week; a load resumed after that is applied in full again.
 */
static int sess_sweep(apply_t *a, const uint8_t *from)
{
	kv_store_t *s = a->s;
	MDB_cursor *c;
	MDB_val k = {12, (void *)from}, v;
	int rc;

	if ((rc = mdb_cursor_open(a->txn, s->dbi[KV__DB_MAIN], &c)))
		return kv__err(rc);
	rc = kv__cget(c, s, KV__DB_MAIN, &k, &v, MDB_SET_RANGE);
	for (unsigned n = 0; rc == 0 && n < KV__SESS_SWEEP; n++) {
		if (k.mv_size != 12 || ((const uint8_t *)k.mv_data)[0] != (uint8_t)(KV__BID_SESS >> 24) ||
		    memcmp(k.mv_data, from, 4) != 0)
			break; /* past the sessions */
		if (v.mv_size != KV__SESS_VAL) {
			rc = KV_ECORRUPT;
			break;
		}
		uint64_t used = kv__rle64((const uint8_t *)v.mv_data + 40);
		if (used + KV__SESS_TTL_MS < a->time_ms && (rc = mdb_cursor_del(c, 0)))
			break;
		rc = kv__cget(c, s, KV__DB_MAIN, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc == KV_ECORRUPT ? rc : kv__err(rc);
}

static int sbatch_apply(apply_t *a, const proto_op_t *op, kv_result_t *res)
{
	kv_store_t *s = a->s;
	uint8_t kb[12], v[KV__SESS_VAL], nb[32];
	MDB_val k = {sizeof kb, kb}, dv;
	uint64_t high = 0;
	int rc;

	if (op->seq == 0)
		return batch_apply(a, op, res);
	kv__be32(kb, KV__BID_SESS);
	kv__be64(kb + 4, op->client);
	memset(v, 0, sizeof v);
	rc = kv__get(a->txn, s, KV__DB_MAIN, &k, &dv);
	if (rc == 0) {
		if (dv.mv_size != KV__SESS_VAL)
			return KV_ECORRUPT;
		memcpy(v, dv.mv_data, KV__SESS_VAL);
		high = kv__rle64(v);
	} else if (rc != MDB_NOTFOUND) {
		return kv__err(rc);
	} else if ((rc = sess_sweep(a, kb)) != 0) {
		return rc;
	}
	uint8_t *bits = v + 8;
	if (op->seq <= high) {
		uint64_t d = high - op->seq;
		if (d >= KV__SESS_WINDOW || (bits[d / 8] >> (d % 8) & 1)) {
			res->status = 0;
			res->rev = 0;
			res->count = op->count;
			return 0;
		}
	}
	if ((rc = batch_apply(a, op, res)) != 0 || res->status != 0)
		return rc;
	if (op->seq > high) {
		uint64_t n = op->seq - high;
		memset(nb, 0, sizeof nb);
		for (uint64_t i = 0; i + n < KV__SESS_WINDOW; i++)
			if (bits[i / 8] >> (i % 8) & 1)
				nb[(i + n) / 8] |= (uint8_t)(1u << ((i + n) % 8));
		memcpy(bits, nb, sizeof nb);
		high = op->seq;
		bits[0] |= 1;
	} else {
		uint64_t d = high - op->seq;
		bits[d / 8] |= (uint8_t)(1u << (d % 8));
	}
	kv__le64(v, high);
	kv__le64(v + 40, a->time_ms);
	dv = (MDB_val){KV__SESS_VAL, v};
	if ((rc = kv__put(a->txn, s, KV__DB_MAIN, &k, &dv, 0)))
		return kv__err(rc);
	return 0;
}

/* ---- entries ---------------------------------------------------------------------------- */

static int entry_apply(apply_t *a, const kv_entry_in_t *in, kv_result_t *res)
{
	proto_entry_t e;
	uint64_t rev = 0;
	int rc;

	memset(res, 0, sizeof *res);
	if (proto_entry_decode(in->data, in->len, &e) != 0)
		return KV_ECORRUPT; /* decode_all said it was fine: the bytes changed under us */
	a->time_ms = e.time_ms;
	if (e.op.op == PROTO_OP_BATCH || e.op.op == PROTO_OP_SBATCH) {
		if ((rc = e.op.op == PROTO_OP_SBATCH ? sbatch_apply(a, &e.op, res) :
						       batch_apply(a, &e.op, res)))
			return rc;
		return revs_flush(a);
	}
	rc = op_apply(a, &e.op, &rev);
	if (rc == 0) {
		res->rev = rev;
		res->count = 1;
	} else if (rule_err(rc)) {
		res->status = rc;
	} else {
		return rc;
	}
	return revs_flush(a);
}

/* Refuse the whole call before touching the store if any entry cannot be decoded. */
static int decode_all(kv_store_t *s, const kv_entry_in_t *ents, size_t n)
{
	uint64_t prev = atomic_load(&s->applied);

	for (size_t i = 0; i < n; i++) {
		proto_entry_t e;

		if (ents[i].index <= prev)
			return -EINVAL;
		prev = ents[i].index;
		/* A batch's inner ops are decoded by batch_apply's first pass, which fails the
		 * whole call (KV_ECORRUPT, txn aborted) before anything of it is written. */
		if (proto_entry_decode(ents[i].data, ents[i].len, &e) != 0)
			return KV_ECORRUPT;
	}
	return 0;
}

/* One attempt: a write txn over all n entries. */
static int apply_txn(kv_store_t *s, const kv_entry_in_t *ents, size_t n, kv_result_t *res)
{
	apply_t a = {.s = s};
	int rc;

	if ((rc = mdb_txn_begin(s->env, NULL, 0, &a.txn)))
		return kv__err(rc);
	s->nbcache = 0;
	s->run_len = 0;
	s->wrev = atomic_load(&s->revision);
	for (size_t i = 0; i < n; i++)
		if ((rc = entry_apply(&a, &ents[i], &res[i])))
			goto fail;
	if ((rc = bc_flush(&a)) ||
	    (rc = kv__meta_put64(a.txn, s, "applied", ents[n - 1].index)) ||
	    (rc = kv__meta_put64(a.txn, s, "revision", s->wrev)))
		goto fail;
	if (a.cur)
		mdb_cursor_close(a.cur);
	if (a.rcur)
		mdb_cursor_close(a.rcur);
	rc = mdb_txn_commit(a.txn);
	s->nbcache = 0;
	return kv__err(rc);
fail:
	if (a.cur)
		mdb_cursor_close(a.cur);
	if (a.rcur)
		mdb_cursor_close(a.rcur);
	mdb_txn_abort(a.txn);
	s->nbcache = 0;
	s->run_len = 0;
	return rc;
}

/* Grow ahead of need while it is cheap: at 3/4 full, if no reader of ours is active now. */
static void maybe_grow(kv_store_t *s)
{
	MDB_envinfo info;
	MDB_stat st;

	if (s->map_size >= s->map_max || mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st))
		return;
	if ((uint64_t)(info.me_last_pgno + 1) * st.ms_psize > s->map_size / 4 * 3)
		kv__remap(s, s->map_size * 2, false);
}

/*
 * LMDB reports a short write as EIO, and a short write is how a full disk (or a file size
 * limit) first shows up: a multi-page pwrite stops at the last block that fit. Tell that
 * apart from a failing device by looking at the file system and the process's limit.
 */
static bool out_of_space(kv_store_t *s)
{
	const char *dir;
	char path[4096];
	struct statvfs vfs;
	struct rlimit rl;
	struct stat st;

	if (mdb_env_get_path(s->env, &dir) != 0)
		return false;
	if (statvfs(dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (16u << 20))
		return true;
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	return getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	       stat(path, &st) == 0 && (uint64_t)st.st_size + (1u << 20) >= rl.rlim_cur;
}

int kv_apply(kv_store_t *s, const kv_entry_in_t *ents, size_t n, kv_result_t *res)
{
	int rc;

	if (s->flags & KV_OPEN_RDONLY)
		return KV_EREADONLY;
	if (n == 0)
		return 0;
	if ((rc = decode_all(s, ents, n)))
		return rc;
	for (;;) {
		rc = apply_txn(s, ents, n, res);
		if (rc != KV__EMAPFULL)
			break;
		/* Deterministic apply makes the retry reproduce the same results. */
		if ((rc = kv__remap(s, s->map_size * 2, true)))
			return rc == KV__EMAPFULL ? KV_EFULL : rc;
	}
	if (rc == -EIO && out_of_space(s))
		rc = KV_EFULL;
	if (rc)
		return rc;
	atomic_store(&s->applied, ents[n - 1].index);
	atomic_store(&s->revision, s->wrev);
	maybe_grow(s);
	return 0;
}
