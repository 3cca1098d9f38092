/*
 * A tiny geokv server for client tests: speaks the frame protocol on 127.0.0.1 (an
 * ephemeral port) from its own thread and loop, with a toy in-memory store and knobs that
 * misbehave on purpose (answer out of order, never answer, drop the connection, refuse
 * writes as a follower). Not a model of the real store's rules beyond what tests need.
 */
#ifndef GEOKV_TESTS_PROTO_FAKE_SERVER_H
#define GEOKV_TESTS_PROTO_FAKE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct fake_cfg {
	int hello_error;          /* answer HELLO with this ERROR code (0: HELLO_OK) */
	char notleader_hint[64];  /* non-empty or follower: writes get PROTO_ENOTLEADER + hint */
	bool follower;            /* writes get PROTO_ENOTLEADER (hint may be empty) */
	bool silent;              /* never answer requests */
	uint32_t reverse_every;   /* hold answers, send each group of N in reverse order */
	uint32_t drop_after;      /* close the first connection after N requests, unanswered */
	uint32_t page_limit;      /* list items per page (default 1000) */
	bool fail_key_bad;        /* a batch op whose key starts with "bad" fails (KV_EBATCH) */
} fake_cfg_t;

typedef struct fake_server fake_server_t;

/* Start on 127.0.0.1:0; *port receives the port. cfg is copied. */
fake_server_t *fake_start(const fake_cfg_t *cfg, int *port);
void fake_stop(fake_server_t *f);

/* Counters, readable while it runs. */
uint32_t fake_requests(fake_server_t *f);    /* REQ frames received */
uint32_t fake_connections(fake_server_t *f); /* connections accepted */
uint32_t fake_batches(fake_server_t *f);     /* BATCH requests applied */

#endif
