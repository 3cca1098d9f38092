/*
 * Unit tests of the raft core, named after the rules of figure 2 of the Raft paper
 * ("In Search of an Understandable Consensus Algorithm") and after each feature.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "raft/raft.h"
#include "tests/raft/cluster.h"

static tc_t C;

static void setup3(void) { tc_init(&C, 3, 3, NULL); }
static void teardown(void) { tc_free(&C); }

/* Build a message from `from` to `to` at `term`. */
static raft_msg_t msg(uint32_t type, int from, int to, uint64_t term)
{
	return (raft_msg_t){.type = type, .from = (raft_id_t)from, .to = (raft_id_t)to, .term = term};
}

/* The last message node `from` queued, of a type. */
static const raft_msg_t *last_sent(uint32_t type, int from)
{
	for (int k = C.nq - 1; k >= 0; k--)
		if (C.q[k].m.type == type && C.q[k].m.from == (raft_id_t)from)
			return &C.q[k].m;
	return NULL;
}

static void propose(int i, const char *s)
{
	cr_assert_eq(raft_propose(&C.r[i], s, strlen(s)), 0);
	tc_ready(&C, i);
}

/* ---- figure 2: all servers --------------------------------------------------------- */

TestSuite(raft_rules, .init = setup3, .fini = teardown);

Test(raft_rules, higher_term_in_any_rpc_converts_to_follower)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_role(&C.r[1]), RAFT_LEADER);
	raft_msg_t m = msg(RAFT_MSG_APPEND_RESP, 2, 1, raft_term(&C.r[1]) + 5);

	tc_step(&C, 1, &m);
	cr_assert_eq(raft_role(&C.r[1]), RAFT_FOLLOWER);
	cr_assert_eq(raft_term(&C.r[1]), m.term);
	cr_assert_eq(C.ms[1].hs.term, m.term, "the new term is persisted");
}

Test(raft_rules, commit_advances_apply)
{
	tc_elect(&C, 1);
	propose(1, "x");
	tc_deliver(&C, 1000);
	tc_run(&C, 2);
	for (int i = 1; i <= 3; i++) {
		cr_assert_eq(C.applied[i], raft_last_index(&C.r[1]), "node %d applied", i);
		cr_assert_eq(C.n_applied_normal[i], 1);
	}
}

/* ---- figure 2: RequestVote receiver ----------------------------------------------- */

Test(raft_rules, vote_rejected_for_stale_term)
{
	tc_elect(&C, 1);
	uint64_t t = raft_term(&C.r[2]);
	raft_msg_t m = msg(RAFT_MSG_VOTE, 3, 2, t - 1);

	m.index = 100;
	m.log_term = t;
	tc_drop(&C);
	tc_step(&C, 2, &m);
	const raft_msg_t *o = last_sent(RAFT_MSG_VOTE_RESP, 2);

	cr_assert(o == NULL || (o->flags & RAFT_MSGF_REJECT), "no vote granted to a stale term");
	cr_assert_eq(raft_term(&C.r[2]), t);
	cr_assert_neq(C.ms[2].hs.vote, 3);
}

Test(raft_rules, one_vote_per_term)
{
	raft_msg_t a = msg(RAFT_MSG_VOTE, 1, 3, 5), b = msg(RAFT_MSG_VOTE, 2, 3, 5);
	const raft_msg_t *o;

	a.index = b.index = 10;
	a.log_term = b.log_term = 4;
	tc_drop(&C);
	tc_step(&C, 3, &a);
	o = last_sent(RAFT_MSG_VOTE_RESP, 3);
	cr_assert(o && !(o->flags & RAFT_MSGF_REJECT));
	cr_assert_eq(C.ms[3].hs.vote, 1, "vote persisted before the answer is sent");
	tc_step(&C, 3, &b);
	o = last_sent(RAFT_MSG_VOTE_RESP, 3);
	cr_assert(o && (o->flags & RAFT_MSGF_REJECT), "second candidate, same term: rejected");
	tc_step(&C, 3, &a);
	o = last_sent(RAFT_MSG_VOTE_RESP, 3);
	cr_assert(o && !(o->flags & RAFT_MSGF_REJECT), "the same candidate again: granted");
}

