/*
 * The Raft core: roles, elections, the step dispatcher, membership, ReadIndex, leader
 * transfer and the Ready hand-off. Replication lives in replicate.c, the log in log.c.
 *
 * Role behaviour is a pointer swap (step_fn, tick_fn set by become_*), as in etcd-raft.
 * Time is r->election_elapsed / heartbeat_elapsed, counted in ticks the driver feeds.
 *
 * Membership takes effect when an entry is applied (handed out in a Ready), etcd's
 * "apply-time" rule, which is safe for one-at-a-time changes provided a leader proposes no
 * change while one is unapplied, and none before its own term's first entry is applied
 * (pending_conf_index starts at that no-op): every pair of adjacent configurations then has
 * intersecting majorities, whichever of the two each node currently uses.
 */
#include <stdlib.h>
#include <string.h>

#include "raft/raft_int.h"

static int step_follower(raft_t *r, const raft_msg_t *m);
static int step_candidate(raft_t *r, const raft_msg_t *m);
static int step_leader(raft_t *r, const raft_msg_t *m);
static void tick_election(raft_t *r);
static void tick_heartbeat(raft_t *r);

/* ---- small helpers ------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

raft_msg_t *raft__msg_new(raft_t *r, uint32_t type, raft_id_t to)
{
	raft_msg_t *m;

	if (r->n_msgs == r->cfg.max_msgs) {
		r->dropped++; /* as if lost on the wire: every Raft message may be */
		return NULL;
	}
	m = &r->msgs[r->n_msgs++];
	memset(m, 0, sizeof *m);
	m->type = type;
	m->from = r->id;
	m->to = to;
	/* Forwarded requests carry no term: they are not Raft RPCs and must not make the
	 * leader step down or a follower adopt a term. */
	m->term = (type == RAFT_MSG_PROPOSE || type == RAFT_MSG_READ_INDEX) ? 0 : r->term;
	return m;
}

