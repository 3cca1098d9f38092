/*
 * The primary's log environment (see core/log.h for the contract).
 *
 * On-disk layout, LMDB env with two named databases:
 *   "entries"  key: u64 index, big-endian (so LMDB's byte order is index order)
 *              value: u8 version (1), u8 type, u16 reserved (0), u32 len, u64 term,
 *                     u64 xxh64, then len data bytes (all integers little-endian)
 *   "meta"     "format" -> "geokv-log-1"
 *              "hard"   -> u64 term, u64 vote, u64 commit, u64 xxh64
 *              "snap"   -> u64 index, u64 term, u64 xxh64
 *              "sconf"  -> u64 n, 16 x u64 member id, u64 xxh64 (absent = no members)
 *
 * The checksum of an entry covers its index, term, type and data, so an entry read back under
 * the wrong key (a misdirected write) fails as surely as a flipped bit. The meta records carry
 * one too, because a torn hard state could make a node vote twice in a term.
 *
 * Invariants kept by the writers: entries are exactly the indexes first..last with no gap;
 * first == snap.index + 1; the cached first/last/hard/snap equal what the last committed
 * write transaction stored (they are updated only after mdb_txn_commit succeeds).
 */
#include "core/log.h"
#include "core/lmdb_size.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack: no malloc per hash */
#include <xxhash.h>

#include "proto/errors.h"
#include "proto/log.h"

#define LOG_FORMAT        "geokv-log-1"
#define ENT_VERSION       1
#define ENT_HDR           24
#define LOG_SEED          0x67656f6b766c6f67ULL /* "geokvlog" */
#define DEFAULT_MAP_SIZE  ((size_t)4 << 30)

struct kv_log {
	MDB_env *env;
	MDB_dbi ents;
	MDB_dbi meta;
	_Atomic uint64_t first;
	_Atomic uint64_t last;
	pthread_mutex_t mu;       /* guards hard and snap (read from any thread) */
	kv_log_hard_t hard;
	kv_log_snap_t snap;
	char dir[256];
};

/* ---- encoding helpers ------------------------------------------------------------------ */

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void key_of(uint8_t k[8], uint64_t index)
{
	for (int i = 0; i < 8; i++)
		k[i] = (uint8_t)(index >> (56 - 8 * i));
}