Test(raft_rules, vote_only_for_log_at_least_as_up_to_date)
{
	tc_elect(&C, 1);
	propose(1, "a");
	tc_deliver(&C, 1000);
	uint64_t last = raft_last_index(&C.r[2]), t = raft_term(&C.r[2]);
	raft_msg_t m = msg(RAFT_MSG_VOTE, 3, 2, t + 1);
	const raft_msg_t *o;

	m.flags = RAFT_MSGF_TRANSFER; /* past the lease */
	m.index = last - 1;
	m.log_term = t;
	tc_drop(&C);
	tc_step(&C, 2, &m);
	o = last_sent(RAFT_MSG_VOTE_RESP, 2);
	cr_assert(o && (o->flags & RAFT_MSGF_REJECT), "shorter log, same last term: rejected");
	m.term = t + 2;
	m.index = 1;
	m.log_term = t + 1;
	tc_step(&C, 2, &m);
	o = last_sent(RAFT_MSG_VOTE_RESP, 2);
	cr_assert(o && !(o->flags & RAFT_MSGF_REJECT), "higher last term wins even if shorter");
}

/* ---- figure 2: AppendEntries receiver ---------------------------------------------- */

Test(raft_rules, append_rejected_when_prev_does_not_match)
{
	tc_elect(&C, 1);
	uint64_t t = raft_term(&C.r[2]), last = raft_last_index(&C.r[2]);
	raft_msg_t m = msg(RAFT_MSG_APPEND, 1, 2, t);
	const raft_msg_t *o;

	m.index = last + 5;
	m.log_term = t;
	tc_drop(&C);
	tc_step(&C, 2, &m);
	o = last_sent(RAFT_MSG_APPEND_RESP, 2);
	cr_assert(o && (o->flags & RAFT_MSGF_REJECT));
	cr_assert_eq(o->hint, last, "hint: our last index, so the leader skips the gap at once");
}

Test(raft_rules, append_rejected_for_stale_term_answers_with_our_term)
{
	tc_elect(&C, 1);
	uint64_t t = raft_term(&C.r[2]);
	raft_msg_t m = msg(RAFT_MSG_APPEND, 3, 2, t - 1);
	const raft_msg_t *o;

	tc_drop(&C);
	tc_step(&C, 2, &m);
	o = last_sent(RAFT_MSG_APPEND_RESP, 2);
	cr_assert(o != NULL);
	cr_assert_eq(o->term, t, "the stale leader learns the newer term and steps down");
}

Test(raft_rules, conflicting_suffix_is_deleted_and_replaced)
{
	raft_entry_t e[3];
	uint64_t t;
	raft_msg_t m;

	tc_elect(&C, 1);
	t = raft_term(&C.r[2]);
	uint64_t last = raft_last_index(&C.r[2]);
	/* Give node 2 two uncommitted entries of term t from a "leader" 1... */
	for (int k = 0; k < 2; k++)
		e[k] = (raft_entry_t){.index = last + 1 + (uint64_t)k, .term = t, .data = "o", .len = 1};
	m = msg(RAFT_MSG_APPEND, 1, 2, t);
	m.index = last;
	m.log_term = t;
	m.commit = raft_commit(&C.r[2]);
	m.entries = e;
	m.n_entries = 2;
	tc_step(&C, 2, &m);
	cr_assert_eq(raft_last_index(&C.r[2]), last + 2);
	/* ...then a newer leader (term t+1) overwrites from last+1 with one entry. */
	e[0] = (raft_entry_t){.index = last + 1, .term = t + 1, .data = "n", .len = 1};
	m = msg(RAFT_MSG_APPEND, 3, 2, t + 1);
	m.index = last;
	m.log_term = t;
	m.entries = e;
	m.n_entries = 1;
	tc_step(&C, 2, &m);
	cr_assert_eq(raft_last_index(&C.r[2]), last + 1, "the conflicting suffix is gone");
	cr_assert_eq(memstore_last(&C.ms[2]), last + 1);
	cr_assert_eq(memstore_get(&C.ms[2], last + 1)->e.term, t + 1);
}

Test(raft_rules, commit_is_min_of_leader_commit_and_last_new_entry)
{
	raft_entry_t e = {.term = 0, .data = "a", .len = 1};
	raft_msg_t m;

	tc_elect(&C, 1);
	uint64_t t = raft_term(&C.r[2]), last = raft_last_index(&C.r[2]);

	e.index = last + 1;
	e.term = t;
	m = msg(RAFT_MSG_APPEND, 1, 2, t);
	m.index = last;
	m.log_term = t;
	m.commit = last + 50;
	m.entries = &e;
	m.n_entries = 1;
	tc_step(&C, 2, &m);
	cr_assert_eq(raft_commit(&C.r[2]), last + 1);
}