raft__progress_t *raft__pr_find(raft_t *r, raft_id_t id)
{
	for (uint32_t i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

uint32_t raft__quorum(const raft_t *r)
{
	return r->n_prs / 2 + 1;
}

bool raft_conf_has(const raft_conf_t *c, raft_id_t id)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (c->ids[i] == id)
			return true;
	return false;
}

static bool promotable(const raft_t *r)
{
	return raft_conf_has(&r->conf, r->id);
}

/* What this node has persisted and still holds as valid (its own "match" as leader). */
static uint64_t persisted_match(const raft_t *r)
{
	const raft__log_t *l = &r->log;

	if (l->has_snap)
		return 0;
	if (l->n_u > 0 && l->u_offset - 1 < l->st_last)
		return l->u_offset - 1;
	return l->st_last;
}

/* Rebuild the progress set from r->conf, keeping the progress of members that stay. */
static void set_conf_progress(raft_t *r)
{
	raft__progress_t np[RAFT_MAX_NODES];
	uint32_t n = 0, mi = r->cfg.max_inflight;
	uint64_t next = raft__log_last(&r->log) + 1;

	for (uint32_t i = 0; i < r->conf.n; i++) {
		raft__progress_t *old = raft__pr_find(r, r->conf.ids[i]);

		if (old != NULL) {
			np[n++] = *old;
			continue;
		}
		memset(&np[n], 0, sizeof np[n]);
		np[n].id = r->conf.ids[i];
		np[n].infl = NULL;
		raft__pr_reset(&np[n], next);
		/* A new member has not had a chance to answer yet: do not let the next
		 * check-quorum round count it as dead. */
		np[n].recent_active = true;
		n++;
	}
	/* Inflight windows: give each new member a region no kept member uses. */
	for (uint32_t i = 0; i < n; i++) {
		if (np[i].infl != NULL)
			continue;
		for (uint32_t k = 0; k < RAFT_MAX_NODES; k++) {
			uint64_t *region = r->infl_buf + (size_t)k * mi;
			bool used = false;

			for (uint32_t j = 0; j < n; j++)
				used |= np[j].infl == region;
			if (!used) {
				np[i].infl = region;
				break;
			}
		}
	}
	memcpy(r->prs, np, n * sizeof np[0]);
	r->n_prs = n;
}

/* ---- roles --------------------------------------------------------------------------- */

static void reset(raft_t *r, uint64_t term)
{
	uint64_t next = raft__log_last(&r->log) + 1;

	if (r->term != term) {
		r->term = term;
		r->vote = 0;
	}
	r->lead = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	r->randomized_timeout = r->cfg.election_tick +
		(uint32_t)(splitmix64(&r->rng) % r->cfg.election_tick);
	r->transferee = 0;
	for (uint32_t i = 0; i < r->n_prs; i++) {
		raft__pr_reset(&r->prs[i], next);
		if (r->prs[i].id == r->id)
			r->prs[i].match = persisted_match(r);
	}
	/* Pending reads die with the role: they were confirmed against this leadership. */
	r->n_reads = 0;
	r->read_bcast = false;
	r->append_pending = false;
}

void raft__become_follower(raft_t *r, uint64_t term, raft_id_t lead)
{
	reset(r, term);
	r->role = RAFT_FOLLOWER;
	r->lead = lead;
	r->step_fn = step_follower;
	r->tick_fn = tick_election;
}

static void become_precandidate(raft_t *r)
{
	/* Term and vote stay: a pre-vote changes nothing durable, which is its point. */
	r->role = RAFT_PRECANDIDATE;
	r->lead = 0;
	r->step_fn = step_candidate;
	r->tick_fn = tick_election;
	for (uint32_t i = 0; i < r->n_prs; i++)
		r->prs[i].vote = 0;
}

static void become_candidate(raft_t *r)
{
	reset(r, r->term + 1);
	r->vote = r->id;
	r->role = RAFT_CANDIDATE;
	r->step_fn = step_candidate;
	r->tick_fn = tick_election;
}

static void become_leader(raft_t *r)
{
	reset(r, r->term);
	r->role = RAFT_LEADER;
	r->lead = r->id;
	r->step_fn = step_leader;
	r->tick_fn = tick_heartbeat;
	for (uint32_t i = 0; i < r->n_prs; i++)
		r->prs[i].recent_active = true;
	/* The no-op commits this term, which commits every earlier entry (figure 8), and
	 * gates membership changes and ReadIndex until it is applied / committed. */
	if (raft__log_append_one(&r->log, r->term, RAFT_ENTRY_NOOP, NULL, 0) == 0)
		r->pending_conf_index = raft__log_last(&r->log);
	else
		r->pending_conf_index = raft__log_last(&r->log) + 1;
	raft__bcast_append(r);
}

static int tally(raft_t *r, uint32_t *granted, uint32_t *rejected)
{
	*granted = *rejected = 0;
	for (uint32_t i = 0; i < r->n_prs; i++) {
		if (r->prs[i].vote == 1)
			(*granted)++;
		else if (r->prs[i].vote == 2)
			(*rejected)++;
	}
	return 0;
}

static void campaign(raft_t *r, bool pre, bool transfer)
{
	uint32_t type, granted, rejected;
	uint64_t term, last = raft__log_last(&r->log), last_term = raft__log_last_term(&r->log);
	raft__progress_t *self;

	if (pre) {
		become_precandidate(r);
		type = RAFT_MSG_PREVOTE;
		term = r->term + 1;
	} else {
		become_candidate(r);
		type = RAFT_MSG_VOTE;
		term = r->term;
	}
	self = raft__pr_find(r, r->id);
	if (self != NULL)
		self->vote = 1;
	tally(r, &granted, &rejected);
	if (granted >= raft__quorum(r)) {
		if (pre)
			campaign(r, false, false);
		else
			become_leader(r);
		return;
	}
	for (uint32_t i = 0; i < r->n_prs; i++) {
		raft_msg_t *m;

		if (r->prs[i].id == r->id)
			continue;
		m = raft__msg_new(r, type, r->prs[i].id);
		if (m == NULL)
			continue;
		m->term = term;
		m->index = last;
		m->log_term = last_term;
		if (transfer)
			m->flags |= RAFT_MSGF_TRANSFER;
	}
}

static void hup(raft_t *r, bool transfer)
{
	if (r->role == RAFT_LEADER || !promotable(r))
		return;
	campaign(r, r->cfg.pre_vote && !transfer, transfer);
}

/* ---- ticks --------------------------------------------------------------------------- */

static void tick_election(raft_t *r)
{
	r->election_elapsed++;
	if (!promotable(r) || r->election_elapsed < r->randomized_timeout)
		return;
	/* Committed entries not yet handed out may hold a membership change; campaigning
	 * under the older configuration could count the wrong majority. Wait a tick. */
	if (r->applied < r->commit)
		return;
	r->election_elapsed = 0;
	hup(r, false);
}

static void tick_heartbeat(raft_t *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->cfg.election_tick) {
		r->election_elapsed = 0;
		if (r->cfg.check_quorum) {
			uint32_t active = 0;

			for (uint32_t i = 0; i < r->n_prs; i++)
				if (r->prs[i].id == r->id || r->prs[i].recent_active)
					active++;
			if (active < raft__quorum(r)) {
				raft__become_follower(r, r->term, 0);
				return;
			}
			for (uint32_t i = 0; i < r->n_prs; i++)
				if (r->prs[i].id != r->id)
					r->prs[i].recent_active = false;
		}
		r->transferee = 0; /* a transfer not done within an election timeout failed */
		if (!promotable(r)) {
			raft__become_follower(r, r->term, 0);
			return;
		}
	}
	if (r->heartbeat_elapsed >= r->cfg.heartbeat_tick) {
		r->heartbeat_elapsed = 0;
		raft__bcast_heartbeat(r);
	}
}

