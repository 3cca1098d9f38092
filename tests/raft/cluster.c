#include "tests/raft/cluster.h"

#include <stdlib.h>
#include <string.h>

int tc_in_raft;

/* Every call into raft goes through IN(): the no-allocation test counts mallocs made
 * while tc_in_raft > 0, i.e. by the core, not by this driver. */
#define IN(call) (tc_in_raft++, (call), tc_in_raft--)

static void start(tc_t *c, int i)
{
	raft_config_t cfg = c->cfg;

	cfg.id = (raft_id_t)i;
	cfg.seed = 1000 + (uint64_t)i;
	cfg.applied = c->ms[i].meta.index;
	if (raft_init(&c->r[i], &cfg, &c->ms[i].st) != 0)
		abort();
	c->applied[i] = c->ms[i].meta.index;
	c->up[i] = true;
}

void tc_init(tc_t *c, int n, int members, const raft_config_t *cfg)
{
	memset(c, 0, sizeof *c);
	c->n = n;
	c->q = calloc(TC_QMAX, sizeof *c->q);
	if (cfg != NULL) {
		c->cfg = *cfg;
	} else {
		raft_config_default(&c->cfg);
	}
	for (int i = 1; i <= n; i++) {
		memstore_init(&c->ms[i], NULL);
		if (i <= members)
			memstore_bootstrap(&c->ms[i], (uint32_t)members);
		start(c, i);
	}
	tc_ready_all(c);
}

void tc_free(tc_t *c)
{
	for (int i = 1; i <= c->n; i++) {
		if (c->up[i])
			raft_close(&c->r[i]);
		memstore_free(&c->ms[i]);
	}
	for (int k = 0; k < c->nq; k++)
		free(c->q[k].blob);
	free(c->q);
}

void tc_restart(tc_t *c, int i)
{
	if (c->up[i])
		raft_close(&c->r[i]);
	start(c, i);
}

static void enqueue(tc_t *c, const raft_msg_t *m)
{
	size_t bytes = m->n_entries * sizeof(raft_entry_t) + m->len;
	raft_entry_t *ents;
	tc_msg_t *t;
	uint8_t *p;

	c->sent_by_type[m->type]++;
	if (c->nq == TC_QMAX)
		abort();
	for (uint32_t k = 0; k < m->n_entries; k++)
		bytes += m->entries[k].len;
	t = &c->q[c->nq++];
	t->m = *m;
	t->blob = malloc(bytes ? bytes : 1);
	ents = t->blob;
	p = (uint8_t *)t->blob + m->n_entries * sizeof(raft_entry_t);
	for (uint32_t k = 0; k < m->n_entries; k++) {
		ents[k] = m->entries[k];
		if (m->entries[k].len) {
			memcpy(p, m->entries[k].data, m->entries[k].len);
			ents[k].data = p;
			p += m->entries[k].len;
		}
	}
	t->m.entries = m->n_entries ? ents : NULL;
	if (m->len) {
		memcpy(p, m->data, m->len);
		t->m.data = p;
	}
}

void tc_ready(tc_t *c, int i)
{
	while (c->up[i] && raft_has_ready(&c->r[i])) {
		raft_ready_t rd;

		IN(raft_ready(&c->r[i], &rd));
		if (rd.snapshot_chunk) {
			memcpy(c->stage[i] + rd.snapshot_chunk->offset, rd.snapshot_chunk->data,
			       rd.snapshot_chunk->len);
			c->stage_len[i] = rd.snapshot_chunk->offset + rd.snapshot_chunk->len;
		}
		if (rd.snapshot) {
			memstore_install(&c->ms[i], rd.snapshot, 0, c->stage[i], c->stage_len[i]);
			c->applied[i] = rd.snapshot->index;
		}
		if (rd.n_entries)
			memstore_append(&c->ms[i], rd.entries, rd.n_entries);
		if (rd.hs_changed)
			c->ms[i].hs = rd.hs;
		for (size_t k = 0; k < rd.n_msgs; k++)
			enqueue(c, &rd.msgs[k]);
		for (size_t k = 0; k < rd.n_committed; k++) {
			c->applied[i] = rd.committed[k].index;
			if (rd.committed[k].type == RAFT_ENTRY_NORMAL)
				c->n_applied_normal[i]++;
		}
		for (size_t k = 0; k < rd.n_reads && c->n_reads[i] < 64; k++)
			c->reads[i][c->n_reads[i]++] = rd.reads[k];
		IN(raft_advance(&c->r[i], &rd));
	}
}

void tc_ready_all(tc_t *c)
{
	for (int i = 1; i <= c->n; i++)
		tc_ready(c, i);
}

int tc_deliver(tc_t *c, int max)
{
	int done = 0;

	while (c->nq > 0 && done < max) {
		tc_msg_t t0 = c->q[0], *t = &t0;
		int to;

		memmove(c->q, c->q + 1, (size_t)(c->nq - 1) * sizeof *c->q);
		c->nq--;
		to = (int)t->m.to;
		if (to >= 1 && to <= c->n && c->up[to] && !c->cut[t->m.from][to]) {
			IN(raft_step(&c->r[to], &t->m));
			tc_ready(c, to);
		}
		free(t->blob);
		done++;
	}
	return done;
}

void tc_drop(tc_t *c)
{
	for (int k = 0; k < c->nq; k++)
		free(c->q[k].blob);
	c->nq = 0;
}

void tc_tick(tc_t *c, int i, int times)
{
	for (int k = 0; k < times; k++) {
		IN(raft_tick(&c->r[i]));
		tc_ready(c, i);
	}
}

void tc_run(tc_t *c, int rounds)
{
	for (int k = 0; k < rounds; k++) {
		for (int i = 1; i <= c->n; i++)
			if (c->up[i])
				tc_tick(c, i, 1);
		tc_deliver(c, 100000);
	}
}

void tc_elect(tc_t *c, int i)
{
	raft_msg_t m = {.type = RAFT_MSG_TIMEOUT_NOW, .from = 0, .to = (raft_id_t)i,
			.term = raft_term(&c->r[i])};

	/* TIMEOUT_NOW at the node's own term: a forced campaign, no pre-vote, no lease. */
	raft_step(&c->r[i], &m);
	tc_ready(c, i);
	tc_deliver(c, 100000);
}

int tc_leader(tc_t *c)
{
	int best = 0;

	for (int i = 1; i <= c->n; i++)
		if (c->up[i] && raft_role(&c->r[i]) == RAFT_LEADER &&
		    (best == 0 || raft_term(&c->r[i]) > raft_term(&c->r[best])))
			best = i;
	return best;
}

int tc_step(tc_t *c, int i, const raft_msg_t *m)
{
	int rc = raft_step(&c->r[i], m);

	tc_ready(c, i);
	return rc;
}
