/*
 * Log replication: the leader's side (appends, heartbeats, snapshots, commit) and the
 * follower's side (accepting appends, heartbeats and snapshot chunks).
 *
 * Nothing here allocates: appends carry views into the log (storage or the unstable arena)
 * placed in the outbox's entry pool, which raft_advance empties. When the outbox or the pool
 * is full, the send is skipped without touching the follower's progress, exactly as if the
 * message had been lost, and the ordinary retry paths (acks, heartbeat responses) resume it.
 */
#include <string.h>

#include "raft/raft_int.h"

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* ---- leader --------------------------------------------------------------------------- */

static void start_snapshot(raft_t *r, raft__progress_t *pr)
{
	raft_snapshot_meta_t meta;

	r->log.st->snapshot_meta(r->log.st->ctx, &meta);
	raft__pr_become_snapshot(pr, meta.index);
	raft__send_snapshot_chunk(r, pr);
}

/*
 * One AppendEntries to pr, from pr->next: as many entries as fit max_msg_bytes. In
 * REPLICATE the leader does not wait: next moves past what was sent and the send is
 * recorded in the inflight window, so up to max_inflight appends are on the wire at once.
 */
bool raft__send_append(raft_t *r, raft__progress_t *pr, bool send_if_empty)
{
	uint64_t prev = pr->next - 1, prev_term = 0, last = raft__log_last(&r->log);
	uint32_t room = r->cfg.max_msg_entries - r->n_ents_pool;
	raft_entry_t *ents = r->ents_pool + r->n_ents_pool;
	raft_msg_t *m;
	int rc, n = 0;

	if (raft__pr_paused(pr, r->cfg.max_inflight))
		return false;
	rc = raft__log_term(&r->log, prev, &prev_term);
	if (rc == RAFT_ECOMPACTED) {
		start_snapshot(r, pr);
		return false;
	}
	if (rc != 0)
		return false; /* next past our last: cannot happen for a sane progress; wait */
	if (pr->next <= last) {
		if (room == 0)
			return false;
		n = raft__log_slice(&r->log, pr->next, last + 1, r->cfg.max_msg_bytes, ents, room);
		if (n == RAFT_ECOMPACTED) {
			start_snapshot(r, pr);
			return false;
		}
		if (n < 0)
			return false;
	}
	if (n == 0 && !send_if_empty)
		return false;
	m = raft__msg_new(r, RAFT_MSG_APPEND, pr->id);
	if (m == NULL)
		return false;
	r->n_ents_pool += (uint32_t)n;
	m->index = prev;
	m->log_term = prev_term;
	m->commit = r->commit;
	m->n_entries = (uint32_t)n;
	m->entries = n > 0 ? ents : NULL;
	if (pr->state == RAFT__PR_REPLICATE) {
		if (n > 0) {
			pr->next = ents[n - 1].index + 1;
			raft__pr_infl_add(pr, ents[n - 1].index, r->cfg.max_inflight);
		}
	} else {
		pr->probe_sent = true;
	}
	return true;
}

void raft__send_snapshot_chunk(raft_t *r, raft__progress_t *pr)
{
	raft_snapshot_meta_t meta;
	const void *data = NULL;
	size_t len = 0;
	bool last = false;
	raft_msg_t *m;

	r->log.st->snapshot_meta(r->log.st->ctx, &meta);
	if (meta.index != pr->snap_index) {
		/* Compacted again since the transfer began: send the newer snapshot. */
		pr->snap_index = meta.index;
		pr->snap_offset = 0;
	}
	if (r->log.st->snapshot_chunk(r->log.st->ctx, &meta, pr->snap_offset,
				      r->cfg.snapshot_chunk, &data, &len, &last) != 0)
		return;
	m = raft__msg_new(r, RAFT_MSG_SNAPSHOT, pr->id);
	if (m == NULL)
		return;
	m->snap = meta;
	m->offset = pr->snap_offset;
	m->data = data;
	m->len = len;
	m->commit = r->commit;
	if (last)
		m->flags |= RAFT_MSGF_LAST;
}

void raft__bcast_append(raft_t *r)
{
	for (uint32_t i = 0; i < r->n_prs; i++)
		if (r->prs[i].id != r->id)
			raft__send_append(r, &r->prs[i], true);
}

