/*
 * Snapshots: a logical dump of every database of the store from one read txn, as a stream of
 * self-delimiting, checksummed chunks, and its install into a fresh directory.
 *
 * Stream format (version 1, integers little-endian):
 *
 *   chunk   = header payload hash
 *   header  = u32 magic "GKS1" | u32 type | u64 seq | u32 len | u32 check
 *             check: low 32 bits of XXH64 of the 20 bytes before it, so a flipped length is
 *             caught before the reader allocates or waits for `len` bytes
 *   hash    = u64 XXH64(payload, seed = seq): a chunk moved, dropped or replayed fails too
 *   types   : 1 HEAD  (seq 0)   u32 version 1, u32 store format, u32 chunk size, u32 0
 *             2 DATA  (seq 1..) records: u8 db, u16 klen, u32 vlen, key, value
 *             3 TAIL  (last)    u64 applied, u64 revision, u64 records, u64 data chunks
 *
 * Records come database by database in key order (meta last), so install appends
 * (MDB_APPEND, no searching) and the dump of two equal stores is byte-identical, whatever
 * their LMDB page layout: that is how the tests check that apply is deterministic.
 * Nothing in the format needs seeking or a length known in advance: it streams over a socket
 * (leaf bootstrap) as well as to a file. Install commits each chunk as it goes but writes the
 * meta database (with the format marker) only after the trailer checked out; a store without
 * the marker is refused by kv_open, and on failure install removes what it wrote.
 */
#include "core/kv_format.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define SNAP_MAGIC     0x31534b47u       /* "GKS1" */
#define SNAP_VERSION   1u
#define SNAP_HDR       24u
#define SNAP_CHUNK     (1u << 20)        /* payload bytes per DATA chunk, normally */
#define SNAP_MAX_CHUNK (128u << 20)      /* reader's bound: one record of a max-size value fits */
#define SNAP_REC_HDR   7u

enum { SNAP_HEAD = 1, SNAP_DATA = 2, SNAP_TAIL = 3 };

/* Databases in dump order: meta last (install writes it only once the trailer verified). */
static const int dump_order[KV__DB_N] = {
	KV__DB_MAIN, KV__DB_BIDS, KV__DB_HIST, KV__DB_REVS, KV__DB_TTL, KV__DB_META,
};

static void hdr_encode(uint8_t *h, uint32_t type, uint64_t seq, uint32_t len)
{
	kv__le32(h, SNAP_MAGIC);
	kv__le32(h + 4, type);
	kv__le64(h + 8, seq);
	kv__le32(h + 16, len);
	kv__le32(h + 20, (uint32_t)XXH64(h, 20, 0));
}

/* ---- write ------------------------------------------------------------------------------- */

typedef struct snap_w {
	kv_snap_write_fn write;
	void *ctx;
	uint8_t *buf;          /* SNAP_HDR + payload + 8 */
	size_t cap;            /* payload capacity */
	size_t len;            /* payload bytes so far */
	uint64_t seq;
	uint64_t chunks;       /* DATA chunks sent */
} snap_w_t;

static int w_reserve(snap_w_t *w, size_t cap)
{
	if (cap <= w->cap)
		return 0;
	uint8_t *p = realloc(w->buf, SNAP_HDR + cap + 8);
	if (!p)
		return -ENOMEM;
	w->buf = p;
	w->cap = cap;
	return 0;
}

static int w_flush(snap_w_t *w, uint32_t type)
{
	uint8_t *pl = w->buf + SNAP_HDR;
	int rc;

	hdr_encode(w->buf, type, w->seq, (uint32_t)w->len);
	kv__le64(pl + w->len, XXH64(pl, w->len, w->seq));
	if ((rc = w->write(w->ctx, w->buf, SNAP_HDR + w->len + 8)))
		return rc;
	if (type == SNAP_DATA)
		w->chunks++;
	w->seq++;
	w->len = 0;
	return 0;
}