void raft_tick(raft_t *r)
{
	if (r->in_ready)
		return;
	r->tick_fn(r);
}

/* ---- reads --------------------------------------------------------------------------- */

static bool committed_in_term(const raft_t *r)
{
	uint64_t t = 0;

	return raft__log_term(&r->log, r->commit, &t) == 0 && t == r->term;
}

static int read_request(raft_t *r, uint64_t ctx, raft_id_t from)
{
	raft__progress_t *self = raft__pr_find(r, r->id);
	raft__read_t *rd;

	if (r->n_reads == r->cfg.max_reads)
		return RAFT_EBUSY;
	rd = &r->reads[r->n_reads++];
	rd->ctx = ctx;
	rd->from = from;
	rd->seq = ++r->read_seq;
	/* Before this term's first commit our commit index may trail the true one; the read
	 * waits and takes the commit index at that point (raft__on_commit_in_term). */
	rd->index = committed_in_term(r) ? r->commit : 0;
	if (self != NULL)
		self->read_ack = rd->seq;
	r->read_bcast = true;
	raft__reads_check(r);
	return 0;
}

/*
 * A read is confirmed once a quorum acknowledged a heartbeat sent after it arrived (its
 * seq): at that moment no other leader can have committed anything this one lacks.
 * Reads are FIFO by seq, so confirming one confirms every earlier one.
 */
void raft__reads_check(raft_t *r)
{
	uint32_t done = 0;

	while (done < r->n_reads) {
		const raft__read_t *rd = &r->reads[done];
		uint32_t acks = 0;

		if (rd->index == 0)
			break;
		for (uint32_t i = 0; i < r->n_prs; i++)
			if (r->prs[i].read_ack >= rd->seq)
				acks++;
		if (acks < raft__quorum(r))
			break;
		if (rd->from == 0 || rd->from == r->id) {
			if (r->n_read_out == r->cfg.max_reads)
				break;
			r->read_out[r->n_read_out++] = (raft_read_state_t){rd->ctx, rd->index};
		} else {
			raft_msg_t *m = raft__msg_new(r, RAFT_MSG_READ_INDEX_RESP, rd->from);

			if (m != NULL) {
				m->ctx = rd->ctx;
				m->index = rd->index;
			}
		}
		done++;
	}
	if (done > 0) {
		memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof r->reads[0]);
		r->n_reads -= done;
	}
}

void raft__on_commit_in_term(raft_t *r)
{
	for (uint32_t i = 0; i < r->n_reads; i++)
		if (r->reads[i].index == 0)
			r->reads[i].index = r->commit;
	raft__reads_check(r);
}

/* ---- step ---------------------------------------------------------------------------- */

static void handle_vote(raft_t *r, const raft_msg_t *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	uint64_t last = raft__log_last(&r->log), last_term = raft__log_last_term(&r->log);
	/* Figure 2, RequestVote receiver: at most one vote per term (vote persisted before the
	 * answer leaves), and only for a log at least as up to date as ours (§5.4.1). */
	bool can_vote = r->vote == m->from || (r->vote == 0 && r->lead == 0) ||
		(pre && m->term > r->term);
	bool up_to_date = m->log_term > last_term || (m->log_term == last_term && m->index >= last);
	raft_msg_t *o = raft__msg_new(r, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);

	if (o != NULL) {
		/* Tell the candidate how far we know the log is committed (see learn_commit). */
		o->index = r->commit;
		(void)raft__log_term(&r->log, r->commit, &o->log_term);
	}
	if (can_vote && up_to_date) {
		if (o != NULL)
			o->term = m->term;
		if (!pre) {
			r->election_elapsed = 0;
			r->vote = m->from;
		}
	} else if (o != NULL) {
		o->flags = RAFT_MSGF_REJECT;
	}
}

/*
 * A vote answer carries the voter's commit index and the term there. If our log has that
 * term at that index, log matching makes our prefix identical to the voter's, so it is
 * committed. Without this a candidate can be stuck under an old configuration: a member
 * just removed by a committed change no longer campaigns, may hold the longest log (so it
 * refuses our votes), and the leader that knew of the commit may be gone.
 */