static uint64_t index_of(const MDB_val *k)
{
	const uint8_t *p = k->mv_data;
	uint64_t v = 0;

	if (k->mv_size != 8)
		return 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint64_t ent_hash(uint64_t index, uint64_t term, uint8_t type, const void *data,
			 size_t len)
{
	XXH64_state_t st;
	uint8_t h[17];

	put_le64(h, index);
	put_le64(h + 8, term);
	h[16] = type;
	XXH64_reset(&st, LOG_SEED);
	XXH64_update(&st, h, sizeof h);
	if (len)
		XXH64_update(&st, data, len);
	return XXH64_digest(&st);
}

/* Map an LMDB code to ours; log the unexpected ones once, here, with context. */
static int lmdb_err(int rc, const char *what)
{
	if (rc == MDB_MAP_FULL)
		return KV_EFULL;
	if (rc > 0)
		return -rc; /* errno from the file system, e.g. ENOSPC */
	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
		return KV_ECORRUPT;
	GK_ERROR("log", "lmdb call failed", "op=%s err=\"%s\"", what, mdb_strerror(rc));
	return KV_EINTERNAL;
}

/*
 * Verify one stored entry value against the index it was stored under, and fill e.
 * Logs an ERROR naming the index on failure: this is the line an operator greps for.
 */
static int ent_decode(const kv_log_t *l, uint64_t index, const MDB_val *v, kv_log_entry_t *e)
{
	const uint8_t *p = v->mv_data;
	const char *why = NULL;

	if (v->mv_size < ENT_HDR)
		why = "truncated header";
	else if (p[0] != ENT_VERSION)
		why = "unknown version";
	else if (get_le32(p + 4) != v->mv_size - ENT_HDR)
		why = "length mismatch";
	else if (ent_hash(index, get_le64(p + 8), p[1], p + ENT_HDR, v->mv_size - ENT_HDR) !=
		 get_le64(p + 16))
		why = "checksum mismatch";
	if (why != NULL) {
		GK_ERROR("log", "entry failed its check, refused", "index=%llu reason=\"%s\" dir=%s",
			 (unsigned long long)index, why, l->dir);
		return KV_ECORRUPT;
	}
	e->index = index;
	e->type = p[1];
	e->term = get_le64(p + 8);
	e->data = p + ENT_HDR;
	e->len = v->mv_size - ENT_HDR;
	return 0;
}

/* ---- meta records ---------------------------------------------------------------------- */

static int meta_put(kv_log_t *l, MDB_txn *txn, const char *name, const uint64_t *w, int nw)
{
	uint8_t buf[8 * (KV_LOG_MAX_CONF + 2)];
	MDB_val k = {strlen(name), (void *)name}, v = {(size_t)(nw + 1) * 8, buf};
	int rc;

	for (int i = 0; i < nw; i++)
		put_le64(buf + 8 * i, w[i]);
	put_le64(buf + 8 * nw, XXH64(buf, (size_t)nw * 8, LOG_SEED));
	rc = mdb_put(txn, l->meta, &k, &v, 0);
	return rc ? lmdb_err(rc, "meta put") : 0;
}

/* Read a meta record of nw words; absent -> zeros. */
static int meta_get(kv_log_t *l, MDB_txn *txn, const char *name, uint64_t *w, int nw)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	const uint8_t *p;
	int rc = mdb_get(txn, l->meta, &k, &v);

	if (rc == MDB_NOTFOUND) {
		memset(w, 0, sizeof *w * (size_t)nw);
		return 0;
	}
	if (rc)
		return lmdb_err(rc, "meta get");
	p = v.mv_data;
	if (v.mv_size != (size_t)(nw + 1) * 8 ||
	    XXH64(p, (size_t)nw * 8, LOG_SEED) != get_le64(p + 8 * nw)) {
		GK_ERROR("log", "meta record failed its check", "record=%s dir=%s", name, l->dir);
		return KV_ECORRUPT;
	}
	for (int i = 0; i < nw; i++)
		w[i] = get_le64(p + 8 * i);
	return 0;
}

static int put_hard(kv_log_t *l, MDB_txn *txn, const kv_log_hard_t *hs)
{
	uint64_t w[3] = {hs->term, hs->vote, hs->commit};
	return meta_put(l, txn, "hard", w, 3);
}

static int put_snap(kv_log_t *l, MDB_txn *txn, const kv_log_snap_t *s)
{
	uint64_t w[2] = {s->index, s->term}, c[KV_LOG_MAX_CONF + 1] = {s->conf.n};
	int err;

	for (uint32_t i = 0; i < s->conf.n && i < KV_LOG_MAX_CONF; i++)
		c[1 + i] = s->conf.ids[i];
	if ((err = meta_put(l, txn, "snap", w, 2)) != 0)
		return err;
	return meta_put(l, txn, "sconf", c, KV_LOG_MAX_CONF + 1);
}

/* ---- open / close ---------------------------------------------------------------------- */

