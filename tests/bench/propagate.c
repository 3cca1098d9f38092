/*
 * propagate: for each write, the time from the publisher's acknowledgement to the value
 * being readable at a (leaf's) gateway.
 *
 *   propagate --servers H:P,... --gateway H:P --bucket B --rate N --seconds S [--conns C]
 *
 * Writes PUT p<seq> at a fixed rate (a 1 ms timer sends what is due) on one pipelined
 * client connection. When a PUT is acknowledged with revision R, at t_ack, it sends
 * GET /kv/p<seq>?bucket=B&min_rev=R&wait_ms=10000 on an idle keep-alive connection to the
 * gateway (a pool of C, default 64); the gateway answers once its node has applied R, at
 * t_read. Latency = t_read - t_ack, which includes one loopback HTTP round trip and the
 * gateway's 1 ms ?min_rev poll (so it over-states propagation by up to ~1.1 ms). A 200 whose
 * body is not the written value counts as an error. Prints:
 *   metric propagation_p50_ms X ms / _p99_ms / _max_ms / writes / errors / late (no free conn)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/client.h"
#include "proto/fstream.h"
#include "proto/proto.h"

#define VAL_LEN 100

typedef struct put {
	kvc_req_t req;
	uint64_t seq;
	char key[24];
	uint8_t val[VAL_LEN];
} put_t;

typedef struct hconn {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	bool busy, up;
	uint64_t seq, t_ack;
	char out[256];
	char in[4096];
	size_t len;
	struct hconn *next_idle;
} hconn_t;

static uv_loop_t *loop;
static kvc_client_t *cli;
static const char *bucket = "c";
static uint64_t rate = 200, seconds = 10, nconns = 64;
static struct sockaddr_storage gw;
static hconn_t *conns, *idle, *idle_tail; /* idle: FIFO, so every connection stays in use
					    * (a gateway times out one never used) */
static uint64_t sent, acked, done, errors, busy_skips;
static uint64_t t_start, *lat, nlat, lat_cap;
static uv_timer_t tick;
static bool finishing;
/* acknowledged but no idle connection: wait in a queue (counted as late) */
typedef struct pend { uint64_t seq, rev, t_ack; } pend_t;
static pend_t *pq;
static size_t pq_head, pq_n, pq_cap;

static void value_of(uint64_t seq, uint8_t *v)
{
	for (int i = 0; i < VAL_LEN; i++)
		v[i] = (uint8_t)('a' + (seq * 31 + (uint64_t)i) % 26);
}

static void maybe_end(void);
static void http_send(hconn_t *h, uint64_t seq, uint64_t rev, uint64_t t_ack);

static void record(uint64_t ns)
{
	if (nlat == lat_cap) {
		lat_cap = lat_cap ? lat_cap * 2 : 65536;
		lat = realloc(lat, lat_cap * sizeof *lat);
		if (lat == NULL)
			abort();
	}
	lat[nlat++] = ns;
}

static void h_alloc(uv_handle_t *hd, size_t sz, uv_buf_t *b)
{
	hconn_t *h = hd->data;

	(void)sz;
	*b = uv_buf_init(h->in + h->len, (unsigned)(sizeof h->in - 1 - h->len));
}

static void h_idle(hconn_t *h)
{
	h->busy = false;
	if (pq_n > 0) {
		pend_t p = pq[pq_head];
		pq_head = (pq_head + 1) % pq_cap;
		pq_n--;
		http_send(h, p.seq, p.rev, p.t_ack);
		return;
	}
	h->next_idle = NULL;
	if (idle_tail)
		idle_tail->next_idle = h;
	else
		idle = h;
	idle_tail = h;
	maybe_end();
}