static void learn_commit(raft_t *r, const raft_msg_t *m)
{
	uint64_t t = 0;

	if (m->index > r->commit && m->index <= raft__log_last(&r->log) &&
	    raft__log_term(&r->log, m->index, &t) == 0 && t == m->log_term && t != 0)
		r->commit = m->index;
}

int raft_step(raft_t *r, const raft_msg_t *m)
{
	if (r->in_ready)
		return RAFT_EBUSY;
	if (m->type == 0 || m->type >= RAFT_MSG_TYPE_MAX)
		return RAFT_EINVAL;
	/* Before the term rules: "index i with term t is committed" stays true forever, so
	 * even an answer from a voter stuck in an older term teaches it. */
	if (m->type == RAFT_MSG_VOTE_RESP || m->type == RAFT_MSG_PREVOTE_RESP)
		learn_commit(r, m);
	if (m->term == 0) {
		/* forwarded requests: no term rules */
	} else if (m->term > r->term) {
		bool vote = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;

		if (vote && !(m->flags & RAFT_MSGF_TRANSFER) && r->cfg.check_quorum && r->lead != 0 &&
		    r->election_elapsed < r->cfg.election_tick)
			return 0; /* lease: our leader is alive; do not let a rejoining node depose it */
		if (m->type == RAFT_MSG_PREVOTE ||
		    (m->type == RAFT_MSG_PREVOTE_RESP && !(m->flags & RAFT_MSGF_REJECT))) {
			/* A pre-vote (or a grant of ours) speaks of a term nobody holds yet. */
		} else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
			   m->type == RAFT_MSG_SNAPSHOT) {
			raft__become_follower(r, m->term, m->from);
		} else {
			raft__become_follower(r, m->term, 0);
		}
	} else if (m->term < r->term) {
		if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
		    (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
			/* A stale leader cut off while we moved on: our term makes it step down.
			 * With pre-vote we never bump terms on its followers' behalf, so without
			 * this answer it could stay "leader" forever. */
			(void)raft__msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
		} else if (m->type == RAFT_MSG_PREVOTE) {
			raft_msg_t *o = raft__msg_new(r, RAFT_MSG_PREVOTE_RESP, m->from);

			if (o != NULL)
				o->flags = RAFT_MSGF_REJECT;
		}
		return 0;
	}
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
		handle_vote(r, m);
		return 0;
	}
	return r->step_fn(r, m);
}

static int step_follower(raft_t *r, const raft_msg_t *m)
{
	switch (m->type) {
	case RAFT_MSG_APPEND:
		r->election_elapsed = 0;
		r->lead = m->from;
		return raft__handle_append(r, m);
	case RAFT_MSG_HEARTBEAT:
		r->election_elapsed = 0;
		r->lead = m->from;
		raft__handle_heartbeat(r, m);
		return 0;
	case RAFT_MSG_SNAPSHOT:
		r->election_elapsed = 0;
		r->lead = m->from;
		raft__handle_snapshot(r, m);
		return 0;
	case RAFT_MSG_TIMEOUT_NOW:
		hup(r, true);
		return 0;
	case RAFT_MSG_READ_INDEX_RESP:
		if (r->n_read_out < r->cfg.max_reads)
			r->read_out[r->n_read_out++] = (raft_read_state_t){m->ctx, m->index};
		return 0;
	default:
		/* Forwarded proposals/reads reaching a non-leader are dropped, not forwarded
		 * again: two nodes with stale leader ids would bounce them forever. */
		return 0;
	}
}

static int step_candidate(raft_t *r, const raft_msg_t *m)
{
	uint32_t want = r->role == RAFT_PRECANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
	uint32_t granted, rejected;
	raft__progress_t *pr;

	switch (m->type) {
	case RAFT_MSG_APPEND:
		raft__become_follower(r, m->term, m->from);
		return raft__handle_append(r, m);
	case RAFT_MSG_HEARTBEAT:
		raft__become_follower(r, m->term, m->from);
		raft__handle_heartbeat(r, m);
		return 0;
	case RAFT_MSG_SNAPSHOT:
		raft__become_follower(r, m->term, m->from);
		raft__handle_snapshot(r, m);
		return 0;
	default:
		break;
	}
	if (m->type != want || (pr = raft__pr_find(r, m->from)) == NULL)
		return 0;
	if (pr->vote == 0)
		pr->vote = (m->flags & RAFT_MSGF_REJECT) ? 2 : 1;
	tally(r, &granted, &rejected);
	if (granted >= raft__quorum(r)) {
		if (r->role == RAFT_PRECANDIDATE)
			campaign(r, false, false);
		else
			become_leader(r);
	} else if (r->n_prs - rejected < raft__quorum(r)) {
		raft__become_follower(r, r->term, 0);
	}
	return 0;
}