/* Load first/last/hard/snap from disk and check they agree. */
static int load_state(kv_log_t *l)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t w[3], cw[KV_LOG_MAX_CONF + 1];
	int rc, err;

	rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return lmdb_err(rc, "txn begin");
	if ((err = meta_get(l, txn, "hard", w, 3)) != 0)
		goto out;
	l->hard = (kv_log_hard_t){w[0], w[1], w[2]};
	if ((err = meta_get(l, txn, "snap", w, 2)) != 0)
		goto out;
	l->snap = (kv_log_snap_t){w[0], w[1], {0, {0}}};
	if ((err = meta_get(l, txn, "sconf", cw, KV_LOG_MAX_CONF + 1)) != 0)
		goto out;
	if (cw[0] > KV_LOG_MAX_CONF) {
		GK_ERROR("log", "snapshot membership is out of range", "n=%llu dir=%s",
			 (unsigned long long)cw[0], l->dir);
		err = KV_ECORRUPT;
		goto out;
	}
	l->snap.conf.n = (uint32_t)cw[0];
	for (uint32_t i = 0; i < l->snap.conf.n; i++)
		l->snap.conf.ids[i] = (uint32_t)cw[1 + i];
	if ((rc = mdb_cursor_open(txn, l->ents, &c)) != 0) {
		err = lmdb_err(rc, "cursor open");
		goto out;
	}
	err = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	if (rc == MDB_NOTFOUND) {
		l->first = l->snap.index + 1;
		l->last = l->snap.index;
	} else if (rc == 0) {
		uint64_t first = index_of(&k);
		if ((rc = mdb_cursor_get(c, &k, &v, MDB_LAST)) != 0) {
			err = lmdb_err(rc, "cursor last");
		} else {
			uint64_t last = index_of(&k);
			MDB_stat st;
			/* A gap between snapshot and first entry, or inside the log, would
			 * silently skip entries: refuse to open rather than apply around it. */
			if (first != l->snap.index + 1 || last < first ||
			    mdb_stat(txn, l->ents, &st) != 0 || st.ms_entries != last - first + 1)
				err = KV_ECORRUPT;
			if (err)
				GK_ERROR("log", "log indexes are not contiguous",
					 "first=%llu last=%llu snap=%llu dir=%s",
					 (unsigned long long)first, (unsigned long long)last,
					 (unsigned long long)l->snap.index, l->dir);
			l->first = first;
			l->last = last;
		}
	} else {
		err = lmdb_err(rc, "cursor first");
	}
	mdb_cursor_close(c);
out:
	mdb_txn_abort(txn);
	return err;
}

int kv_log_open(kv_log_t **out, const char *dir, const kv_log_opts_t *opts)
{
	kv_log_t *l;
	MDB_txn *txn = NULL;
	MDB_val k = {6, "format"}, v;
	int rc, err;

	*out = NULL;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	if ((l = calloc(1, sizeof *l)) == NULL)
		return -ENOMEM;
	pthread_mutex_init(&l->mu, NULL);
	snprintf(l->dir, sizeof l->dir, "%s", dir);
	if ((rc = mdb_env_create(&l->env)) != 0) {
		err = lmdb_err(rc, "env create");
		goto fail;
	}
	mdb_env_set_maxdbs(l->env, 4);
	mdb_env_set_mapsize(l->env, opts && opts->map_size ? opts->map_size : DEFAULT_MAP_SIZE);
	/* NOMETASYNC: see the header ("Durability"). NOTLS: read txns move between threads. */
	rc = mdb_env_open(l->env, dir, MDB_NOMETASYNC | MDB_NOTLS, 0644);
	if (rc) {
		err = rc > 0 ? -rc : lmdb_err(rc, "env open");
		goto fail;
	}
	uint64_t have, want;
	if (gk_lmdb_truncated(l->env, dir, &have, &want)) {
		GK_ERROR("log", "log file is truncated", "dir=%s bytes=%" PRIu64 " used=%" PRIu64
			 " err=KV_ECORRUPT", dir, have, want);
		err = KV_ECORRUPT;
		goto fail;
	}
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &l->ents)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &l->meta)) != 0) {
		err = lmdb_err(rc, "open dbs");
		goto fail;
	}
	rc = mdb_get(txn, l->meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		v = (MDB_val){strlen(LOG_FORMAT), LOG_FORMAT};
		rc = mdb_put(txn, l->meta, &k, &v, 0);
	} else if (rc == 0 && (v.mv_size != strlen(LOG_FORMAT) ||
			       memcmp(v.mv_data, LOG_FORMAT, v.mv_size) != 0)) {
		GK_ERROR("log", "unknown log format", "dir=%s", dir);
		err = KV_ECORRUPT;
		goto fail;
	}
	if (rc || (rc = mdb_txn_commit(txn)) != 0) {
		txn = NULL;
		err = lmdb_err(rc, "format marker");
		goto fail;
	}
	txn = NULL;
	if ((err = load_state(l)) != 0)
		goto fail;
	*out = l;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	if (l->env)
		mdb_env_close(l->env);
	pthread_mutex_destroy(&l->mu);
	free(l);
	return err;
}

