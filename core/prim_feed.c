/*
 * geokv-primary's leaf feed (core/prim_feed.h): serves the committed part of the raft log.
 *
 * What a leaf is sent: every entry up to this member's applied index (committed and in its
 * log, so a follower serves as well as the leader), with the primary's entry envelope
 * (origin node, proposal seq: only the proposing member uses it) stripped, so NORMAL data is
 * exactly what kv_apply consumes and is the same whichever member sends it. NOOP and CONF
 * entries go out without data: a leaf needs their index, not their content.
 */
#include "core/prim_feed.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proto/feed.h"
#include "core/nodestat.h"
#include "proto/log.h"

/* As in core/primary.c: u8 magic, u32 origin, u64 seq before the proto_entry_t. */
#define ENV_MAGIC 0x81
#define ENV_LEN   13

static struct {
	prim_t *p;
	kv_feed_t *f;
	kv_log_rtxn_t t;
	char snap_dir[1200];
} g;

static uint64_t src_served(void *ctx)
{
	prim_t *p = ctx;
	uint64_t a = prim__applied(p), last = kv_log_last_index(p->log);

	return a < last ? a : last;
}

static uint64_t src_first(void *ctx) { return kv_log_first_index(((prim_t *)ctx)->log); }

struct ent_ctx {
	kv_feed_entry_cb cb;
	void *cbctx;
};

static int ent_cb(void *ctx, const kv_log_entry_t *e)
{
	struct ent_ctx *x = ctx;
	const uint8_t *d = e->data;
	size_t len = e->len;
	uint8_t type = e->type;

	if (type == KV_LOG_NORMAL) {
		if (len > ENV_LEN && d[0] == ENV_MAGIC) {
			d += ENV_LEN;
			len -= ENV_LEN;
		}
		if (len == 0)
			type = PROTO_FEED_NOOP;
	} else {
		type = type == KV_LOG_CONF ? PROTO_FEED_CONF : PROTO_FEED_NOOP;
		len = 0;
	}
	return x->cb(x->cbctx, e->index, e->term, type, d, len);
}

static int src_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
		       kv_feed_entry_cb cb, void *cbctx)
{
	prim_t *p = ctx;
	struct ent_ctx x = {cb, cbctx};
	int rc;

	if (lo < kv_log_first_index(p->log))
		return KV_ENOTFOUND;
	if ((rc = kv_log_read_begin(p->log, &g.t)) != 0)
		return rc;
	rc = kv_log_entries(&g.t, lo, hi, max_bytes, ent_cb, &x, NULL);
	kv_log_read_end(&g.t);
	if (rc > 0)
		rc = 0; /* the callback stopped: frame full */
	return rc;
}

static int src_term(void *ctx, uint64_t index, uint64_t *term)
{
	prim_t *p = ctx;
	int rc;

	if (index == 0) {
		*term = 0;
		return KV_ENOTFOUND;
	}
	if ((rc = kv_log_read_begin(p->log, &g.t)) != 0)
		return rc;
	rc = kv_log_term(&g.t, index, term);
	kv_log_read_end(&g.t);
	return rc == 0 ? 0 : KV_ENOTFOUND;
}

static void src_beat(void *ctx, uint64_t *commit, uint64_t *leader_time_ms, uint64_t *term)
{
	prim_t *p = ctx;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	*commit = raft_commit(&p->raft);
	*leader_time_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	*term = raft_term(&p->raft);
}

static kv_store_t *src_store(void *ctx) { return ((prim_t *)ctx)->store; }

/* A member that knows no live leader (partitioned away, an election running) is not fed
 * itself: its leaves hear silence and move to a member that is (check-quorum makes a cut-off
 * leader step down, so it goes quiet too). */
static bool src_fresh(void *ctx)
{
	prim_t *p = ctx;

	return raft_leader(&p->raft) != 0 && !p->stopping && !p->repairing;
}

int prim__feed_start(prim_t *p)
{
	const prim_config_t *c = p->cfg;
	kv_feed_opts_t o = {0};
	kv_feed_src_t s = {.ctx = p, .served = src_served, .first = src_first,
			   .entries = src_entries, .term = src_term, .beat = src_beat,
			   .store = src_store, .fresh = src_fresh};
	int rc;

	if (c->feed_listen[0] == '\0')
		return 0;
	g.p = p;
	snprintf(g.snap_dir, sizeof g.snap_dir, "%s/raft", c->data);
	o.listen = c->feed_listen;
	o.tls = p->tls;
	o.cluster_id = c->cluster_id;
	o.token = c->token;
	o.token_len = c->token_len;
	o.node_id = c->node_id;
	o.snap_dir = g.snap_dir;
	o.max_out = c->feed_max_out;
	if ((rc = kv_feed_start(&g.f, p->loop, &o, &s)) != 0)
		GK_ERROR("primary", "cannot start the leaf feed", "listen=%s err=\"%s\"",
			 c->feed_listen, geokv_strerror(rc));
	return rc;
}

void prim__feed_notify(prim_t *p)
{
	(void)p;
	kv_feed_notify(g.f);
}

void prim__feed_store_closing(prim_t *p)
{
	(void)p;
	kv_feed_store_closing(g.f);
}

void prim__feed_close(prim_t *p)
{
	(void)p;
	kv_feed_close(g.f);
	g.f = NULL;
	if (g.t.l)
		kv_log_read_close(&g.t);
}

size_t prim__feed_leaves(prim_t *p, kv_feed_leaf_t *out, size_t cap)
{
	(void)p;
	return kv_feed_leaves(g.f, out, cap);
}

void prim__feed_metrics(prim_t *p, proto_metrics_buf_t *b)
{
	(void)p;
	kv_feed_metrics(g.f, b, "geokv_primary");
}

void prim__feed_status(prim_t *p, proto_status_t *st)
{
	static kv_feed_leaf_t lv[PROTO_MAX_LEAVES];
	uint64_t now = kv_nodestat_now_ms();
	size_t n = kv_feed_leaves(g.f, lv, PROTO_MAX_LEAVES);

	(void)p;
	st->nleaves = (uint8_t)n;
	for (size_t i = 0; i < n; i++) {
		proto_leaf_info_t *l = &st->leaves[i];
		l->id = lv[i].id;
		l->flags = lv[i].connected ? PROTO_LEAF_CONNECTED : 0;
		l->applied = lv[i].applied;
		l->lag_ms = lv[i].lag_ms;
		l->contact_age_ms = now > lv[i].contact_ms ? now - lv[i].contact_ms : 0;
		l->name = (proto_bytes_t){(const uint8_t *)lv[i].name, (uint32_t)strlen(lv[i].name)};
	}
}
