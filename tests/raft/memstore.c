#include "tests/raft/memstore.h"

#include <stdlib.h>
#include <string.h>

uint64_t memstore_hash(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;

	/* FNV-1a, 64-bit: enough to tell logs apart in a test. */
	if (h == 0)
		h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static memstore_t *ms_of(void *ctx) { return ctx; }

uint64_t memstore_last(const memstore_t *ms)
{
	return ms->meta.index + ms->n;
}

static uint64_t first_index(void *ctx) { return ms_of(ctx)->meta.index + 1; }
static uint64_t last_index(void *ctx) { return memstore_last(ms_of(ctx)); }

const ms_entry_t *memstore_get(const memstore_t *ms, uint64_t index)
{
	if (index <= ms->meta.index || index > memstore_last(ms))
		return NULL;
	return &ms->ents[index - ms->meta.index - 1];
}

static int term(void *ctx, uint64_t index, uint64_t *t)
{
	memstore_t *ms = ctx;
	const ms_entry_t *e;

	if (index == ms->meta.index) {
		*t = ms->meta.term;
		return 0;
	}
	if (index < ms->meta.index)
		return RAFT_ECOMPACTED;
	if ((e = memstore_get(ms, index)) == NULL)
		return RAFT_EUNAVAIL;
	*t = e->e.term;
	return 0;
}

static int entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes, raft_entry_t *out,
		   size_t cap)
{
	memstore_t *ms = ctx;
	size_t n = 0, bytes = 0;

	if (ms->fail_entries) {
		int rc = ms->fail_entries;

		ms->fail_entries = 0;
		return rc;
	}
	if (lo <= ms->meta.index)
		return RAFT_ECOMPACTED;
	if (hi > memstore_last(ms) + 1)
		return RAFT_EUNAVAIL;
	for (uint64_t i = lo; i < hi && n < cap; i++) {
		const ms_entry_t *e = memstore_get(ms, i);

		if (n > 0 && bytes + e->e.len > max_bytes)
			break;
		out[n++] = e->e;
		bytes += e->e.len;
	}
	return (int)n;
}

static void hard_state(void *ctx, raft_hard_state_t *hs) { *hs = ms_of(ctx)->hs; }
static void snapshot_meta(void *ctx, raft_snapshot_meta_t *m) { *m = ms_of(ctx)->meta; }

static int snapshot_chunk(void *ctx, const raft_snapshot_meta_t *meta, uint64_t offset,
			  size_t max, const void **data, size_t *len, bool *last)
{
	memstore_t *ms = ctx;

	if (meta->index != ms->meta.index || offset > ms->snap_len)
		return RAFT_EINVAL;
	*len = ms->snap_len - offset < max ? ms->snap_len - offset : max;
	*data = ms->snap + offset;
	*last = offset + *len == ms->snap_len;
	return 0;
}

void memstore_init(memstore_t *ms, const raft_conf_t *conf)
{
	memset(ms, 0, sizeof *ms);
	if (conf != NULL)
		ms->meta.conf = *conf;
	ms->st = (raft_storage_t){
		.ctx = ms, .first_index = first_index, .last_index = last_index, .term = term,
		.entries = entries, .hard_state = hard_state, .snapshot_meta = snapshot_meta,
		.snapshot_chunk = snapshot_chunk,
	};
}

static void free_from(memstore_t *ms, size_t k)
{
	for (size_t i = k; i < ms->n; i++)
		free((void *)ms->ents[i].e.data);
	ms->n = k;
}

void memstore_free(memstore_t *ms)
{
	free_from(ms, 0);
	free(ms->ents);
	free(ms->snap);
	ms->ents = NULL;
	ms->snap = NULL;
}

int memstore_append(memstore_t *ms, const raft_entry_t *ents, size_t n)
{
	if (n == 0)
		return 0;
	if (ents[0].index <= ms->meta.index || ents[0].index > memstore_last(ms) + 1)
		return -1;
	free_from(ms, ents[0].index - ms->meta.index - 1);
	for (size_t i = 0; i < n; i++) {
		ms_entry_t *e;
		uint64_t prev;
		void *d = NULL;

		if (ms->n == ms->cap) {
			ms->cap = ms->cap ? ms->cap * 2 : 64;
			ms->ents = realloc(ms->ents, ms->cap * sizeof *ms->ents);
		}
		if (ents[i].len > 0) {
			d = malloc(ents[i].len);
			memcpy(d, ents[i].data, ents[i].len);
		}
		prev = ms->n > 0 ? ms->ents[ms->n - 1].chain : ms->snap_chain;
		e = &ms->ents[ms->n++];
		e->e = ents[i];
		e->e.data = d;
		e->chain = memstore_hash(prev, &ents[i].index, 8);
		e->chain = memstore_hash(e->chain, &ents[i].term, 8);
		e->chain = memstore_hash(e->chain, &ents[i].type, 4);
		e->chain = memstore_hash(e->chain, ents[i].data, ents[i].len);
	}
	return 0;
}

void memstore_bootstrap(memstore_t *ms, uint32_t n)
{
	uint8_t buf[RAFT_MAX_NODES][8];
	raft_entry_t e[RAFT_MAX_NODES];

	for (uint32_t i = 0; i < n; i++) {
		raft_conf_change_encode(buf[i], RAFT_CONF_ADD, i + 1);
		e[i] = (raft_entry_t){.index = i + 1, .term = 1, .type = RAFT_ENTRY_CONF, .len = 8,
				      .data = buf[i]};
	}
	memstore_append(ms, e, n);
	ms->hs = (raft_hard_state_t){.term = 1, .vote = 0, .commit = n};
}

void memstore_compact(memstore_t *ms, uint64_t index, const raft_conf_t *conf,
		      const void *data, size_t len)
{
	size_t k;

	if (index <= ms->meta.index || index > memstore_last(ms))
		return;
	k = index - ms->meta.index;
	ms->snap_chain = ms->ents[k - 1].chain;
	ms->meta.term = ms->ents[k - 1].e.term;
	ms->meta.index = index;
	ms->meta.conf = *conf;
	for (size_t i = 0; i < k; i++)
		free((void *)ms->ents[i].e.data);
	memmove(ms->ents, ms->ents + k, (ms->n - k) * sizeof *ms->ents);
	ms->n -= k;
	free(ms->snap);
	ms->snap = malloc(len ? len : 1);
	memcpy(ms->snap, data, len);
	ms->snap_len = len;
}

void memstore_install(memstore_t *ms, const raft_snapshot_meta_t *meta, uint64_t chain,
		      const void *data, size_t len)
{
	free_from(ms, 0);
	ms->meta = *meta;
	ms->snap_chain = chain;
	free(ms->snap);
	ms->snap = malloc(len ? len : 1);
	memcpy(ms->snap, data, len);
	ms->snap_len = len;
}

bool memstore_chain(const memstore_t *ms, uint64_t index, uint64_t *chain)
{
	const ms_entry_t *e;

	if (index == ms->meta.index) {
		*chain = ms->snap_chain;
		return true;
	}
	if ((e = memstore_get(ms, index)) == NULL)
		return false;
	*chain = e->chain;
	return true;
}