void kv_log_close(kv_log_t *l)
{
	if (l == NULL)
		return;
	mdb_env_sync(l->env, 1);
	mdb_env_close(l->env);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

MDB_env *kv_log_env(kv_log_t *l) { return l->env; }

int kv_log_space(kv_log_t *l, kv_log_space_t *sp)
{
	MDB_envinfo info;
	MDB_stat st;
	MDB_txn *txn;
	uint64_t pages = 0;
	int rc;

	if ((rc = mdb_env_info(l->env, &info)) != 0 || (rc = mdb_env_stat(l->env, &st)) != 0)
		return lmdb_err(rc, "env_info");
	if ((rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn)) != 0)
		return lmdb_err(rc, "txn_begin");
	/* LMDB's free-list table (dbi 0) and main table (dbi 1, holding the named ones), then
	 * the two named tables */
	for (int i = 0; i < 4 && rc == 0; i++) {
		MDB_dbi dbi = i < 2 ? (MDB_dbi)i : i == 2 ? l->ents : l->meta;
		MDB_stat ds;
		if ((rc = mdb_stat(txn, dbi, &ds)) == 0)
			pages += ds.ms_branch_pages + ds.ms_leaf_pages + ds.ms_overflow_pages;
	}
	mdb_txn_abort(txn);
	if (rc != 0)
		return lmdb_err(rc, "stat");
	sp->file = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	sp->used = (pages + 2) * st.ms_psize; /* + the two meta pages */
	if (sp->used > sp->file)
		sp->used = sp->file;
	sp->map = info.me_mapsize;
	return 0;
}
uint64_t kv_log_first_index(const kv_log_t *l) { return atomic_load(&l->first); }
uint64_t kv_log_last_index(const kv_log_t *l) { return atomic_load(&l->last); }

void kv_log_hard(kv_log_t *l, kv_log_hard_t *hs)
{
	pthread_mutex_lock(&l->mu);
	*hs = l->hard;
	pthread_mutex_unlock(&l->mu);
}

void kv_log_snap(kv_log_t *l, kv_log_snap_t *snap)
{
	pthread_mutex_lock(&l->mu);
	*snap = l->snap;
	pthread_mutex_unlock(&l->mu);
}

int kv_log_sync(kv_log_t *l)
{
	int rc = mdb_env_sync(l->env, 1);
	return rc ? lmdb_err(rc, "env sync") : 0;
}

/* ---- writes ---------------------------------------------------------------------------- */

/* Delete entries with index >= from inside txn. */
static int del_from(kv_log_t *l, MDB_txn *txn, uint64_t from)
{
	MDB_cursor *c;
	uint8_t kb[8];
	MDB_val k = {8, kb}, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, l->ents, &c)) != 0)
		return lmdb_err(rc, "cursor open");
	/* Re-seek after each delete: simpler than reasoning about where LMDB leaves a cursor
	 * after mdb_cursor_del, and truncation is rare (raft conflicts). */
	key_of(kb, from);
	while ((rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)) == 0) {
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
		k = (MDB_val){8, kb};
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : lmdb_err(rc, "truncate");
}

/* Delete entries with index <= upto inside txn. */
static int del_upto(kv_log_t *l, MDB_txn *txn, uint64_t upto)
{
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, l->ents, &c)) != 0)
		return lmdb_err(rc, "cursor open");
	while ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0 && index_of(&k) <= upto)
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : lmdb_err(rc, "compact");
}

