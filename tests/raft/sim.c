/*
 * raft-sim: a deterministic, seeded simulation of 3- and 5-node geokv raft clusters.
 *
 * One seed = one cluster run on a virtual clock. Each tick every live node ticks, then every
 * message due is delivered (in a seeded random order), then clients act and faults strike.
 * The network loses, duplicates, delays and reorders messages, and is partitioned
 * (symmetric, asymmetric, leader isolated); nodes crash and restart from what they persisted
 * (a crash may fall between persisting a Ready and sending its messages); logs are compacted
 * and lagging nodes get chunked snapshots; clients propose, read (ReadIndex), transfer
 * leadership and add/remove members throughout. After every step, the safety checks:
 *
 *   election safety     at most one leader per term;
 *   log matching        two logs with an entry of the same index and term agree on every
 *                       entry up to it (chain hashes keyed by index+term);
 *   leader completeness a leader holds every entry committed so far;
 *   state machine       committed entries never change or disappear on any node, and every
 *                       node applies the same sequence, each index once, in order;
 *   linearizable reads  a ReadIndex answer covers every write committed before the read
 *                       was asked.
 *
 * Then liveness: the network heals, crashed nodes restart, faults stop; a leader must be
 * elected and a new proposal applied by every member within LIVENESS_TICKS.
 *
 * Any failure prints the seed and the command that replays it (-v traces every event).
 * Output is TAP: one line per batch of seeds. Usage:
 *   raft-sim [--seeds N] [--first F] [--seed S] [--steps TICKS] [--max-seeds N] [-v]
 * --seeds defaults to $SIM_SEEDS or 2000; --max-seeds caps it (sanitizer builds).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft/raft.h"
#include "tests/raft/memstore.h"

#define MAXN 6            /* 5 founders + 1 spare that membership changes add */
#define LIVENESS_TICKS 400
#define LOSS_TIMEOUT 400
#define SNAP_MAGIC 0x736e6170u

typedef struct pkt {
	uint64_t at;
	raft_msg_t m;
	void *blob;
} pkt_t;

typedef struct node {
	raft_id_t id;
	bool up;
	memstore_t ms;
	raft_t r;
	uint64_t app_index, app_hash;
	uint8_t *stage;
	size_t stage_len, stage_cap;
	uint64_t down_until;
} node_t;

typedef struct pread {
	raft_id_t node;
	uint64_t ctx, bar, at;
} pread_t;

typedef struct sim {
	uint64_t seed, rng, steps_per_seed;
	int n, total;
	node_t nodes[MAXN + 1];
	uint64_t now;
	pkt_t *q;
	size_t nq, capq;
	bool link[MAXN + 1][MAXN + 1];
	double p_loss, p_dup;
	int max_delay;
	int compact_every;
	bool calm;
	/* ground truth, built from what nodes report as committed */
	uint64_t *gt_chain, *gt_app, *gt_term; /* gt_term: a term in which it was seen committed */
	size_t gt_cap;
	uint64_t gt_commit, gt_applied;
	raft_id_t *term_leader;
	size_t term_cap;
	uint64_t *it_keys, *it_vals; /* (index, term) -> chain, open addressing */
	size_t it_cap, it_n;
	pread_t reads[64];
	int n_reads;
	uint64_t next_ctx, prop_seq;
	/* leader loss measurement */
	bool loss_active;
	uint64_t loss_start, loss_term;
	uint64_t marker, marker_index;
	jmp_buf fail_jmp;
	char fail[512];
} sim_t;

static int verbose;

/* run-wide figures */
static uint64_t st_events, st_ticks, st_msgs, st_snap_installs, st_conf_applied,
	st_transfers, st_reads_ok, st_props_applied, st_crashes, st_partitions;
static uint64_t *loss_samples;
static size_t n_loss, cap_loss;
static uint64_t live_worst;

