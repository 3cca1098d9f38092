/*
 * geokv-proxy: the project's TCP fault-injection proxy, for integration tests and fault
 * campaigns on a kernel without tc netem. One process, one libuv loop, no threads.
 *
 * Each link listens on one address and, for every connection it accepts, connects to its
 * target and forwards bytes both ways: direction `up` (accepted client -> target) and `down`
 * (target -> client). Faults (delay + jitter, hold, blackhole, one-shot bit flips, partition,
 * reset) are set per link and direction through a line protocol on the control port
 * (control.c); link.c is the forwarding engine; main.c parses arguments and runs the loop, or
 * acts as the `ctl` client. See tests/proxy/README.md.
 *
 * Memory: bytes read are copied into chunks queued on their connection's direction (a
 * "pipe"); a pipe stops reading from its socket once its queue holds cfg.buf_cap bytes
 * (chunk headers counted), and every pipe stops once all queues together hold cfg.mem_cap,
 * so what a peer sends, or fails to read, only ever costs back-pressure. One shared read
 * buffer serves every socket: libuv calls alloc_cb and read_cb back to back.
 */
#ifndef GEOKV_TESTS_PROXY_H
#define GEOKV_TESTS_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

enum { PX_UP = 0, PX_DOWN = 1 };

#define PX_NAME_MAX   32        /* link name: [A-Za-z0-9_.-]{1,32}, "all" reserved */
#define PX_ADDR_MAX   300       /* "host:port" as given */
#define PX_MAX_MS     600000u   /* delay and jitter upper bound: 10 minutes */
#define PX_LINE_MAX   1024      /* control line, terminator included */

/* Fault settings of one direction of one link; they apply to every connection of the link. */
typedef struct px_fault {
	uint32_t delay_ms;    /* bytes leave delay_ms (+ jitter) after they were read */
	uint32_t jitter_ms;   /* uniform 0..jitter_ms extra, never reordering */
	bool hold;            /* queue, do not write (back-pressure past the cap) */
	bool blackhole;       /* read and discard */
	uint64_t corrupt_in;  /* 0: off; else flip corrupt_bit of the corrupt_in-th byte read */
	unsigned corrupt_bit; /* 0..7 */
} px_fault_t;

/* Bytes read at once from a socket, queued until release_us (monotonic, microseconds). */
typedef struct px_chunk {
	struct px_chunk *next;
	uint64_t release_us;
	size_t len;
	char data[];
} px_chunk_t;

typedef struct px_conn px_conn_t;
typedef struct px_link px_link_t;

/*
 * One direction of a connection: read from src, queue, write to dst. Invariants: at most one
 * uv_write in flight, covering the first `inflight` chunks of the queue (so `hold` stops the
 * flow within one batch); release times never decrease along the queue (so jitter never
 * reorders); dst is shut down only once the queue is empty and the EOF's own release time has
 * passed (so FIN is delayed and held like the bytes before it).
 */
typedef struct px_pipe {
	px_conn_t *conn;
	int dir;                   /* PX_UP or PX_DOWN */
	uv_tcp_t *src, *dst;
	px_chunk_t *head, *tail;
	unsigned inflight;         /* chunks at the head handed to uv_write */
	uint64_t bytes;            /* data bytes queued, in flight included */
	uint64_t mem;              /* bytes + per-chunk overhead: what buf_cap bounds */
	uint64_t last_release_us;  /* release time of the last chunk (or EOF) queued */
	uint64_t eof_at_us;
	bool reading, eof, shut_sent, shut_done;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	uv_timer_t timer;          /* fires when the head chunk (or the EOF) is due */
} px_pipe_t;

struct px_conn {
	px_link_t *link;
	px_conn_t *prev, *next;    /* the link's open connections */
	uint64_t id;
	uv_tcp_t client, target;   /* client.data = &pipe[PX_UP], target.data = &pipe[PX_DOWN] */
	uv_connect_t creq;
	px_pipe_t pipe[2];
	bool connected, closing;
	int open_handles;          /* freed when the last of its 4 handles is closed */
};

struct px_link {
	char name[PX_NAME_MAX + 1];
	char listen_str[PX_ADDR_MAX], target_str[PX_ADDR_MAX];
	struct sockaddr_storage listen_addr, target_addr;
	uv_tcp_t listener;
	bool listener_init;
	px_fault_t fault[2];
	bool partitioned;
	px_conn_t *conns;
	uint64_t nconns;           /* open connections */
	uint64_t fwd[2];           /* bytes written to the destination, per direction */
	uint64_t held;             /* bytes read and not yet written, both directions */
	uint64_t dropped;          /* blackholed, or queued on a connection that closed */
	uint64_t accepted, refused;
};

typedef struct px_config {
	size_t buf_cap;            /* per connection and direction, bytes (default 8 MiB) */
	uint64_t mem_cap;          /* all queues together (default 256 MiB) */
	unsigned max_conns;        /* open connections, all links (default 512) */
	bool verbose;              /* log every connection */
	uint64_t seed;             /* jitter; 0 = from the clock */
} px_config_t;

typedef struct px_state {
	uv_loop_t *loop;
	px_config_t cfg;
	px_link_t *links;
	size_t nlinks;
	uint64_t mem;              /* sum of every pipe's mem */
	bool throttled;            /* some pipe stopped reading because mem reached mem_cap */
	unsigned nconns;
	uint64_t next_id;
	uint64_t rng;
	bool stopping;
} px_state_t;

extern px_state_t px;

/* Logging: "time level proxy message key=value..." on stderr, one line per event. */
void px_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* link.c */
int px_link_listen(px_link_t *l, char *err, size_t errlen);
px_link_t *px_link_find(const char *name);
void px_link_kick(px_link_t *l);                 /* re-evaluate every pipe after a change */
unsigned px_link_reset(px_link_t *l);            /* RST every open connection; count */
void px_link_clear(px_link_t *l);                /* plain forwarding again */
void px_link_close(px_link_t *l);                /* shutdown: listener and connections */

/* control.c */
int px_control_listen(const struct sockaddr *addr, const char *addr_str, char *err,
                      size_t errlen);
void px_control_close(void);
/* Runs one command line (no terminator); writes "ok ..." or "error ..." to reply.
 * Returns 0 for ok, -1 for error. */
int px_command(char *line, char *reply, size_t replylen);

/* main.c: "host:port" or "[v6]:port" to a socket address (getaddrinfo, numeric port). */
int px_parse_addr(const char *s, struct sockaddr_storage *out, char *err, size_t errlen);

#endif
