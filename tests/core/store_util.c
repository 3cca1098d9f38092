#include "tests/core/store_util.h"

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *su_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&p, "%s/geokv-store-XXXXXX", base) < 0 || !mkdtemp(p))
		abort();
	return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

void su_rmdir(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

proto_bytes_t su_b(const char *s)
{
	proto_bytes_t b = {(const uint8_t *)s, s ? (uint32_t)strlen(s) : 0};
	return b;
}

size_t su_entry(uint8_t *buf, size_t cap, uint64_t time_ms, const proto_op_t *op)
{
	proto_wbuf_t w;

	proto_wbuf_init(&w, buf, cap);
	if (proto_entry_encode(&w, time_ms, op) != 0)
		abort();
	return proto_wbuf_len(&w);
}

int su_apply(kv_store_t *s, uint64_t t, const proto_op_t *op, kv_result_t *res)
{
	static uint8_t buf[1 << 22];
	kv_entry_in_t e = {kv_applied_index(s) + 1, buf, su_entry(buf, sizeof buf, t, op)};

	return kv_apply(s, &e, 1, res);
}

int su_bucket_add(kv_store_t *s, const char *name, uint32_t history, uint64_t max_age_ms)
{
	proto_op_t op = {.op = PROTO_OP_BUCKET_ADD, .bucket = su_b(name)};
	kv_result_t res;
	int rc;

	op.cfg.history = history;
	op.cfg.max_age_ms = max_age_ms;
	rc = su_apply(s, 1, &op, &res);
	return rc ? rc : res.status;
}

int su_op(kv_store_t *s, uint64_t t, uint8_t opc, const char *b, const char *k, const char *v,
	  uint64_t rev_arg, uint64_t *rev)
{
	proto_op_t op = {.op = opc, .bucket = su_b(b), .key = su_b(k), .value = su_b(v),
			 .rev = rev_arg};
	kv_result_t res;
	int rc = su_apply(s, t, &op, &res);

	if (rc)
		return rc;
	if (rev)
		*rev = res.rev;
	return res.status;
}

int su_put(kv_store_t *s, const char *b, const char *k, const char *v, uint64_t *rev)
{
	return su_op(s, 1000, PROTO_OP_PUT, b, k, v, 0, rev);
}

int su_get(kv_store_t *s, const char *b, const char *k, uint64_t at, char *out, size_t cap,
	   proto_rec_t *rec)
{
	kv_rtxn_t t = {0};
	proto_rec_t r;
	int rc;

	if ((rc = kv_read_begin(s, &t)))
		return rc;
	rc = kv_get(&t, b, strlen(b), k, strlen(k), at, &r);
	if (rc == 0 && out) {
		size_t n = r.value.len < cap - 1 ? r.value.len : cap - 1;
		memcpy(out, r.value.p, n);
		out[n] = 0;
	}
	if (rc == 0 && rec) {
		*rec = r;
		rec->key.p = NULL;
		rec->value.p = NULL; /* views die with the txn */
	}
	kv_read_close(&t);
	return rc;
}

typedef struct membuf {
	uint8_t *p;
	size_t len, cap, off;
} membuf_t;

static int mem_write(void *ctx, const void *p, size_t len)
{
	membuf_t *m = ctx;

	if (m->len + len > m->cap) {
		m->cap = (m->len + len) * 2;
		m->p = realloc(m->p, m->cap);
		if (!m->p)
			abort();
	}
	memcpy(m->p + m->len, p, len);
	m->len += len;
	return 0;
}

static long mem_read(void *ctx, void *p, size_t cap)
{
	membuf_t *m = ctx;
	size_t n = m->len - m->off;

	/* Odd-sized reads, as from a socket. */
	if (n > cap)
		n = cap;
	if (n > 3000)
		n = 3000;
	memcpy(p, m->p + m->off, n);
	m->off += n;
	return (long)n;
}

uint8_t *su_snapshot(kv_store_t *s, size_t *len, kv_snap_meta_t *meta)
{
	membuf_t m = {0};

	if (kv_snapshot_write(s, mem_write, &m, meta) != 0)
		abort();
	*len = m.len;
	return m.p;
}

int su_install(const char *dir, const uint8_t *p, size_t len, kv_snap_meta_t *meta)
{
	membuf_t m = {(uint8_t *)p, len, len, 0};

	return kv_snapshot_install(dir, NULL, mem_read, &m, meta);
}

uint64_t su_db_entries(kv_store_t *s, const char *db)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st = {0};

	if (mdb_txn_begin(kv_env(s), NULL, MDB_RDONLY, &txn))
		abort();
	if (mdb_dbi_open(txn, db, 0, &dbi) == 0)
		mdb_stat(txn, dbi, &st);
	mdb_txn_abort(txn);
	return st.ms_entries;
}

uint64_t su_key_records(kv_store_t *s)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t n = 0;

	if (mdb_txn_begin(kv_env(s), NULL, MDB_RDONLY, &txn) || mdb_cursor_open(txn, 1, &c))
		abort();
	for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
		const uint8_t *p = k.mv_data;
		if (k.mv_size > 4 && p[0] < 0x20 && (p[0] | p[1] | p[2] | p[3]))
			n++;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return n;
}

/* ---- the revision index against the records it indexes ------------------------------- */

static uint64_t rbe64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint64_t rle64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/*
 * The revision index as a sorted array of (rev, bid ‖ key) items, read from its runs
 * (kv_format.h): checks that each run is well-formed, non-empty, its items ascending and
 * not below its key, and every item above the previous run's. NULL on a malformed index.
 */
