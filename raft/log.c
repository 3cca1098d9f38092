/*
 * The log as the core sees it: the driver's storage (persisted prefix) followed by the
 * unstable suffix (entries appended since the last raft_advance, not yet persisted).
 *
 * Invariants:
 *   - unstable entries u[0..n_u) have consecutive indexes from u_offset; they supersede any
 *     stored entry at the same index (a follower truncation is only carried out by the driver
 *     when it persists the Ready, so storage may still hold stale entries >= u_offset);
 *   - a pending snapshot (has_snap) supersedes the whole stored log: nothing below or at
 *     snap.index is readable, and nothing stored above it is either;
 *   - everything unstable is handed out in one Ready and persisted before raft_advance, so
 *     raft__log_stable() empties the unstable part and the arena at once: the arena is a bump
 *     allocator reset every cycle, never a ring, and never grows.
 */
#include <stdlib.h>
#include <string.h>

#include "raft/raft_int.h"

int raft__log_init(raft__log_t *l, raft_storage_t *st, uint32_t cap_entries, size_t cap_bytes)
{
	memset(l, 0, sizeof *l);
	l->st = st;
	l->cap_u = cap_entries;
	l->arena_cap = cap_bytes;
	l->u = calloc(cap_entries, sizeof *l->u);
	l->arena = malloc(cap_bytes);
	if (l->u == NULL || l->arena == NULL) {
		raft__log_close(l);
		return RAFT_ENOMEM;
	}
	l->st_last = st->last_index(st->ctx);
	l->u_offset = l->st_last + 1;
	return 0;
}

void raft__log_close(raft__log_t *l)
{
	free(l->u);
	free(l->arena);
	l->u = NULL;
	l->arena = NULL;
}

uint64_t raft__log_first(const raft__log_t *l)
{
	if (l->has_snap)
		return l->snap.index + 1;
	return l->st->first_index(l->st->ctx);
}

uint64_t raft__log_last(const raft__log_t *l)
{
	if (l->n_u > 0)
		return l->u_offset + l->n_u - 1;
	if (l->has_snap)
		return l->snap.index;
	return l->st_last;
}

int raft__log_term(const raft__log_t *l, uint64_t index, uint64_t *term)
{
	if (l->n_u > 0 && index >= l->u_offset) {
		if (index - l->u_offset >= l->n_u)
			return RAFT_EUNAVAIL;
		*term = l->u[index - l->u_offset].term;
		return 0;
	}
	if (l->has_snap) {
		if (index == l->snap.index) {
			*term = l->snap.term;
			return 0;
		}
		return index < l->snap.index ? RAFT_ECOMPACTED : RAFT_EUNAVAIL;
	}
	/* Stored entries at or past u_offset are stale (truncated, not yet deleted). */
	if (index > l->st_last || index >= l->u_offset)
		return RAFT_EUNAVAIL;
	return l->st->term(l->st->ctx, index, term);
}

uint64_t raft__log_last_term(const raft__log_t *l)
{
	uint64_t t = 0;

	(void)raft__log_term(l, raft__log_last(l), &t);
	return t;
}

int raft__log_slice(const raft__log_t *l, uint64_t lo, uint64_t hi, size_t max_bytes,
		    raft_entry_t *out, size_t cap)
{
	size_t n = 0, bytes = 0;
	uint64_t last = raft__log_last(l);

	if (hi > last + 1)
		hi = last + 1;
	if (lo >= hi || cap == 0)
		return 0;
	if (lo < raft__log_first(l))
		return RAFT_ECOMPACTED;
	if (!l->has_snap && lo < l->u_offset) {
		uint64_t shi = hi < l->u_offset ? hi : l->u_offset;
		int rc = l->st->entries(l->st->ctx, lo, shi, max_bytes, out, cap);

		if (rc < 0)
			return rc;
		n = (size_t)rc;
		for (size_t i = 0; i < n; i++)
			bytes += out[i].len;
		/* Storage stopped early (bytes or cap): the batch ends here. */
		if (n == 0 || lo + n < shi || bytes >= max_bytes)
			return (int)n;
		lo += n;
	}
	while (lo < hi && n < cap) {
		const raft_entry_t *e = &l->u[lo - l->u_offset];

		if (n > 0 && bytes + e->len > max_bytes)
			break;
		out[n++] = *e;
		bytes += e->len;
		lo++;
	}
	return (int)n;
}

