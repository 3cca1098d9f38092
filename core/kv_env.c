/*
 * The store's LMDB environment: open, close, map growth, the reader gate, stats.
 *
 * MDB_NOTLS: read transactions are tied to the kv_rtxn_t that owns them, not to a thread.
 * The gateway keeps one kv_rtxn_t per connection or worker and reuses it with
 * reset/renew; libuv may run work on pool threads, and one thread may hold two read txns at
 * once (a snapshot stream and a GET). Without MDB_NOTLS each of those would be a bug
 * (LMDB's per-thread reader slot allows one read txn per thread, and a slot would leak with
 * every pool thread that exits). The cost is one reader slot per live kv_rtxn_t, hence
 * max_readers (default 512).
 */
#include "core/kv_format.h"
#include "core/lmdb_size.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "proto/log.h"
#include <xxhash.h>

#define KV_DEFAULT_MAP      (1ull << 30)
#define KV_DEFAULT_MAP_MAX  (1ull << 40)
#define KV_DEFAULT_READERS  512u

const char *const kv__db_names[KV__DB_N] = {
	[KV__DB_MAIN] = NULL,
	[KV__DB_META] = "meta",
	[KV__DB_BIDS] = "bids",
	[KV__DB_HIST] = "hist",
	[KV__DB_REVS] = "revs",
	[KV__DB_TTL] = "ttl",
};

int kv__err(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_MAP_FULL:
		return KV__EMAPFULL;
	case ENOSPC:
	case EFBIG:
	case EDQUOT:
		return KV_EFULL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
		return KV_ECORRUPT;
	case EACCES:
		return -EACCES;
	default:
		if (rc > 0)
			return -rc; /* errno */
		if (rc < 0 && rc > -30000)
			return rc;  /* already ours (negative errno) */
		if (rc <= -30100 && rc > -30400)
			return rc;  /* already a geokv code */
		return KV_EINTERNAL;
	}
}

/* ---- value checksums ------------------------------------------------------------------ */

uint32_t kv__sum(unsigned db, const MDB_val *k, const void *v, size_t vlen)
{
	XXH64_hash_t h = XXH3_64bits_withSeed(k->mv_data, k->mv_size, 0x67656f6b76000000ull | db);
	return (uint32_t)XXH3_64bits_withSeed(v, vlen, h);
}

int kv__check(kv_store_t *s, unsigned db, const MDB_val *k, MDB_val *v)
{
	uint64_t n;

	if (!kv__summed(db, k))
		return 0;
	if (v->mv_size >= KV__SUM) {
		size_t len = v->mv_size - KV__SUM;
		if (kv__rle32((const uint8_t *)v->mv_data + len) == kv__sum(db, k, v->mv_data, len)) {
			v->mv_size = len;
			return 0;
		}
	}
	n = atomic_fetch_add(&s->corrupt, 1) + 1;
	if (n <= 16 || n % 1024 == 0)
		GK_ERROR("store", "a record failed its checksum, refusing it", "table=%s key_len=%zu "
			 "value_len=%zu corrupt_total=%" PRIu64, db == KV__DB_MAIN ? "main" :
			 kv__db_names[db], k->mv_size, v->mv_size, n);
	return MDB_CORRUPTED;
}

uint64_t kv_corrupt_count(kv_store_t *s)
{
	return atomic_load(&s->corrupt);
}

/* ---- reader gate ---------------------------------------------------------------------- */

void kv__reader_enter(kv_store_t *s)
{
	for (;;) {
		atomic_fetch_add(&s->gate_readers, 1);
		if (!atomic_load(&s->gate_closed))
			return;
		/* A remap is waiting for readers to drain: step back out until it is done. */
		atomic_fetch_sub(&s->gate_readers, 1);
		while (atomic_load(&s->gate_closed))
			sched_yield();
	}
}

void kv__reader_exit(kv_store_t *s)
{
	atomic_fetch_sub(&s->gate_readers, 1);
}

