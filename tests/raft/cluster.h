/*
 * A tiny in-memory cluster for the unit tests: N raft nodes on memstores, a FIFO of
 * messages the test delivers explicitly (optionally dropping some), and a driver that
 * persists, sends, applies and advances exactly as raft.h prescribes.
 */
#ifndef GEOKV_TESTS_RAFT_CLUSTER_H
#define GEOKV_TESTS_RAFT_CLUSTER_H

#include "raft/raft.h"
#include "tests/raft/memstore.h"

#define TC_MAX 6
#define TC_QMAX 8192

typedef struct tc_msg {
	raft_msg_t m;   /* entries and data point into blob */
	void *blob;
} tc_msg_t;

typedef struct tc {
	int n;                          /* nodes 1..n */
	raft_t r[TC_MAX + 1];
	memstore_t ms[TC_MAX + 1];
	bool up[TC_MAX + 1];
	bool cut[TC_MAX + 1][TC_MAX + 1]; /* cut[a][b]: a -> b dropped */
	uint64_t applied[TC_MAX + 1];   /* last index applied by the "state machine" */
	uint64_t n_applied_normal[TC_MAX + 1];
	raft_read_state_t reads[TC_MAX + 1][64];
	int n_reads[TC_MAX + 1];
	uint8_t stage[TC_MAX + 1][4096];
	size_t stage_len[TC_MAX + 1];
	tc_msg_t *q;                    /* in flight */
	int nq;
	raft_config_t cfg;              /* template for every node */
	int sent_by_type[RAFT_MSG_TYPE_MAX];
} tc_t;

/* > 0 while the driver is inside a raft_* call (for the allocation-counting test). */
extern int tc_in_raft;

/* Nodes 1..members are founders (bootstrap entries); members+1..n start empty. */
void tc_init(tc_t *c, int n, int members, const raft_config_t *cfg);
void tc_free(tc_t *c);
void tc_restart(tc_t *c, int i);
/* Run node i's Ready cycle(s): persist, queue messages, apply, advance. */
void tc_ready(tc_t *c, int i);
void tc_ready_all(tc_t *c);
/* Deliver queued messages (and their answers) until none is left or `max` were. */
int tc_deliver(tc_t *c, int max);
void tc_tick(tc_t *c, int i, int times);
/* Lose every message in flight. */
void tc_drop(tc_t *c);
/* Tick everyone and deliver, `rounds` times. */
void tc_run(tc_t *c, int rounds);
/* Make node i leader: campaign (via TIMEOUT_NOW-like immediate election) and settle. */
void tc_elect(tc_t *c, int i);
int tc_leader(tc_t *c);
/* Step a hand-made message into node i (from/to/term filled by the caller). */
int tc_step(tc_t *c, int i, const raft_msg_t *m);

#endif
