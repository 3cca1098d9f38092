/* raft/ internals shared between its files; not part of the API. */
#ifndef GEOKV_RAFT_RAFT_INT_H
#define GEOKV_RAFT_RAFT_INT_H

#include "raft/raft.h"

enum { RAFT__PR_PROBE = 0, RAFT__PR_REPLICATE, RAFT__PR_SNAPSHOT };

/* ---- log.c: the log as storage (persisted) + unstable suffix (not yet persisted) ---- */
int raft__log_init(raft__log_t *l, raft_storage_t *st, uint32_t cap_entries, size_t cap_bytes);
void raft__log_close(raft__log_t *l);
uint64_t raft__log_first(const raft__log_t *l);
uint64_t raft__log_last(const raft__log_t *l);
int raft__log_term(const raft__log_t *l, uint64_t index, uint64_t *term);
uint64_t raft__log_last_term(const raft__log_t *l);
int raft__log_slice(const raft__log_t *l, uint64_t lo, uint64_t hi, size_t max_bytes,
		    raft_entry_t *out, size_t cap);
void *raft__log_alloc(raft__log_t *l, size_t len);
int raft__log_append_one(raft__log_t *l, uint64_t term, uint32_t type, const void *data,
			 size_t len);
int raft__log_truncate_append(raft__log_t *l, const raft_entry_t *ents, size_t n);
void raft__log_stable(raft__log_t *l);
void raft__log_restore(raft__log_t *l, const raft_snapshot_meta_t *meta);

/* ---- progress.c: a follower's replication state as the leader sees it ---- */
void raft__pr_reset(raft__progress_t *pr, uint64_t next);
void raft__pr_become_probe(raft__progress_t *pr);
void raft__pr_become_replicate(raft__progress_t *pr);
void raft__pr_become_snapshot(raft__progress_t *pr, uint64_t snap_index);
bool raft__pr_update(raft__progress_t *pr, uint64_t index);
bool raft__pr_decr(raft__progress_t *pr, uint64_t rejected, uint64_t probe_last);
bool raft__pr_paused(const raft__progress_t *pr, uint32_t max_inflight);
void raft__pr_infl_add(raft__progress_t *pr, uint64_t last, uint32_t max_inflight);
void raft__pr_infl_free_le(raft__progress_t *pr, uint64_t index, uint32_t max_inflight);
void raft__pr_infl_free_first(raft__progress_t *pr, uint32_t max_inflight);

/* ---- raft.c / replicate.c: shared between the two halves of the core ---- */
raft_msg_t *raft__msg_new(raft_t *r, uint32_t type, raft_id_t to);
raft__progress_t *raft__pr_find(raft_t *r, raft_id_t id);
uint32_t raft__quorum(const raft_t *r);
void raft__become_follower(raft_t *r, uint64_t term, raft_id_t lead);
void raft__reads_check(raft_t *r);
void raft__on_commit_in_term(raft_t *r);
void raft__on_snapshot_installed(raft_t *r, const raft_snapshot_meta_t *meta);

bool raft__send_append(raft_t *r, raft__progress_t *pr, bool send_if_empty);
void raft__send_snapshot_chunk(raft_t *r, raft__progress_t *pr);
void raft__bcast_append(raft_t *r);
void raft__bcast_heartbeat(raft_t *r);
bool raft__maybe_commit(raft_t *r);
int raft__handle_append(raft_t *r, const raft_msg_t *m);
void raft__handle_heartbeat(raft_t *r, const raft_msg_t *m);
void raft__handle_snapshot(raft_t *r, const raft_msg_t *m);
void raft__on_append_resp(raft_t *r, raft__progress_t *pr, const raft_msg_t *m);
void raft__on_heartbeat_resp(raft_t *r, raft__progress_t *pr, const raft_msg_t *m);
void raft__on_snapshot_resp(raft_t *r, raft__progress_t *pr, const raft_msg_t *m);

#endif
