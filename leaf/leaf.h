/*
 * geokv-leaf internals: the daemon that follows the primary group's committed log (or another
 * leaf's) into its own state/, and serves the same feed to leaves below it.
 *
 *   sources (primaries or leaves) --feed--> follow.c --kv_apply--> state/ --> gateway
 *                                               \--> ring.c (recent entries) --> core/feed.c --> leaves below
 *
 * Not a public API: leaf_ names for what the files of leaf/ share, loop thread only unless
 * stated. Position: state/'s applied index is written by kv_apply in the same LMDB
 * transaction as the entries' effects, so the store and the position cannot disagree after a
 * crash; the chain hash and term of that entry are kept in memory only (after a restart the
 * chain restarts from the leaf's own value, and the source checks nothing older than it).
 */
#ifndef GEOKV_LEAF_LEAF_H
#define GEOKV_LEAF_LEAF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/feed.h"
#include "core/kv.h"
#include "core/nodestat.h"
#include "proto/feed.h"
#include "proto/fstream.h"
#include "proto/log.h"
#include "proto/metrics.h"
#include "proto/tls.h"

#define LEAF_VERSION     "0.1.0"
#define LEAF_MAX_SOURCES 16

typedef struct leaf_config {
	char data[1024];           /* holds state/ */
	char sources[4096];        /* HOST:PORT,... feed listeners of primaries or leaves */
	uint64_t node_id;          /* this leaf's id (reported to sources) */
	char name[64];             /* reported to sources; default = listen or "leaf-<id>" */
	char cluster_id[256];
	enum geokv_log_level log_level;
	char token_file[1024];
	uint8_t token[4096];
	uint32_t token_len;
	char listen[256];          /* feed listener for leaves below ("" = none) */
	char metrics_listen[256];  /* /metrics /healthz /readyz /livez ("" = none) */
	uint32_t stall_ms;         /* no frame for this long: switch source */
	uint32_t backoff_min_ms, backoff_max_ms;
	uint32_t ack_ms;
	uint32_t max_lag_ms;       /* /healthz bounds */
	uint64_t max_lag_entries;
	size_t ring_bytes;         /* recent entries kept for leaves below */
	size_t max_out;            /* feed output per leaf below */
	uint32_t max_frame;        /* largest frame accepted from a source */
	size_t map_size, map_max;
	uint32_t sync_interval_ms;
	char tls_ca[1024];         /* verify sources against this CA ("" = plain TCP) */
	char tls_cert[1024];       /* our certificate: client cert to sources, server cert below */
	char tls_key[1024];
	char tls_client_ca[1024];  /* leaves below must present a certificate of this CA */
} leaf_config_t;

int leaf_config_parse(leaf_config_t *c, int argc, char **argv); /* 0, 1 (help), -EINVAL */

typedef struct leaf_source {
	char addr[256];
	char host[256];
	struct sockaddr_storage ss;
	uint64_t connects, failures;
} leaf_source_t;

/* The recent entries ring (ring.c): copies of what was applied, for leaves below. */
typedef struct leaf_rent {
	uint64_t index, term;
	uint8_t type;
	uint32_t len;
	uint8_t data[];
} leaf_rent_t;

typedef struct leaf_ring {
	leaf_rent_t **e;           /* circular, cap slots */
	size_t cap, head, n;       /* head: oldest */
	size_t bytes, max_bytes;
} leaf_ring_t;

int  leaf_ring_init(leaf_ring_t *r, size_t max_bytes);
void leaf_ring_free(leaf_ring_t *r);
void leaf_ring_clear(leaf_ring_t *r);
/* Append (must be last + 1 or the ring is cleared first); drops the oldest past the bounds. */
int  leaf_ring_push(leaf_ring_t *r, uint64_t index, uint64_t term, uint8_t type,
		    const uint8_t *data, size_t len);
uint64_t leaf_ring_first(const leaf_ring_t *r);      /* 0 when empty */
const leaf_rent_t *leaf_ring_get(const leaf_ring_t *r, uint64_t index); /* NULL if not held */

typedef struct leaf_stats {
	uint64_t entries_applied, frames, bytes_in;
	uint64_t resyncs;          /* a gap, duplicate, hash mismatch or bad frame: reconnected */
	uint64_t resync_gap, resync_hash, resync_decode;
	uint64_t snapshots_installed;
	uint64_t source_switches, connects, connect_failures, stalls;
	uint64_t heartbeats;
	uint64_t apply_errors;
	proto_metrics_hist_t apply_latency;  /* one kv_apply call, us */
} leaf_stats_t;

enum { LS_IDLE, LS_CONNECTING, LS_HELLO, LS_STREAM, LS_SNAP, LS_INSTALL };

typedef struct leaf {
	const leaf_config_t *cfg;
	uv_loop_t *loop;
	kv_store_t *store;
	kv_nodestat_t ns;
	char state_dir[1100];
	leaf_ring_t ring;
	kv_feed_t *feed;           /* serving leaves below, or NULL */
	proto_tls_conf_t *tls_client, *tls_server;
	proto_tls_shared_t *tls_shared;

	/* position: the last entry applied (or covered by the installed snapshot) */
	uint64_t pos_index, pos_term, pos_hash;
	uint64_t last_entry_time;  /* leader time of the last NORMAL entry applied */
	uint64_t behind_since;     /* leader time when we last fell behind commit */
	uint64_t commit, term;     /* the group's, as the source last said */
	uint64_t leader_time, leader_time_local; /* leader clock and our clock when heard */
	uint64_t contact_ms;       /* our clock: last frame from the source */
	bool caught_up_once;

	/* the source connection */
	leaf_source_t src[LEAF_MAX_SOURCES];
	uint32_t nsrc, cur;
	proto_fs_t *fs;            /* NULL when not connected */
	int state;
	uint64_t conn_started_ms, streaming_since;
	uint32_t backoff_ms;
	uv_timer_t retry, tick, sync_timer;
	uint64_t last_ack_ms;
	int last_err;
	bool resyncing;            /* resync() closed it: already counted */

	/* snapshot being received */
	int snap_fd;
	uint64_t snap_size, snap_got;
	proto_feed_snap_t snap;
	uv_work_t install_req;
	int install_err;
	kv_snap_meta_t install_meta;

	/* apply */
	kv_entry_in_t *in;
	kv_result_t *res;
	size_t in_cap;
	uv_work_t sync_req;
	bool sync_running;

	/* http (metrics, health) */
	uv_tcp_t http;
	bool http_on;
	uint64_t rng;
	leaf_stats_t st;
	bool stopping;
	uv_signal_t sig_term, sig_int;
} leaf_t;

/* follow.c */
int  leaf_follow_start(leaf_t *l);
void leaf_follow_stop(leaf_t *l);
void leaf_publish(leaf_t *l);
uint64_t leaf_leader_now(const leaf_t *l);
uint64_t leaf_lag_entries(const leaf_t *l);
uint64_t leaf_lag_ms(const leaf_t *l);
const char *leaf_health(const leaf_t *l); /* NULL = healthy, else the reason */
int  leaf_open_store(leaf_t *l);
void leaf_close_store(leaf_t *l);

/* ring.c: the feed source over the ring */
void leaf_feed_src(leaf_t *l, kv_feed_src_t *s);

/* http.c */
int  leaf_http_start(leaf_t *l);
void leaf_http_stop(leaf_t *l);

#endif