static int step_leader(raft_t *r, const raft_msg_t *m)
{
	raft__progress_t *pr;

	switch (m->type) {
	case RAFT_MSG_PROPOSE:
		if (r->transferee != 0 || m->n_entries != 1 ||
		    m->entries[0].type != RAFT_ENTRY_NORMAL)
			return 0;
		if (raft__log_append_one(&r->log, r->term, RAFT_ENTRY_NORMAL, m->entries[0].data,
					 m->entries[0].len) == 0)
			r->append_pending = true;
		return 0;
	case RAFT_MSG_READ_INDEX:
		(void)read_request(r, m->ctx, m->from);
		return 0;
	case RAFT_MSG_APPEND_RESP:
	case RAFT_MSG_HEARTBEAT_RESP:
	case RAFT_MSG_SNAPSHOT_RESP:
		break;
	default:
		return 0;
	}
	if ((pr = raft__pr_find(r, m->from)) == NULL)
		return 0;
	if (m->type == RAFT_MSG_APPEND_RESP)
		raft__on_append_resp(r, pr, m);
	else if (m->type == RAFT_MSG_HEARTBEAT_RESP)
		raft__on_heartbeat_resp(r, pr, m);
	else
		raft__on_snapshot_resp(r, pr, m);
	return 0;
}

/* ---- proposals, membership, reads, transfer ------------------------------------------ */

int raft_propose(raft_t *r, const void *data, size_t len)
{
	if (r->in_ready)
		return RAFT_EBUSY;
	if (len > UINT32_MAX || len > r->cfg.max_unstable_bytes)
		return RAFT_ETOOBIG;
	if (r->role == RAFT_LEADER) {
		int rc;

		if (r->transferee != 0)
			return RAFT_EBUSY;
		rc = raft__log_append_one(&r->log, r->term, RAFT_ENTRY_NORMAL, data, len);
		if (rc == 0)
			r->append_pending = true;
		return rc;
	}
	if (r->lead != 0 && r->cfg.forward_proposals) {
		raft_entry_t *e;
		raft_msg_t *m;
		void *p = NULL;

		if (r->n_ents_pool == r->cfg.max_msg_entries || r->n_msgs == r->cfg.max_msgs)
			return RAFT_EBUSY;
		if (len > 0 && (p = raft__log_alloc(&r->log, len)) == NULL)
			return RAFT_EBUSY;
		if (len > 0)
			memcpy(p, data, len);
		e = &r->ents_pool[r->n_ents_pool++];
		*e = (raft_entry_t){.type = RAFT_ENTRY_NORMAL, .len = (uint32_t)len, .data = p};
		m = raft__msg_new(r, RAFT_MSG_PROPOSE, r->lead);
		m->n_entries = 1;
		m->entries = e;
		return RAFT_FORWARDED;
	}
	return RAFT_ENOTLEADER;
}

void raft_conf_change_encode(uint8_t out[8], int op, raft_id_t id)
{
	uint32_t o = (uint32_t)op;

	for (int i = 0; i < 4; i++) {
		out[i] = (uint8_t)(o >> (8 * i));
		out[4 + i] = (uint8_t)(id >> (8 * i));
	}
}

int raft_conf_change_decode(const raft_entry_t *e, int *op, raft_id_t *id)
{
	const uint8_t *p = e->data;
	uint32_t o = 0, v = 0;

	if (e->type != RAFT_ENTRY_CONF || e->len != 8 || p == NULL)
		return RAFT_EINVAL;
	for (int i = 0; i < 4; i++) {
		o |= (uint32_t)p[i] << (8 * i);
		v |= (uint32_t)p[4 + i] << (8 * i);
	}
	if ((o != RAFT_CONF_ADD && o != RAFT_CONF_REMOVE) || v == 0)
		return RAFT_EINVAL;
	*op = (int)o;
	*id = v;
	return 0;
}

static int conf_change(raft_conf_t *c, int op, raft_id_t id)
{
	if (op == RAFT_CONF_ADD) {
		if (raft_conf_has(c, id) || c->n == RAFT_MAX_NODES)
			return RAFT_EINVAL;
		c->ids[c->n++] = id;
		return 0;
	}
	if (!raft_conf_has(c, id) || c->n == 1)
		return RAFT_EINVAL;
	for (uint32_t i = 0; i < c->n; i++)
		if (c->ids[i] == id) {
			c->ids[i] = c->ids[--c->n];
			break;
		}
	return 0;
}

