/*
 * geokv primary log: the `raft/` LMDB environment of a primary.
 *
 * What it is: durable storage for the replicated log and the consensus state beside it:
 *   - entries by index (1, 2, ...), each with its term, type and an xxhash64 checksum that is
 *     verified on every read: a flipped bit or a truncated value is refused with KV_ECORRUPT
 *     and one ERROR log line, never handed to apply;
 *   - hard state (term, vote, commit), checksummed;
 *   - snapshot metadata (index, term of the last entry folded into state/ and compacted away);
 *   - first/last index, suffix truncation (raft conflicts) and prefix compaction.
 * Its read API is shaped after a raft storage interface (entries in a range, term at an index,
 * first/last index, hard state, snapshot meta), so raft/ can be driven by it directly.
 *
 * What it is not: consensus (raft/), the state machine (core/kv.h), or the pipeline that
 * batches appends (core/primary.c). It never compacts on its own: the caller passes an index
 * that state/ has durably synced.
 *
 * Durability: writes commit without an fsync of their own (LMDB MDB_NOMETASYNC: data pages
 * are flushed at commit, the meta page is not); kv_log_sync() makes every write so far
 * durable. So a caller groups: append all entries that arrived during the previous fsync in
 * one kv_log_append, then one kv_log_sync covers them all (group commit). MDB_NOMETASYNC
 * rather than MDB_NOSYNC because it keeps the data-before-meta ordering: a power cut before the
 * sync rolls back to the previous commit instead of leaving a meta page that points at pages
 * that never reached the disk.
 *
 * Threads: writes (append, set_hard, truncate, compact, reset) from one thread at a time, any
 * thread (the primary runs them on a worker). kv_log_sync may run on any thread. Reads use a
 * kv_log_rtxn_t, one per thread, on any thread (MDB_NOTLS), concurrently with the writer.
 * kv_log_first_index / kv_log_last_index are atomic and callable anywhere.
 *
 * Ownership: entry data returned by reads points into the LMDB map and is valid until that
 * read transaction ends (kv_log_read_end / kv_log_read_close). Copy what you keep.
 *
 * Errors: 0, negative errno, or KV_E* (proto/errors.h):
 *   KV_ECORRUPT   checksum mismatch, truncated or undecodable stored data (logged once);
 *   KV_EFULL      the log's map is full (compact, or raise the map size);
 *   KV_ENOTFOUND  the index was compacted away (index <= snapshot index);
 *   -ERANGE       the index is past the last one;
 *   -EINVAL       a contract violation by the caller (gap, index 0, ...);
 *   KV_EINTERNAL  other LMDB failures (logged).
 */
#ifndef GEOKV_CORE_LOG_H
#define GEOKV_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

typedef struct kv_log kv_log_t;

/* Entry types. Stored in each entry; numbers are part of the on-disk format. */
enum kv_log_type {
	KV_LOG_NORMAL = 0, /* a proto_entry_t: what kv_apply consumes */
	KV_LOG_CONF   = 1, /* a membership change (raft) */
	KV_LOG_NOOP   = 2, /* empty entry a new leader commits (raft); apply skips it */
};

/* One entry, as written and as read back (data: a view, see "Ownership"). */
typedef struct kv_log_entry {
	uint64_t index;
	uint64_t term;
	uint8_t type;             /* kv_log_type */
	const uint8_t *data;
	size_t len;
} kv_log_entry_t;

typedef struct kv_log_hard {
	uint64_t term;            /* current term */
	uint64_t vote;            /* node voted for in term, 0 = none */
	uint64_t commit;          /* highest index known committed */
} kv_log_hard_t;

#define KV_LOG_MAX_CONF 16     /* = RAFT_MAX_NODES */

/* Voting members as of the snapshot index (raft's configuration). */
typedef struct kv_log_conf {
	uint32_t n;
	uint32_t ids[KV_LOG_MAX_CONF];
} kv_log_conf_t;

typedef struct kv_log_snap {
	uint64_t index;           /* last index compacted into state/ (0 = none) */
	uint64_t term;            /* its term */
	kv_log_conf_t conf;       /* membership as of index (a new cluster: its founders) */
} kv_log_snap_t;

typedef struct kv_log_opts {
	size_t map_size;          /* LMDB map size (a sparse file: costs disk only as used);
				   * 0 = 4 GiB */
} kv_log_opts_t;

/*
 * Open (creating when absent) the log environment in directory `dir` (created if missing).
 * @param[out] out  the log; free with kv_log_close().
 * Errors: negative errno from the file system, KV_ECORRUPT when the format marker, the hard
 * state or the snapshot meta fail their checks, KV_EINTERNAL for other LMDB failures.
 */
int kv_log_open(kv_log_t **out, const char *dir, const kv_log_opts_t *opts);
void kv_log_close(kv_log_t *l);

/* The LMDB environment (stats, tests). Owned by the log. */
MDB_env *kv_log_env(kv_log_t *l);

/*
 * First index still held (snapshot index + 1 when the log is empty after compaction) and
 * last index (snapshot index when empty). A fresh log: first 1, last 0.
 */
uint64_t kv_log_first_index(const kv_log_t *l);
uint64_t kv_log_last_index(const kv_log_t *l);