int kv__remap(kv_store_t *s, size_t new_size, bool wait)
{
	MDB_envinfo info;
	int rc;

	if (new_size && s->map_size >= s->map_max)
		return KV_EFULL;
	if (new_size > s->map_max)
		new_size = s->map_max;
	pthread_mutex_lock(&s->gate_mu);
	atomic_store(&s->gate_closed, true);
	while (atomic_load(&s->gate_readers) > 0) {
		if (!wait) {
			atomic_store(&s->gate_closed, false);
			pthread_mutex_unlock(&s->gate_mu);
			return -EBUSY;
		}
		struct timespec ts = {0, 50 * 1000};
		nanosleep(&ts, NULL);
	}
	rc = mdb_env_set_mapsize(s->env, new_size);
	if (rc == 0 && mdb_env_info(s->env, &info) == 0)
		s->map_size = info.me_mapsize;
	atomic_store(&s->gate_closed, false);
	pthread_mutex_unlock(&s->gate_mu);
	if (rc) {
		GK_ERROR("store", "map resize failed", "size=%zu err=\"%s\"", new_size, mdb_strerror(rc));
		return kv__err(rc);
	}
	if (new_size)
		GK_INFO("store", "map grown", "size=%zu max=%zu", s->map_size, s->map_max);
	return 0;
}

int kv__rtxn_begin(kv_store_t *s, MDB_txn **txn)
{
	int rc;

	for (int tries = 0;; tries++) {
		kv__reader_enter(s);
		if (*txn)
			rc = mdb_txn_renew(*txn);
		else
			rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
		if (rc == 0)
			return 0;
		kv__reader_exit(s);
		if (*txn) {
			mdb_txn_abort(*txn);
			*txn = NULL;
		}
		/* The writer process grew the map past ours: adopt its size, then retry. */
		if (rc == MDB_MAP_RESIZED && tries < 3) {
			rc = kv__remap(s, 0, true);
			if (rc)
				return rc;
			continue;
		}
		return kv__err(rc);
	}
}

void kv__rtxn_end(kv_store_t *s, MDB_txn *txn, bool keep)
{
	if (keep)
		mdb_txn_reset(txn);
	else
		mdb_txn_abort(txn);
	kv__reader_exit(s);
}

/* ---- meta ---------------------------------------------------------------------------- */

int kv__meta_get64(MDB_txn *txn, kv_store_t *s, const char *name, uint64_t *v)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = kv__get(txn, s, KV__DB_META, &k, &d);

	if (rc == MDB_NOTFOUND) {
		*v = 0;
		return 0;
	}
	if (rc)
		return kv__err(rc);
	if (d.mv_size == 8)
		*v = kv__rle64(d.mv_data);
	else if (d.mv_size == 4)
		*v = kv__rle32(d.mv_data);
	else
		return KV_ECORRUPT;
	return 0;
}

int kv__meta_put64(MDB_txn *txn, kv_store_t *s, const char *name, uint64_t v)
{
	uint8_t b[8];
	MDB_val k = {strlen(name), (void *)name}, d = {8, b};

	kv__le64(b, v);
	return kv__err(kv__put(txn, s, KV__DB_META, &k, &d, 0));
}

static int meta_put32(MDB_txn *txn, kv_store_t *s, const char *name, uint32_t v)
{
	uint8_t b[4];
	MDB_val k = {strlen(name), (void *)name}, d = {4, b};

	kv__le32(b, v);
	return kv__err(kv__put(txn, s, KV__DB_META, &k, &d, 0));
}

/* ---- open / close -------------------------------------------------------------------- */

