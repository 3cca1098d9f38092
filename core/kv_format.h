/*
 * geokv store internals: the on-disk layout of `state/` and what the kv_*.c files share.
 * Not a public header: only core/kv_*.c include it.
 *
 * ON-DISK LAYOUT (format 2). One LMDB environment: the unnamed main database plus five named
 * ones. Integers in keys are big-endian (so LMDB's memcmp order is numeric order); integers
 * in values are little-endian. "bid" is a bucket's u32 id: keys carry 4 bytes instead of the
 * bucket name.
 *
 *   main     0 (BE32) ‖ name           -> bucket record (the bucket directory)
 *            bid ‖ enc(key)            -> record: the key's LATEST record (value inline)
 *            "bids", "hist", ...       -> LMDB's own records of the named databases
 *   meta     "format"      -> u32 1         (absent = not a geokv store / unfinished install)
 *            "applied"     -> u64           last applied log index
 *            "revision"    -> u64           store revision (last revision handed out)
 *            "next_bucket" -> u32           next bucket id; ids are never reused, so a
 *                                           re-created bucket cannot see its old keys
 *   bids     bid (BE32)    -> name          (id -> name for the revision and TTL indexes)
 *   hist     bid ‖ u16 len ‖ enc(key) ‖ rev (BE64)  -> record: older retained records
 *   revs     rev (BE64)                -> run         one item per retained record (latest
 *                                         and hist, tombstones included), see "Revision
 *                                         runs" below: watch/feed scans it from a revision,
 *                                         in revision order
 *   ttl      expire_at (BE64) ‖ rev    -> bid ‖ key   live PUT records of buckets with a max
 *                                         age: kv_expired() reads it oldest-first
 *
 * Why the main database: LMDB finds a named database through a lookup in the main one at
 * the first use in every transaction. Keeping buckets and latest records in main makes a GET
 * exactly two B-tree searches (bucket, then key), like a bare LMDB get in a named database,
 * and makes the bucket lookup share the hot upper pages of the key tree. Bucket ids stay
 * below KV__BID_MAX so every data key starts with a byte below 0x20 and can never collide
 * with a database name (all lower-case ASCII); the snapshot skips keys from 0x20 up.
 *
 * Record (latest and hist values), 25-byte header then the value:
 *   u64 rev, u64 create_rev (0 for tombstones), u64 time_ms, u8 kind (proto_rec_kind, with
 *   KV__REC_LONGKEY set when the key is longer than KV__KEY_DIRECT: then u16 len ‖ full key
 *   follows the header), value bytes.
 *
 * Revision runs (format 2; format 1 had one revs entry per revision, value bid ‖ key): the
 *   revisions one log entry (an op or a batch) indexes are stored together, up to
 *   KV__RUN_MAX bytes per run (one item may exceed it alone: a long key). The run's key is
 *   its first revision ("base"); its value is items in revision order, each
 *     u16 off (LE, rev - base) ‖ u16 klen (LE) ‖ bid (BE32) ‖ key (klen bytes, the full key)
 *   so an item's bid ‖ key is one slice. Revisions are never shared by two runs and every
 *   item's revision is >= its run's key, so the run holding revision r is the last run with a
 *   key <= r; a reader scanning from r starts at that run and skips its items below r. When
 *   a record stops being retained its item is cut out of its run (the run keeps its key; a
 *   run left empty is deleted). Runs depend only on the entry, never on how entries were
 *   grouped into kv_apply calls, so equal logs still give byte-identical snapshots.
 *
 * Bucket record: u32 id, u32 history, u32 max_value, u64 max_age_ms, u64 created_rev,
 *   u64 keys (live), u64 bytes (live value bytes), u8 ctlen, content type.
 *
 * enc(key): LMDB keys are limited to 511 bytes but geokv keys may have 1024. A key of up
 * to KV__KEY_DIRECT (472) bytes is stored as itself, so listing order is byte order. A longer
 * key is stored as its first 472 bytes followed by the big-endian xxh64 of the whole key (480
 * bytes), with the whole key inside the record. Order stays byte order except among long keys
 * sharing their first 472 bytes (they sort by hash). Two long keys with the same prefix and
 * the same 64-bit hash cannot both exist: the second is refused with KV_EBADKEY.
 * The hist key carries enc's length so that the history of "a" never runs into that of "ab".
 *
 */
#ifndef GEOKV_CORE_KV_FORMAT_H
#define GEOKV_CORE_KV_FORMAT_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/kv.h"