Test(raft_rules, append_below_commit_changes_nothing)
{
	raft_entry_t e;
	raft_msg_t m;
	const raft_msg_t *o;

	tc_elect(&C, 1);
	uint64_t t = raft_term(&C.r[2]), c = raft_commit(&C.r[2]), last = raft_last_index(&C.r[2]);

	cr_assert_gt(c, 1);
	e = (raft_entry_t){.index = c, .term = t + 1, .data = "z", .len = 1};
	m = msg(RAFT_MSG_APPEND, 3, 2, t + 1);
	m.index = c - 1;
	m.log_term = 1;
	m.entries = &e;
	m.n_entries = 1;
	tc_drop(&C);
	cr_assert_eq(tc_step(&C, 2, &m), 0);
	o = last_sent(RAFT_MSG_APPEND_RESP, 2);
	cr_assert(o && !(o->flags & RAFT_MSGF_REJECT) && o->index == c,
		  "answered with our commit: everything up to it already matches");
	cr_assert_eq(raft_last_index(&C.r[2]), last);
	cr_assert_eq(memstore_get(&C.ms[2], c)->e.term, t, "committed entry untouched");
}

/* ---- figure 2: leaders --------------------------------------------------------------- */

/* Figure 8: an entry from an earlier term is never committed by counting its replicas;
 * only once an entry of the leader's own term reaches a majority. */
Test(raft_rules, leader_commits_old_term_entry_only_through_its_own)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_propose(&C.r[1], "a", 1), 0);
	tc_ready(&C, 1);
	tc_drop(&C); /* "a" reaches nobody */
	uint64_t L = raft_last_index(&C.r[1]), t1 = raft_term(&C.r[1]);
	raft_msg_t up = msg(RAFT_MSG_APPEND_RESP, 2, 1, t1 + 1);

	tc_step(&C, 1, &up); /* step down to t1+1 */
	tc_drop(&C);
	raft_msg_t tn = msg(RAFT_MSG_TIMEOUT_NOW, 0, 1, raft_term(&C.r[1]));

	tc_step(&C, 1, &tn);
	tc_deliver(&C, 2); /* the two vote requests */
	C.cut[1][2] = C.cut[1][3] = true;
	tc_deliver(&C, 100);
	cr_assert_eq(raft_role(&C.r[1]), RAFT_LEADER);
	uint64_t t = raft_term(&C.r[1]);

	cr_assert_eq(raft_last_index(&C.r[1]), L + 1, "the new term's no-op follows \"a\"");
	raft_msg_t ack = msg(RAFT_MSG_APPEND_RESP, 2, 1, t);

	ack.index = L;
	tc_step(&C, 1, &ack);
	cr_assert_lt(raft_commit(&C.r[1]), L, "a majority holds \"a\" (term %lu) but it stays "
		     "uncommitted in term %lu", (unsigned long)t1, (unsigned long)t);
	ack.index = L + 1;
	tc_step(&C, 1, &ack);
	cr_assert_eq(raft_commit(&C.r[1]), L + 1, "the own-term entry commits both");
}

Test(raft_rules, leader_appends_noop_on_election)
{
	uint64_t last = raft_last_index(&C.r[1]);

	tc_elect(&C, 1);
	cr_assert_eq(raft_last_index(&C.r[1]), last + 1);
	cr_assert_eq(memstore_get(&C.ms[1], last + 1)->e.type, RAFT_ENTRY_NOOP);
	cr_assert_eq(raft_commit(&C.r[1]), last + 1, "committed once a majority holds it");
}

/* ---- elections ------------------------------------------------------------------------ */

TestSuite(raft_election, .init = setup3, .fini = teardown);

Test(raft_election, timeout_elects_exactly_one_leader)
{
	tc_run(&C, 60);
	int l = tc_leader(&C), n = 0;

	cr_assert_neq(l, 0);
	for (int i = 1; i <= 3; i++)
		n += raft_role(&C.r[i]) == RAFT_LEADER;
	cr_assert_eq(n, 1);
	for (int i = 1; i <= 3; i++)
		cr_assert_eq(raft_leader(&C.r[i]), (raft_id_t)l);
}

Test(raft_election, randomized_timeout_is_seeded_and_in_range)
{
	for (int i = 1; i <= 3; i++) {
		uint32_t t = C.r[i].randomized_timeout;

		cr_assert(t >= 10 && t < 20, "timeout %u in [election_tick, 2*election_tick)", t);
	}
	tc_t D;

	tc_init(&D, 3, 3, NULL);
	for (int i = 1; i <= 3; i++)
		cr_assert_eq(D.r[i].randomized_timeout, C.r[i].randomized_timeout, "same seed, same timeouts");
	tc_free(&D);
}