/* Open the databases in txn; creates them (and the format marker) on a new writable store. */
static int open_dbs(kv_store_t *s, MDB_txn *txn, bool rdonly)
{
	uint64_t format, applied, revision;
	MDB_stat st;
	int rc;

	for (int i = 0; i < KV__DB_N; i++) {
		rc = mdb_dbi_open(txn, kv__db_names[i], rdonly ? 0 : MDB_CREATE, &s->dbi[i]);
		if (rc == MDB_NOTFOUND)
			return KV_ECORRUPT; /* not a geokv store (or an unfinished install) */
		if (rc)
			return kv__err(rc);
	}
	/* The format marker, read raw first: a store of format 2 or older has no trailers, and
	 * must be named as such, not as a record failing its checksum. */
	{
		MDB_val fk = {6, (void *)"format"}, fv;
		rc = mdb_get(txn, s->dbi[KV__DB_META], &fk, &fv);
		if (rc == 0 && fv.mv_size == 4 && kv__rle32(fv.mv_data) < KV__FORMAT) {
			GK_ERROR("store", "store of an older format, without record checksums",
				 "format=%u supported=%u hint=\"in a group, move state/ aside: the "
				 "member rebuilds it from the others; alone, dump and reload\"",
				 kv__rle32(fv.mv_data), KV__FORMAT);
			return KV_ECORRUPT;
		}
		if (rc != 0 && rc != MDB_NOTFOUND)
			return kv__err(rc);
	}
	if ((rc = kv__meta_get64(txn, s, "format", &format)))
		return rc;
	if (format == 0) {
		/* A new store, unless something else already lives here. */
		MDB_cursor *c;
		MDB_val k, v;
		for (int i = 1; i < KV__DB_N; i++) {
			if ((rc = mdb_stat(txn, s->dbi[i], &st)))
				return kv__err(rc);
			if (st.ms_entries)
				return KV_ECORRUPT;
		}
		if ((rc = mdb_cursor_open(txn, s->dbi[KV__DB_MAIN], &c)))
			return kv__err(rc);
		rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
		mdb_cursor_close(c);
		if (rc == 0 && *(uint8_t *)k.mv_data < KV__NAME_MIN)
			return KV_ECORRUPT;
		if (rdonly)
			return KV_ECORRUPT;
		if ((rc = meta_put32(txn, s, "format", KV__FORMAT)) ||
		    (rc = meta_put32(txn, s, "next_bucket", 1)) ||
		    (rc = kv__meta_put64(txn, s, "applied", 0)) ||
		    (rc = kv__meta_put64(txn, s, "revision", 0)))
			return rc;
	} else if (format != KV__FORMAT) {
		GK_ERROR("store", "unsupported store format", "format=%llu supported=%u",
			 (unsigned long long)format, KV__FORMAT);
		return KV_ECORRUPT;
	}
	if ((rc = kv__meta_get64(txn, s, "applied", &applied)) ||
	    (rc = kv__meta_get64(txn, s, "revision", &revision)))
		return rc;
	atomic_store(&s->applied, applied);
	atomic_store(&s->revision, revision);
	return 0;
}

int kv_open(kv_store_t **out, const char *dir, const kv_opts_t *opts)
{
	kv_opts_t o = opts ? *opts : (kv_opts_t){0};
	bool rdonly = o.flags & KV_OPEN_RDONLY;
	unsigned envflags = MDB_NOTLS;
	kv_store_t *s;
	MDB_envinfo info;
	MDB_txn *txn = NULL;
	int rc, dead;

	*out = NULL;
	if (!o.map_size)
		o.map_size = KV_DEFAULT_MAP;
	if (!o.map_max)
		o.map_max = KV_DEFAULT_MAP_MAX;
	if (o.map_size > o.map_max)
		o.map_size = o.map_max;
	if (!o.max_readers)
		o.max_readers = KV_DEFAULT_READERS;
	if (!rdonly && mkdir(dir, 0750) != 0 && errno != EEXIST)
		return -errno;

	s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->flags = o.flags;
	s->map_max = o.map_max;
	pthread_mutex_init(&s->gate_mu, NULL);

	if ((rc = mdb_env_create(&s->env)))
		goto fail;
	if ((rc = mdb_env_set_maxdbs(s->env, KV__DB_N)) ||
	    (rc = mdb_env_set_maxreaders(s->env, o.max_readers)))
		goto fail;
	/* A reader adopts the writer's map size (LMDB takes the larger of ours and the file's). */
	if ((rc = mdb_env_set_mapsize(s->env, rdonly ? 0 : o.map_size)))
		goto fail;
	if (rdonly)
		envflags |= MDB_RDONLY;
	if (o.flags & KV_OPEN_NOSYNC)
		envflags |= MDB_NOSYNC;
	if ((rc = mdb_env_open(s->env, dir, envflags, 0640)))
		goto fail;
	uint64_t have, want;
	if (gk_lmdb_truncated(s->env, dir, &have, &want)) {
		GK_ERROR("store", "store file is truncated", "dir=%s bytes=%" PRIu64 " used=%" PRIu64
			 " err=KV_ECORRUPT", dir, have, want);
		rc = KV_ECORRUPT;
		goto fail;
	}
	if ((rc = mdb_env_info(s->env, &info)))
		goto fail;
	s->map_size = info.me_mapsize;
	if (s->map_max < s->map_size)
		s->map_max = s->map_size;
	if (!rdonly)
		mdb_reader_check(s->env, &dead); /* free slots of crashed readers */

	if ((rc = mdb_txn_begin(s->env, NULL, rdonly ? MDB_RDONLY : 0, &txn)))
		goto fail;
	if ((rc = open_dbs(s, txn, rdonly)))
		goto fail;
	rc = mdb_txn_commit(txn); /* also for a read txn: keeps the dbi handles */
	txn = NULL;
	if (rc)
		goto fail;
	*out = s;
	return 0;

fail:
	if (txn)
		mdb_txn_abort(txn);
	rc = kv__err(rc);
	if (rc == KV__EMAPFULL)
		rc = KV_EFULL;
	if (rc == KV_EINTERNAL)
		GK_ERROR("store", "open failed", "dir=%s", dir);
	if (s->env)
		mdb_env_close(s->env);
	pthread_mutex_destroy(&s->gate_mu);
	free(s);
	return rc;
}

