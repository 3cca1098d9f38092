/*
 * kv_changes: the store's changes from a revision on, in revision order, read from the
 * revision index (kv_format.h "Revision runs"). Serves WATCH (geokv watch) and is what a
 * watcher or a feed scans: one item per retained record, tombstones included, so puts,
 * deletes and purges all show. A record no longer retained (overwritten past the bucket's
 * history, or purged) has no item: a watcher that falls that far behind sees the key's
 * later records only, as NATS KV watchers do.
 */
#include "core/kv_format.h"

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int kv_changes(kv_rtxn_t *t, const void *bucket, size_t blen, const void *prefix, size_t plen,
	       uint64_t from_rev, size_t limit, size_t scan_max, kv_rec_cb cb, void *ctx,
	       uint64_t *next_rev, bool *more)
{
	kv_store_t *s = t->s;
	kv__bucket_t b;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint8_t kb[8];
	uint64_t now = kv_txn_revision(t), from = from_rev ? from_rev : now + 1;
	size_t found = 0, scanned = 0;
	int rc;

	*more = false;
	*next_rev = from;
	if ((rc = kv__bucket_get(t->txn, s, bucket, blen, &b)) != 0)
		return rc;
	if (from > now)
		return 0;
	if ((rc = mdb_cursor_open(t->txn, s->dbi[KV__DB_REVS], &cur)) != 0)
		return kv__err(rc);
	/* the run holding `from` is the last run keyed <= from */
	for (int i = 0; i < 8; i++)
		kb[i] = (uint8_t)(from >> (56 - 8 * i));
	k = (MDB_val){8, kb};
	rc = kv__cget(cur, s, KV__DB_REVS, &k, &v, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND || (rc == 0 && k.mv_size == 8 && be64(k.mv_data) > from)) {
		int prc = kv__cget(cur, s, KV__DB_REVS, &k, &v, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
		if (prc == MDB_NOTFOUND && rc == 0)
			rc = kv__cget(cur, s, KV__DB_REVS, &k, &v, MDB_FIRST);
		else
			rc = prc;
	}
	for (; rc == 0; rc = kv__cget(cur, s, KV__DB_REVS, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8) {
			rc = KV_ECORRUPT;
			goto out;
		}
		uint64_t base = be64(k.mv_data);
		const uint8_t *p = v.mv_data, *end = p + v.mv_size;
		while (p < end) {
			if (end - p < (long)KV__RUN_ITEM) {
				rc = KV_ECORRUPT;
				goto out;
			}
			uint64_t rev = base + (p[0] | (uint32_t)p[1] << 8);
			size_t klen = p[2] | (size_t)p[3] << 8;
			uint32_t bid = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
			const uint8_t *key = p + KV__RUN_ITEM;
			if (klen > PROTO_MAX_KEY || (size_t)(end - key) < klen) {
				rc = KV_ECORRUPT;
				goto out;
			}
			p = key + klen;
			if (rev < from)
				continue;
			if (rev > now)
				goto end;
			if (scanned++ >= scan_max) {
				*next_rev = rev;
				*more = true;
				rc = 0;
				goto out;
			}
			*next_rev = rev + 1;
			if (bid != b.id || klen < plen || memcmp(key, prefix, plen) != 0)
				continue;
			proto_rec_t rec;
			int grc = kv_get_rec(t, bucket, blen, key, klen, rev, &rec);
			if (grc == KV_ENOTFOUND || (grc == 0 && rec.rev != rev))
				continue; /* not retained at that revision any more */
			if (grc != 0) {
				rc = grc;
				goto out;
			}
			if (cb(ctx, &rec) != 0) {
				*next_rev = rev;
				*more = true;
				rc = 0;
				goto out;
			}
			if (++found >= limit) {
				*more = rev < now;
				rc = 0;
				goto out;
			}
		}
	}
	if (rc != MDB_NOTFOUND) {
		rc = kv__err(rc);
		goto out;
	}
end:
	*next_rev = now + 1;
	rc = 0;
out:
	mdb_cursor_close(cur);
	return rc;
}
