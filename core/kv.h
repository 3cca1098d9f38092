/*
 * geokv store: buckets of keys with revisions and history, on LMDB (the `state/` environment).
 *
 * What it is: the deterministic state machine every primary and leaf runs, plus the read path
 * the daemons and the gateway use. All writes go through kv_apply(): a pure function of
 * (store, committed log entries). It never reads a clock (time comes in the entry), so the same
 * log yields byte-identical stores on every node. Reads use LMDB read transactions; any number
 * of other processes may open the same directory read-only (kv_open with KV_OPEN_RDONLY) while
 * one process applies.
 *
 * What it is not: the log, consensus, or networking (core/primary, raft/, proto/).
 *
 * Threads: one writer (the thread calling kv_apply / kv_expired / kv_sync). Read transactions
 * may run on any thread; a kv_rtxn_t belongs to one thread at a time, but may move between
 * threads (the environment uses MDB_NOTLS: a read txn is tied to its kv_rtxn_t, not to a
 * thread, so one thread may also hold several).
 *
 * Map growth: when the map must grow, kv_apply waits until no read transaction of this
 * process is active (LMDB can only remap then). Never call kv_apply while the same thread
 * holds an active kv_rtxn_t, and keep read transactions short: a snapshot stream holds one
 * for its whole length (the store grows early, at 3/4 full, to make that wait rare).
 * Readers in other processes adopt a grown map by themselves (kv_read_begin).
 *
 * Ownership: kv_store_t is opened and freed here. Every pointer a read returns (values, keys,
 * names) points into the LMDB memory map and is valid only until that read transaction ends
 * (kv_read_end / kv_read_close). Copy what you keep.
 *
 * Errors: 0, negative errno, or KV_E* (proto/errors.h); geokv_strerror() names them.
 */
#ifndef GEOKV_CORE_KV_H
#define GEOKV_CORE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "proto/proto.h"

typedef struct kv_store kv_store_t;

enum kv_open_flags {
	KV_OPEN_RDONLY = 1 << 0, /* open an existing store read-only (gateway, tools) */
	KV_OPEN_NOSYNC = 1 << 1, /* commits not fsynced (primaries: the raft log replays them);
				  * call kv_sync() before the log may be compacted */
};

typedef struct kv_opts {
	unsigned flags;          /* kv_open_flags */
	size_t map_size;         /* initial LMDB map size; 0 = 1 GiB */
	size_t map_max;          /* the map grows (doubling) up to this on MDB_MAP_FULL; 0 = 1 TiB.
				  * At the max, writes fail with KV_EFULL and nothing is lost. */
	unsigned max_readers;    /* LMDB reader slots; 0 = 512 */
} kv_opts_t;

/*
 * Open (creating when writable and absent) the store in directory `dir`.
 * @param[out] out  the store; free with kv_close().
 * Errors: negative errno from the file system, KV_ECORRUPT if the store's format marker is
 * unknown, KV_EINTERNAL for other LMDB failures (logged).
 */
int kv_open(kv_store_t **out, const char *dir, const kv_opts_t *opts);
void kv_close(kv_store_t *s);

/* The LMDB environment, for callers that need it (gateway stats, tests). Owned by the store. */
MDB_env *kv_env(kv_store_t *s);

/* ---- apply: the only write path ------------------------------------------------------ */

/* One committed log entry: `data` is a proto_entry_t encoding (proto_entry_encode). */
typedef struct kv_entry_in {
	uint64_t index;          /* log index; must be > kv_applied_index() and increasing */
	const uint8_t *data;
	size_t len;
} kv_entry_in_t;

/* The outcome of one entry, to answer the client that proposed it. */
typedef struct kv_result {
	int32_t status;          /* 0 or KV_E* (the op was not applied; nothing changed) */
	uint64_t rev;            /* revision of the op (BATCH: of its first op) */
	uint32_t count;          /* BATCH: ops applied (all or none); else 1 on success */
	uint32_t failed_at;      /* BATCH with status != 0: index of the failing op */
	int32_t failed_status;   /* BATCH: that op's own error */
} kv_result_t;

/*
 * Apply `n` committed entries in one LMDB write transaction, in order. For each entry,
 * res[i] says what happened; an op that breaks a rule (CAS mismatch, bad key, too big, no
 * bucket, ...) is not applied but its index is consumed, exactly the same on every node.
 * A BATCH op is all-or-nothing. Each applied op takes the next revision.
 *
 * Rules, where kv.h's callers might wonder:
 *   - an absent key's revision is 0: UPDATE with rev 0 creates it (NATS semantics);
 *   - DELETE of an absent or already deleted key, and PURGE of an absent key or of a purge
 *     marker, are KV_ENOTFOUND (no revision taken);
 *   - BUCKET_ADD of an existing bucket with the same config succeeds without taking a
 *     revision (res.rev = the bucket's created_rev); with another config KV_EBUCKETEXISTS;
 *     history 0 means 1, max_value 0 means 1 MiB, content type must be printable ASCII;
 *   - a record's create_rev is 0 for tombstones; a key written after a delete starts anew.
 * Entry indexes must increase and exceed kv_applied_index(), else -EINVAL, nothing applied.
 *
 * Returns 0 when all entries were processed and the transaction committed (so
 * kv_applied_index() == ents[n-1].index). Returns KV_ECORRUPT (nothing applied) if an
 * entry cannot be decoded, KV_EFULL if the store cannot grow, or another error; on error no
 * entry of this call is applied and the caller may retry after fixing the cause.
 * Errors for whole-call failures are not logged here: the caller logs once.
 */