#define KV__FORMAT          3u
#define KV__SUM             4u              /* checksum trailer on every value (format 3) */
#define KV__KEY_DIRECT      472u            /* longest key stored as itself */
#define KV__ENC_MAX         (KV__KEY_DIRECT + 8u)
#define KV__KEYS_KEY_MAX    (4u + KV__ENC_MAX)
#define KV__HIST_KEY_MAX    (4u + 2u + KV__ENC_MAX + 8u)
#define KV__REC_HDR         25u
#define KV__REC_KINDMASK    0x7fu
#define KV__REC_LONGKEY     0x80u
#define KV__BUCKET_FIXED    45u             /* bucket record before the content type */
#define KV__RUN_ITEM        8u              /* revs run item header: off, klen, bid */
#define KV__RUN_MAX         1024u           /* a run is closed before an item takes it past this */
#define KV__RUN_BUF         (KV__RUN_ITEM + PROTO_MAX_KEY) /* >= KV__RUN_MAX: longest run */
_Static_assert(KV__RUN_BUF >= KV__RUN_MAX, "a run buffer holds a full run");

/* Internal only, never returned by the API: MDB_MAP_FULL, which growing the map can cure
 * (ENOSPC cannot). kv_apply and kv_snapshot_install grow and retry, else say KV_EFULL. */
#define KV__EMAPFULL        (-30199)

enum kv__db {
	KV__DB_MAIN = 0,          /* unnamed: bucket directory and latest records */
	KV__DB_META,
	KV__DB_BIDS,
	KV__DB_HIST,
	KV__DB_REVS,
	KV__DB_TTL,
	KV__DB_N,
};

#define KV__BID_MAX 0x1fffffffu  /* data keys in main start below 0x20 (see above) */
/* Not a bucket: main's keys BE32(KV__BID_SESS) ‖ BE64(client) hold SBATCH client sessions
 * (kv_apply.c "sessions"), so snapshots carry them like any record. */
#define KV__BID_SESS KV__BID_MAX
#define KV__SESS_VAL 48u         /* u64 high ‖ 32-byte window ‖ u64 time_ms (LE) */
#define KV__SESS_WINDOW 256u     /* batches below the highest still told apart */
#define KV__SESS_TTL_MS (7ull * 24 * 3600 * 1000) /* a session unused this long may go */
#define KV__SESS_SWEEP  16u      /* sessions looked at when a new one starts */
#define KV__NAME_MIN 0x20u       /* main keys from here up are LMDB's database records */

/* Names of the LMDB databases, indexed by enum kv__db (NULL for main). */
extern const char *const kv__db_names[KV__DB_N];

/* ---- byte order ----------------------------------------------------------------------- */

