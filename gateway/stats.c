/*
 * Per-worker counters. Each worker thread is the only writer of its gw_stats_t (plain
 * load+store, no locked instruction on the hot path); /metrics, on any worker, sums them.
 */
#include "gateway/gw.h"

#include <string.h>

/* Latency buckets in seconds and in microseconds (the histogram's integer unit). */
static const double lat_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const uint64_t lat_bounds_us[] = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
					 50000, 100000, 250000, 500000, 1000000, 2500000,
					 5000000, 10000000};

int gw_status_idx(int status)
{
	switch (status) {
	case 200: return GW_S200;
	case 304: return GW_S304;
	case 400: return GW_S400;
	case 404: return GW_S404;
	case 405: return GW_S405;
	case 408: return GW_S408;
	case 413: return GW_S413;
	case 414: return GW_S414;
	case 429: return GW_S429;
	case 431: return GW_S431;
	case 503: return GW_S503;
	case 504: return GW_S504;
	default: return GW_S500;
	}
}

void gw_stats_init(gw_stats_t *s)
{
	memset(s, 0, sizeof *s);
	proto_metrics_hist_init(&s->latency, lat_bounds, lat_bounds_us,
				(int)(sizeof lat_bounds / sizeof lat_bounds[0]), 1e6);
}

void gw_stats_request(gw_stats_t *s, enum gw_route r, int status, uint64_t t_start_ns)
{
	proto_metrics_inc(&s->req[r][gw_status_idx(status)], 1);
	if (t_start_ns != 0) {
		uint64_t now = gw_now_ns();
		proto_metrics_hist_observe(&s->latency, now > t_start_ns ? (now - t_start_ns) / 1000 : 0);
	}
}