static void h_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	hconn_t *h = st->data;
	char *hdr_end, *cl;
	size_t blen, hl;
	uint8_t want[VAL_LEN];

	(void)b;
	if (n < 0) {
		fprintf(stderr, "propagate: gateway connection lost: %s\n", uv_strerror((int)n));
		exit(1);
	}
	h->len += (size_t)n;
	h->in[h->len] = '\0';
	if (!h->busy) {
		fprintf(stderr, "propagate: unsolicited bytes from the gateway: %.40s\n", h->in);
		exit(1);
	}
	if ((hdr_end = strstr(h->in, "\r\n\r\n")) == NULL)
		return;
	hl = (size_t)(hdr_end + 4 - h->in);
	cl = strcasestr(h->in, "content-length:");
	blen = cl ? strtoul(cl + 15, NULL, 10) : 0;
	if (h->len < hl + blen)
		return;
	uint64_t now = uv_hrtime();
	value_of(h->seq, want);
	if (strncmp(h->in, "HTTP/1.1 200", 12) != 0 || blen != VAL_LEN ||
	    memcmp(h->in + hl, want, VAL_LEN) != 0) {
		errors++;
		if (errors < 5)
			fprintf(stderr, "propagate: p%08" PRIu64 ": %.40s\n", h->seq, h->in);
	} else {
		record(now - h->t_ack);
	}
	done++;
	memmove(h->in, h->in + hl + blen, h->len - hl - blen);
	h->len -= hl + blen;
	h_idle(h);
}

static void h_wrote(uv_write_t *w, int status)
{
	if (status < 0) {
		fprintf(stderr, "propagate: gateway write: %s\n", uv_strerror(status));
		exit(1);
	}
	(void)w;
}

static void http_send(hconn_t *h, uint64_t seq, uint64_t rev, uint64_t t_ack)
{
	int n = snprintf(h->out, sizeof h->out,
			 "GET /kv/p%08" PRIu64 "?bucket=%s&min_rev=%" PRIu64 "&wait_ms=10000 HTTP/1.1\r\n"
			 "Host: gw\r\n\r\n", seq, bucket, rev);
	uv_buf_t b = uv_buf_init(h->out, (unsigned)n);

	h->busy = true;
	h->seq = seq;
	h->t_ack = t_ack;
	h->wreq.data = h;
	uv_write(&h->wreq, (uv_stream_t *)&h->tcp, &b, 1, h_wrote);
}

static void put_cb(kvc_req_t *req, int status, const kvc_resp_t *resp)
{
	put_t *p = req->data;
	uint64_t now = uv_hrtime();
	proto_write_resp_t wr;

	acked++;
	if (status != 0 || proto_write_resp_decode(resp->body, resp->len, PROTO_OP_PUT, &wr) != 0) {
		errors++;
		done++;
		if (errors < 5)
			fprintf(stderr, "propagate: put p%08" PRIu64 ": %s\n", p->seq, geokv_strerror(status));
		free(p);
		maybe_end();
		return;
	}
	if (idle != NULL) {
		hconn_t *h = idle;
		if ((idle = h->next_idle) == NULL)
			idle_tail = NULL;
		http_send(h, p->seq, wr.rev, now);
	} else {
		busy_skips++;
		if (pq_n == pq_cap) {
			size_t nc = pq_cap ? pq_cap * 2 : 1024;
			pend_t *q = malloc(nc * sizeof *q);
			for (size_t i = 0; i < pq_n; i++)
				q[i] = pq[(pq_head + i) % pq_cap];
			free(pq);
			pq = q;
			pq_head = 0;
			pq_cap = nc;
		}
		pq[(pq_head + pq_n) % pq_cap] = (pend_t){p->seq, wr.rev, now};
		pq_n++;
	}
	free(p);
}

static void send_put(void)
{
	put_t *p = calloc(1, sizeof *p);
	proto_op_t op = {.op = PROTO_OP_PUT};

	p->seq = sent++;
	snprintf(p->key, sizeof p->key, "p%08" PRIu64, p->seq);
	value_of(p->seq, p->val);
	p->req.data = p;
	op.bucket = (proto_bytes_t){(const uint8_t *)bucket, (uint32_t)strlen(bucket)};
	op.key = (proto_bytes_t){(const uint8_t *)p->key, (uint32_t)strlen(p->key)};
	op.value = (proto_bytes_t){p->val, VAL_LEN};
	if (kvc_send(cli, &p->req, &op, 0, put_cb) != 0) {
		errors++;
		done++;
		acked++;
		free(p);
	}
}