Test(raft_election, prevote_keeps_isolated_node_term)
{
	tc_elect(&C, 1);
	uint64_t t = raft_term(&C.r[3]);

	for (int i = 1; i <= 3; i++)
		C.cut[3][i] = C.cut[i][3] = true;
	tc_run(&C, 100);
	cr_assert_eq(raft_term(&C.r[3]), t, "pre-vote: no term inflation while cut off");
	cr_assert_neq(raft_role(&C.r[3]), RAFT_LEADER);
	for (int i = 1; i <= 3; i++)
		C.cut[3][i] = C.cut[i][3] = false;
	tc_run(&C, 30);
	cr_assert_eq(tc_leader(&C), 1, "rejoining does not depose the healthy leader");
	cr_assert_eq(raft_term(&C.r[1]), t);
}

Test(raft_election, check_quorum_leader_steps_down_without_majority)
{
	tc_elect(&C, 1);
	C.cut[2][1] = C.cut[3][1] = true; /* the leader hears nobody */
	for (int k = 0; k < 25; k++) {
		tc_tick(&C, 1, 1);
		tc_deliver(&C, 1000);
	}
	cr_assert_neq(raft_role(&C.r[1]), RAFT_LEADER);
}

Test(raft_election, vote_answer_teaches_a_matching_commit_index)
{
	tc_elect(&C, 1);
	tc_run(&C, 1);
	tc_drop(&C);
	propose(1, "c");
	tc_deliver(&C, 2); /* the two appends: node 3 holds "c" but not that it committed */
	tc_drop(&C);
	uint64_t last = raft_last_index(&C.r[3]), t = raft_term(&C.r[3]);

	cr_assert_lt(raft_commit(&C.r[3]), last);
	raft_msg_t m = msg(RAFT_MSG_PREVOTE_RESP, 2, 3, t + 1);

	m.flags = RAFT_MSGF_REJECT;
	m.index = last;
	m.log_term = t + 7; /* a different term there: proves nothing */
	tc_step(&C, 3, &m);
	cr_assert_lt(raft_commit(&C.r[3]), last);
	m.log_term = t;
	m.term = t; /* now a term behind node 3's: a commit index is a fact all the same */
	tc_step(&C, 3, &m);
	cr_assert_eq(raft_commit(&C.r[3]), last, "same (index, term): same committed prefix");
}

Test(raft_election, lease_ignores_vote_while_leader_alive)
{
	tc_elect(&C, 1);
	uint64_t t = raft_term(&C.r[2]);
	raft_msg_t m = msg(RAFT_MSG_VOTE, 3, 2, t + 1);

	m.index = 1000;
	m.log_term = t;
	tc_step(&C, 2, &m);
	cr_assert_eq(raft_term(&C.r[2]), t, "a follower that just heard its leader ignores it");
	m.flags = RAFT_MSGF_TRANSFER;
	tc_step(&C, 2, &m);
	cr_assert_eq(raft_term(&C.r[2]), t + 1, "unless the vote comes from a leader transfer");
}

/* ---- replication ---------------------------------------------------------------------- */

static void setup_small(void)
{
	raft_config_t cfg;

	raft_config_default(&cfg);
	cfg.max_msg_bytes = 100;
	cfg.max_inflight = 3;
	tc_init(&C, 3, 3, &cfg);
}

TestSuite(raft_replication, .init = setup_small, .fini = teardown);

Test(raft_replication, batches_are_bounded_by_bytes)
{
	char buf[40];

	tc_elect(&C, 1);
	tc_run(&C, 1);
	tc_drop(&C);
	memset(buf, 'b', sizeof buf);
	for (int k = 0; k < 6; k++)
		cr_assert_eq(raft_propose(&C.r[1], buf, sizeof buf), 0);
	tc_ready(&C, 1);
	int appends = 0;

	for (int k = 0; k < C.nq; k++) {
		const raft_msg_t *m = &C.q[k].m;
		size_t bytes = 0;

		if (m->type != RAFT_MSG_APPEND || m->to != 2)
			continue;
		appends++;
		for (uint32_t e = 0; e < m->n_entries; e++)
			bytes += m->entries[e].len;
		cr_assert(m->n_entries == 1 || bytes <= 100, "batch of %zu bytes", bytes);
		cr_assert_geq(m->n_entries, 1);
	}
	cr_assert_eq(appends, 3, "six 40-byte entries, 100-byte batches: 3 appends, not 6");
}

