/*
 * libFuzzer target for the gateway's request path without TLS: bytes are split into reads
 * at fuzzer-chosen points, parsed (llhttp + limits), routed (percent-decoding, key rules,
 * query), and answered into a staging buffer. The store is absent (kv answers 503), so the
 * whole path up to the lookup runs with no disk.
 */
#include <stdint.h>
#include <string.h>

#include "gateway/gw.h"

static int sink(void *ctx, const void *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static gw_config_t cfg;
	static gw_http_t h;
	static bool init;
	static char outbuf[4096];
	static gw_stats_t stats;
	static proto_metrics_buf_t mbuf;
	static kv_rtxn_t rtxn;
	static bool rtxn_open;
	gw_out_t o = {.p = outbuf, .cap = sizeof outbuf, .flush = sink};
	gw_ctx_t x;
	gw_req_t r;
	gw_target_t t;
	size_t pos = 0;
	uint8_t split;

	if (!init) {
		gw_config_defaults(&cfg);
		cfg.lim.max_header_bytes = 2048;
		cfg.lim.max_uri = 1500;
		cfg.lim.max_headers = 16;
		cfg.lim.max_body = 64;
		gw_stats_init(&stats);
		proto_metrics_buf_init(&mbuf);
		if (gw_http_init(&h, &cfg.lim) != 0)
			return 0;
		init = true;
	}
	if (size == 0)
		return 0;
	split = data[0];
	data++;
	size--;
	memset(&x, 0, sizeof x);
	x.cfg = &cfg;
	x.rtxn = &rtxn;
	x.rtxn_open = &rtxn_open;
	x.stats = &stats;
	x.mbuf = &mbuf;
	x.date = "";
	gw_http_reset(&h);
	while (pos < size) {
		size_t avail, n = split ? (size_t)split : size;
		char *p = gw_http_space(&h, &avail);
		if (n > size - pos)
			n = size - pos;
		if (n > avail)
			n = avail;
		if (n == 0)
			break;
		memcpy(p, data + pos, n);
		gw_http_commit(&h, n);
		pos += n;
		for (;;) {
			int rc = gw_http_next(&h, &r);
			if (rc == GW_HTTP_MORE)
				break;
			if (rc == GW_HTTP_ERROR) {
				gw_respond_error(&x, &o, h.err_status, h.err_reason, true);
				return 0;
			}
			uint64_t wait = 0;
			bool close;
			int route_rc = gw_route_parse(r.url, r.url_len, &t);
			int st = gw_respond(&x, &r, &t, route_rc, &o, 0, &wait, &close);
			if (st < 100 && st != GW_WAIT)
				__builtin_trap();
			gw_http_done(&h);
			if (close)
				return 0;
		}
	}
	return 0;
}