static uint64_t rnd(sim_t *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double rndf(sim_t *s) { return (double)(rnd(s) >> 11) / 9007199254740992.0; }
static uint64_t rndn(sim_t *s, uint64_t n) { return n ? rnd(s) % n : 0; }

static void trace(sim_t *s, const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	fprintf(stderr, "[seed %" PRIu64 " t=%" PRIu64 "] ", s->seed, s->now);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

__attribute__((format(printf, 2, 3), noreturn))
static void fail(sim_t *s, const char *fmt, ...)
{
	va_list ap;
	int k = snprintf(s->fail, sizeof s->fail, "t=%" PRIu64 ": ", s->now);

	va_start(ap, fmt);
	vsnprintf(s->fail + k, sizeof s->fail - (size_t)k, fmt, ap);
	va_end(ap);
	longjmp(s->fail_jmp, 1);
}

/* ---- ground truth ------------------------------------------------------------------- */

static void gt_reserve(sim_t *s, uint64_t index)
{
	if (index < s->gt_cap)
		return;
	size_t nc = s->gt_cap ? s->gt_cap : 1024;

	while (nc <= index)
		nc *= 2;
	s->gt_chain = realloc(s->gt_chain, nc * sizeof *s->gt_chain);
	s->gt_app = realloc(s->gt_app, nc * sizeof *s->gt_app);
	s->gt_term = realloc(s->gt_term, nc * sizeof *s->gt_term);
	memset(s->gt_term + s->gt_cap, 0, (nc - s->gt_cap) * sizeof *s->gt_term);
	memset(s->gt_chain + s->gt_cap, 0, (nc - s->gt_cap) * sizeof *s->gt_chain);
	memset(s->gt_app + s->gt_cap, 0, (nc - s->gt_cap) * sizeof *s->gt_app);
	s->gt_cap = nc;
}

static uint64_t it_slot(sim_t *s, uint64_t index, uint64_t term)
{
	uint64_t h = (index * 0x9e3779b97f4a7c15ULL) ^ (term * 0xc2b2ae3d27d4eb4fULL);

	return h & (s->it_cap - 1);
}

/* Log matching: the first log seen with (index, term) fixes the prefix chain for all. */
static void it_check(sim_t *s, node_t *nd, uint64_t index, uint64_t term, uint64_t chain)
{
	if (s->it_n * 2 >= s->it_cap) {
		size_t oc = s->it_cap;
		uint64_t *ok = s->it_keys, *ov = s->it_vals;

		s->it_cap = oc ? oc * 2 : 4096;
		s->it_keys = calloc(s->it_cap * 2, sizeof *s->it_keys);
		s->it_vals = calloc(s->it_cap, sizeof *s->it_vals);
		s->it_n = 0;
		for (size_t i = 0; i < oc; i++)
			if (ok[2 * i] != 0) {
				uint64_t k = it_slot(s, ok[2 * i], ok[2 * i + 1]);

				while (s->it_keys[2 * k] != 0)
					k = (k + 1) & (s->it_cap - 1);
				s->it_keys[2 * k] = ok[2 * i];
				s->it_keys[2 * k + 1] = ok[2 * i + 1];
				s->it_vals[k] = ov[i];
				s->it_n++;
			}
		free(ok);
		free(ov);
	}
	for (uint64_t k = it_slot(s, index, term);; k = (k + 1) & (s->it_cap - 1)) {
		if (s->it_keys[2 * k] == 0) {
			s->it_keys[2 * k] = index;
			s->it_keys[2 * k + 1] = term;
			s->it_vals[k] = chain;
			s->it_n++;
			return;
		}
		if (s->it_keys[2 * k] == index && s->it_keys[2 * k + 1] == term) {
			if (s->it_vals[k] != chain)
				fail(s, "log matching: node %u entry %" PRIu64 " term %" PRIu64
				     " has a different prefix than another log's", nd->id, index, term);
			return;
		}
	}
}

static uint64_t chain_at(sim_t *s, node_t *nd, uint64_t index, const char *what)
{
	uint64_t c;

	if (!memstore_chain(&nd->ms, index, &c))
		fail(s, "%s: node %u does not hold index %" PRIu64 " (log %" PRIu64 "..%" PRIu64 ")",
		     what, nd->id, index, nd->ms.meta.index, memstore_last(&nd->ms));
	return c;
}

/* A node reports commit C: entries up to C are final; record or compare them. */
static void gt_commit_from(sim_t *s, node_t *nd, uint64_t c)
{
	if (c == 0)
		return;
	gt_reserve(s, c);
	if (c > s->gt_commit) {
		uint64_t from = s->gt_commit + 1;

		if (from <= nd->ms.meta.index)
			from = nd->ms.meta.index; /* below: compacted, known from earlier reports */
		for (uint64_t i = from; i <= c; i++) {
			uint64_t ch = chain_at(s, nd, i, "commit");

			if (s->gt_chain[i] != 0 && s->gt_chain[i] != ch)
				fail(s, "committed entry %" PRIu64 " changed on node %u", i, nd->id);
			s->gt_chain[i] = ch;
			s->gt_term[i] = raft_term(&nd->r);
		}
		s->gt_commit = c;
	} else if (chain_at(s, nd, c, "commit") != s->gt_chain[c]) {
		fail(s, "node %u committed index %" PRIu64 " differs from the committed log",
		     nd->id, c);
	}
}

static void check_node(sim_t *s, node_t *nd)
{
	raft_t *r = &nd->r;
	uint64_t t = raft_term(r);

	if (raft_role(r) != RAFT_LEADER)
		return;
	if (t >= s->term_cap) {
		size_t nc = s->term_cap ? s->term_cap : 64;

		while (nc <= t)
			nc *= 2;
		s->term_leader = realloc(s->term_leader, nc * sizeof *s->term_leader);
		memset(s->term_leader + s->term_cap, 0, (nc - s->term_cap) * sizeof *s->term_leader);
		s->term_cap = nc;
	}
	if (s->term_leader[t] == nd->id)
		return;
	if (s->term_leader[t] != 0)
		fail(s, "two leaders in term %" PRIu64 ": %u and %u", t, s->term_leader[t], nd->id);
	s->term_leader[t] = nd->id;
	trace(s, "node %u leader term %" PRIu64, nd->id, t);
	/* Leader completeness (§5.4): every entry committed in an earlier term is in the new
	 * leader's log. gt_term[i] bounds from above the term that committed i, so the entries
	 * to check are those with gt_term < t; by log matching, checking the last one checks
	 * them all. Checked when the leader is first seen, after its ready cycle persisted. */
	{
		uint64_t i = s->gt_commit;

		while (i > 0 && s->gt_term[i] >= t)
			i--;
		if (i == 0)
			return;
		if (raft_last_index(r) < i || memstore_last(&nd->ms) < i)
			fail(s, "leader completeness: leader %u term %" PRIu64 " log ends at %" PRIu64
			     " before entry %" PRIu64 " committed earlier", nd->id, t,
			     raft_last_index(r), i);
		if (nd->ms.meta.index <= i &&
		    chain_at(s, nd, i, "leader completeness") != s->gt_chain[i])
			fail(s, "leader completeness: leader %u term %" PRIu64
			     " lacks committed entry %" PRIu64, nd->id, t, i);
	}
}

/* ---- the state machine and its snapshots ---------------------------------------------- */

static void apply(sim_t *s, node_t *nd, const raft_entry_t *e)
{
	if (e->index != nd->app_index + 1)
		fail(s, "node %u applied %" PRIu64 " after %" PRIu64, nd->id, e->index, nd->app_index);
	if (e->index > s->gt_commit)
		fail(s, "node %u applied %" PRIu64 " beyond commit %" PRIu64, nd->id, e->index,
		     s->gt_commit);
	if (chain_at(s, nd, e->index, "apply") != s->gt_chain[e->index])
		fail(s, "node %u applied a different entry at %" PRIu64, nd->id, e->index);
	nd->app_hash = memstore_hash(nd->app_hash, &e->index, 8);
	if (e->type == RAFT_ENTRY_NORMAL) {
		nd->app_hash = memstore_hash(nd->app_hash, e->data, e->len);
		st_props_applied++;
	} else if (e->type == RAFT_ENTRY_CONF) {
		st_conf_applied++;
	}
	nd->app_index = e->index;
	if (s->gt_app[e->index] == 0)
		s->gt_app[e->index] = nd->app_hash;
	else if (s->gt_app[e->index] != nd->app_hash)
		fail(s, "node %u state after %" PRIu64 " differs", nd->id, e->index);
}

/* Snapshot bytes: header (magic, index, app hash, chain) then a pattern derived from them,
 * long enough to take several chunks, checked byte for byte on install. */
static size_t snap_encode(uint8_t *buf, size_t cap, uint64_t index, uint64_t app, uint64_t chain)
{
	uint64_t h = app ^ chain;
	size_t len = 32 + (size_t)(index % 300);

	if (len > cap)
		len = cap;
	uint32_t magic = SNAP_MAGIC;
	memcpy(buf, &magic, 4);
	memset(buf + 4, 0, 4);
	memcpy(buf + 8, &index, 8);
	memcpy(buf + 16, &app, 8);
	memcpy(buf + 24, &chain, 8);
	for (size_t i = 32; i < len; i++) {
		h = h * 6364136223846793005ULL + 1442695040888963407ULL;
		buf[i] = (uint8_t)(h >> 56);
	}
	return len;
}

static void snap_decode(sim_t *s, node_t *nd, const uint8_t *p, size_t len, uint64_t *index,
			uint64_t *app, uint64_t *chain)
{
	uint8_t ref[400];
	uint32_t magic;

	if (len < 32)
		fail(s, "node %u: snapshot of %zu bytes", nd->id, len);
	memcpy(&magic, p, 4);
	memcpy(index, p + 8, 8);
	memcpy(app, p + 16, 8);
	memcpy(chain, p + 24, 8);
	if (magic != SNAP_MAGIC || snap_encode(ref, sizeof ref, *index, *app, *chain) != len ||
	    memcmp(ref, p, len) != 0)
		fail(s, "node %u: snapshot bytes corrupted in transfer", nd->id);
}

static void maybe_compact(sim_t *s, node_t *nd)
{
	uint8_t buf[400];
	size_t len;
	uint64_t chain;

	if (nd->app_index < nd->ms.meta.index + (uint64_t)s->compact_every)
		return;
	if (raft_applied(&nd->r) != nd->app_index)
		return;
	chain = chain_at(s, nd, nd->app_index, "compact");
	len = snap_encode(buf, sizeof buf, nd->app_index, nd->app_hash, chain);
	memstore_compact(&nd->ms, nd->app_index, raft_conf(&nd->r), buf, len);
	trace(s, "node %u compacted to %" PRIu64, nd->id, nd->app_index);
}

/* ---- network -------------------------------------------------------------------------- */

static void net_push(sim_t *s, const raft_msg_t *m)
{
	size_t bytes = m->n_entries * sizeof(raft_entry_t) + m->len;
	uint8_t *blob, *p;
	raft_entry_t *ents;
	pkt_t *k;

	for (uint32_t i = 0; i < m->n_entries; i++)
		bytes += m->entries[i].len;
	blob = malloc(bytes ? bytes : 1);
	ents = (raft_entry_t *)blob;
	p = blob + m->n_entries * sizeof(raft_entry_t);
	for (uint32_t i = 0; i < m->n_entries; i++) {
		ents[i] = m->entries[i];
		if (ents[i].len) {
			memcpy(p, m->entries[i].data, ents[i].len);
			ents[i].data = p;
			p += ents[i].len;
		}
	}
	if (s->nq == s->capq) {
		s->capq = s->capq ? s->capq * 2 : 256;
		s->q = realloc(s->q, s->capq * sizeof *s->q);
	}
	k = &s->q[s->nq++];
	k->at = s->now + 1 + rndn(s, (uint64_t)s->max_delay + 1);
	k->m = *m;
	k->m.entries = m->n_entries ? ents : NULL;
	if (m->len) {
		memcpy(p, m->data, m->len);
		k->m.data = p;
	}
	k->blob = blob;
}

static void net_send(sim_t *s, const raft_msg_t *m)
{
	if (m->to == 0 || m->to > (raft_id_t)s->total || !s->link[m->from][m->to])
		return;
	if (rndf(s) < s->p_loss)
		return;
	net_push(s, m);
	if (rndf(s) < s->p_dup)
		net_push(s, m);
}

/* ---- nodes ---------------------------------------------------------------------------- */

static void node_crash(sim_t *s, node_t *nd);

static void node_ready(sim_t *s, node_t *nd)
{
	for (int loops = 0; nd->up && raft_has_ready(&nd->r); loops++) {
		raft_ready_t rd;

		if (loops > 1000)
			fail(s, "node %u: Ready never drains", nd->id);
		raft_ready(&nd->r, &rd);
		if (rd.snapshot_chunk != NULL) {
			const raft_snapshot_chunk_t *c = rd.snapshot_chunk;

			if (c->offset == 0)
				nd->stage_len = 0;
			if (c->offset != nd->stage_len)
				fail(s, "node %u: chunk at %" PRIu64 ", staged %zu", nd->id, c->offset,
				     nd->stage_len);
			if (nd->stage_len + c->len > nd->stage_cap) {
				nd->stage_cap = (nd->stage_len + c->len) * 2;
				nd->stage = realloc(nd->stage, nd->stage_cap);
			}
			memcpy(nd->stage + nd->stage_len, c->data, c->len);
			nd->stage_len += c->len;
		}
		if (rd.snapshot != NULL) {
			uint64_t idx, app, chain;

			snap_decode(s, nd, nd->stage, nd->stage_len, &idx, &app, &chain);
			if (idx != rd.snapshot->index)
				fail(s, "node %u: snapshot bytes for %" PRIu64 ", meta %" PRIu64, nd->id,
				     idx, rd.snapshot->index);
			if (idx > s->gt_commit || s->gt_chain[idx] != chain)
				fail(s, "node %u: installed snapshot %" PRIu64 " is not the committed log",
				     nd->id, idx);
			memstore_install(&nd->ms, rd.snapshot, chain, nd->stage, nd->stage_len);
			nd->app_index = idx;
			nd->app_hash = app;
			nd->stage_len = 0;
			st_snap_installs++;
			trace(s, "node %u installed snapshot %" PRIu64, nd->id, idx);
		}
		if (rd.n_entries > 0) {
			if (rd.entries[0].index <= nd->ms.hs.commit && rd.entries[0].index <=
			    memstore_last(&nd->ms))
				fail(s, "node %u truncates committed entry %" PRIu64, nd->id,
				     rd.entries[0].index);
			if (memstore_append(&nd->ms, rd.entries, rd.n_entries) != 0)
				fail(s, "node %u: append leaves a gap at %" PRIu64, nd->id,
				     rd.entries[0].index);
			for (size_t i = 0; i < rd.n_entries; i++)
				it_check(s, nd, rd.entries[i].index, rd.entries[i].term,
					 memstore_get(&nd->ms, rd.entries[i].index)->chain);
		}
		if (rd.hs_changed) {
			if (rd.hs.term < nd->ms.hs.term)
				fail(s, "node %u term went back", nd->id);
			nd->ms.hs = rd.hs;
		}
		/* A crash here: persisted, nothing sent, nothing applied. */
		if (!s->calm && !s->loss_active && rndf(s) < 0.0005) {
			trace(s, "node %u crashes after persisting", nd->id);
			node_crash(s, nd);
			return;
		}
		for (size_t i = 0; i < rd.n_msgs; i++) {
			if (rd.msgs[i].from != nd->id)
				fail(s, "node %u sends as %u", nd->id, rd.msgs[i].from);
			net_send(s, &rd.msgs[i]);
		}
		gt_commit_from(s, nd, rd.hs.commit);
		for (size_t i = 0; i < rd.n_committed; i++)
			apply(s, nd, &rd.committed[i]);
		for (size_t i = 0; i < rd.n_reads; i++) {
			for (int k = 0; k < s->n_reads; k++) {
				pread_t *pr = &s->reads[k];

				if (pr->ctx != rd.reads[i].ctx || pr->node != nd->id)
					continue;
				if (rd.reads[i].index < pr->bar)
					fail(s, "read ctx %" PRIu64 " at node %u: index %" PRIu64
					     " misses writes committed up to %" PRIu64 " before it",
					     pr->ctx, nd->id, rd.reads[i].index, pr->bar);
				if (rd.reads[i].index > s->gt_commit)
					fail(s, "read index %" PRIu64 " not committed", rd.reads[i].index);
				st_reads_ok++;
				s->reads[k] = s->reads[--s->n_reads];
				break;
			}
		}
		raft_advance(&nd->r, &rd);
		maybe_compact(s, nd);
		check_node(s, nd);
	}
	if (nd->up)
		check_node(s, nd);
}

static void node_start(sim_t *s, node_t *nd)
{
	raft_config_t cfg;
	int rc;

	raft_config_default(&cfg);
	cfg.id = nd->id;
	cfg.seed = s->seed * 1000003 + s->now * 31 + nd->id;
	/* Small limits, so batching, windows, chunking and full buffers all happen. */
	cfg.max_msg_bytes = 256;
	cfg.max_inflight = 4;
	cfg.snapshot_chunk = 64;
	cfg.max_unstable_bytes = 16 << 10;
	cfg.max_unstable_entries = 256;
	cfg.max_msgs = 256;
	cfg.max_msg_entries = 1024;
	cfg.max_apply_entries = 64;
	cfg.max_reads = 32;
	cfg.applied = nd->ms.meta.index;
	if ((rc = raft_init(&nd->r, &cfg, &nd->ms.st)) != 0)
		fail(s, "node %u: raft_init: %s", nd->id, raft_strerror(rc));
	/* The state machine lives in memory: back to the snapshot. */
	nd->app_index = nd->ms.meta.index;
	nd->app_hash = 0;
	if (nd->ms.meta.index > 0) {
		uint64_t idx, chain;

		snap_decode(s, nd, nd->ms.snap, nd->ms.snap_len, &idx, &nd->app_hash, &chain);
	}
	nd->stage_len = 0;
	nd->up = true;
}

static void node_crash(sim_t *s, node_t *nd)
{
	raft_close(&nd->r);
	nd->up = false;
	nd->down_until = s->now + 5 + rndn(s, 60);
	st_crashes++;
}

static node_t *leader(sim_t *s)
{
	node_t *best = NULL;

	for (int i = 1; i <= s->total; i++) {
		node_t *nd = &s->nodes[i];

		if (nd->up && raft_role(&nd->r) == RAFT_LEADER &&
		    (best == NULL || raft_term(&nd->r) > raft_term(&best->r)))
			best = nd;
	}
	return best;
}

/* ---- a run ---------------------------------------------------------------------------- */

static void deliver_due(sim_t *s)
{
	size_t n = 0;
	pkt_t *due;

	for (size_t i = 0; i < s->nq; i++)
		if (s->q[i].at <= s->now)
			n++;
	if (n == 0)
		return;
	due = malloc(n * sizeof *due);
	n = 0;
	for (size_t i = 0, j = 0; i < s->nq; i++) {
		if (s->q[i].at <= s->now)
			due[n++] = s->q[i];
		else
			s->q[j++] = s->q[i];
	}
	s->nq -= n;
	for (size_t i = n; i > 1; i--) {
		size_t j = rndn(s, i);
		pkt_t t = due[i - 1];

		due[i - 1] = due[j];
		due[j] = t;
	}
	for (size_t i = 0; i < n; i++) {
		node_t *nd = &s->nodes[due[i].m.to];

		if (nd->up && s->link[due[i].m.from][due[i].m.to]) {
			const raft_msg_t *m = &due[i].m;
			int rc;

			if (verbose > 1)
				trace(s, "%u->%u %s term %" PRIu64 " index %" PRIu64 " logterm %" PRIu64
				      " commit %" PRIu64 " hint %" PRIu64 " n %u off %" PRIu64
				      " flags %u", m->from, m->to, raft_msg_type_name(m->type), m->term,
				      m->index, m->log_term, m->commit, m->hint, m->n_entries,
				      m->offset, m->flags);
			rc = raft_step(&nd->r, m);

			st_events++;
			st_msgs++;
			if (rc != 0)
				fail(s, "node %u: step %s from %u: %s", nd->id,
				     raft_msg_type_name(due[i].m.type), due[i].m.from, raft_strerror(rc));
			node_ready(s, nd);
		}
		free(due[i].blob);
	}
	free(due);
}

static void heal(sim_t *s)
{
	for (int a = 0; a <= MAXN; a++)
		for (int b = 0; b <= MAXN; b++)
			s->link[a][b] = true;
}

static bool healthy(sim_t *s)
{
	for (int a = 1; a <= s->total; a++) {
		if (!s->nodes[a].up)
			return false;
		for (int b = 1; b <= s->total; b++)
			if (!s->link[a][b])
				return false;
	}
	return true;
}

static void isolate(sim_t *s, int id)
{
	for (int b = 1; b <= s->total; b++)
		if (b != id)
			s->link[id][b] = s->link[b][id] = false;
}

static void fault(sim_t *s)
{
	node_t *ld = leader(s);
	double x = rndf(s);

	if (x < 0.2) {
		trace(s, "heal");
		heal(s);
	} else if (x < 0.35) {
		uint64_t side = rnd(s);

		trace(s, "symmetric partition %#" PRIx64, side & 0x7e);
		for (int a = 1; a <= s->total; a++)
			for (int b = 1; b <= s->total; b++)
				s->link[a][b] = ((side >> a) & 1) == ((side >> b) & 1);
		st_partitions++;
	} else if (x < 0.45) {
		trace(s, "asymmetric partition");
		for (int a = 1; a <= s->total; a++)
			for (int b = 1; b <= s->total; b++)
				if (a != b && rndf(s) < 0.3)
					s->link[a][b] = false;
		st_partitions++;
	} else if (x < 0.7 && ld != NULL) {
		bool measure = healthy(s);

		if (x < 0.58) {
			trace(s, "isolate leader %u", ld->id);
			isolate(s, (int)ld->id);
			st_partitions++;
		} else {
			trace(s, "crash leader %u", ld->id);
			node_crash(s, ld);
			ld->down_until = s->now + 40 + rndn(s, 60);
		}
		if (measure) {
			s->loss_active = true;
			s->loss_start = s->now;
			s->loss_term = raft_term(&ld->r);
		}
	} else if (x < 0.85) {
		node_t *nd = &s->nodes[1 + rndn(s, (uint64_t)s->total)];

		if (nd->up) {
			trace(s, "crash node %u", nd->id);
			node_crash(s, nd);
		}
	}
}

static void client(sim_t *s)
{
	node_t *nd = &s->nodes[1 + rndn(s, (uint64_t)s->total)];
	node_t *ld;
	double x = rndf(s);

	if (!nd->up)
		return;
	if (x < 0.35) {
		uint8_t buf[96];
		size_t len = 16 + rndn(s, 80);
		uint64_t seq = ++s->prop_seq;

		memcpy(buf, &seq, 8);
		memcpy(buf + 8, &s->seed, 8);
		memset(buf + 16, (int)(seq & 0xff), len - 16);
		(void)raft_propose(&nd->r, buf, len);
	} else if (x < 0.5) {
		uint64_t ctx = ++s->next_ctx;

		if (s->n_reads == (int)(sizeof s->reads / sizeof s->reads[0]))
			return;
		if (raft_read_index(&nd->r, ctx) == 0)
			s->reads[s->n_reads++] = (pread_t){nd->id, ctx, s->gt_commit, s->now};
	} else if (x < 0.51 && (ld = leader(s)) != NULL) {
		const raft_conf_t *c = raft_conf(&ld->r);
		raft_id_t to = c->ids[rndn(s, c->n)];

		if (raft_transfer_leader(&ld->r, to) == 0) {
			trace(s, "transfer %u -> %u", ld->id, to);
			st_transfers++;
		}
	} else if (x < 0.52 && (ld = leader(s)) != NULL) {
		const raft_conf_t *c = raft_conf(&ld->r);
		raft_id_t spare = 0;

		for (int i = 1; i <= s->total && spare == 0; i++)
			if (!raft_conf_has(c, (raft_id_t)i))
				spare = (raft_id_t)i;
		if (spare != 0 && (c->n < 4 || rndf(s) < 0.5)) {
			if (raft_propose_conf(&ld->r, RAFT_CONF_ADD, spare) == 0)
				trace(s, "propose add %u", spare);
		} else if (c->n > 3) {
			raft_id_t victim = c->ids[rndn(s, c->n)];

			if (raft_propose_conf(&ld->r, RAFT_CONF_REMOVE, victim) == 0)
				trace(s, "propose remove %u", victim);
		}
		nd = ld;
	}
	node_ready(s, nd);
}

static void tick_all(sim_t *s)
{
	for (int i = 1; i <= s->total; i++) {
		node_t *nd = &s->nodes[i];

		if (!nd->up) {
			if (s->now >= nd->down_until && (!s->loss_active || s->calm)) {
				trace(s, "restart node %u", nd->id);
				node_start(s, nd);
			}
			continue;
		}
		raft_tick(&nd->r);
		st_events++;
		node_ready(s, nd);
	}
	s->now++;
	st_ticks++;
	deliver_due(s);
	/* Drop reads nobody will answer (lost, leader changed): clients time out. */
	for (int k = 0; k < s->n_reads;)
		if (s->now - s->reads[k].at > 200)
			s->reads[k] = s->reads[--s->n_reads];
		else
			k++;
	if (s->loss_active) {
		node_t *ld = leader(s);

		if (ld != NULL && raft_term(&ld->r) > s->loss_term) {
			if (n_loss == cap_loss) {
				cap_loss = cap_loss ? cap_loss * 2 : 1024;
				loss_samples = realloc(loss_samples, cap_loss * sizeof *loss_samples);
			}
			loss_samples[n_loss++] = s->now - s->loss_start;
			trace(s, "new leader %u term %" PRIu64 " after %" PRIu64 " ticks", ld->id,
			      raft_term(&ld->r), s->now - s->loss_start);
			s->loss_active = false;
		} else if (s->now - s->loss_start > LOSS_TIMEOUT) {
			fail(s, "no new leader %d ticks after the leader was lost (majority healthy)",
			     LOSS_TIMEOUT);
		}
	}
}

static void dump(sim_t *s)
{
	for (int i = 1; i <= s->total; i++) {
		node_t *nd = &s->nodes[i];
		const raft_t *r = &nd->r;

		if (!nd->up) {
			printf("#   node %d down\n", i);
			continue;
		}
		printf("#   node %d role %d term %" PRIu64 " lead %u commit %" PRIu64 " applied %"
		       PRIu64 " log %" PRIu64 "..%" PRIu64 " conf", i, raft_role(r), raft_term(r),
		       raft_leader(r), raft_commit(r), raft_applied(r), nd->ms.meta.index,
		       memstore_last(&nd->ms));
		for (uint32_t k = 0; k < raft_conf(r)->n; k++)
			printf(" %u", raft_conf(r)->ids[k]);
		printf("\n");
		if (raft_role(r) == RAFT_LEADER)
			for (uint32_t k = 0; k < r->n_prs; k++)
				printf("#     pr %u state %u match %" PRIu64 " next %" PRIu64
				       " infl %u probe_sent %d snap %" PRIu64 "@%" PRIu64 "\n",
				       r->prs[k].id, r->prs[k].state, r->prs[k].match, r->prs[k].next,
				       r->prs[k].infl_count, r->prs[k].probe_sent, r->prs[k].snap_index,
				       r->prs[k].snap_offset);
	}
}

static void sim_free(sim_t *s)
{
	for (int i = 1; i <= s->total; i++) {
		if (s->nodes[i].up)
			raft_close(&s->nodes[i].r);
		memstore_free(&s->nodes[i].ms);
		free(s->nodes[i].stage);
	}
	for (size_t i = 0; i < s->nq; i++)
		free(s->q[i].blob);
	free(s->q);
	free(s->gt_chain);
	free(s->gt_app);
	free(s->gt_term);
	free(s->term_leader);
	free(s->it_keys);
	free(s->it_vals);
}

static int run_seed(uint64_t seed, uint64_t ticks)
{
	sim_t *s = calloc(1, sizeof *s);
	volatile int ok = 1;

	s->seed = seed;
	s->rng = seed * 0x2545f4914f6cdd1dULL + 1;
	s->n = (seed & 1) ? 5 : 3;
	s->total = s->n + 1;
	s->p_loss = rndf(s) * 0.1;
	s->p_dup = rndf(s) * 0.05;
	s->max_delay = 1 + (int)rndn(s, 3);
	s->compact_every = 10 + (int)rndn(s, 60);
	heal(s);
	if (setjmp(s->fail_jmp) == 0) {
		for (int i = 1; i <= s->total; i++) {
			node_t *nd = &s->nodes[i];

			nd->id = (raft_id_t)i;
			/* Founders start with the bootstrap entries naming them; the spare from
			 * nothing, until a membership change adds it. */
			memstore_init(&nd->ms, NULL);
			if (i <= s->n)
				memstore_bootstrap(&nd->ms, (uint32_t)s->n);
			node_start(s, nd);
		}
		while (s->now < ticks) {
			tick_all(s);
			if (rndf(s) < 0.6)
				client(s);
			if (!s->loss_active && rndf(s) < 0.02)
				fault(s);
		}
		/* Liveness: heal, restart, stop faults; a leader must emerge and commit. */
		s->calm = true;
		s->loss_active = false;
		heal(s);
		s->p_loss = s->p_dup = 0;
		for (int i = 1; i <= s->total; i++)
			s->nodes[i].down_until = s->now;
		s->marker = 0;
		{
			uint64_t start = s->now;
			node_t *ld = NULL;
			bool done = false;

			while (!done) {
				if (s->now - start > LIVENESS_TICKS)
					fail(s, "liveness: no leader committing to all members within %d "
					     "ticks of healing (leader %u)", LIVENESS_TICKS,
					     ld ? ld->id : 0);
				tick_all(s);
				ld = leader(s);
				if (ld == NULL)
					continue;
				if (s->marker == 0 || ld->id != (raft_id_t)(s->marker >> 48)) {
					uint8_t buf[16];
					uint64_t seq = ++s->prop_seq;

					s->marker = ((uint64_t)ld->id << 48) | (s->now & 0xffffffffffffULL);
					memcpy(buf, &seq, 8);
					memcpy(buf + 8, &s->marker, 8);
					if (raft_propose(&ld->r, buf, sizeof buf) != 0)
						s->marker = 0;
					s->marker_index = raft_last_index(&ld->r);
					node_ready(s, ld);
					continue;
				}
				done = true;
				for (uint32_t i = 0; i < raft_conf(&ld->r)->n; i++)
					if (s->nodes[raft_conf(&ld->r)->ids[i]].app_index <
					    s->marker_index)
						done = false;
			}
			if (s->now - start > live_worst)
				live_worst = s->now - start;
		}
	} else {
		ok = 0;
		printf("# seed %" PRIu64 " FAILED: %s\n", seed, s->fail);
		dump(s);
		printf("# replay: tests/raft-sim --seed %" PRIu64 " --steps %" PRIu64 " -v\n", seed,
		       ticks);
		fflush(stdout);
	}
	sim_free(s);
	free(s);
	return ok;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	uint64_t seeds = 2000, first = 1, ticks = 4000, max_seeds = 0, batch = 100;
	bool one = false;
	const char *env = getenv("SIM_SEEDS");
	struct timespec t0, t1;
	int failed = 0;

	if (env != NULL && *env)
		seeds = strtoull(env, NULL, 10);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
			seeds = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--first") && i + 1 < argc)
			first = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			first = strtoull(argv[++i], NULL, 10);
			seeds = 1;
			one = true;
		} else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
			ticks = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--max-seeds") && i + 1 < argc)
			max_seeds = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else if (!strcmp(argv[i], "-vv"))
			verbose = 2;
		else {
			fprintf(stderr, "usage: raft-sim [--seeds N] [--first F] [--seed S] "
				"[--steps TICKS] [--max-seeds N] [-v]\n");
			return 2;
		}
	}
	if (!one && max_seeds > 0 && seeds > max_seeds)
		seeds = max_seeds;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	printf("1..%" PRIu64 "\n", (seeds + batch - 1) / batch);
	for (uint64_t b = 0; b * batch < seeds; b++) {
		uint64_t lo = first + b * batch, hi = lo + batch - 1;
		int bad = 0;

		if (hi > first + seeds - 1)
			hi = first + seeds - 1;
		for (uint64_t sd = lo; sd <= hi; sd++)
			if (!run_seed(sd, ticks))
				bad++;
		printf("%sok %" PRIu64 " - seeds %" PRIu64 "..%" PRIu64 " (%" PRIu64
		       " ticks each)%s\n", bad ? "not " : "", b + 1, lo, hi, ticks,
		       bad ? " - see replay lines above" : "");
		fflush(stdout);
		failed += bad;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	{
		double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

		qsort(loss_samples, n_loss, sizeof *loss_samples, cmp_u64);
		printf("# seeds %" PRIu64 " failed %d in %.1f s: %" PRIu64 " ticks, %" PRIu64
		       " events (%.0f events/s, %.0f ticks/s), %" PRIu64 " messages\n", seeds, failed,
		       secs, st_ticks, st_events, (double)st_events / secs, (double)st_ticks / secs,
		       st_msgs);
		printf("# exercised: %" PRIu64 " proposals applied, %" PRIu64 " reads checked, %" PRIu64
		       " snapshot installs, %" PRIu64 " membership changes applied, %" PRIu64
		       " transfers, %" PRIu64 " crashes, %" PRIu64 " partitions\n", st_props_applied,
		       st_reads_ok, st_snap_installs, st_conf_applied, st_transfers, st_crashes,
		       st_partitions);
		if (n_loss > 0)
			printf("# leader loss -> new leader: %zu samples, median %" PRIu64
			       " ticks, p99 %" PRIu64 ", worst %" PRIu64 " (election timeout 10..19)\n",
			       n_loss, loss_samples[n_loss / 2], loss_samples[n_loss * 99 / 100],
			       loss_samples[n_loss - 1]);
		printf("# liveness: worst %" PRIu64 " ticks from healing to a commit on every member\n",
		       live_worst);
	}
	free(loss_samples);
	return failed ? 1 : 0;
}
