/*
 * geokv-primary: the daemon that drives log + store + network on a primary node.
 *
 * What it is: a libuv event loop serving the client frame protocol (proto/proto.h), with the
 * log -> commit -> apply pipeline Raft plugs into:
 *
 *   client REQ (write op) --propose--> pending queue
 *   pending --(one worker job per group: kv_log_append + kv_log_sync)--> log (raft/ env)
 *   durable --> commit index advances (as a group of one; by quorum once raft/ lands)
 *   commit  --(one kv_apply per group, loop thread)--> store (state/ env) --> answer clients
 *
 * Reads (GET, KEYS, ...) are answered from the store in a reused read transaction; STATUS
 * from the daemon's counters. The state/ env is opened KV_OPEN_NOSYNC: on start the daemon
 * replays committed log entries past the store's applied index. A background job fsyncs the
 * store periodically; the log is compacted up to (store's durably synced applied index - a
 * configured tail), never further.
 *
 * What it is not: consensus (raft/), the store (core/kv.h), the log format (core/log.h).
 *
 * Prefix: prim_ (prim__ for what primary.c, server.c and config.c share, in
 * core/primary_int.h). Threads: everything runs on the loop thread except the log job
 * (append + fsync) and the store-sync job, which run on libuv's thread pool, one of each at a
 * time.
 */
#ifndef GEOKV_CORE_PRIMARY_H
#define GEOKV_CORE_PRIMARY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/log.h"

#include "proto/version.h"

#define PRIM_VERSION GEOKV_VERSION /* meson project version */

/* Every setting (core/config.c's table): `[section] key = value` in the INI file,
 * `--key-name VALUE` or `--set section.key=VALUE` on the command line (docs/config.md). */
typedef struct prim_config {
	char **argv;                /* the command line (main's argv), to re-exec for a repair */
	char data[1024];            /* data dir: holds raft/ and state/ (default ./data) */
	char listen[256];           /* host:port (default 127.0.0.1:7400) */
	char advertise[256];        /* host:port given to clients as the leader (default listen) */
	uint64_t node_id;           /* default 1 */
	char cluster_id[256];       /* default "geokv"; HELLO with another id is refused */
	uint32_t max_frame;         /* bytes, default PROTO_DEFAULT_MAX_FRAME */
	enum geokv_log_level log_level;
	size_t map_size;            /* state/ initial map size (0 = store default) */
	size_t map_max;             /* state/ size cap; writes past it get KV_EFULL */
	size_t log_map_size;        /* raft/ map size (0 = log default 4 GiB) */
	uint32_t max_inflight;      /* writes awaiting commit per connection (PROTO_EBUSY past) */
	uint32_t max_conns;         /* client connections; more are closed at accept */
	size_t group_max_bytes;     /* cap on one commit group's entry bytes */
	uint32_t sync_interval_ms;  /* store fsync + log compaction period */
	uint64_t log_keep;          /* entries kept in the log behind the synced applied index */
	uint32_t ttl_interval_ms;   /* expiry scan period (0 = off) */
	uint32_t ttl_batch;         /* max expired keys proposed per scan */
	uint32_t hello_timeout_ms;  /* a connection must finish HELLO within this (0 = no limit) */
	uint32_t idle_timeout_ms;   /* close a connection silent this long (0 = never) */
	char token_file[1024];      /* file holding the HELLO token ("" = no credentials needed) */
	uint8_t token[4096];        /* its contents, trailing whitespace removed (PROTO_MAX_TOKEN) */
	uint32_t token_len;         /* 0 = any HELLO is accepted */
	char metrics_listen[256];   /* HOST:PORT of the plain-HTTP /metrics listener ("" = off) */
	char tls_cert[1024];        /* client listener certificate chain (PEM); "" = plain TCP */
	char tls_key[1024];         /* its private key */
	char tls_client_ca[1024];   /* CA that client certificates must chain to; "" = none asked */
	char peers[4096];           /* founders "ID=HOST:PORT,..." (peer addresses, this node
				     * included); "" = a group of one */
	char peer_listen[256];      /* peer listener (default: this node's entry in peers) */
	uint32_t tick_ms;           /* raft tick (default 20) */
	uint32_t election_ticks;    /* election timeout in ticks, randomized [t, 2t) (default 10) */
	uint32_t prop_timeout_ms;   /* a proposal unanswered this long gets PROTO_ETIMEDOUT */
	char feed_listen[256];      /* leaf feed listener HOST:PORT ("" = no feed) */
	size_t feed_max_out;        /* queued feed output per leaf (0 = 4 MiB) */
} prim_config_t;

/* Fill c with the defaults above. */
void prim_config_defaults(prim_config_t *c);

/*
 * Build the config from argv: defaults, then the INI file named by -c/--config, then the
 * other flags, which win (proto/conf.h); then reads token_file into token.
 * --help and --version print to stdout. Returns 0 to run, 1 when the process should exit 0 (help/version printed), or
 * -EINVAL after printing the reason to stderr (unknown flag or key, bad value).
 */
int prim_config_parse(prim_config_t *c, int argc, char **argv);

/*
 * Run the daemon until SIGTERM/SIGINT: open both environments, replay, listen, serve; on the
 * signal stop accepting, finish what is in flight, sync, close. Returns 0 after a clean stop,
 * or an error (logged) when start-up failed or the log could not be made durable.
 */
int prim_run(const prim_config_t *c);

#endif