Test(raft_replication, pipelining_stops_at_inflight_window)
{
	char buf[90];

	tc_elect(&C, 1);
	tc_run(&C, 1);
	tc_drop(&C);
	memset(buf, 'p', sizeof buf);
	for (int k = 0; k < 10; k++)
		cr_assert_eq(raft_propose(&C.r[1], buf, sizeof buf), 0);
	tc_ready(&C, 1);
	int to2 = 0;

	for (int k = 0; k < C.nq; k++)
		to2 += C.q[k].m.type == RAFT_MSG_APPEND && C.q[k].m.to == 2;
	cr_assert_eq(to2, 3, "max_inflight 3: three appends on the wire without waiting");
	tc_deliver(&C, 100000);
	tc_run(&C, 3);
	cr_assert_eq(raft_commit(&C.r[1]), raft_last_index(&C.r[1]), "acks drain the window");
	cr_assert_eq(C.n_applied_normal[2], 10);
}

Test(raft_replication, fast_backoff_skips_a_conflicting_term_at_once)
{
	tc_elect(&C, 1);
	tc_run(&C, 1);
	/* Node 3 is cut off while leader 1 appends 20 entries it never sees. */
	for (int i = 1; i <= 3; i++)
		C.cut[3][i] = C.cut[i][3] = true;
	for (int k = 0; k < 20; k++) {
		cr_assert_eq(raft_propose(&C.r[1], "e", 1), 0);
		tc_ready(&C, 1);
		tc_deliver(&C, 1000);
	}
	for (int i = 1; i <= 3; i++)
		C.cut[3][i] = C.cut[i][3] = false;
	C.sent_by_type[RAFT_MSG_APPEND_RESP] = 0;
	memset(C.sent_by_type, 0, sizeof C.sent_by_type);
	tc_run(&C, 5);
	cr_assert_eq(raft_last_index(&C.r[3]), raft_last_index(&C.r[1]));
	cr_assert_lt(C.sent_by_type[RAFT_MSG_APPEND_RESP], 30,
		     "one rejection jumps to the follower's end, not one index per round trip");
}

Test(raft_replication, lost_appends_are_recovered)
{
	tc_elect(&C, 1);
	tc_run(&C, 1);
	C.cut[1][2] = true;
	for (int k = 0; k < 8; k++)
		cr_assert_eq(raft_propose(&C.r[1], "l", 1), 0);
	tc_ready(&C, 1);
	tc_deliver(&C, 1000);
	C.cut[1][2] = false;
	tc_run(&C, 10);
	cr_assert_eq(C.n_applied_normal[2], 8);
}

/* ---- forwarding ------------------------------------------------------------------------ */

TestSuite(raft_forward, .init = setup3, .fini = teardown);

Test(raft_forward, follower_forwards_proposal_to_leader)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_propose(&C.r[2], "f", 1), RAFT_FORWARDED);
	tc_ready(&C, 2);
	tc_deliver(&C, 1000);
	tc_run(&C, 2);
	cr_assert_eq(C.n_applied_normal[1], 1);
	cr_assert_eq(C.n_applied_normal[3], 1);
}

Test(raft_forward, no_leader_returns_enotleader)
{
	cr_assert_eq(raft_propose(&C.r[2], "f", 1), RAFT_ENOTLEADER);
	cr_assert_eq(raft_leader(&C.r[2]), 0);
	cr_assert_eq(raft_read_index(&C.r[2], 7), RAFT_ENOTLEADER);
	cr_assert_eq(raft_propose_conf(&C.r[2], RAFT_CONF_ADD, 9), RAFT_ENOTLEADER);
}

Test(raft_forward, without_forwarding_follower_names_the_leader)
{
	tc_elect(&C, 1);
	C.r[2].cfg.forward_proposals = false;
	cr_assert_eq(raft_propose(&C.r[2], "f", 1), RAFT_ENOTLEADER);
	cr_assert_eq(raft_leader(&C.r[2]), 1);
}

/* ---- ReadIndex --------------------------------------------------------------------------- */

TestSuite(raft_read, .init = setup3, .fini = teardown);

Test(raft_read, leader_answers_after_a_quorum_heartbeat)
{
	tc_elect(&C, 1);
	propose(1, "w");
	tc_deliver(&C, 1000);
	C.cut[2][1] = C.cut[3][1] = true;
	cr_assert_eq(raft_read_index(&C.r[1], 42), 0);
	tc_ready(&C, 1);
	tc_deliver(&C, 1000);
	cr_assert_eq(C.n_reads[1], 0, "no quorum confirmed leadership: no answer");
	C.cut[2][1] = false;
	tc_run(&C, 2);
	cr_assert_eq(C.n_reads[1], 1);
	cr_assert_eq(C.reads[1][0].ctx, 42);
	cr_assert_eq(C.reads[1][0].index, raft_commit(&C.r[1]));
}