int kv_apply(kv_store_t *s, const kv_entry_in_t *ents, size_t n, kv_result_t *res);

/* Last applied log index and store revision (0, 0 for a new store). Cheap. */
uint64_t kv_applied_index(kv_store_t *s);
uint64_t kv_revision(kv_store_t *s);

/* fsync the store (for KV_OPEN_NOSYNC); after it returns 0, everything applied is durable. */
int kv_sync(kv_store_t *s);

/*
 * Expiry is decided by the leader, applied by everyone: list live keys whose bucket has a
 * max age and whose last write is older than now_ms - max_age. Calls cb for at most `limit`
 * of them, oldest first; the leader proposes a DELETE (rev = that record's rev) for each.
 * Returns the number found, or an error.
 */
typedef void (*kv_expired_cb)(void *ctx, const proto_bytes_t *bucket, const proto_bytes_t *key,
			      uint64_t rev);
int kv_expired(kv_store_t *s, uint64_t now_ms, size_t limit, kv_expired_cb cb, void *ctx);

/* ---- reads ----------------------------------------------------------------------------- */

/*
 * A read transaction: a consistent snapshot of the store. Caller-allocated; reuse it across
 * requests (kv_read_begin renews the LMDB txn without allocation after the first use).
 * Initialise with {0}. Not shared between threads at once.
 */
typedef struct kv_rtxn {
	kv_store_t *s;
	MDB_txn *txn;            /* kept reset between uses */
	bool active;
	/* The last bucket kv_get resolved, kept across begin/end so that a GET is one B-tree
	 * search. Safe because bucket ids are never reused and deleting a bucket deletes its
	 * keys: a record found under the cached id proves the bucket still exists; a miss
	 * re-checks the bucket directory. Internal: leave alone. */
	uint32_t bid;
	uint8_t blen;
	uint8_t bname[PROTO_MAX_BUCKET];
} kv_rtxn_t;

int  kv_read_begin(kv_store_t *s, kv_rtxn_t *t);
void kv_read_end(kv_rtxn_t *t);    /* ends the snapshot; keeps the txn for the next begin */
void kv_read_close(kv_rtxn_t *t);  /* frees it */

/* Revision and applied index as of this read transaction. */
uint64_t kv_txn_revision(kv_rtxn_t *t);
uint64_t kv_txn_applied(kv_rtxn_t *t);

/*
 * The key's latest record (rev == 0) or the record current at revision `rev` (served from the
 * key's retained history; KV_ENOTFOUND when no longer retained). A key whose latest record is
 * a delete or purge returns KV_ENOTFOUND from kv_get, but kv_get_rec returns the tombstone.
 * @param[out] rec  views into the map, valid until the txn ends.
 * Errors: KV_EBADBUCKET, KV_EBADKEY, KV_ENOBUCKET, KV_ENOTFOUND.
 */
int kv_get(kv_rtxn_t *t, const void *bucket, size_t blen, const void *key, size_t klen,
	   uint64_t rev, proto_rec_t *rec);
int kv_get_rec(kv_rtxn_t *t, const void *bucket, size_t blen, const void *key, size_t klen,
	       uint64_t rev, proto_rec_t *rec);

/* Bucket config and counters. Errors: KV_EBADBUCKET, KV_ENOBUCKET. */
int kv_bucket_info(kv_rtxn_t *t, const void *bucket, size_t blen, proto_bucket_info_t *info);

/*
 * Iterators call cb for each item in order until cb returns non-zero (stop) or `limit` items
 * (0 = no limit). *more is set when items remained. They return 0 or an error.
 * A cb that returns non-zero did not take that item: iteration stops with *more = true.
 *   kv_keys:    live keys of a bucket with the given prefix, sorted, starting after `after`.
 *   kv_history: retained records of one key, oldest first, with rev > after_rev.
 *   kv_buckets: buckets sorted by name, after `after`.
 */
typedef int (*kv_key_cb)(void *ctx, const proto_bytes_t *key);
typedef int (*kv_rec_cb)(void *ctx, const proto_rec_t *rec);
typedef int (*kv_bucket_cb)(void *ctx, const proto_bucket_info_t *info);
int kv_keys(kv_rtxn_t *t, const void *bucket, size_t blen, const void *prefix, size_t plen,
	    const void *after, size_t alen, size_t limit, kv_key_cb cb, void *ctx, bool *more);