int raft_conf_apply(raft_conf_t *c, const raft_entry_t *e)
{
	int op;
	raft_id_t id;

	if (raft_conf_change_decode(e, &op, &id) != 0)
		return RAFT_EINVAL;
	return conf_change(c, op, id);
}

int raft_propose_conf(raft_t *r, int op, raft_id_t id)
{
	raft_conf_t c = r->conf;
	uint8_t buf[8];
	int rc;

	if (r->in_ready)
		return RAFT_EBUSY;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (id == 0 || (op != RAFT_CONF_ADD && op != RAFT_CONF_REMOVE))
		return RAFT_EINVAL;
	if (r->transferee != 0 || r->pending_conf_index > r->applied)
		return RAFT_EBUSY;
	if (conf_change(&c, op, id) != 0)
		return RAFT_EINVAL;
	raft_conf_change_encode(buf, op, id);
	rc = raft__log_append_one(&r->log, r->term, RAFT_ENTRY_CONF, buf, sizeof buf);
	if (rc != 0)
		return rc;
	r->pending_conf_index = raft__log_last(&r->log);
	r->append_pending = true;
	return 0;
}

/* A committed membership change, as it is handed out for applying. */
static void apply_conf_entry(raft_t *r, const raft_entry_t *e)
{
	if (raft_conf_apply(&r->conf, e) != 0)
		return; /* invalid changes are no-ops, identically on every node */
	set_conf_progress(r);
	if (r->transferee != 0 && !raft_conf_has(&r->conf, r->transferee))
		r->transferee = 0;
	if (r->role == RAFT_LEADER) {
		if (!promotable(r)) {
			/* Removed. Stepping down at once would strand the others: they may not
			 * know this change is committed (so still count us in their majority),
			 * and our log may be longer than theirs (so we would refuse to vote for
			 * them). Hand leadership to the most up-to-date member instead; proposals
			 * stop now, and we step down when it wins or after an election timeout. */
			raft__progress_t *best = NULL;

			for (uint32_t i = 0; i < r->n_prs; i++)
				if (best == NULL || r->prs[i].match > best->match)
					best = &r->prs[i];
			if (best != NULL) {
				r->transferee = best->id;
				r->election_elapsed = 0;
				if (best->match == raft__log_last(&r->log))
					(void)raft__msg_new(r, RAFT_MSG_TIMEOUT_NOW, best->id);
				else
					raft__send_append(r, best, true);
			}
		}
		/* A smaller majority may commit more now. */
		if (raft__maybe_commit(r))
			raft__bcast_append(r);
		raft__reads_check(r);
	}
}

int raft_read_index(raft_t *r, uint64_t ctx)
{
	raft_msg_t *m;

	if (r->in_ready)
		return RAFT_EBUSY;
	if (r->role == RAFT_LEADER)
		return read_request(r, ctx, 0);
	if (r->lead == 0 || !r->cfg.forward_proposals)
		return RAFT_ENOTLEADER;
	m = raft__msg_new(r, RAFT_MSG_READ_INDEX, r->lead);
	if (m == NULL)
		return RAFT_EBUSY;
	m->ctx = ctx;
	return 0;
}

int raft_transfer_leader(raft_t *r, raft_id_t to)
{
	raft__progress_t *pr;

	if (r->in_ready)
		return RAFT_EBUSY;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (to == r->id || (pr = raft__pr_find(r, to)) == NULL)
		return RAFT_EINVAL;
	if (r->transferee == to)
		return 0;
	r->transferee = to;
	/* The transfer gets one election timeout (tick_heartbeat aborts it after that). */
	r->election_elapsed = 0;
	if (pr->match == raft__log_last(&r->log))
		(void)raft__msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
	else
		raft__send_append(r, pr, true);
	return 0;
}

void raft__on_snapshot_installed(raft_t *r, const raft_snapshot_meta_t *meta)
{
	raft__log_restore(&r->log, meta);
	r->commit = meta->index;
	r->applied = meta->index;
	r->conf = meta->conf;
	set_conf_progress(r);
}

/* ---- Ready --------------------------------------------------------------------------- */

bool raft_has_ready(const raft_t *r)
{
	return r->log.n_u > 0 || r->log.has_snap || r->has_chunk || r->n_msgs > 0 ||
		r->n_read_out > 0 || r->append_pending || r->read_bcast || r->applied < r->commit ||
		r->term != r->prev_hs.term || r->vote != r->prev_hs.vote ||
		r->commit != r->prev_hs.commit;
}