static int commit(MDB_txn *txn)
{
	int rc = mdb_txn_commit(txn);
	return rc ? lmdb_err(rc, "txn commit") : 0;
}

int kv_log_append(kv_log_t *l, const kv_log_entry_t *ents, size_t n, const kv_log_hard_t *hs)
{
	uint64_t first = kv_log_first_index(l), last = kv_log_last_index(l);
	MDB_txn *txn;
	int rc, err = 0;

	if (n > 0) {
		if (ents[0].index < first || ents[0].index > last + 1 || ents[0].index == 0)
			return -EINVAL;
		for (size_t i = 1; i < n; i++)
			if (ents[i].index != ents[0].index + i)
				return -EINVAL;
	}
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		return lmdb_err(rc, "txn begin");
	if (n > 0 && ents[0].index <= last)
		err = del_from(l, txn, ents[0].index);
	for (size_t i = 0; i < n && err == 0; i++) {
		const kv_log_entry_t *e = &ents[i];
		uint8_t kb[8];
		MDB_val k = {8, kb}, v = {ENT_HDR + e->len, NULL};
		uint8_t *p;

		if (e->len > UINT32_MAX) {
			err = -EINVAL;
			break;
		}
		key_of(kb, e->index);
		/* MDB_RESERVE: build the value in place, no staging copy. MDB_APPEND: keys
		 * arrive in order (any conflicting suffix was deleted above), so LMDB fills
		 * pages sequentially (denser, faster). */
		rc = mdb_put(txn, l->ents, &k, &v,
			     MDB_RESERVE | MDB_APPEND);
		if (rc) {
			err = lmdb_err(rc, "append");
			break;
		}
		p = v.mv_data;
		p[0] = ENT_VERSION;
		p[1] = e->type;
		p[2] = p[3] = 0;
		put_le32(p + 4, (uint32_t)e->len);
		put_le64(p + 8, e->term);
		put_le64(p + 16, ent_hash(e->index, e->term, e->type, e->data, e->len));
		if (e->len)
			memcpy(p + ENT_HDR, e->data, e->len);
	}
	if (err == 0 && hs != NULL)
		err = put_hard(l, txn, hs);
	if (err) {
		mdb_txn_abort(txn);
		return err;
	}
	if ((err = commit(txn)) != 0)
		return err;
	if (n > 0)
		atomic_store(&l->last, ents[n - 1].index);
	if (hs != NULL) {
		pthread_mutex_lock(&l->mu);
		l->hard = *hs;
		pthread_mutex_unlock(&l->mu);
	}
	return 0;
}

int kv_log_set_hard(kv_log_t *l, const kv_log_hard_t *hs)
{
	return kv_log_append(l, NULL, 0, hs);
}

int kv_log_truncate(kv_log_t *l, uint64_t from)
{
	kv_log_snap_t snap;
	MDB_txn *txn;
	int rc, err;

	kv_log_snap(l, &snap);
	if (from <= snap.index)
		return -EINVAL;
	if (from > kv_log_last_index(l))
		return 0;
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		return lmdb_err(rc, "txn begin");
	if ((err = del_from(l, txn, from)) != 0) {
		mdb_txn_abort(txn);
		return err;
	}
	if ((err = commit(txn)) != 0)
		return err;
	atomic_store(&l->last, from - 1);
	return 0;
}

int kv_log_compact(kv_log_t *l, uint64_t upto)
{
	return kv_log_compact_conf(l, upto, NULL);
}