int kv_history(kv_rtxn_t *t, const void *bucket, size_t blen, const void *key, size_t klen,
	       uint64_t after_rev, size_t limit, kv_rec_cb cb, void *ctx, bool *more);
int kv_buckets(kv_rtxn_t *t, const void *after, size_t alen, size_t limit, kv_bucket_cb cb,
	       void *ctx, bool *more);

/*
 * kv_changes (core/kv_watch.c): the records written at revisions >= from_rev (0 = the next
 * revision) in bucket under key prefix, in revision order, tombstones included, as long as
 * they are retained. Calls cb for at most `limit` of them and looks at no more than
 * `scan_max` revisions of any bucket; *next_rev is where to continue (past every revision
 * looked at), *more says there may be more now. cb returning non-zero stops before that
 * record (*next_rev is its revision). Errors: KV_EBADBUCKET, KV_ENOBUCKET, KV_ECORRUPT.
 */
int kv_changes(kv_rtxn_t *t, const void *bucket, size_t blen, const void *prefix, size_t plen,
	       uint64_t from_rev, size_t limit, size_t scan_max, kv_rec_cb cb, void *ctx,
	       uint64_t *next_rev, bool *more);

/*
 * Answer any read op (GET, KEYS, HISTORY, BUCKET_INFO, BUCKET_LIST, WATCH, SCAN) by encoding its RESP body
 * (proto.h, "responses") into w. Shared by the primary and, later, leaves. Returns 0, a KV_E*
 * to send as an error, or PROTO_ETOOBIG if w is too small (lists stop early with more=1
 * instead, so that happens only for a single record).
 */
int kv_read_op(kv_rtxn_t *t, const proto_op_t *op, proto_wbuf_t *w);

/* ---- snapshots --------------------------------------------------------------------- */

/*
 * A snapshot is a consistent copy of the whole store taken in one read transaction, streamed
 * as a sequence of chunks, each carrying an xxhash64 of its bytes, and a trailer with the
 * applied index, revision and record count. Writers and readers are callbacks so the same
 * code streams to a file, a socket, or memory.
 *
 * kv_snapshot_write: calls `write` with successive byte ranges (any sizes); returns 0 or the
 *   first non-zero value `write` returned, or an error. Runs beside kv_apply (own read txn).
 *   Two stores with equal content give byte-identical snapshots (the format is a logical
 *   dump in key order, not a page copy): kv_snapshot.c documents it.
 * kv_snapshot_install: builds a fresh store in `dir` (must not exist or be empty) from bytes
 *   pulled with `read` (which returns bytes read, 0 at end, or <0 error). Verifies every
 *   chunk's checksum and the trailer; on any mismatch returns KV_ECORRUPT and leaves no
 *   usable store in `dir`. A store installed from a snapshot of S equals S in content,
 *   revision and applied index. `read`'s own negative errors are returned as they are;
 *   a `dir` that exists and is not empty is -ENOTEMPTY. Reading stops after the trailer,
 *   so the stream may continue (a socket).
 */
typedef int (*kv_snap_write_fn)(void *ctx, const void *p, size_t len);
typedef long (*kv_snap_read_fn)(void *ctx, void *p, size_t cap);
typedef struct kv_snap_meta {
	uint64_t applied;
	uint64_t revision;
	uint64_t records;
} kv_snap_meta_t;
int kv_snapshot_write(kv_store_t *s, kv_snap_write_fn write, void *ctx, kv_snap_meta_t *meta);
int kv_snapshot_install(const char *dir, const kv_opts_t *opts, kv_snap_read_fn read,
			void *ctx, kv_snap_meta_t *meta);
/* XXH64 of the snapshot stream kv_snapshot_write would produce: equal on two stores exactly
 * when their content, revision and applied index are. Reads the whole store. */
int kv_checksum(kv_store_t *s, kv_snap_meta_t *meta, uint64_t *hash);

/* ---- stats ------------------------------------------------------------------------- */

typedef struct kv_stats {
	uint64_t revision;
	uint64_t applied;
	uint64_t buckets;
	uint64_t keys;           /* live keys, all buckets */
	uint64_t map_size;       /* current LMDB map size, bytes */
	uint64_t map_used;       /* bytes in use (last page * page size): the file's high-water */
	uint64_t map_live;       /* bytes in pages holding data; map_used - map_live are free
				  * pages inside the file that writes reuse before it grows */
	uint64_t corrupt;        /* records that failed their checksum since open */
} kv_stats_t;
int kv_stats(kv_store_t *s, kv_stats_t *st);

/* Records that failed their checksum since open (any read or write path; atomic). Every
 * value in state/ carries one (format 3): a record that fails is refused with KV_ECORRUPT,
 * never served. */
uint64_t kv_corrupt_count(kv_store_t *s);

#endif