void *raft__log_alloc(raft__log_t *l, size_t len)
{
	/* 8-byte alignment keeps any struct a driver may overlay on entry data aligned. */
	size_t at = (l->arena_used + 7) & ~(size_t)7;

	if (len > l->arena_cap || at > l->arena_cap - len)
		return NULL;
	l->arena_used = at + len;
	return l->arena + at;
}

static int push(raft__log_t *l, uint64_t term, uint32_t type, const void *data, size_t len)
{
	void *p;

	if (l->n_u == l->cap_u)
		return RAFT_EBUSY;
	if (len > UINT32_MAX)
		return RAFT_ETOOBIG;
	p = raft__log_alloc(l, len);
	if (p == NULL)
		return len > l->arena_cap / 2 ? RAFT_ETOOBIG : RAFT_EBUSY;
	if (len > 0)
		memcpy(p, data, len);
	if (l->n_u == 0)
		l->u_offset = raft__log_last(l) + 1;
	l->u[l->n_u] = (raft_entry_t){
		.index = l->u_offset + l->n_u, .term = term, .type = type,
		.len = (uint32_t)len, .data = len > 0 ? p : NULL,
	};
	l->n_u++;
	return 0;
}

int raft__log_append_one(raft__log_t *l, uint64_t term, uint32_t type, const void *data,
			 size_t len)
{
	return push(l, term, type, data, len);
}

/*
 * Replace the log from ents[0].index on with ents (the caller has checked that the
 * entries before ents[0] match and that ents[0].index > commit). Returns how many were
 * appended: fewer than n when the arena or entry array is full, which the caller reports
 * as a shorter match (the leader sends the rest again).
 */
int raft__log_truncate_append(raft__log_t *l, const raft_entry_t *ents, size_t n)
{
	uint64_t at = ents[0].index;
	size_t i, need = (l->arena_used + 7) & ~(size_t)7;

	/* Refuse before truncating when not even the first entry fits: a log cut short
	 * without a replacement would misreport its last index. */
	if (ents[0].len > l->arena_cap || need > l->arena_cap - ents[0].len)
		return 0;
	if (l->n_u == l->cap_u && !(at >= l->u_offset && at - l->u_offset < l->n_u))
		return 0;

	if (l->n_u > 0 && at >= l->u_offset) {
		uint32_t keep = (uint32_t)(at - l->u_offset);

		/* The arena is not rolled back: a snapshot chunk handed out in this cycle
		 * may sit after the dropped entries. The space returns at advance. */
		if (keep < l->n_u)
			l->n_u = keep;
	} else {
		/* Truncating into the persisted part (or appending right after it):
		 * nothing unstable survives; the driver deletes stored entries >= at. */
		l->n_u = 0;
	}
	if (l->n_u == 0)
		l->u_offset = at;
	for (i = 0; i < n; i++) {
		void *p;

		if (l->n_u == l->cap_u)
			break;
		p = raft__log_alloc(l, ents[i].len);
		if (p == NULL)
			break;
		if (ents[i].len > 0)
			memcpy(p, ents[i].data, ents[i].len);
		l->u[l->n_u] = ents[i];
		l->u[l->n_u].data = ents[i].len > 0 ? p : NULL;
			l->n_u++;
	}
	return (int)i;
}

void raft__log_stable(raft__log_t *l)
{
	uint64_t last = raft__log_last(l);

	l->st_last = last;
	l->n_u = 0;
	l->u_offset = last + 1;
	l->arena_used = 0;
	l->has_snap = false;
}

void raft__log_restore(raft__log_t *l, const raft_snapshot_meta_t *meta)
{
	l->has_snap = true;
	l->snap = *meta;
	l->n_u = 0;
	l->u_offset = meta->index + 1;
	/* The arena keeps the chunk being handed out with this snapshot: no reset here. */
}