Test(raft_read, follower_read_is_forwarded_and_answered)
{
	tc_elect(&C, 1);
	propose(1, "w");
	tc_deliver(&C, 1000);
	tc_run(&C, 1);
	cr_assert_eq(raft_read_index(&C.r[3], 7), 0);
	tc_ready(&C, 3);
	tc_deliver(&C, 1000);
	tc_run(&C, 2);
	cr_assert_eq(C.n_reads[3], 1);
	cr_assert_eq(C.reads[3][0].ctx, 7);
	cr_assert_geq(C.reads[3][0].index, raft_last_index(&C.r[1]) - 0, "covers the write");
}

/* ---- leader transfer ---------------------------------------------------------------------- */

TestSuite(raft_transfer, .init = setup3, .fini = teardown);

Test(raft_transfer, timeout_now_hands_over_leadership)
{
	tc_elect(&C, 1);
	propose(1, "t");
	tc_deliver(&C, 1000);
	cr_assert_eq(raft_transfer_leader(&C.r[1], 3), 0);
	cr_assert_eq(raft_propose(&C.r[1], "x", 1), RAFT_EBUSY, "no proposals during transfer");
	tc_ready(&C, 1);
	tc_deliver(&C, 1000);
	tc_run(&C, 2);
	cr_assert_eq(tc_leader(&C), 3);
}

Test(raft_transfer, bad_target_is_einval)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_transfer_leader(&C.r[1], 1), RAFT_EINVAL);
	cr_assert_eq(raft_transfer_leader(&C.r[1], 9), RAFT_EINVAL);
	cr_assert_eq(raft_transfer_leader(&C.r[2], 3), RAFT_ENOTLEADER);
}

/* ---- membership ---------------------------------------------------------------------------- */

static void setup_joiner(void) { tc_init(&C, 4, 3, NULL); }

TestSuite(raft_membership, .init = setup_joiner, .fini = teardown);

Test(raft_membership, add_catches_up_then_votes)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_conf(&C.r[4])->n, 0, "a joiner has no configuration: it never campaigns");
	tc_run(&C, 30);
	cr_assert_eq(raft_role(&C.r[4]), RAFT_FOLLOWER);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_ADD, 4), 0);
	tc_ready(&C, 1);
	tc_run(&C, 5);
	for (int i = 1; i <= 4; i++)
		cr_assert_eq(raft_conf(&C.r[i])->n, 4, "node %d sees 4 members", i);
	cr_assert_eq(C.applied[4], C.applied[1]);
	/* with 4 members, 2 nodes down means no majority */
	C.up[2] = C.up[3] = false;
	propose(1, "q");
	tc_run(&C, 3);
	cr_assert_lt(raft_commit(&C.r[1]), raft_last_index(&C.r[1]));
	C.up[2] = true;
	tc_run(&C, 3);
	cr_assert_eq(raft_commit(&C.r[1]), raft_last_index(&C.r[1]));
}

Test(raft_membership, one_change_at_a_time)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_ADD, 4), 0);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_REMOVE, 2), RAFT_EBUSY);
	tc_ready(&C, 1);
	tc_run(&C, 5);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_REMOVE, 2), 0);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_ADD, 1), RAFT_EBUSY);
}

Test(raft_membership, invalid_changes_are_einval)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_ADD, 2), RAFT_EINVAL);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_REMOVE, 5), RAFT_EINVAL);
	cr_assert_eq(raft_propose_conf(&C.r[1], 99, 5), RAFT_EINVAL);
}

Test(raft_membership, removed_leader_hands_over_and_steps_down)
{
	tc_elect(&C, 1);
	cr_assert_eq(raft_propose_conf(&C.r[1], RAFT_CONF_REMOVE, 1), 0);
	tc_ready(&C, 1);
	tc_run(&C, 30);
	int l = tc_leader(&C);

	cr_assert(l == 2 || l == 3, "leader %d", l);
	cr_assert_eq(raft_conf(&C.r[l])->n, 2);
	propose(l, "after");
	tc_run(&C, 3);
	cr_assert_eq(raft_commit(&C.r[l]), raft_last_index(&C.r[l]));
}