static int w_record(snap_w_t *w, int db, const MDB_val *k, const MDB_val *v)
{
	size_t n = SNAP_REC_HDR + k->mv_size + v->mv_size;
	uint8_t *p;
	int rc;

	if (v->mv_size > UINT32_MAX)
		return KV_EINTERNAL;
	if (w->len && w->len + n > SNAP_CHUNK && (rc = w_flush(w, SNAP_DATA)))
		return rc;
	/* A record bigger than a chunk travels alone in a chunk of its own size. */
	if ((rc = w_reserve(w, w->len + n)))
		return rc;
	p = w->buf + SNAP_HDR + w->len;
	p[0] = (uint8_t)db;
	p[1] = (uint8_t)k->mv_size;
	p[2] = (uint8_t)(k->mv_size >> 8);
	kv__le32(p + 3, (uint32_t)v->mv_size);
	memcpy(p + SNAP_REC_HDR, k->mv_data, k->mv_size);
	memcpy(p + SNAP_REC_HDR + k->mv_size, v->mv_data, v->mv_size);
	w->len += n;
	return 0;
}

int kv_snapshot_write(kv_store_t *s, kv_snap_write_fn write, void *ctx, kv_snap_meta_t *meta)
{
	snap_w_t w = {.write = write, .ctx = ctx};
	kv_snap_meta_t m = {0};
	MDB_txn *txn = NULL;
	MDB_cursor *c = NULL;
	MDB_val k, v;
	uint8_t *p;
	int rc;

	if ((rc = w_reserve(&w, SNAP_CHUNK)))
		return rc;
	if ((rc = kv__rtxn_begin(s, &txn)))
		goto out;
	if ((rc = kv__meta_get64(txn, s, "applied", &m.applied)) ||
	    (rc = kv__meta_get64(txn, s, "revision", &m.revision)))
		goto out;

	p = w.buf + SNAP_HDR;
	kv__le32(p, SNAP_VERSION);
	kv__le32(p + 4, KV__FORMAT);
	kv__le32(p + 8, SNAP_CHUNK);
	kv__le32(p + 12, 0);
	w.len = 16;
	if ((rc = w_flush(&w, SNAP_HEAD)))
		goto out;

	for (int i = 0; i < KV__DB_N; i++) {
		int db = dump_order[i], op;

		if ((rc = mdb_cursor_open(txn, s->dbi[db], &c))) {
			rc = kv__err(rc);
			goto out;
		}
		for (op = MDB_FIRST; (rc = mdb_cursor_get(c, &k, &v, op)) == 0; op = MDB_NEXT) {
			/* LMDB's own records of the named databases are not content. */
			if (db == KV__DB_MAIN && *(uint8_t *)k.mv_data >= KV__NAME_MIN)
				continue;
			/* values travel with their checksums; a snapshot never ships a bad one */
			MDB_val chk = v;
			if ((rc = kv__check(s, (unsigned)db, &k, &chk)) != 0) {
				rc = KV_ECORRUPT;
				goto out;
			}
			if ((rc = w_record(&w, db, &k, &v)))
				goto out;
			m.records++;
		}
		if (rc != MDB_NOTFOUND) {
			rc = kv__err(rc);
			goto out;
		}
		mdb_cursor_close(c);
		c = NULL;
	}
	if (w.len && (rc = w_flush(&w, SNAP_DATA)))
		goto out;

	p = w.buf + SNAP_HDR;
	kv__le64(p, m.applied);
	kv__le64(p + 8, m.revision);
	kv__le64(p + 16, m.records);
	kv__le64(p + 24, w.chunks);
	w.len = 32;
	if ((rc = w_flush(&w, SNAP_TAIL)))
		goto out;
	if (meta)
		*meta = m;
out:
	if (c)
		mdb_cursor_close(c);
	if (txn)
		kv__rtxn_end(s, txn, false);
	free(w.buf);
	return rc;
}

/* ---- install ---------------------------------------------------------------------------- */

