/*
 * A follower's replication progress, as its leader tracks it (etcd's tracker.Progress).
 *
 * PROBE: the leader does not know where the follower's log matches; it sends one append at
 *   a time (probe_sent) and backs off on each rejection.
 * REPLICATE: the follower matched; the leader streams appends optimistically, advancing
 *   `next` as it sends, with at most max_inflight unacknowledged (flow control: a slow
 *   follower fills its window and is then sent nothing until acks free slots).
 * SNAPSHOT: the follower needs entries below the first index; the leader streams the
 *   snapshot chunk by chunk and sends no appends.
 * Always: match < next, and match only grows within a term.
 */
#include "raft/raft_int.h"

void raft__pr_reset(raft__progress_t *pr, uint64_t next)
{
	pr->state = RAFT__PR_PROBE;
	pr->vote = 0;
	pr->probe_sent = false;
	pr->recent_active = false;
	pr->match = 0;
	pr->next = next;
	pr->read_ack = 0;
	pr->snap_index = 0;
	pr->snap_offset = 0;
	pr->infl_start = 0;
	pr->infl_count = 0;
}

void raft__pr_become_probe(raft__progress_t *pr)
{
	/* After a snapshot the follower holds at least snap_index: resume just past it. */
	if (pr->state == RAFT__PR_SNAPSHOT) {
		uint64_t s = pr->snap_index;

		pr->next = (pr->match + 1 > s + 1) ? pr->match + 1 : s + 1;
	} else {
		pr->next = pr->match + 1;
	}
	pr->state = RAFT__PR_PROBE;
	pr->probe_sent = false;
	pr->snap_index = 0;
	pr->infl_start = pr->infl_count = 0;
}

void raft__pr_become_replicate(raft__progress_t *pr)
{
	pr->state = RAFT__PR_REPLICATE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	pr->snap_index = 0;
	pr->infl_start = pr->infl_count = 0;
}

void raft__pr_become_snapshot(raft__progress_t *pr, uint64_t snap_index)
{
	pr->state = RAFT__PR_SNAPSHOT;
	pr->snap_index = snap_index;
	pr->snap_offset = 0;
	pr->probe_sent = false;
	pr->infl_start = pr->infl_count = 0;
}

/* An ack for `index`: returns true when it moved match (a stale ack moves nothing). */
bool raft__pr_update(raft__progress_t *pr, uint64_t index)
{
	bool moved = false;

	if (pr->match < index) {
		pr->match = index;
		moved = true;
		pr->probe_sent = false;
	}
	if (pr->next < index + 1)
		pr->next = index + 1;
	return moved;
}

/*
 * A rejection of the append whose prev index was `rejected`; probe_last is the leader's
 * best guess of the follower's last matching index (from the conflict hint).
 * Returns false for a stale rejection (an answer to an append we no longer wait for).
 */
bool raft__pr_decr(raft__progress_t *pr, uint64_t rejected, uint64_t probe_last)
{
	if (pr->state == RAFT__PR_REPLICATE) {
		/* Appends at or below match were accepted before: this answer is old, unless
		 * the follower says its log now ends below match: it lost entries it had
		 * acknowledged (see below), and would otherwise be sent appends it must refuse
		 * until compaction passes match. */
		if (rejected <= pr->match) {
			if (probe_last >= pr->match)
				return false;
			pr->match = probe_last;
		}
		pr->next = pr->match + 1;
		return true;
	}
	/* PROBE: only the answer to the probe we sent (prev = next - 1) counts. */
	if (pr->next - 1 != rejected)
		return false;
	{
		uint64_t n = rejected < probe_last + 1 ? rejected : probe_last + 1;

		/* The follower's log ends below what it acknowledged: it lost entries (a member
		 * whose damaged log or store was discarded to be repaired from us). Believe it,
		 * or we would probe at match + 1 forever; it gets the entries, or a snapshot,
		 * again. Lowering match is always safe: commit never moves back, and a repaired
		 * member votes for nobody until it is caught up (core/primary.c). A reordered
		 * old rejection can only cost a resend. Same in REPLICATE above. */
		if (probe_last < pr->match)
			pr->match = probe_last;
		pr->next = n > pr->match + 1 ? n : pr->match + 1;
		if (pr->next < 1)
			pr->next = 1;
	}
	pr->probe_sent = false;
	return true;
}

bool raft__pr_paused(const raft__progress_t *pr, uint32_t max_inflight)
{
	switch (pr->state) {
	case RAFT__PR_PROBE: return pr->probe_sent;
	case RAFT__PR_REPLICATE: return pr->infl_count >= max_inflight;
	default: return true;
	}
}

void raft__pr_infl_add(raft__progress_t *pr, uint64_t last, uint32_t max_inflight)
{
	uint32_t at = (pr->infl_start + pr->infl_count) % max_inflight;

	pr->infl[at] = last;
	pr->infl_count++;
}

void raft__pr_infl_free_le(raft__progress_t *pr, uint64_t index, uint32_t max_inflight)
{
	while (pr->infl_count > 0 && pr->infl[pr->infl_start] <= index) {
		pr->infl_start = (pr->infl_start + 1) % max_inflight;
		pr->infl_count--;
	}
}

void raft__pr_infl_free_first(raft__progress_t *pr, uint32_t max_inflight)
{
	if (pr->infl_count > 0) {
		pr->infl_start = (pr->infl_start + 1) % max_inflight;
		pr->infl_count--;
	}
}