Test(raft_membership, conf_change_codec_round_trips)
{
	uint8_t b[8];
	raft_entry_t e = {.type = RAFT_ENTRY_CONF, .len = 8, .data = b};
	int op;
	raft_id_t id;

	raft_conf_change_encode(b, RAFT_CONF_REMOVE, 0x01020304);
	cr_assert_eq(raft_conf_change_decode(&e, &op, &id), 0);
	cr_assert_eq(op, RAFT_CONF_REMOVE);
	cr_assert_eq(id, 0x01020304);
	e.len = 7;
	cr_assert_eq(raft_conf_change_decode(&e, &op, &id), RAFT_EINVAL);
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static void setup_snap(void)
{
	raft_config_t cfg;

	raft_config_default(&cfg);
	cfg.snapshot_chunk = 10;
	tc_init(&C, 3, 3, &cfg);
}

TestSuite(raft_snapshot, .init = setup_snap, .fini = teardown);

Test(raft_snapshot, lagging_follower_installs_snapshot_in_chunks)
{
	static const char snap[] = "0123456789abcdefghijklmnopqrstuvwxyz"; /* 36 bytes: 4 chunks */

	tc_elect(&C, 1);
	C.up[3] = false;
	for (int k = 0; k < 10; k++)
		propose(1, "s");
	tc_run(&C, 2);
	uint64_t a = C.applied[1];

	memstore_compact(&C.ms[1], a, raft_conf(&C.r[1]), snap, sizeof snap - 1);
	C.up[3] = true;
	memset(C.sent_by_type, 0, sizeof C.sent_by_type);
	tc_run(&C, 12);
	cr_assert_geq(C.sent_by_type[RAFT_MSG_SNAPSHOT], 4);
	cr_assert_eq(C.ms[3].meta.index, a, "installed at the leader's snapshot index");
	cr_assert_eq(C.ms[3].snap_len, sizeof snap - 1);
	cr_assert_eq(memcmp(C.ms[3].snap, snap, sizeof snap - 1), 0, "chunks in order, intact");
	cr_assert_eq(raft_conf(&C.r[3])->n, 3, "membership comes with the snapshot");
	propose(1, "after");
	tc_run(&C, 3);
	cr_assert_eq(C.applied[3], C.applied[1]);
}

/* A member whose damaged store or log was discarded to be repaired (core/primary.c
 * repair_from_peers: entries gone, term and vote kept) restarts with an empty log below
 * the match the leader holds for it. The leader must notice from the heartbeat answers
 * alone, with no new write to be refused, and send it everything again: entries, or a
 * snapshot past a compaction. (It used to wait for good: probing at match + 1 only after
 * a write, and heartbeats said nothing of where the follower's log ends.) */
static void lose_log(int i)
{
	memstore_t *ms = &C.ms[i];
	raft_conf_t conf = *raft_conf(&C.r[1]);

	for (size_t k = 0; k < ms->n; k++)
		free((void *)ms->ents[k].e.data);
	ms->n = 0;
	memset(&ms->meta, 0, sizeof ms->meta);
	ms->meta.conf = conf;
	ms->snap_chain = 0;
	ms->hs.commit = 0;
	C.applied[i] = 0;
	tc_restart(&C, i);
}

Test(raft_snapshot, a_follower_that_lost_its_log_gets_it_back_without_new_writes)
{
	tc_elect(&C, 1);
	for (int k = 0; k < 6; k++)
		propose(1, "w");
	tc_run(&C, 3);
	uint64_t last = raft_last_index(&C.r[1]);
	cr_assert_eq(raft_last_index(&C.r[3]), last);
	lose_log(3);
	cr_assert_eq(raft_last_index(&C.r[3]), 0);
	tc_run(&C, 12);
	cr_expect_eq(raft_last_index(&C.r[3]), last, "entries sent again from the heartbeats");
	cr_expect_eq(raft_commit(&C.r[3]), raft_commit(&C.r[1]));
}

Test(raft_snapshot, a_follower_that_lost_its_log_past_a_compaction_gets_a_snapshot)
{
	static const char snap[] = "state-after-the-writes";

	tc_elect(&C, 1);
	for (int k = 0; k < 8; k++)
		propose(1, "w");
	tc_run(&C, 3);
	uint64_t a = C.applied[1];
	memstore_compact(&C.ms[1], a, raft_conf(&C.r[1]), snap, sizeof snap - 1);
	lose_log(3);
	memset(C.sent_by_type, 0, sizeof C.sent_by_type);
	tc_run(&C, 12);
	cr_expect_geq(C.sent_by_type[RAFT_MSG_SNAPSHOT], 1, "a snapshot was sent");
	cr_expect_eq(C.ms[3].meta.index, a, "installed at the leader's snapshot index");
	cr_expect_eq(raft_last_index(&C.r[3]), raft_last_index(&C.r[1]));
}

Test(raft_snapshot, restart_keeps_persisted_state)
{
	tc_elect(&C, 1);
	propose(1, "p");
	tc_run(&C, 2);
	uint64_t t = raft_term(&C.r[2]), last = raft_last_index(&C.r[2]), c = raft_commit(&C.r[2]);

	tc_restart(&C, 2);
	cr_assert_eq(raft_term(&C.r[2]), t);
	cr_assert_eq(raft_last_index(&C.r[2]), last);
	cr_assert_eq(raft_commit(&C.r[2]), c, "commit is in the hard state");
	cr_assert_eq(raft_conf(&C.r[2])->n, 0, "membership rebuilt when entries are re-applied");
	tc_ready(&C, 2);
	cr_assert_eq(raft_conf(&C.r[2])->n, 3);
}

/* ---- errors and limits ---------------------------------------------------------------------- */

TestSuite(raft_api, .init = setup3, .fini = teardown);

Test(raft_api, calls_between_ready_and_advance_are_refused)
{
	raft_ready_t rd;

	tc_elect(&C, 1);
	cr_assert_eq(raft_propose(&C.r[1], "a", 1), 0);
	raft_ready(&C.r[1], &rd);
	cr_assert_eq(raft_propose(&C.r[1], "b", 1), RAFT_EBUSY);
	raft_msg_t m = msg(RAFT_MSG_HEARTBEAT_RESP, 2, 1, raft_term(&C.r[1]));

	cr_assert_eq(raft_step(&C.r[1], &m), RAFT_EBUSY);
	raft_advance(&C.r[1], &rd);
}

Test(raft_api, oversized_proposal_is_etoobig)
{
	static char big[9 << 20];

	tc_elect(&C, 1);
	cr_assert_eq(raft_propose(&C.r[1], big, sizeof big), RAFT_ETOOBIG);
}

Test(raft_api, strerror_names_every_code)
{
	for (int e = RAFT_ENOTLEADER; e > RAFT_ELAST; e--)
		cr_assert_str_neq(raft_strerror(e), "raft error", "code %d", e);
	cr_assert_str_eq(raft_msg_type_name(RAFT_MSG_APPEND), "APPEND");
}

Test(raft_api, bad_config_is_einval)
{
	raft_t r;
	raft_config_t cfg;
	memstore_t ms;

	memstore_init(&ms, NULL);
	raft_config_default(&cfg);
	cr_assert_eq(raft_init(&r, &cfg, &ms.st), RAFT_EINVAL, "id 0");
	cfg.id = 1;
	cfg.heartbeat_tick = 10;
	cr_assert_eq(raft_init(&r, &cfg, &ms.st), RAFT_EINVAL, "heartbeat >= election");
	memstore_free(&ms);
}

Test(raft_api, five_nodes_elect_and_replicate)
{
	tc_t D;

	tc_init(&D, 5, 5, NULL);
	tc_run(&D, 60);
	int l = tc_leader(&D);

	cr_assert_neq(l, 0);
	cr_assert_eq(raft_propose(&D.r[l], "5", 1), 0);
	tc_ready(&D, l);
	tc_run(&D, 3);
	for (int i = 1; i <= 5; i++)
		cr_assert_eq(D.n_applied_normal[i], 1);
	tc_free(&D);
}

Test(raft_snapshot, snapshot_over_a_matching_log_keeps_the_log)
{
	tc_elect(&C, 1);
	tc_run(&C, 1);
	tc_drop(&C);
	uint64_t t = raft_term(&C.r[3]), k = raft_last_index(&C.r[3]), c = raft_commit(&C.r[3]);
	raft_msg_t s = msg(RAFT_MSG_SNAPSHOT, 1, 3, t);
	raft_entry_t e[2] = {
		{.index = k + 1, .term = t, .data = "a", .len = 1},
		{.index = k + 2, .term = t, .data = "b", .len = 1},
	};
	const raft_msg_t *o;

	s.snap.index = k + 2;
	s.snap.term = t;
	s.snap.conf = *raft_conf(&C.r[3]);
	s.data = "01234";
	s.len = 5;
	tc_step(&C, 3, &s); /* the transfer starts: node 3 lacks k+2 */
	raft_msg_t a = msg(RAFT_MSG_APPEND, 1, 3, t);

	a.index = k;
	a.log_term = t;
	a.commit = c;
	a.entries = e;
	a.n_entries = 2;
	tc_step(&C, 3, &a); /* an append still in flight delivers k+1, k+2 */
	cr_assert_eq(raft_last_index(&C.r[3]), k + 2);
	s.offset = 5;
	s.flags = RAFT_MSGF_LAST;
	tc_drop(&C);
	tc_step(&C, 3, &s);
	cr_assert_eq(raft_last_index(&C.r[3]), k + 2, "acknowledged entries survive");
	cr_assert_eq(memstore_last(&C.ms[3]), k + 2);
	cr_assert_eq(C.ms[3].meta.index, 0, "nothing installed");
	o = last_sent(RAFT_MSG_SNAPSHOT_RESP, 3);
	cr_assert(o && (o->flags & RAFT_MSGF_LAST) && o->index == k + 2);
}