typedef struct snap_r {
	kv_snap_read_fn read;
	void *ctx;
	uint8_t *buf;
	size_t cap;
	MDB_env *env;
	MDB_dbi dbi[KV__DB_N];
	size_t map_size, map_max;
	uint8_t *meta;         /* the meta database's records, held back until the trailer */
	size_t meta_len, meta_cap;
} snap_r_t;

/* Exactly n bytes, KV_ECORRUPT on a stream that ends early, or the reader's error. */
static int r_full(snap_r_t *r, void *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		long k = r->read(r->ctx, (uint8_t *)p + got, n - got);
		if (k < 0)
			return (int)k;
		if (k == 0)
			return KV_ECORRUPT;
		got += (size_t)k;
	}
	return 0;
}

/* Apply one verified DATA payload in one txn (retried after growing the map). */
/* A streamed value's checksum trailer (kv_format.h), as kv__check does in a store. */
static bool sum_ok(unsigned db, const MDB_val *k, const MDB_val *v)
{
	size_t len;

	if (!kv__summed(db, k))
		return true;
	if (v->mv_size < KV__SUM)
		return false;
	len = v->mv_size - KV__SUM;
	return kv__rle32((const uint8_t *)v->mv_data + len) == kv__sum(db, k, v->mv_data, len);
}

static int r_data(snap_r_t *r, const uint8_t *p, size_t len, uint64_t *records)
{
	MDB_txn *txn;
	size_t meta_len0 = r->meta_len;
	uint64_t n;
	int rc;

	for (;;) {
		const uint8_t *q = p, *end = p + len;

		n = 0;
		r->meta_len = meta_len0;
		if ((rc = mdb_txn_begin(r->env, NULL, 0, &txn)))
			return kv__err(rc);
		while (q < end) {
			MDB_val k, v;
			unsigned db;

			if ((size_t)(end - q) < SNAP_REC_HDR) {
				rc = KV_ECORRUPT;
				break;
			}
			db = q[0];
			k.mv_size = q[1] | (size_t)q[2] << 8;
			v.mv_size = kv__rle32(q + 3);
			if (db >= KV__DB_N || k.mv_size == 0 ||
			    (size_t)(end - q) - SNAP_REC_HDR < k.mv_size + v.mv_size) {
				rc = KV_ECORRUPT;
				break;
			}
			k.mv_data = (void *)(q + SNAP_REC_HDR);
			v.mv_data = (void *)(q + SNAP_REC_HDR + k.mv_size);
			if (!sum_ok((unsigned)db, &k, &v)) {
				rc = KV_ECORRUPT; /* a record that fails its checksum: refuse it */
				break;
			}
			if (db == KV__DB_META) {
				size_t rl = SNAP_REC_HDR + k.mv_size + v.mv_size;
				if (r->meta_len + rl > r->meta_cap) {
					size_t cap = (r->meta_len + rl) * 2;
					uint8_t *m = realloc(r->meta, cap);
					if (!m) {
						rc = -ENOMEM;
						break;
					}
					r->meta = m;
					r->meta_cap = cap;
				}
				memcpy(r->meta + r->meta_len, q, rl);
				r->meta_len += rl;
			} else if (db == KV__DB_MAIN && *(uint8_t *)k.mv_data >= KV__NAME_MIN) {
				/* would overwrite LMDB's record of a named database */
				rc = KV_ECORRUPT;
				break;
			} else if ((rc = mdb_put(txn, r->dbi[db], &k, &v,
						 /* main also holds the named databases' records,
						  * which sort after all data: no appending there */
						 db == KV__DB_MAIN ? 0 : MDB_APPEND))) {
				/* Out of order (MDB_KEYEXIST) can only be a bad stream. */
				rc = rc == MDB_KEYEXIST || rc == MDB_BAD_VALSIZE ? KV_ECORRUPT : kv__err(rc);
				break;
			}
			q += SNAP_REC_HDR + k.mv_size + v.mv_size;
			n++;
		}
		if (rc) {
			mdb_txn_abort(txn);
		} else {
			rc = kv__err(mdb_txn_commit(txn));
		}
		if (rc != KV__EMAPFULL)
			break;
		if (r->map_size >= r->map_max)
			return KV_EFULL;
		r->map_size = r->map_size * 2 < r->map_max ? r->map_size * 2 : r->map_max;
		if ((rc = mdb_env_set_mapsize(r->env, r->map_size)))
			return kv__err(rc);
	}
	if (rc == 0)
		*records += n;
	return rc;
}

