/*
 * Prometheus text exposition format (version 0.0.4) writer, shared by every daemon's
 * /metrics.
 *
 * What it is: a growable text buffer and functions that append HELP/TYPE lines, samples
 * and histograms to it, plus a fixed-bucket histogram the hot path updates without
 * allocation. A scrape resets the buffer (keeping its memory) and writes everything again, so
 * after the first scrape nothing is allocated unless the text grows.
 *
 * What it is not: a registry. Callers keep their own counters (plain or atomic integers, per
 * thread) and sum them at scrape time; this only formats.
 *
 * Labels are passed preformatted (`route="kv",status="200"`), because they are almost always
 * constants; proto_metrics_label() escapes a value that is not.
 *
 * Thread rules: a proto_metrics_buf_t belongs to one thread. proto_metrics_hist_t is updated
 * by one thread and may be read by another (fields are updated with relaxed atomics).
 * Errors: out of memory sets buf->err (-ENOMEM) once; later appends are dropped; the caller
 * checks buf->err before serving the text.
 */
#ifndef GEOKV_PROTO_METRICS_H
#define GEOKV_PROTO_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct proto_metrics_buf {
	char *p;
	size_t len, cap;
	int err;
} proto_metrics_buf_t;

void proto_metrics_buf_init(proto_metrics_buf_t *b);
void proto_metrics_buf_reset(proto_metrics_buf_t *b); /* len = 0, keeps memory, clears err */
void proto_metrics_buf_free(proto_metrics_buf_t *b);

/* "# HELP name help\n# TYPE name type\n"; type is "counter", "gauge" or "histogram". */
void proto_metrics_family(proto_metrics_buf_t *b, const char *name, const char *type,
			  const char *help);
/* "name{labels} value\n"; labels may be NULL or "". */
void proto_metrics_u64(proto_metrics_buf_t *b, const char *name, const char *labels, uint64_t v);
void proto_metrics_f64(proto_metrics_buf_t *b, const char *name, const char *labels, double v);

/* Append `value` escaped for a label value (\\, \", \n) to dst (cap bytes, NUL-terminated,
 * truncated if needed). Returns dst. */
char *proto_metrics_label(char *dst, size_t cap, const char *value);

/* ---- histograms ---------------------------------------------------------------------- */

#define PROTO_METRICS_MAX_BUCKETS 24

/*
 * Fixed upper bounds (ascending, in the unit of the metric, e.g. seconds) and counts per
 * bucket (not cumulative: cumulated when written). `sum` is kept in integer units of
 * 1/scale so that observing stays integer arithmetic: observe(v_units) with v = v_units/scale.
 */
typedef struct proto_metrics_hist {
	const double *bounds;            /* n bounds, not owned */
	const uint64_t *bounds_units;    /* same bounds in units (bounds[i] * scale) */
	int n;
	double scale;                    /* units per metric unit, e.g. 1e6 for us -> seconds */
	_Atomic uint64_t counts[PROTO_METRICS_MAX_BUCKETS + 1]; /* last: above every bound */
	_Atomic uint64_t sum_units;
	_Atomic uint64_t count;
} proto_metrics_hist_t;

/* bounds_units[i] must equal bounds[i] * scale (the caller keeps both tables static). */
void proto_metrics_hist_init(proto_metrics_hist_t *h, const double *bounds,
			     const uint64_t *bounds_units, int n, double scale);
/* One observation, in units; called only by the owning thread (no locked instructions). */
void proto_metrics_hist_observe(proto_metrics_hist_t *h, uint64_t v_units);
/* Add h's counts into acc (same bounds): to sum per-thread histograms before writing. */
void proto_metrics_hist_add(proto_metrics_hist_t *acc, const proto_metrics_hist_t *h);
/* name_bucket{labels,le="..."} cumulative lines, +Inf, name_sum, name_count. */
void proto_metrics_hist_write(proto_metrics_buf_t *b, const char *name, const char *labels,
			      const proto_metrics_hist_t *h);

/* Single-writer counter increment without a locked instruction (plain load + store). */
static inline void proto_metrics_inc(_Atomic uint64_t *c, uint64_t by)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
			      memory_order_relaxed);
}
static inline uint64_t proto_metrics_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

#endif