void raft_ready(raft_t *r, raft_ready_t *rd)
{
	memset(rd, 0, sizeof *rd);
	if (r->role == RAFT_LEADER && r->append_pending) {
		/* Proposals since the last cycle leave together: one append per follower per
		 * max_msg_bytes (batching), several per follower up to the window (pipelining). */
		for (uint32_t i = 0; i < r->n_prs; i++)
			if (r->prs[i].id != r->id)
				while (raft__send_append(r, &r->prs[i], false))
					;
	}
	r->append_pending = false;
	if (r->role == RAFT_LEADER && r->read_bcast)
		raft__bcast_heartbeat(r);
	r->read_bcast = false;

	if (r->applied < r->commit) {
		int n = raft__log_slice(&r->log, r->applied + 1, r->commit + 1, r->cfg.max_apply_bytes,
					r->committed, r->cfg.max_apply_entries);

		if (n > 0) {
			rd->committed = r->committed;
			rd->n_committed = (size_t)n;
			r->applied = r->committed[n - 1].index;
			for (int i = 0; i < n; i++)
				if (r->committed[i].type == RAFT_ENTRY_CONF)
					apply_conf_entry(r, &r->committed[i]);
		}
	}
	rd->snapshot_chunk = r->has_chunk ? &r->chunk : NULL;
	rd->snapshot = r->log.has_snap ? &r->log.snap : NULL;
	rd->entries = r->log.u;
	rd->n_entries = r->log.n_u;
	rd->hs = (raft_hard_state_t){.term = r->term, .vote = r->vote, .commit = r->commit};
	rd->hs_changed = rd->hs.term != r->prev_hs.term || rd->hs.vote != r->prev_hs.vote ||
		rd->hs.commit != r->prev_hs.commit;
	rd->must_sync = rd->hs.term != r->prev_hs.term || rd->hs.vote != r->prev_hs.vote ||
		rd->n_entries > 0 || rd->snapshot != NULL;
	rd->msgs = r->msgs;
	rd->n_msgs = r->n_msgs;
	rd->reads = r->read_out;
	rd->n_reads = r->n_read_out;
	r->in_ready = true;
}

void raft_advance(raft_t *r, const raft_ready_t *rd)
{
	raft__progress_t *self;

	r->in_ready = false;
	r->prev_hs = rd->hs;
	r->n_msgs = 0;
	r->n_ents_pool = 0;
	r->n_read_out = 0;
	r->has_chunk = false;
	raft__log_stable(&r->log);
	/* A leader counts itself toward a majority only for what it has persisted. */
	if (r->role == RAFT_LEADER && (self = raft__pr_find(r, r->id)) != NULL) {
		raft__pr_update(self, r->log.st_last);
		if (raft__maybe_commit(r))
			raft__bcast_append(r);
	}
}

/* ---- life cycle ---------------------------------------------------------------------- */

void raft_config_default(raft_config_t *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->election_tick = 10;
	cfg->heartbeat_tick = 1;
	cfg->pre_vote = true;
	cfg->check_quorum = true;
	cfg->forward_proposals = true;
	cfg->max_msg_bytes = 1 << 20;
	cfg->max_inflight = 64;
	cfg->max_unstable_bytes = 8 << 20;
	cfg->max_unstable_entries = 8192;
	cfg->max_msgs = 1024;
	cfg->max_msg_entries = 16384;
	cfg->max_apply_entries = 4096;
	cfg->max_apply_bytes = 8 << 20;
	cfg->snapshot_chunk = 1 << 20;
	cfg->max_reads = 1024;
}