/* The held-back meta records: check them against the trailer, then write them. */
static int r_meta(snap_r_t *r, uint64_t applied, uint64_t revision)
{
	uint64_t format = 0, a = UINT64_MAX, rv = UINT64_MAX;
	const uint8_t *q = r->meta, *end = r->meta + r->meta_len;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(r->env, NULL, 0, &txn)))
		return kv__err(rc);
	while (q < end) {
		MDB_val k = {q[1] | (size_t)q[2] << 8, (void *)(q + SNAP_REC_HDR)};
		MDB_val v = {kv__rle32(q + 3), (void *)(q + SNAP_REC_HDR + k.mv_size)};
		size_t vl = v.mv_size - KV__SUM; /* checked whole by r_data */
		uint64_t x = vl == 8 ? kv__rle64(v.mv_data) : vl == 4 ? kv__rle32(v.mv_data) : UINT64_MAX;

		if (k.mv_size == 6 && memcmp(k.mv_data, "format", 6) == 0)
			format = x;
		else if (k.mv_size == 7 && memcmp(k.mv_data, "applied", 7) == 0)
			a = x;
		else if (k.mv_size == 8 && memcmp(k.mv_data, "revision", 8) == 0)
			rv = x;
		if ((rc = mdb_put(txn, r->dbi[KV__DB_META], &k, &v, MDB_APPEND))) {
			rc = rc == MDB_KEYEXIST ? KV_ECORRUPT : kv__err(rc);
			goto fail;
		}
		q += SNAP_REC_HDR + k.mv_size + v.mv_size;
	}
	if (format != KV__FORMAT || a != applied || rv != revision) {
		rc = KV_ECORRUPT;
		goto fail;
	}
	rc = kv__err(mdb_txn_commit(txn));
	return rc == KV__EMAPFULL ? KV_EFULL : rc;
fail:
	mdb_txn_abort(txn);
	return rc;
}

static int r_stream(snap_r_t *r, kv_snap_meta_t *m)
{
	uint8_t h[SNAP_HDR];
	uint64_t seq = 0, records = 0, chunks = 0;
	int rc;

	for (;;) {
		uint32_t type, len;
		uint8_t *pl;

		if ((rc = r_full(r, h, SNAP_HDR)))
			return rc;
		type = kv__rle32(h + 4);
		len = kv__rle32(h + 16);
		if (kv__rle32(h) != SNAP_MAGIC || kv__rle32(h + 20) != (uint32_t)XXH64(h, 20, 0) ||
		    kv__rle64(h + 8) != seq || len > SNAP_MAX_CHUNK ||
		    (seq == 0) != (type == SNAP_HEAD) || (type != SNAP_DATA && type != SNAP_TAIL && type != SNAP_HEAD))
			return KV_ECORRUPT;
		if (len + 8u > r->cap) {
			uint8_t *b = realloc(r->buf, len + 8u);
			if (!b)
				return -ENOMEM;
			r->buf = b;
			r->cap = len + 8u;
		}
		pl = r->buf;
		if ((rc = r_full(r, pl, len + 8u)))
			return rc;
		if (kv__rle64(pl + len) != XXH64(pl, len, seq))
			return KV_ECORRUPT;
		seq++;
		switch (type) {
		case SNAP_HEAD:
			if (len < 16 || kv__rle32(pl) != SNAP_VERSION || kv__rle32(pl + 4) != KV__FORMAT)
				return KV_ECORRUPT;
			break;
		case SNAP_DATA:
			if ((rc = r_data(r, pl, len, &records)))
				return rc;
			chunks++;
			break;
		case SNAP_TAIL:
			if (len < 32)
				return KV_ECORRUPT;
			m->applied = kv__rle64(pl);
			m->revision = kv__rle64(pl + 8);
			m->records = kv__rle64(pl + 16);
			if (m->records != records || kv__rle64(pl + 24) != chunks)
				return KV_ECORRUPT;
			return r_meta(r, m->applied, m->revision);
		}
	}
}