int kv_log_compact_conf(kv_log_t *l, uint64_t upto, const kv_log_conf_t *conf)
{
	kv_log_snap_t snap;
	kv_log_entry_t e;
	MDB_txn *txn;
	uint8_t kb[8];
	MDB_val k = {8, kb}, v;
	int rc, err;

	kv_log_snap(l, &snap);
	if (upto <= snap.index)
		return 0;
	if (upto > kv_log_last_index(l))
		return -ERANGE;
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		return lmdb_err(rc, "txn begin");
	key_of(kb, upto);
	if ((rc = mdb_get(txn, l->ents, &k, &v)) != 0)
		err = rc == MDB_NOTFOUND ? KV_ECORRUPT : lmdb_err(rc, "compact get");
	else
		err = ent_decode(l, upto, &v, &e);
	if (err == 0) {
		snap = (kv_log_snap_t){upto, e.term, conf ? *conf : snap.conf};
		err = put_snap(l, txn, &snap);
	}
	if (err == 0)
		err = del_upto(l, txn, upto);
	if (err) {
		mdb_txn_abort(txn);
		return err;
	}
	if ((err = commit(txn)) != 0)
		return err;
	pthread_mutex_lock(&l->mu);
	l->snap = snap;
	pthread_mutex_unlock(&l->mu);
	atomic_store(&l->first, upto + 1);
	return 0;
}

int kv_log_reset(kv_log_t *l, const kv_log_snap_t *snap)
{
	MDB_txn *txn;
	int rc, err;

	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		return lmdb_err(rc, "txn begin");
	if ((rc = mdb_drop(txn, l->ents, 0)) != 0)
		err = lmdb_err(rc, "drop");
	else
		err = put_snap(l, txn, snap);
	if (err) {
		mdb_txn_abort(txn);
		return err;
	}
	if ((err = commit(txn)) != 0)
		return err;
	pthread_mutex_lock(&l->mu);
	l->snap = *snap;
	pthread_mutex_unlock(&l->mu);
	atomic_store(&l->first, snap->index + 1);
	atomic_store(&l->last, snap->index);
	return 0;
}

int kv_log_set_conf(kv_log_t *l, const kv_log_conf_t *conf)
{
	kv_log_snap_t snap;
	MDB_txn *txn;
	int rc, err;

	if (conf->n > KV_LOG_MAX_CONF)
		return -EINVAL;
	kv_log_snap(l, &snap);
	snap.conf = *conf;
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		return lmdb_err(rc, "txn begin");
	if ((err = put_snap(l, txn, &snap)) != 0) {
		mdb_txn_abort(txn);
		return err;
	}
	if ((err = commit(txn)) != 0)
		return err;
	pthread_mutex_lock(&l->mu);
	l->snap = snap;
	pthread_mutex_unlock(&l->mu);
	return 0;
}

/* ---- reads ----------------------------------------------------------------------------- */

int kv_log_read_begin(kv_log_t *l, kv_log_rtxn_t *t)
{
	int rc;

	if (t->txn != NULL && t->l == l) {
		rc = mdb_txn_renew(t->txn);
		if (rc == 0)
			rc = mdb_cursor_renew(t->txn, t->cur);
	} else {
		kv_log_read_close(t);
		t->l = l;
		rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &t->txn);
		if (rc == 0 && (rc = mdb_cursor_open(t->txn, l->ents, &t->cur)) != 0) {
			mdb_txn_abort(t->txn);
			t->txn = NULL;
		}
	}
	if (rc)
		return lmdb_err(rc, "read begin");
	t->active = true;
	return 0;
}

void kv_log_read_end(kv_log_rtxn_t *t)
{
	if (t->active) {
		mdb_txn_reset(t->txn);
		t->active = false;
	}
}

void kv_log_read_close(kv_log_rtxn_t *t)
{
	if (t->txn != NULL) {
		mdb_cursor_close(t->cur);
		mdb_txn_abort(t->txn);
	}
	t->txn = NULL;
	t->cur = NULL;
	t->active = false;
}

/*
 * Bounds come from the txn's own view (first key, last key), not the cached atomics: a
 * concurrent compaction or append must not make a consistent snapshot look inconsistent.
 */
