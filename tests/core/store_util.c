#include "tests/core/store_util.h"

#include <ftw.h>
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
