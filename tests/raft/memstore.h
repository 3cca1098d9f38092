/*
 * An in-memory raft_storage_t for the simulator and the unit tests: the whole log in a
 * growable array, hard state, snapshot meta and snapshot bytes. Each stored entry also
 * carries a chain hash of the log up to it (index, term, type, data of every entry), which
 * lets the simulator compare whole log prefixes in O(1) (log matching).
 */
#ifndef GEOKV_TESTS_RAFT_MEMSTORE_H
#define GEOKV_TESTS_RAFT_MEMSTORE_H

#include "raft/raft.h"

typedef struct ms_entry {
	raft_entry_t e;   /* e.data points to owned memory */
	uint64_t chain;
} ms_entry_t;

typedef struct memstore {
	raft_storage_t st;
	raft_hard_state_t hs;
	raft_snapshot_meta_t meta;
	uint64_t snap_chain;      /* chain hash at meta.index */
	uint8_t *snap;            /* snapshot bytes (owned) */
	size_t snap_len;
	ms_entry_t *ents;         /* ents[0].e.index == meta.index + 1 */
	size_t n, cap;
	int fail_entries;         /* tests: make the next entries() call fail with this code */
} memstore_t;

void memstore_init(memstore_t *ms, const raft_conf_t *conf);
void memstore_free(memstore_t *ms);
/* A founder of a new cluster of nodes 1..n: entries 1..n (term 1) each add one member,
 * committed (hard state {1, 0, n}), so a node that joins later learns the membership
 * from the log like any other entry. */
void memstore_bootstrap(memstore_t *ms, uint32_t n);
/* Append (replacing the suffix from ents[0].index). Returns 0 or -1 on a gap. */
int memstore_append(memstore_t *ms, const raft_entry_t *ents, size_t n);
/* Drop entries <= index; the snapshot bytes become data/len (copied). */
void memstore_compact(memstore_t *ms, uint64_t index, const raft_conf_t *conf,
		      const void *data, size_t len);
/* Replace everything with a received snapshot. */
void memstore_install(memstore_t *ms, const raft_snapshot_meta_t *meta, uint64_t chain,
		      const void *data, size_t len);
uint64_t memstore_last(const memstore_t *ms);
/* Chain hash at index (meta.index .. last); false if not held. */
bool memstore_chain(const memstore_t *ms, uint64_t index, uint64_t *chain);
const ms_entry_t *memstore_get(const memstore_t *ms, uint64_t index);
/* FNV-1a 64 of p, continuing from h (0 = start). */
uint64_t memstore_hash(uint64_t h, const void *p, size_t len);

#endif