/* ---- writes (one writer thread at a time; durable only after kv_log_sync) ------------- */

/*
 * Append `n` entries with consecutive indexes in one transaction, and the hard state `hs`
 * in the same transaction when not NULL (raft persists entries and hard state together).
 * ents[0].index must be in first..last+1 and above the snapshot index; when it is <= last,
 * the stored suffix from ents[0].index on is replaced (a raft conflict). n may be 0 (hard
 * state only).
 * Errors: -EINVAL (gap, non-consecutive, index <= snapshot index), KV_EFULL (nothing
 * written), KV_EINTERNAL.
 */
int kv_log_append(kv_log_t *l, const kv_log_entry_t *ents, size_t n, const kv_log_hard_t *hs);

/* Store the hard state alone. */
int kv_log_set_hard(kv_log_t *l, const kv_log_hard_t *hs);

/*
 * Delete every entry with index >= from (from > snapshot index; from > last is a no-op).
 * Errors: -EINVAL when from <= snapshot index.
 */
int kv_log_truncate(kv_log_t *l, uint64_t from);

/*
 * Drop every entry with index <= upto and record {upto, term(upto)} as the snapshot meta.
 * The CALLER guarantees state/ has durably applied `upto` (kv_sync after kv_applied_index
 * reached it): after this, only state/ holds those entries' effects. upto <= snapshot index
 * is a no-op. Errors: -ERANGE when upto > last, KV_ECORRUPT if entry `upto` fails its check.
 */
int kv_log_compact(kv_log_t *l, uint64_t upto);
/* The same, recording `conf` (membership as of upto) in the snapshot meta; NULL keeps it. */
int kv_log_compact_conf(kv_log_t *l, uint64_t upto, const kv_log_conf_t *conf);

/*
 * Discard the whole log and record `snap` as the snapshot meta (after installing a snapshot
 * of state/ that covers snap->index): the log then continues at snap->index + 1.
 */
int kv_log_reset(kv_log_t *l, const kv_log_snap_t *snap);

/* Record the membership of the snapshot meta alone (a new log: the founders). */
int kv_log_set_conf(kv_log_t *l, const kv_log_conf_t *conf);

/* fsync: after it returns 0, every write committed before the call is durable. */
int kv_log_sync(kv_log_t *l);

/* Space of the log's file: bytes in pages holding data (every table), bytes of the file
 * (its high-water page), and the map size (the cap). file - used is free pages the next
 * writes reuse before the file grows (an estimate: pages a reader still pins count free). */
typedef struct kv_log_space {
	uint64_t used, file, map;
} kv_log_space_t;
int kv_log_space(kv_log_t *l, kv_log_space_t *sp);

/* ---- reads ---------------------------------------------------------------------------- */

/* A reusable read transaction (initialise with {0}); one thread at a time. */
typedef struct kv_log_rtxn {
	kv_log_t *l;
	MDB_txn *txn;             /* kept reset between uses */
	MDB_cursor *cur;          /* kept across uses with the txn */
	bool active;
} kv_log_rtxn_t;

int  kv_log_read_begin(kv_log_t *l, kv_log_rtxn_t *t);
void kv_log_read_end(kv_log_rtxn_t *t);   /* ends the snapshot, keeps the txn for reuse */
void kv_log_read_close(kv_log_rtxn_t *t); /* frees it */

/*
 * The entry at `index`, verified. @param[out] e  data is a view valid until the txn ends.
 * Errors: KV_ENOTFOUND (compacted), -ERANGE (past last), KV_ECORRUPT.
 */
int kv_log_get(kv_log_rtxn_t *t, uint64_t index, kv_log_entry_t *e);

/*
 * Call cb for each entry with lo <= index < hi, in order, each verified before cb sees it,
 * until cb returns non-zero (returned as is; that entry counts as not delivered, so *next
 * is its index), or the data seen exceeds max_bytes (the first entry is always delivered,
 * as raft wants progress; 0 = no byte limit).
 * @param[out] next  (may be NULL) the index after the last entry delivered.
 * Errors: KV_ENOTFOUND when lo is compacted, -ERANGE when hi > last + 1 or lo > hi,
 * KV_ECORRUPT when an entry fails its check (the entries before it were delivered; a missing
 * index inside the range also counts as corruption).
 */
typedef int (*kv_log_entry_cb)(void *ctx, const kv_log_entry_t *e);
int kv_log_entries(kv_log_rtxn_t *t, uint64_t lo, uint64_t hi, size_t max_bytes,
		   kv_log_entry_cb cb, void *ctx, uint64_t *next);

/*
 * The term of the entry at `index`; the snapshot's term for the snapshot index (0 for index
 * 0). Errors: KV_ENOTFOUND (compacted), -ERANGE (past last), KV_ECORRUPT.
 */
int kv_log_term(kv_log_rtxn_t *t, uint64_t index, uint64_t *term);

/* Hard state and snapshot meta as last written (cached; cheap; any thread). */
void kv_log_hard(kv_log_t *l, kv_log_hard_t *hs);
void kv_log_snap(kv_log_t *l, kv_log_snap_t *snap);

#endif
