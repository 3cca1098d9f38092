/*
 * Prometheus text writer (proto/metrics.h).
 */
#include "proto/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void proto_metrics_buf_init(proto_metrics_buf_t *b) { memset(b, 0, sizeof *b); }

void proto_metrics_buf_reset(proto_metrics_buf_t *b)
{
	b->len = 0;
	b->err = 0;
}

void proto_metrics_buf_free(proto_metrics_buf_t *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static bool reserve(proto_metrics_buf_t *b, size_t need)
{
	size_t cap;
	char *p;

	if (b->err != 0)
		return false;
	if (b->len + need + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + need + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->err = -ENOMEM;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

__attribute__((format(printf, 2, 3)))
static void append(proto_metrics_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!reserve(b, 128))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = -EINVAL;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (!reserve(b, (size_t)n + 1))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void proto_metrics_family(proto_metrics_buf_t *b, const char *name, const char *type,
			  const char *help)
{
	append(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *lb(const char *labels, char *buf, size_t cap)
{
	if (labels == NULL || labels[0] == '\0')
		return "";
	snprintf(buf, cap, "{%s}", labels);
	return buf;
}

void proto_metrics_u64(proto_metrics_buf_t *b, const char *name, const char *labels, uint64_t v)
{
	char l[512];
	append(b, "%s%s %" PRIu64 "\n", name, lb(labels, l, sizeof l), v);
}

static void fmt_f64(char *out, size_t cap, double v)
{
	if (isnan(v))
		snprintf(out, cap, "NaN");
	else if (isinf(v))
		snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
	else
		snprintf(out, cap, "%.15g", v);
}

void proto_metrics_f64(proto_metrics_buf_t *b, const char *name, const char *labels, double v)
{
	char l[512], num[40];
	fmt_f64(num, sizeof num, v);
	append(b, "%s%s %s\n", name, lb(labels, l, sizeof l), num);
}

char *proto_metrics_label(char *dst, size_t cap, const char *value)
{
	size_t n = 0;

	if (cap == 0)
		return dst;
	for (const char *s = value; *s != '\0'; s++) {
		const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
		size_t k = esc ? 2 : 1;
		if (n + k >= cap)
			break;
		if (esc) {
			memcpy(dst + n, esc, 2);
		} else {
			dst[n] = *s;
		}
		n += k;
	}
	dst[n] = '\0';
	return dst;
}

void proto_metrics_hist_init(proto_metrics_hist_t *h, const double *bounds,
			     const uint64_t *bounds_units, int n, double scale)
{
	memset(h, 0, sizeof *h);
	h->bounds = bounds;
	h->bounds_units = bounds_units;
	h->n = n > PROTO_METRICS_MAX_BUCKETS ? PROTO_METRICS_MAX_BUCKETS : n;
	h->scale = scale;
}

void proto_metrics_hist_observe(proto_metrics_hist_t *h, uint64_t v)
{
	int i = 0;

	/* Linear scan: ~12 buckets, predictable branches, cheaper than a search here. */
	while (i < h->n && v > h->bounds_units[i])
		i++;
	proto_metrics_inc(&h->counts[i], 1);
	proto_metrics_inc(&h->sum_units, v);
	proto_metrics_inc(&h->count, 1);
}

void proto_metrics_hist_add(proto_metrics_hist_t *acc, const proto_metrics_hist_t *h)
{
	for (int i = 0; i <= h->n && i <= PROTO_METRICS_MAX_BUCKETS; i++)
		proto_metrics_inc(&acc->counts[i], proto_metrics_get(&h->counts[i]));
	proto_metrics_inc(&acc->sum_units, proto_metrics_get(&h->sum_units));
	proto_metrics_inc(&acc->count, proto_metrics_get(&h->count));
}

void proto_metrics_hist_write(proto_metrics_buf_t *b, const char *name, const char *labels,
			      const proto_metrics_hist_t *h)
{
	char l[512], num[40];
	const char *sep = (labels != NULL && labels[0] != '\0') ? "," : "";
	const char *lab = labels ? labels : "";
	uint64_t cum = 0, count = proto_metrics_get(&h->count);

	for (int i = 0; i < h->n; i++) {
		cum += proto_metrics_get(&h->counts[i]);
		fmt_f64(num, sizeof num, h->bounds[i]);
		append(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, lab, sep, num, cum);
	}
	cum += proto_metrics_get(&h->counts[h->n]);
	/* A scrape racing the owner thread may see count and buckets a step apart; Prometheus
	 * requires +Inf == _count, so both print the bucket total. */
	(void)count;
	append(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, lab, sep, cum);
	fmt_f64(num, sizeof num, (double)proto_metrics_get(&h->sum_units) / h->scale);
	append(b, "%s_sum%s %s\n", name, lb(labels, l, sizeof l), num);
	append(b, "%s_count%s %" PRIu64 "\n", name, lb(labels, l, sizeof l), cum);
}