int raft_init(raft_t *r, const raft_config_t *cfg, raft_storage_t *st)
{
	raft_config_t d;
	raft_hard_state_t hs;
	raft_snapshot_meta_t meta;
	int rc;

	memset(r, 0, sizeof *r);
	raft_config_default(&d);
	r->cfg = *cfg;
#define DEF(f) if (r->cfg.f == 0) r->cfg.f = d.f
	DEF(election_tick); DEF(heartbeat_tick); DEF(max_msg_bytes); DEF(max_inflight);
	DEF(max_unstable_bytes); DEF(max_unstable_entries); DEF(max_msgs); DEF(max_msg_entries);
	DEF(max_apply_entries); DEF(max_apply_bytes); DEF(snapshot_chunk); DEF(max_reads);
#undef DEF
	if (cfg->id == 0 || r->cfg.heartbeat_tick >= r->cfg.election_tick || st == NULL)
		return RAFT_EINVAL;
	r->id = cfg->id;
	r->rng = cfg->seed ^ ((uint64_t)cfg->id * 0x9e3779b97f4a7c15ULL);
	r->msgs = calloc(r->cfg.max_msgs, sizeof *r->msgs);
	r->ents_pool = calloc(r->cfg.max_msg_entries, sizeof *r->ents_pool);
	r->committed = calloc(r->cfg.max_apply_entries, sizeof *r->committed);
	r->reads = calloc(r->cfg.max_reads, sizeof *r->reads);
	r->read_out = calloc(r->cfg.max_reads, sizeof *r->read_out);
	r->infl_buf = calloc((size_t)RAFT_MAX_NODES * r->cfg.max_inflight, sizeof *r->infl_buf);
	if (!r->msgs || !r->ents_pool || !r->committed || !r->reads || !r->read_out ||
	    !r->infl_buf) {
		rc = RAFT_ENOMEM;
		goto fail;
	}
	if ((rc = raft__log_init(&r->log, st, r->cfg.max_unstable_entries,
				 r->cfg.max_unstable_bytes)) != 0)
		goto fail;
	st->hard_state(st->ctx, &hs);
	st->snapshot_meta(st->ctx, &meta);
	r->term = hs.term;
	r->vote = hs.vote;
	r->commit = hs.commit > meta.index ? hs.commit : meta.index;
	r->applied = cfg->applied > meta.index ? cfg->applied : meta.index;
	rc = RAFT_ECORRUPT;
	if (r->commit > raft__log_last(&r->log))
		goto fail;
	rc = RAFT_EINVAL;
	if (r->applied > r->commit)
		goto fail;
	/* Membership as of applied: the snapshot's, plus changes the state machine applied. */
	r->conf = meta.conf;
	for (uint64_t i = meta.index + 1; i <= r->applied;) {
		int n = raft__log_slice(&r->log, i, r->applied + 1, r->cfg.max_apply_bytes,
					r->committed, r->cfg.max_apply_entries);

		if (n <= 0) {
			rc = n < 0 ? n : RAFT_ECORRUPT;
			goto fail;
		}
		for (int k = 0; k < n; k++)
			if (r->committed[k].type == RAFT_ENTRY_CONF)
				(void)raft_conf_apply(&r->conf, &r->committed[k]);
		i += (uint64_t)n;
	}
	set_conf_progress(r);
	r->prev_hs = hs;
	raft__become_follower(r, r->term, 0);
	return 0;
fail:
	raft_close(r);
	return rc;
}

void raft_close(raft_t *r)
{
	raft__log_close(&r->log);
	free(r->msgs);
	free(r->ents_pool);
	free(r->committed);
	free(r->reads);
	free(r->read_out);
	free(r->infl_buf);
	r->msgs = NULL;
	r->ents_pool = NULL;
	r->committed = NULL;
	r->reads = NULL;
	r->read_out = NULL;
	r->infl_buf = NULL;
}

/* ---- accessors ----------------------------------------------------------------------- */

raft_id_t raft_leader(const raft_t *r) { return r->lead; }
int raft_role(const raft_t *r) { return r->role; }
uint64_t raft_term(const raft_t *r) { return r->term; }
uint64_t raft_commit(const raft_t *r) { return r->commit; }
uint64_t raft_applied(const raft_t *r) { return r->applied; }
uint64_t raft_last_index(const raft_t *r) { return raft__log_last(&r->log); }
const raft_conf_t *raft_conf(const raft_t *r) { return &r->conf; }

int raft_peer_match(const raft_t *r, raft_id_t id, uint64_t *match)
{
	const raft__progress_t *pr;

	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if ((pr = raft__pr_find((raft_t *)r, id)) == NULL)
		return RAFT_EINVAL;
	*match = pr->match;
	return 0;
}

const char *raft_strerror(int err)
{
	switch (err) {
	case RAFT_ENOTLEADER: return "not the raft leader";
	case RAFT_EBUSY: return "raft busy: buffer full or change in progress";
	case RAFT_EINVAL: return "invalid raft argument";
	case RAFT_ECOMPACTED: return "raft log index compacted";
	case RAFT_EUNAVAIL: return "raft log index unavailable";
	case RAFT_ENOMEM: return "raft out of memory";
	case RAFT_ECORRUPT: return "raft state inconsistent";
	case RAFT_ETOOBIG: return "raft proposal too large";
	default: return "raft error";
	}
}

const char *raft_msg_type_name(uint32_t type)
{
	static const char *const names[] = {
		"?", "APPEND", "APPEND_RESP", "HEARTBEAT", "HEARTBEAT_RESP", "VOTE", "VOTE_RESP",
		"PREVOTE", "PREVOTE_RESP", "SNAPSHOT", "SNAPSHOT_RESP", "TIMEOUT_NOW", "PROPOSE",
		"READ_INDEX", "READ_INDEX_RESP",
	};

	return type < sizeof names / sizeof names[0] ? names[type] : "?";
}
