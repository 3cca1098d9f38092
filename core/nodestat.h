/*
 * Node status file: a tiny, fixed-layout page that the process writing a store (the primary
 * daemon now, the leaf later) publishes, and that readers on the same machine (the gateway's
 * /healthz, /readyz, /metrics and ?min_rev) map and read without a system call and without
 * touching the LMDB lookup path.
 *
 * Where: `<dir>/nodestat` (KV_NODESTAT_FILE), where <dir> is the node's `state/` directory,
 * the one the gateway opens read-only with kv_open(KV_OPEN_RDONLY). LMDB ignores the extra
 * file. One writer per file (kv_nodestat_open_writer takes an exclusive flock; a second
 * writer gets -EBUSY). Any number of readers.
 *
 * What it is not: durable state. It is rewritten from memory on every start; nobody recovers
 * from it. It is not the store's truth either: the revision here may trail what a read
 * transaction sees by one publish, never lead it (see the ordering rule below).
 *
 * Layout: one 4096-byte page, little-endian, version KV_NODESTAT_VERSION:
 *
 *   u32 magic "GKNS", u32 version, u32 size (bytes in use), u32 pid (writer; 0 after a
 *   clean close), u64 seq (seqlock), then the fields of kv_nodestat_data_t as u64 words.
 *
 * A newer version only appends words; a reader accepts any version >= its own and
 * size >= what it reads, so old gateways keep working beside newer nodes.
 *
 * Concurrency: a seqlock. The writer makes `seq` odd, stores every field, makes it even
 * again; all stores are C11 atomics (relaxed fields, release on seq), which are lock-free
 * for 64 bits on every platform we build for, so they are coherent across processes sharing
 * the mapping. A reader retries while seq is odd or changed under it (bounded: -EAGAIN after
 * KV_NODESTAT_READ_TRIES attempts, which only a writer stuck mid-publish could cause).
 * Publishing costs ~15 relaxed stores and two fences: no syscall, call it as often as you like.
 *
 * Rules for writers (what the gateway relies on):
 *   - Publish AFTER the store transaction that reached `applied`/`revision` has committed
 *     (after kv_apply returns 0), so a reader that sees revision >= N and then begins a read
 *     transaction is guaranteed to see revision N (?min_rev depends on it).
 *   - Publish at least once per heartbeat interval (e.g. every 100 ms) even when nothing is
 *     applied, refreshing contact_ms from the last message received. Readers judge
 *     freshness as now - contact_ms against their own bound, so a writer that hangs or dies
 *     turns stale on its own; a clean close also clears FEED and sets pid = 0.
 *   - Times are wall-clock milliseconds (kv_nodestat_now_ms, CLOCK_REALTIME): writer and
 *     readers share the machine's clock; leader_time_ms is the leader's clock and is only
 *     compared with entry times, never with local time.
 *
 * Meaning of the fields by role:
 *   leaf:    FEED = a live feed connection to a primary (or upstream leaf); contact_ms = last
 *            entry or heartbeat received on it; commit = the group's commit index from that
 *            heartbeat; lag_entries = commit - applied; lag_ms = how far the last applied
 *            entry's leader time trails leader_time_ms (0 when caught up).
 *   primary: FEED = this node knows a current leader (itself, or one it heard from within an
 *            election timeout); LEADER = it is that leader. contact_ms = last AppendEntries /
 *            heartbeat received from the leader, or, on the leader, the last time a quorum
 *            acknowledged it (check-quorum), so a partitioned leader goes stale.
 *            commit/applied/lag as for a leaf.
 *   CAUGHT_UP is set the first time applied >= commit after start (for /readyz) and stays.
 *
 * Errors: 0, negative errno, KV_ECORRUPT (not a nodestat file, or a version older than ours).
 */
#ifndef GEOKV_CORE_NODESTAT_H
#define GEOKV_CORE_NODESTAT_H

#include <stdbool.h>
#include <stdint.h>

#define KV_NODESTAT_FILE       "nodestat"
#define KV_NODESTAT_MAGIC      0x534e4b47u  /* "GKNS" little-endian */
#define KV_NODESTAT_VERSION    1
#define KV_NODESTAT_PAGE       4096
#define KV_NODESTAT_READ_TRIES 1000

