/*
 * kv_feed: the leaf feed server, run by every primary and by every leaf (fan-out trees).
 *
 * What it is: a listener speaking proto/feed.h to leaves. A leaf says where it is; the server
 * streams it a snapshot of state/ when that position is no longer servable (or disagrees with
 * the source's history), then every committed entry as soon as the owner calls
 * kv_feed_notify(), batched into FEED_ENTRIES frames of up to ~1 MiB when many are ready, and
 * FEED_HB heartbeats in between. It keeps each leaf's last reported position (FEED_ACK) for
 * `geokv status` and /metrics.
 *
 * Where entries come from is the owner's business (kv_feed_src_t): a primary reads its raft
 * log, a leaf its in-memory ring of recent entries. The server only ever reads committed
 * entries and never holds them: each connection remembers only the next index it owes, so a
 * slow leaf costs at most max_out bytes of queued output plus one frame; when its output is
 * full the server stops reading for it and resumes from the source when the kernel has taken
 * the bytes (back-pressure stalls that leaf only, never the commit path). A leaf that falls
 * behind what the source still holds gets a snapshot instead.
 *
 * Snapshots: one build at a time per server (kv_snapshot_write on libuv's thread pool, into a
 * file that is mapped and unlinked), shared by every leaf that needs it while it is fresh.
 *
 * Threads: the loop thread only, except the snapshot build. Before the owner replaces its
 * store (a snapshot install), it calls kv_feed_store_closing(), which cancels a running build
 * and waits for it to leave the store.
 *
 * Errors: 0, negative errno or libuv codes, KV_E* / PROTO_E*.
 */
#ifndef GEOKV_CORE_FEED_H
#define GEOKV_CORE_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/kv.h"
#include "proto/metrics.h"
#include "proto/tls.h"

#define KV_FEED_MAX_LEAVES 64   /* leaves whose reported position is kept */

/* Called for each entry, in index order; return non-zero to stop (that entry is not taken). */
typedef int (*kv_feed_entry_cb)(void *cbctx, uint64_t index, uint64_t term, uint8_t type,
				const uint8_t *data, size_t len);

/* The owner's view of its log. Every function runs on the loop thread. */
typedef struct kv_feed_src {
	void *ctx;
	/* Highest index that may be served: committed and held (primary: applied). */
	uint64_t (*served)(void *ctx);
	/* Lowest index still held; served()+1 when nothing is. */
	uint64_t (*first)(void *ctx);
	/* Entries lo..hi-1 in order, up to about max_bytes (the first always), through cb, with
	 * NORMAL data as kv_apply consumes it. 0, KV_ENOTFOUND (lo no longer held), or error. */
	int (*entries)(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes, kv_feed_entry_cb cb,
		       void *cbctx);
	/* Term of the entry at index: 0, or KV_ENOTFOUND when it is not known. */
	int (*term)(void *ctx, uint64_t index, uint64_t *term);
	/* For heartbeats: the group's commit index, the leader's clock (ms), the current term. */
	void (*beat)(void *ctx, uint64_t *commit, uint64_t *leader_time_ms, uint64_t *term);
	kv_store_t *(*store)(void *ctx);
	/* Optional: false while this source is not fed itself (a leaf that lost its own source).
	 * It then sends no heartbeats, so the leaves below see silence, count it as a stall and
	 * move on, instead of being kept "fresh" by a source that is stale. NULL = always. */
	bool (*fresh)(void *ctx);
} kv_feed_src_t;

typedef struct kv_feed_opts {
	const char *listen;          /* HOST:PORT */
	proto_tls_conf_t *tls;       /* NULL = plain TCP */
	const char *cluster_id;      /* a HELLO naming another id is refused */
	const uint8_t *token;        /* HELLO credentials; token_len 0 = none */
	uint32_t token_len;
	uint64_t node_id;            /* HELLO_OK */
	const char *snap_dir;        /* where the snapshot file is built (then unlinked) */
	uint32_t hb_ms;              /* heartbeat period; 0 = 100 */
	size_t max_out;              /* queued output per leaf; 0 = 4 MiB */
	uint32_t max_conns;          /* 0 = 256 */
	uint32_t idle_ms;            /* a leaf silent this long is cut; 0 = 10 s */
	uint32_t max_frame;          /* largest frame a leaf may send; 0 = 64 KiB */
} kv_feed_opts_t;

/* What the server knows about one leaf (status, metrics). */
typedef struct kv_feed_leaf {
	uint64_t id;
	char name[64];
	char peer[64];
	bool connected;
	uint64_t applied, revision, lag_ms, commit; /* as the leaf last reported */
	uint64_t contact_ms;                        /* local wall ms of its last frame */
	uint64_t sent_index;                        /* last index sent to it */
	uint64_t entries_sent, snapshots, resyncs;
} kv_feed_leaf_t;

typedef struct kv_feed_stats {
	uint64_t conns_accepted, conns_refused, hello_refused;
	uint64_t entries_sent, frames_sent, bytes_sent;
	uint64_t heartbeats;
	uint64_t snapshots_built, snapshots_sent;
	uint64_t resyncs;            /* a leaf's history disagreed with ours: re-synced */
	uint64_t stalls;             /* times a leaf's output hit max_out */
} kv_feed_stats_t;

typedef struct kv_feed kv_feed_t;

/* Create and listen. The src struct is copied; o's strings must outlive the server.
 * Errors: -EINVAL (bad listen address), libuv bind/listen errors, -ENOMEM. */
int kv_feed_start(kv_feed_t **out, uv_loop_t *loop, const kv_feed_opts_t *o,
		  const kv_feed_src_t *src);

/* New entries are servable: push them to every streaming leaf (as its output allows). */
void kv_feed_notify(kv_feed_t *f);

/* The owner is about to close or replace its store: cancel and wait out a snapshot build. */
void kv_feed_store_closing(kv_feed_t *f);

/* Leaves known (connected first), up to cap; returns the number written. */
size_t kv_feed_leaves(const kv_feed_t *f, kv_feed_leaf_t *out, size_t cap);
const kv_feed_stats_t *kv_feed_stats(const kv_feed_t *f);
uint32_t kv_feed_connected(const kv_feed_t *f);

/* Prometheus families `<prefix>_feed_*` (prefix e.g. "geokv_primary"). */
void kv_feed_metrics(const kv_feed_t *f, proto_metrics_buf_t *b, const char *prefix);

/* Stop listening and close every leaf connection; frees the server once every handle is
 * closed (the loop must keep running until then). NULL is a no-op. */
void kv_feed_close(kv_feed_t *f);

#endif