static int txn_bounds(kv_log_rtxn_t *t, uint64_t *first, uint64_t *last, uint64_t *snap_index)
{
	MDB_val k, v;
	uint64_t w[2];
	int rc, err;

	if ((err = meta_get(t->l, t->txn, "snap", w, 2)) != 0)
		return err;
	*snap_index = w[0];
	rc = mdb_cursor_get(t->cur, &k, &v, MDB_FIRST);
	if (rc == MDB_NOTFOUND) {
		*first = w[0] + 1;
		*last = w[0];
		return 0;
	}
	if (rc)
		return lmdb_err(rc, "cursor first");
	*first = index_of(&k);
	if ((rc = mdb_cursor_get(t->cur, &k, &v, MDB_LAST)) != 0)
		return lmdb_err(rc, "cursor last");
	*last = index_of(&k);
	return 0;
}

int kv_log_get(kv_log_rtxn_t *t, uint64_t index, kv_log_entry_t *e)
{
	uint8_t kb[8];
	MDB_val k = {8, kb}, v;
	uint64_t first, last, snap;
	int rc, err;

	key_of(kb, index);
	rc = mdb_cursor_get(t->cur, &k, &v, MDB_SET_KEY);
	if (rc == 0)
		return ent_decode(t->l, index, &v, e);
	if (rc != MDB_NOTFOUND)
		return lmdb_err(rc, "get");
	if ((err = txn_bounds(t, &first, &last, &snap)) != 0)
		return err;
	if (index < first)
		return KV_ENOTFOUND;
	if (index > last)
		return -ERANGE;
	GK_ERROR("log", "entry missing inside the log", "index=%llu dir=%s",
		 (unsigned long long)index, t->l->dir);
	return KV_ECORRUPT;
}

int kv_log_entries(kv_log_rtxn_t *t, uint64_t lo, uint64_t hi, size_t max_bytes,
		   kv_log_entry_cb cb, void *ctx, uint64_t *next)
{
	uint64_t first, last, snap, want = lo;
	uint8_t kb[8];
	MDB_val k = {8, kb}, v;
	size_t bytes = 0;
	int rc, err;

	if (next)
		*next = lo;
	if ((err = txn_bounds(t, &first, &last, &snap)) != 0)
		return err;
	if (lo < first)
		return KV_ENOTFOUND;
	if (lo > hi || hi > last + 1)
		return -ERANGE;
	if (lo == hi)
		return 0;
	key_of(kb, lo);
	for (rc = mdb_cursor_get(t->cur, &k, &v, MDB_SET_KEY); rc == 0 && want < hi;
	     rc = mdb_cursor_get(t->cur, &k, &v, MDB_NEXT)) {
		kv_log_entry_t e;

		if (index_of(&k) != want) {
			GK_ERROR("log", "entry missing inside the log", "index=%llu dir=%s",
				 (unsigned long long)want, t->l->dir);
			return KV_ECORRUPT;
		}
		if ((err = ent_decode(t->l, want, &v, &e)) != 0)
			return err;
		bytes += e.len;
		if (max_bytes && bytes > max_bytes && want > lo)
			break;
		if ((err = cb(ctx, &e)) != 0)
			return err;
		want++;
		if (next)
			*next = want;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_err(rc, "entries");
	if (want < hi && !(max_bytes && bytes > max_bytes)) {
		GK_ERROR("log", "entry missing inside the log", "index=%llu dir=%s",
			 (unsigned long long)want, t->l->dir);
		return KV_ECORRUPT;
	}
	return 0;
}

int kv_log_term(kv_log_rtxn_t *t, uint64_t index, uint64_t *term)
{
	kv_log_entry_t e;
	uint64_t w[2];
	int err;

	if (index == 0) {
		*term = 0;
		return 0;
	}
	if ((err = meta_get(t->l, t->txn, "snap", w, 2)) != 0)
		return err;
	if (index == w[0]) {
		*term = w[1];
		return 0;
	}
	if (index < w[0])
		return KV_ENOTFOUND;
	if ((err = kv_log_get(t, index, &e)) != 0)
		return err;
	*term = e.term;
	return 0;
}