/* 0 if dir is absent (then *created) or an empty directory. */
static int dir_prepare(const char *dir, bool *created)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	*created = false;
	if (mkdir(dir, 0750) == 0) {
		*created = true;
		return 0;
	}
	if (errno != EEXIST)
		return -errno;
	if (!(d = opendir(dir)))
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			rc = -ENOTEMPTY;
			break;
		}
	closedir(d);
	return rc;
}

static void dir_clean(const char *dir, bool created)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/lock.mdb", dir);
	unlink(path);
	if (created)
		rmdir(dir);
}

/* ---- content checksum ------------------------------------------------------------- */

static int hash_write(void *ctx, const void *p, size_t len)
{
	return XXH64_update(ctx, p, len) == XXH_OK ? 0 : KV_EINTERNAL;
}

/*
 * The hash of the snapshot stream: a logical dump in key order, taken in one read
 * transaction, so equal content at the same applied index gives equal hashes on every member
 * (and a different byte anywhere, a different hash). It reads every record: O(store).
 */
int kv_checksum(kv_store_t *s, kv_snap_meta_t *meta, uint64_t *hash)
{
	XXH64_state_t *st = XXH64_createState();
	int rc;

	if (st == NULL)
		return -ENOMEM;
	XXH64_reset(st, 0);
	rc = kv_snapshot_write(s, hash_write, st, meta);
	*hash = rc == 0 ? XXH64_digest(st) : 0;
	XXH64_freeState(st);
	return rc;
}

int kv_snapshot_install(const char *dir, const kv_opts_t *opts, kv_snap_read_fn read,
			void *ctx, kv_snap_meta_t *meta)
{
	kv_opts_t o = opts ? *opts : (kv_opts_t){0};
	snap_r_t r = {.read = read, .ctx = ctx};
	kv_snap_meta_t m = {0};
	MDB_txn *txn;
	bool created;
	int rc;

	r.map_size = o.map_size ? o.map_size : (1ull << 30);
	r.map_max = o.map_max ? o.map_max : (1ull << 40);
	if (r.map_size > r.map_max)
		r.map_size = r.map_max;
	if ((rc = dir_prepare(dir, &created)))
		return rc;
	if ((rc = mdb_env_create(&r.env)))
		goto fail;
	/* No fsync per chunk: one sync at the end makes the whole install durable. */
	if ((rc = mdb_env_set_maxdbs(r.env, KV__DB_N)) ||
	    (rc = mdb_env_set_mapsize(r.env, r.map_size)) ||
	    (rc = mdb_env_open(r.env, dir, MDB_NOSYNC | MDB_NOTLS, 0640)))
		goto fail;
	if ((rc = mdb_txn_begin(r.env, NULL, 0, &txn)))
		goto fail;
	for (int i = 0; i < KV__DB_N; i++)
		if ((rc = mdb_dbi_open(txn, kv__db_names[i], MDB_CREATE, &r.dbi[i]))) {
			mdb_txn_abort(txn);
			goto fail;
		}
	if ((rc = mdb_txn_commit(txn)))
		goto fail;
	if ((rc = r_stream(&r, &m)))
		goto fail;
	if ((rc = mdb_env_sync(r.env, 1)))
		goto fail;
	mdb_env_close(r.env);
	free(r.buf);
	free(r.meta);
	if (meta)
		*meta = m;
	return 0;
fail:
	rc = kv__err(rc);
	if (rc == KV__EMAPFULL)
		rc = KV_EFULL;
	if (r.env)
		mdb_env_close(r.env);
	dir_clean(dir, created);
	free(r.buf);
	free(r.meta);
	return rc;
}