void kv_close(kv_store_t *s)
{
	if (!s)
		return;
	mdb_env_close(s->env);
	pthread_mutex_destroy(&s->gate_mu);
	free(s->scratch);
	free(s->plain);
	free(s);
}

MDB_env *kv_env(kv_store_t *s)
{
	return s->env;
}

/* ---- cheap accessors ------------------------------------------------------------------ */

/* A read-only store has no committed values of its own: read them from a short txn. */
static void refresh_ro(kv_store_t *s)
{
	MDB_txn *txn = NULL;
	uint64_t a, r;

	if (!(s->flags & KV_OPEN_RDONLY) || kv__rtxn_begin(s, &txn))
		return;
	if (kv__meta_get64(txn, s, "applied", &a) == 0 && kv__meta_get64(txn, s, "revision", &r) == 0) {
		atomic_store(&s->applied, a);
		atomic_store(&s->revision, r);
	}
	kv__rtxn_end(s, txn, false);
}

uint64_t kv_applied_index(kv_store_t *s)
{
	refresh_ro(s);
	return atomic_load(&s->applied);
}

uint64_t kv_revision(kv_store_t *s)
{
	refresh_ro(s);
	return atomic_load(&s->revision);
}

int kv_sync(kv_store_t *s)
{
	if (s->flags & KV_OPEN_RDONLY)
		return 0;
	return kv__err(mdb_env_sync(s->env, 1));
}

int kv_stats(kv_store_t *s, kv_stats_t *st)
{
	MDB_txn *txn = NULL;
	MDB_envinfo info;
	MDB_stat ms;
	MDB_cursor *c = NULL;
	MDB_val k, v;
	kv__bucket_t b;
	int rc;

	memset(st, 0, sizeof *st);
	if ((rc = kv__rtxn_begin(s, &txn)))
		return rc;
	if ((rc = kv__meta_get64(txn, s, "applied", &st->applied)) ||
	    (rc = kv__meta_get64(txn, s, "revision", &st->revision)))
		goto out;
	if ((rc = kv__err(mdb_cursor_open(txn, s->dbi[KV__DB_MAIN], &c))))
		goto out;
	k.mv_size = 4;
	k.mv_data = (void *)"\0\0\0";
	for (int op = MDB_SET_RANGE; (rc = kv__cget(c, s, KV__DB_MAIN, &k, &v, op)) == 0; op = MDB_NEXT) {
		if (k.mv_size < 4 || memcmp(k.mv_data, "\0\0\0\0", 4) != 0)
			break;
		if ((rc = kv__bucket_parse(&v, &b)))
			goto out;
		st->buckets++;
		st->keys += b.keys;
	}
	rc = rc == MDB_NOTFOUND ? 0 : kv__err(rc);
	if (rc == 0 && (rc = kv__err(mdb_env_info(s->env, &info))) == 0 &&
	    (rc = kv__err(mdb_env_stat(s->env, &ms))) == 0) {
		uint64_t pages = 2; /* the two meta pages */
		MDB_stat ds;
		st->map_size = info.me_mapsize;
		st->map_used = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
		/* LMDB's free-list table (dbi 0), then ours (main first) */
		for (int i = 0; i < 1 + KV__DB_N && rc == 0; i++)
			if ((rc = kv__err(mdb_stat(txn, i == 0 ? 0 : s->dbi[i - 1], &ds))) == 0)
				pages += ds.ms_branch_pages + ds.ms_leaf_pages + ds.ms_overflow_pages;
		st->map_live = pages * ms.ms_psize < st->map_used ? pages * ms.ms_psize : st->map_used;
		st->corrupt = atomic_load(&s->corrupt);
	}
out:
	if (c)
		mdb_cursor_close(c);
	kv__rtxn_end(s, txn, false);
	return rc;
}