static void on_tick(uv_timer_t *t)
{
	uint64_t el = uv_hrtime() - t_start, due = el * rate / 1000000000ull;

	(void)t;
	if (el >= seconds * 1000000000ull) {
		uv_timer_stop(&tick);
		finishing = true;
		maybe_end();
		return;
	}
	while (sent < due)
		send_put();
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(double q)
{
	size_t i;

	if (nlat == 0)
		return 0;
	i = (size_t)(q * (double)(nlat - 1) + 0.5);
	return (double)lat[i] / 1e6;
}

static void maybe_end(void)
{
	if (!finishing || done < sent)
		return;
	qsort(lat, nlat, sizeof *lat, cmp);
	printf("metric propagation_writes %" PRIu64 " count\n", sent);
	printf("metric propagation_errors %" PRIu64 " count\n", errors);
	printf("metric propagation_queued %" PRIu64 " count\n", busy_skips);
	printf("metric propagation_p50_ms %.3f ms\n", pct(0.50));
	printf("metric propagation_p99_ms %.3f ms\n", pct(0.99));
	printf("metric propagation_max_ms %.3f ms\n", nlat ? (double)lat[nlat - 1] / 1e6 : 0.0);
	fflush(stdout);
	exit(errors ? 1 : 0);
}

static void h_connected(uv_connect_t *r, int status)
{
	hconn_t *h = r->data;

	if (status < 0) {
		fprintf(stderr, "propagate: cannot connect to the gateway: %s\n", uv_strerror(status));
		exit(1);
	}
	uv_tcp_nodelay(&h->tcp, 1);
	uv_read_start((uv_stream_t *)&h->tcp, h_alloc, h_read);
	h->up = true;
	h->next_idle = NULL;
	if (idle_tail)
		idle_tail->next_idle = h;
	else
		idle = h;
	idle_tail = h;
	for (uint64_t i = 0; i < nconns; i++)
		if (!conns[i].up)
			return;
	t_start = uv_hrtime();
	uv_timer_start(&tick, on_tick, 1, 1);
}

int main(int argc, char **argv)
{
	const char *servers = NULL, *gwaddr = NULL, *cluster = NULL;
	kvc_opts_t o = {0};

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--servers")) servers = argv[i + 1];
		else if (!strcmp(argv[i], "--gateway")) gwaddr = argv[i + 1];
		else if (!strcmp(argv[i], "--bucket")) bucket = argv[i + 1];
		else if (!strcmp(argv[i], "--rate")) rate = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--seconds")) seconds = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--conns")) nconns = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--cluster")) cluster = argv[i + 1];
		else {
			fprintf(stderr, "propagate: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!servers || !gwaddr || rate == 0 || nconns == 0 ||
	    proto_fs_parse_addr(gwaddr, &gw, NULL, 0) != 0) {
		fprintf(stderr, "usage: propagate --servers H:P,... --gateway H:P [--bucket B] "
				"[--rate N] [--seconds S] [--conns C] [--cluster ID]\n");
		return 2;
	}
	loop = uv_default_loop();
	o.cluster = cluster;
	o.max_inflight = 65536;
	if (kvc_client_new(loop, servers, &o, &cli) != 0)
		return 1;
	uv_timer_init(loop, &tick);
	conns = calloc(nconns, sizeof *conns);
	for (uint64_t i = 0; i < nconns; i++) {
		uv_tcp_init(loop, &conns[i].tcp);
		conns[i].tcp.data = conns[i].creq.data = &conns[i];
		uv_tcp_connect(&conns[i].creq, &conns[i].tcp, (struct sockaddr *)&gw, h_connected);
	}
	return uv_run(loop, UV_RUN_DEFAULT);
}
