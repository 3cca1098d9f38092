/* Placeholder until the Raft core lands: only the error band that proto/errors.c names. */
#ifndef GEOKV_RAFT_RAFT_H
#define GEOKV_RAFT_RAFT_H

enum {
	RAFT_ENOTLEADER = -30300, /* proposal on a node that is not the leader */
	RAFT_ELAST      = -30301,
};

/* Static text for a RAFT_E* code; never NULL. */
const char *raft_strerror(int err);

#endif