typedef struct revs_item {
	uint64_t rev;
	const uint8_t *bk;   /* bid ‖ key, klen + 4 bytes (into the read txn's pages) */
	size_t klen;
} revs_item_t;

static revs_item_t *revs_items(MDB_txn *txn, MDB_dbi revs, size_t *n_out)
{
	MDB_cursor *c;
	MDB_val k, v;
	revs_item_t *it = NULL;
	size_t n = 0, cap = 0;
	uint64_t last = 0;
	bool bad = false;

	if (mdb_cursor_open(txn, revs, &c))
		abort();
	for (int op = MDB_FIRST; !bad && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
		const uint8_t *p = v.mv_data;
		size_t off = 0;
		if (v.mv_size < 4)
			abort();
		v.mv_size -= 4; /* the checksum trailer (kv_format.h, format 3) */
		uint64_t base = rbe64(k.mv_data);
		bad = k.mv_size != 8 || v.mv_size == 0 || v.mv_size > 8 + 1024 ||
		      (n && base <= last);
		while (!bad && off < v.mv_size) {
			uint64_t rev = base + (p[off] | (uint64_t)p[off + 1] << 8);
			size_t klen = p[off + 2] | (size_t)p[off + 3] << 8;
			if (off + 8 > v.mv_size || off + 8 + klen > v.mv_size || klen == 0 ||
			    (n && rev <= last)) {
				bad = true;
				break;
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				if (!(it = realloc(it, cap * sizeof *it)))
					abort();
			}
			it[n++] = (revs_item_t){rev, p + off + 4, klen};
			last = rev;
			off += 8 + klen;
		}
	}
	mdb_cursor_close(c);
	if (bad) {
		fprintf(stderr, "revs: malformed run after revision %llu\n", (unsigned long long)last);
		free(it);
		return NULL;
	}
	*n_out = n;
	return it ? it : malloc(1);
}

/* revs must map rev to bid ‖ key. rec: the record (a long key's bytes live in it). */
static int revs_has(const revs_item_t *it, size_t n, uint64_t rev, const uint8_t *bid,
		    const uint8_t *enc, size_t elen, const MDB_val *rec)
{
	const uint8_t *r = rec->mv_data, *key = enc;
	size_t klen = elen, lo = 0, hi = n;

	if (rec->mv_size < 25)
		return -1;
	if (r[24] & 0x80) { /* long key: u16 len ‖ key after the header */
		klen = (size_t)r[25] | (size_t)r[26] << 8;
		key = r + 27;
	}
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (it[mid].rev < rev)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == n || it[lo].rev != rev || it[lo].klen != klen || memcmp(it[lo].bk, bid, 4) ||
	    memcmp(it[lo].bk + 4, key, klen)) {
		fprintf(stderr, "revs: no or wrong item for revision %llu\n", (unsigned long long)rev);
		return -1;
	}
	return 0;
}

int su_check_revs(kv_store_t *s)
{
	MDB_txn *txn;
	MDB_dbi revs, hist;
	MDB_cursor *c;
	MDB_val k, v;
	revs_item_t *it;
	size_t nit = 0;
	uint64_t n = 0;
	int rc = 0;

	if (mdb_txn_begin(kv_env(s), NULL, MDB_RDONLY, &txn) || mdb_dbi_open(txn, "revs", 0, &revs) ||
	    mdb_dbi_open(txn, "hist", 0, &hist))
		abort();
	if (!(it = revs_items(txn, revs, &nit))) {
		mdb_txn_abort(txn);
		return -1;
	}
	if (mdb_cursor_open(txn, 1, &c))
		abort();
	for (int op = MDB_FIRST; !rc && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
		const uint8_t *p = k.mv_data;
		if (k.mv_size <= 4 || p[0] >= 0x20 || !(p[0] | p[1] | p[2] | p[3]))
			continue;
		v.mv_size -= 4; /* checksum trailer */
		rc = revs_has(it, nit, rle64(v.mv_data), p, p + 4, k.mv_size - 4, &v);
		n++;
	}
	mdb_cursor_close(c);
	if (mdb_cursor_open(txn, hist, &c))
		abort();
	for (int op = MDB_FIRST; !rc && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
		const uint8_t *p = k.mv_data;
		size_t elen = (size_t)p[4] << 8 | p[5];
		if (k.mv_size != 6 + elen + 8) {
			rc = -1;
			break;
		}
		v.mv_size -= 4; /* checksum trailer */
		rc = revs_has(it, nit, rbe64(p + 6 + elen), p, p + 6, elen, &v);
		n++;
	}
	mdb_cursor_close(c);
	if (!rc && nit != n) {
		fprintf(stderr, "revs: %zu items for %llu retained records\n", nit,
			(unsigned long long)n);
		rc = -1;
	}
	free(it);
	mdb_txn_abort(txn);
	return rc;
}

uint64_t su_revs_items(kv_store_t *s)
{
	MDB_txn *txn;
	MDB_dbi revs;
	revs_item_t *it;
	size_t n = 0;

	if (mdb_txn_begin(kv_env(s), NULL, MDB_RDONLY, &txn) || mdb_dbi_open(txn, "revs", 0, &revs))
		abort();
	if (!(it = revs_items(txn, revs, &n)))
		abort();
	free(it);
	mdb_txn_abort(txn);
	return n;
}