enum kv_nodestat_flags {
	KV_NS_FEED      = 1u << 0, /* connected to a feed (leaf) / knows a live leader (primary) */
	KV_NS_LEADER    = 1u << 1, /* primary: this node is the Raft leader */
	KV_NS_CAUGHT_UP = 1u << 2, /* applied reached commit at least once since start */
	KV_NS_SNAPSHOT  = 1u << 3, /* installing a snapshot: the store is being replaced */
	KV_NS_STOPPING  = 1u << 4, /* graceful shutdown in progress */
};

/* What a writer publishes and a reader gets back; plain values, no pointers. */
typedef struct kv_nodestat_data {
	uint32_t role;            /* enum proto_role: PROTO_ROLE_PRIMARY or PROTO_ROLE_LEAF */
	uint32_t flags;           /* enum kv_nodestat_flags */
	uint64_t node_id;
	uint64_t term;            /* primary: Raft term; leaf: term of the feed's last heartbeat */
	uint64_t commit;          /* group commit index as last known */
	uint64_t applied;         /* log index applied to state/ (committed) */
	uint64_t revision;        /* store revision after `applied` */
	uint64_t contact_ms;      /* local wall ms of the last contact with feed / leader / quorum */
	uint64_t leader_time_ms;  /* the leader's clock in that last heartbeat or entry */
	uint64_t lag_entries;     /* commit - applied, as the writer sees it */
	uint64_t lag_ms;          /* writer's estimate of its lag behind the leader, ms */
	uint64_t started_ms;      /* writer start, local wall ms (set by open_writer) */
	uint64_t updated_ms;      /* local wall ms of this publish (set by kv_nodestat_publish) */
	uint32_t pid;             /* writer pid; 0 after a clean close (set by the library) */
} kv_nodestat_data_t;

struct kv_nodestat_page;

/* A handle: caller-allocated, initialise with {0} or via an open call. */
typedef struct kv_nodestat {
	struct kv_nodestat_page *page; /* the shared mapping, NULL when not open */
	int fd;
	bool writer;
	uint64_t dev, ino;             /* identity of the mapped file (kv_nodestat_moved) */
	uint32_t role;                 /* writer: fixed at open */
	uint64_t node_id, started_ms;  /* writer: fixed at open */
	kv_nodestat_data_t last;       /* writer: what was last published */
} kv_nodestat_t;

/* Local wall clock in ms (CLOCK_REALTIME): the clock every nodestat time uses. */
uint64_t kv_nodestat_now_ms(void);

/*
 * Writer: create or reuse `<dir>/nodestat`, lock it, and publish an initial status (role,
 * node_id, pid, started_ms; everything else 0, flags 0). The file is reused, never unlinked,
 * so readers' mappings stay valid across writer restarts.
 * Errors: -EBUSY another live process holds it; negative errno from open/ftruncate/mmap.
 */
int kv_nodestat_open_writer(kv_nodestat_t *ns, const char *dir, uint32_t role, uint64_t node_id);

/*
 * Writer: publish `d` (role and node_id in d are ignored: those of open_writer are kept;
 * pid, started_ms and updated_ms are filled in). Keeps a copy in ns->last so a writer may
 * instead modify ns->last and pass &ns->last. Lock-free, no syscall beyond clock_gettime.
 */
void kv_nodestat_publish(kv_nodestat_t *ns, const kv_nodestat_data_t *d);

/*
 * Reader: map `<dir>/nodestat` read-only.
 * Errors: -ENOENT when no writer has created it yet (retry later), KV_ECORRUPT when the file
 * is not a nodestat page or is older than KV_NODESTAT_VERSION, negative errno otherwise.
 */
int kv_nodestat_open_reader(kv_nodestat_t *ns, const char *dir);

/*
 * Reader (or writer): a consistent copy of the published status.
 * Returns 0, -ENOENT if not open, -EAGAIN if a publish stayed in progress for
 * KV_NODESTAT_READ_TRIES attempts. Costs a few loads; safe from any thread.
 */
int kv_nodestat_read(const kv_nodestat_t *ns, kv_nodestat_data_t *out);

/*
 * Reader: true when `<dir>/nodestat` is no longer the mapped file (deleted or replaced), so
 * the caller should close and reopen. One stat(2); call it at most every second or so.
 */
bool kv_nodestat_moved(const kv_nodestat_t *ns, const char *dir);

/*
 * Unmap and close. A writer first publishes flags with FEED cleared and STOPPING set and
 * pid = 0, so readers see a clean stop at once. Safe on a zeroed or closed handle.
 */
void kv_nodestat_close(kv_nodestat_t *ns);

#endif