void raft__bcast_heartbeat(raft_t *r)
{
	for (uint32_t i = 0; i < r->n_prs; i++) {
		raft__progress_t *pr = &r->prs[i];
		raft_msg_t *m;

		if (pr->id == r->id)
			continue;
		m = raft__msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
		if (m == NULL)
			return;
		/* Never more than the follower is known to hold: it cannot check the commit
		 * against its log, since a heartbeat carries no prev index. */
		m->commit = min_u64(pr->match, r->commit);
		m->ctx = r->read_seq;
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Commit the highest index a quorum of voters holds, but only if it is from this term
 * (figure 8 of the Raft paper: counting replicas of an older term's entry is unsafe).
 */
bool raft__maybe_commit(raft_t *r)
{
	uint64_t m[RAFT_MAX_NODES], t = 0;
	uint32_t n = 0, q = raft__quorum(r);

	for (uint32_t i = 0; i < r->n_prs; i++)
		m[n++] = r->prs[i].match;
	if (n == 0 || q > n)
		return false;
	/* n <= 16: insertion sort beats qsort's call overhead and allocates nothing. */
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && cmp_desc(&m[j - 1], &m[j]) > 0; j--) {
			uint64_t x = m[j];

			m[j] = m[j - 1];
			m[j - 1] = x;
		}
	if (m[q - 1] <= r->commit)
		return false;
	if (raft__log_term(&r->log, m[q - 1], &t) != 0 || t != r->term)
		return false;
	{
		uint64_t old = r->commit;

		r->commit = m[q - 1];
		if (old == 0 || raft__log_term(&r->log, old, &t) != 0 || t != r->term)
			raft__on_commit_in_term(r);
	}
	return true;
}

/* Largest index <= index whose term is <= term (or the first unreadable one). */
static uint64_t find_conflict_by_term(raft_t *r, uint64_t index, uint64_t term, uint64_t *t_out)
{
	uint64_t t = 0;

	for (;;) {
		if (raft__log_term(&r->log, index, &t) != 0) {
			t = 0;
			break;
		}
		if (t <= term || index == 0)
			break;
		index--;
	}
	*t_out = t;
	return index;
}

void raft__on_append_resp(raft_t *r, raft__progress_t *pr, const raft_msg_t *m)
{
	uint64_t last = raft__log_last(&r->log);

	pr->recent_active = true;
	if (m->flags & RAFT_MSGF_REJECT) {
		/* Fast back-off: the follower told us its last index at or below the rejected
		 * one whose term is <= the term we sent (hint, log_term). Skip our entries of
		 * any term above that at once, instead of one index per round trip. */
		uint64_t probe = m->hint, t = 0;

		if (m->log_term > 0)
			probe = find_conflict_by_term(r, m->hint, m->log_term, &t);
		if (raft__pr_decr(pr, m->index, probe)) {
			if (pr->state == RAFT__PR_REPLICATE)
				raft__pr_become_probe(pr);
			raft__send_append(r, pr, true);
		}
		return;
	}
	{
		bool was_paused = raft__pr_paused(pr, r->cfg.max_inflight);

		if (!raft__pr_update(pr, m->index))
			return;
		if (pr->state == RAFT__PR_PROBE)
			raft__pr_become_replicate(pr);
		else if (pr->state == RAFT__PR_REPLICATE)
			raft__pr_infl_free_le(pr, m->index, r->cfg.max_inflight);
		if (raft__maybe_commit(r))
			raft__bcast_append(r);
		else if (was_paused)
			raft__send_append(r, pr, true);
		/* Fill the window: pipelining. */
		while (raft__send_append(r, pr, false))
			;
		if (r->transferee == pr->id && pr->match == last)
			(void)raft__msg_new(r, RAFT_MSG_TIMEOUT_NOW, pr->id);
	}
}

void raft__on_heartbeat_resp(raft_t *r, raft__progress_t *pr, const raft_msg_t *m)
{
	pr->recent_active = true;
	pr->probe_sent = false;
	if (m->ctx > pr->read_ack) {
		pr->read_ack = m->ctx;
		raft__reads_check(r);
	}
	if (pr->state == RAFT__PR_SNAPSHOT) {
		/* Stop-and-wait transfer: a lost chunk or ack is resent once per heartbeat. */
		raft__send_snapshot_chunk(r, pr);
		return;
	}
	if (m->hint != 0 && m->hint - 1 < pr->match) {
		/* The follower's log ends below what it acknowledged: it lost entries (a member
		 * whose damaged log or store was discarded to be repaired from us). Without new
		 * writes no append would ever be refused to tell us, and it would wait for
		 * good. Lowering match is safe: commit never moves back, a repaired member votes
		 * for nobody until caught up, and a reordered old answer costs a resend. */
		pr->match = m->hint - 1;
		raft__pr_become_probe(pr);
		raft__send_append(r, pr, true);
		return;
	}
	/* A full window whose acks were lost would never drain: free one slot per heartbeat
	 * so the next append probes the follower again. */
	if (pr->state == RAFT__PR_REPLICATE && pr->infl_count >= r->cfg.max_inflight)
		raft__pr_infl_free_first(pr, r->cfg.max_inflight);
	/* Empty if need be: a probe at next = last + 1 finds where the follower's log ends. */
	if (pr->match < raft__log_last(&r->log))
		raft__send_append(r, pr, true);
}

void raft__on_snapshot_resp(raft_t *r, raft__progress_t *pr, const raft_msg_t *m)
{
	pr->recent_active = true;
	if (pr->state != RAFT__PR_SNAPSHOT)
		return;
	if (m->flags & RAFT_MSGF_LAST) {
		/* Installed (or the follower already had it): it matches up to m->index. */
		raft__pr_update(pr, m->index);
		raft__pr_become_probe(pr);
		raft__send_append(r, pr, true);
		return;
	}
	if (m->snap.index != pr->snap_index)
		return; /* an answer about an older snapshot */
	if (m->flags & RAFT_MSGF_REJECT)
		pr->snap_offset = 0;
	else if (m->offset == pr->snap_offset)
		return; /* duplicate ack of a chunk already being resent */
	else
		pr->snap_offset = m->offset;
	raft__send_snapshot_chunk(r, pr);
}

/* ---- follower ------------------------------------------------------------------------- */

static void commit_to(raft_t *r, uint64_t c)
{
	uint64_t last = raft__log_last(&r->log);

	if (c > last)
		c = last;
	if (c > r->commit)
		r->commit = c;
}

static void respond_append(raft_t *r, const raft_msg_t *m, uint64_t index)
{
	raft_msg_t *o = raft__msg_new(r, RAFT_MSG_APPEND_RESP, m->from);

	if (o != NULL)
		o->index = index;
}

/*
 * Figure 2, AppendEntries receiver: reject unless the log holds prev index with prev term;
 * delete a conflicting suffix (never a committed entry); append what is new; move commit to
 * min(leader commit, last new entry).
 */
int raft__handle_append(raft_t *r, const raft_msg_t *m)
{
	uint64_t t = 0, last_new, last = raft__log_last(&r->log);
	uint32_t i;

	if (m->index < r->commit) {
		/* Everything up to commit matches the leader already; say so, the leader skips. */
		respond_append(r, m, r->commit);
		return 0;
	}
	if (raft__log_term(&r->log, m->index, &t) != 0 || t != m->log_term) {
		raft_msg_t *o;
		uint64_t hint = min_u64(m->index, last), ht = 0;

		hint = find_conflict_by_term(r, hint, m->log_term, &ht);
		o = raft__msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
		if (o != NULL) {
			o->flags = RAFT_MSGF_REJECT;
			o->index = m->index;
			o->hint = hint;
			o->log_term = ht;
		}
		return 0;
	}
	last_new = m->index + m->n_entries;
	for (i = 0; i < m->n_entries; i++) {
		const raft_entry_t *e = &m->entries[i];

		if (raft__log_term(&r->log, e->index, &t) != 0 || t != e->term)
			break;
	}
	if (i < m->n_entries) {
		uint64_t first = m->entries[i].index;
		int k;

		if (first <= r->commit)
			return RAFT_ECORRUPT;
		/* k may fall short (arena full): then we match only up to what we hold, and
		 * the leader sends the rest again. */
		k = raft__log_truncate_append(&r->log, &m->entries[i], m->n_entries - i);
		last_new = first + (uint64_t)k - 1;
	}
	commit_to(r, min_u64(m->commit, last_new));
	respond_append(r, m, last_new);
	return 0;
}

void raft__handle_heartbeat(raft_t *r, const raft_msg_t *m)
{
	raft_msg_t *o;

	commit_to(r, m->commit);
	o = raft__msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
	if (o != NULL) {
		o->ctx = m->ctx;
		o->hint = raft__log_last(&r->log) + 1; /* where our log ends (0: not said) */
	}
}

static void respond_snapshot(raft_t *r, const raft_msg_t *m, uint32_t flags, uint64_t offset,
			     uint64_t index)
{
	raft_msg_t *o = raft__msg_new(r, RAFT_MSG_SNAPSHOT_RESP, m->from);

	if (o == NULL)
		return;
	o->flags = flags;
	o->snap = m->snap;
	o->offset = offset;
	o->index = index;
}

static bool same_snap(const raft_snapshot_meta_t *a, const raft_snapshot_meta_t *b)
{
	return a->index == b->index && a->term == b->term;
}

/*
 * When our log already holds what a snapshot carries, installing it would only throw away
 * entries: answer as if installed and keep the log. Asked at the first chunk (nothing to
 * transfer) and again at the last (we may have caught up through appends meanwhile, and
 * installing then would discard entries we already acknowledged). Returns true if answered.
 */
static bool snapshot_covered(raft_t *r, const raft_msg_t *m)
{
	uint64_t t = 0;

	if (m->snap.index <= r->commit) {
		/* Our committed prefix already covers it. */
		respond_snapshot(r, m, RAFT_MSGF_LAST, 0, r->commit);
		return true;
	}
	if (raft__log_term(&r->log, m->snap.index, &t) == 0 && t == m->snap.term) {
		/* Log matching: our log equals the leader's up to snap.index. */
		commit_to(r, m->snap.index);
		respond_snapshot(r, m, RAFT_MSGF_LAST, 0, m->snap.index);
		return true;
	}
	return false;
}

/*
 * InstallSnapshot receiver, one chunk at a time and in order: a chunk at the expected
 * offset is copied into the arena and handed to the driver in the next Ready, which stages
 * it; the last one makes the Ready install the snapshot. Only one chunk per ready cycle,
 * so the arena never holds more than one.
 */
void raft__handle_snapshot(raft_t *r, const raft_msg_t *m)
{
	void *p;

	if (m->offset == 0) {
		if (snapshot_covered(r, m))
			return;
		if (!r->recv_active || !same_snap(&r->recv_meta, &m->snap) || r->recv_offset != 0) {
			r->recv_active = true;
			r->recv_meta = m->snap;
			r->recv_offset = 0;
		}
	}
	if (!r->recv_active || !same_snap(&r->recv_meta, &m->snap)) {
		respond_snapshot(r, m, RAFT_MSGF_REJECT, 0, 0);
		return;
	}
	if (m->offset != r->recv_offset) {
		respond_snapshot(r, m, 0, r->recv_offset, 0);
		return;
	}
	if (r->has_chunk)
		return; /* one per cycle; the leader resends on the next heartbeat response */
	p = raft__log_alloc(&r->log, m->len);
	if (p == NULL && m->len > 0)
		return;
	if (m->len > 0)
		memcpy(p, m->data, m->len);
	r->has_chunk = true;
	r->chunk = (raft_snapshot_chunk_t){
		.meta = m->snap, .offset = m->offset, .data = p, .len = m->len,
		.last = (m->flags & RAFT_MSGF_LAST) != 0,
	};
	r->recv_offset += m->len;
	if (!(m->flags & RAFT_MSGF_LAST)) {
		respond_snapshot(r, m, 0, r->recv_offset, 0);
		return;
	}
	r->recv_active = false;
	/* Caught up some other way meanwhile (appends still in flight when the transfer
	 * began): installing now would discard entries we already acknowledged, leaving the
	 * leader's match above our log. Keep the log; the staged bytes go unused. */
	if (snapshot_covered(r, m))
		return;
	raft__on_snapshot_installed(r, &m->snap);
	respond_snapshot(r, m, RAFT_MSGF_LAST, 0, m->snap.index);
}