static inline void kv__be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void kv__be64(uint8_t *p, uint64_t v)
{
	kv__be32(p, (uint32_t)(v >> 32));
	kv__be32(p + 4, (uint32_t)v);
}
static inline uint32_t kv__rbe32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t kv__rbe64(const uint8_t *p)
{
	return (uint64_t)kv__rbe32(p) << 32 | kv__rbe32(p + 4);
}
static inline void kv__le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void kv__le64(uint8_t *p, uint64_t v)
{
	kv__le32(p, (uint32_t)v);
	kv__le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t kv__rle32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t kv__rle64(const uint8_t *p)
{
	return kv__rle32(p) | (uint64_t)kv__rle32(p + 4) << 32;
}

/* The bucket directory key (0 ‖ name) in out (4 + PROTO_MAX_BUCKET bytes); its length. */
static inline size_t kv__bdir_key(uint8_t *out, const void *name, size_t nlen)
{
	memset(out, 0, 4);
	if (nlen)
		memcpy(out + 4, name, nlen);
	return 4 + nlen;
}

/* ---- the store ------------------------------------------------------------------------- */

/* A bucket as apply and reads see it (decoded bucket record). */
typedef struct kv__bucket {
	uint32_t id;
	uint32_t history;
	uint32_t max_value;
	uint64_t max_age_ms;
	uint64_t created_rev;
	uint64_t keys;
	uint64_t bytes;
	uint8_t ctlen;
	uint8_t ct[PROTO_MAX_CTYPE];
} kv__bucket_t;

/* One entry of apply's per-call bucket cache (see kv_apply.c). */
typedef struct kv__bcache {
	uint8_t name[PROTO_MAX_BUCKET];
	uint8_t nlen;
	bool exists;
	bool dirty;        /* counters changed: write the record back before commit */
	kv__bucket_t b;
} kv__bcache_t;

#define KV__BCACHE_MAX 64

struct kv_store {
	MDB_env *env;
	MDB_dbi dbi[KV__DB_N];
	unsigned flags;                /* kv_open_flags */
	size_t map_size;               /* current map size (writer) */
	size_t map_max;
	_Atomic uint64_t applied;      /* committed values, for kv_applied_index/kv_revision */
	_Atomic uint64_t revision;

	/*
	 * The reader gate. mdb_env_set_mapsize() may run only while no transaction of this
	 * process is active, yet reads run on any thread. Readers announce themselves in
	 * gate_readers (one atomic add per read, no lock on the GET path); a resizer closes
	 * the gate, waits for the count to drain, remaps, and reopens. Counting instead of a
	 * pthread rwlock lets a kv_rtxn_t begin on one thread and end on another (MDB_NOTLS).
	 */
	_Atomic int gate_readers;
	_Atomic bool gate_closed;
	pthread_mutex_t gate_mu;

	/* Writer-only scratch, reused across kv_apply calls (no allocation once warm). */
	kv__bcache_t bcache[KV__BCACHE_MAX];
	kv__bcache_t bcache_save[KV__BCACHE_MAX]; /* restored when a batch's nested txn aborts */
	unsigned nbcache;
	uint64_t wrev;                 /* revision inside the current write txn */
	uint8_t *scratch;              /* record copies (apply) */
	size_t scratch_cap;
	struct kv__plain *plain;       /* a plain batch's ops, decoded once (apply) */
	size_t plain_cap;
	uint64_t run_rev;              /* the open revision run (kv_apply.c revs_put): base, */
	size_t run_len;                /* bytes (0: no open run) */
	uint8_t run[KV__RUN_BUF];      /* and items */

	_Atomic uint64_t corrupt;      /* values that failed their checksum (any thread) */
};

/* ---- shared helpers (kv_env.c) ------------------------------------------------------- */

/* Map an LMDB/errno code to a geokv code: MDB_MAP_FULL -> KV__EMAPFULL, ENOSPC/EFBIG ->
 * KV_EFULL, MDB_CORRUPTED
 * and friends -> KV_ECORRUPT, other MDB_* -> KV_EINTERNAL, errno passes through negated. */
int kv__err(int mdb_rc);

/* Reader gate (see struct kv_store). enter may wait while a resize runs. */
void kv__reader_enter(kv_store_t *s);
void kv__reader_exit(kv_store_t *s);

/*
 * Remap after MDB_MAP_FULL (writer; grow to min(2x, map_max)) or MDB_MAP_RESIZED (reader
 * process; adopt the writer's size: new_size 0). With wait=false returns -EBUSY instead of
 * waiting for this process's readers. KV_EFULL when already at map_max.
 */
int kv__remap(kv_store_t *s, size_t new_size, bool wait);

/* Begin a read txn through the gate, handling MDB_MAP_RESIZED. *txn may be a reset txn to
 * renew, or NULL. On error the gate is left and *txn is NULL. */
int kv__rtxn_begin(kv_store_t *s, MDB_txn **txn);
void kv__rtxn_end(kv_store_t *s, MDB_txn *txn, bool keep);

/*
 * Checksummed values (format 3). Every value in every table ends with a 4-byte trailer:
 * the low 32 bits (LE) of XXH3-64 over the table's id, the key and the value, so a flipped
 * byte in a value, in its key (a record that moved to another key) or a value copied to
 * another table fails. LMDB's own records in main (keys from KV__NAME_MIN up) carry none.
 * Reads go through kv__get / kv__cget, which check and strip the trailer and turn a
 * mismatch into MDB_CORRUPTED (kv__err: KV_ECORRUPT), logged and counted in s->corrupt;
 * writes through kv__put / kv__cput, or kv__reserve / kv__creserve then kv__seal once the
 * caller has filled the reserved bytes.
 */
uint32_t kv__sum(unsigned db, const MDB_val *k, const void *v, size_t vlen);
int kv__check(kv_store_t *s, unsigned db, const MDB_val *k, MDB_val *v);
static inline bool kv__summed(unsigned db, const MDB_val *k)
{
	return db != KV__DB_MAIN || (k->mv_size > 0 && *(const uint8_t *)k->mv_data < KV__NAME_MIN);
}
static inline int kv__get(MDB_txn *t, kv_store_t *s, unsigned db, MDB_val *k, MDB_val *v)
{
	int rc = mdb_get(t, s->dbi[db], k, v);
	return rc ? rc : kv__check(s, db, k, v);
}
static inline int kv__cget(MDB_cursor *c, kv_store_t *s, unsigned db, MDB_val *k, MDB_val *v,
			   MDB_cursor_op op)
{
	int rc = mdb_cursor_get(c, k, v, op);
	return rc ? rc : kv__check(s, db, k, v);
}
/* v->mv_size bytes are reserved (plus the trailer); fill v->mv_data, then kv__seal. */
static inline int kv__reserve(MDB_txn *t, kv_store_t *s, unsigned db, MDB_val *k, MDB_val *v,
			      unsigned flags)
{
	size_t n = v->mv_size;
	int rc;
	v->mv_size = n + KV__SUM;
	v->mv_data = NULL;
	rc = mdb_put(t, s->dbi[db], k, v, flags | MDB_RESERVE);
	if (rc == 0)
		v->mv_size = n;
	return rc;
}
static inline int kv__creserve(MDB_cursor *c, MDB_val *k, MDB_val *v, unsigned flags)
{
	size_t n = v->mv_size;
	int rc;
	v->mv_size = n + KV__SUM;
	v->mv_data = NULL;
	rc = mdb_cursor_put(c, k, v, flags | MDB_RESERVE);
	if (rc == 0)
		v->mv_size = n;
	return rc;
}
static inline void kv__seal(unsigned db, const MDB_val *k, const MDB_val *v)
{
	kv__le32((uint8_t *)v->mv_data + v->mv_size, kv__sum(db, k, v->mv_data, v->mv_size));
}
/* Write v (copied: it must not point into the map) with its trailer. */
static inline int kv__put(MDB_txn *t, kv_store_t *s, unsigned db, MDB_val *k, const MDB_val *v,
			  unsigned flags)
{
	MDB_val d = {v->mv_size, NULL};
	int rc = kv__reserve(t, s, db, k, &d, flags);
	if (rc == 0) {
		if (v->mv_size)
			memcpy(d.mv_data, v->mv_data, v->mv_size);
		kv__seal(db, k, &d);
	}
	return rc;
}
static inline int kv__cput(MDB_cursor *c, unsigned db, MDB_val *k, const MDB_val *v,
			   unsigned flags)
{
	MDB_val d = {v->mv_size, NULL};
	int rc = kv__creserve(c, k, &d, flags);
	if (rc == 0) {
		if (v->mv_size)
			memcpy(d.mv_data, v->mv_data, v->mv_size);
		kv__seal(db, k, &d);
	}
	return rc;
}

/* meta reads/writes (u64 values) */
int kv__meta_get64(MDB_txn *txn, kv_store_t *s, const char *name, uint64_t *v);
int kv__meta_put64(MDB_txn *txn, kv_store_t *s, const char *name, uint64_t v);

/* ---- keys and records (kv_read.c) --------------------------------------------------- */

/* enc(key) into out (KV__ENC_MAX bytes); returns its length. */
size_t kv__key_enc(uint8_t *out, const uint8_t *key, size_t klen);

/* A decoded record header; value/key are views into the record. */
typedef struct kv__rec {
	uint64_t rev, create_rev, time_ms;
	uint8_t kind;                 /* PROTO_REC_* */
	const uint8_t *key;           /* the full key for a long key, else NULL */
	uint16_t klen;
	const uint8_t *value;
	uint32_t vlen;
} kv__rec_t;

/* 0 or KV_ECORRUPT. */
int kv__rec_parse(const MDB_val *v, kv__rec_t *r);

/* Bucket record <-> struct. parse: 0 or KV_ECORRUPT. */
int kv__bucket_parse(const MDB_val *v, kv__bucket_t *b);
size_t kv__bucket_format(uint8_t *out, const kv__bucket_t *b);

/* Look a bucket up by name in txn: 0, KV_EBADBUCKET, KV_ENOBUCKET, KV_ECORRUPT. */
int kv__bucket_get(MDB_txn *txn, kv_store_t *s, const void *name, size_t nlen, kv__bucket_t *b);

/* The key's latest record: 0, KV_ENOTFOUND, or an error. Checks a long key's full bytes. */
int kv__latest(MDB_txn *txn, kv_store_t *s, uint32_t bid, const uint8_t *key, size_t klen,
	       MDB_val *raw, kv__rec_t *r);

/* hist key prefix (bid ‖ len ‖ enc) into out; returns its length. */
size_t kv__hist_prefix(uint8_t *out, uint32_t bid, const uint8_t *key, size_t klen);

#endif
