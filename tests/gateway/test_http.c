/* Request parsing and limits (gateway/http.c), fed byte by byte and in one piece. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "gateway/gw.h"

static gw_limits_t lim = {.max_header_bytes = 1024, .max_uri = 200, .max_headers = 8,
			  .max_body = 16};

static void feed(gw_http_t *h, const char *s, size_t n)
{
	size_t avail;
	char *p = gw_http_space(h, &avail);
	cr_assert_geq(avail, n);
	memcpy(p, s, n);
	gw_http_commit(h, n);
}

Test(gw_http, one_request_fields)
{
	gw_http_t h;
	gw_req_t r;
	const char *s = "GET /kv/a?b=1 HTTP/1.1\r\nHost: x\r\nIF-NONE-MATCH: \"7\"\r\n\r\n";
	cr_assert_eq(gw_http_init(&h, &lim), 0);
	feed(&h, s, strlen(s));
	cr_assert_eq(gw_http_next(&h, &r), GW_HTTP_REQ);
	cr_assert_eq(r.method, HTTP_GET);
	cr_assert(r.keep_alive);
	cr_assert_eq(r.url_len, 9);
	cr_assert(memcmp(r.url, "/kv/a?b=1", 9) == 0);
	cr_assert_eq(r.inm_len, 3);
	cr_assert(memcmp(r.inm, "\"7\"", 3) == 0);
	gw_http_done(&h);
	cr_assert_eq(gw_http_next(&h, &r), GW_HTTP_MORE);
	cr_assert_not(gw_http_partial(&h));
	gw_http_free(&h);
}

Test(gw_http, byte_by_byte_pipelined_in_order)
{
	gw_http_t h;
	gw_req_t r;
	const char *s = "GET /kv/one HTTP/1.1\r\nIf-None-Match: \"1\"\r\n\r\n"
			"HEAD /kv/two HTTP/1.1\r\n\r\nGET /kv/three HTTP/1.0\r\n\r\n";
	const char *want[] = {"/kv/one", "/kv/two", "/kv/three"};
	int got = 0;
	cr_assert_eq(gw_http_init(&h, &lim), 0);
	for (size_t i = 0; i < strlen(s); i++) {
		feed(&h, s + i, 1);
		while (gw_http_next(&h, &r) == GW_HTTP_REQ) {
			cr_assert_lt(got, 3);
			cr_assert_eq(r.url_len, strlen(want[got]));
			cr_assert(memcmp(r.url, want[got], r.url_len) == 0);
			cr_assert_eq(r.inm != NULL, got == 0);
			cr_assert_eq(r.keep_alive, got != 2, "HTTP/1.0 without keep-alive closes");
			got++;
			gw_http_done(&h);
		}
	}
	cr_assert_eq(got, 3);
	gw_http_free(&h);
}

static int status_of(const char *s, size_t n)
{
	gw_http_t h;
	gw_req_t r;
	int rc, st;
	cr_assert_eq(gw_http_init(&h, &lim), 0);
	feed(&h, s, n);
	rc = gw_http_next(&h, &r);
	st = rc == GW_HTTP_ERROR ? h.err_status : rc == GW_HTTP_REQ ? 200 : 0;
	gw_http_free(&h);
	return st;
}

Test(gw_http, uri_over_limit_is_414)
{
	char s[512];
	int n = snprintf(s, sizeof s, "GET /kv/%0250d HTTP/1.1\r\n\r\n", 0);
	cr_assert_eq(status_of(s, (size_t)n), 414);
}

Test(gw_http, header_bytes_over_limit_is_431_complete_or_not)
{
	char s[2048];
	int n = snprintf(s, sizeof s, "GET /kv/a HTTP/1.1\r\nX: %01100d\r\n\r\n", 0);
	cr_assert_eq(status_of(s, (size_t)n), 431);
	cr_assert_eq(status_of(s, 1090), 431, "partial headers over the limit");
}

Test(gw_http, header_count_over_limit_is_431)
{
	const char *s = "GET /kv/a HTTP/1.1\r\na:1\r\nb:1\r\nc:1\r\nd:1\r\ne:1\r\nf:1\r\ng:1\r\nh:1\r\ni:1\r\n\r\n";
	cr_assert_eq(status_of(s, strlen(s)), 431);
	const char *ok = "GET /kv/a HTTP/1.1\r\na:1\r\nb:1\r\nc:1\r\nd:1\r\ne:1\r\nf:1\r\ng:1\r\nh:1\r\n\r\n";
	cr_assert_eq(status_of(ok, strlen(ok)), 200);
}

Test(gw_http, body_over_limit_is_413_small_body_ok)
{
	const char *big = "GET /kv/a HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
	cr_assert_eq(status_of(big, strlen(big)), 413);
	const char *chunked = "GET /kv/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "20\r\n0123456789abcdef0123456789abcdef\r\n0\r\n\r\n";
	cr_assert_eq(status_of(chunked, strlen(chunked)), 413);
	const char *small = "GET /kv/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
	cr_assert_eq(status_of(small, strlen(small)), 200);
}

Test(gw_http, garbage_is_400)
{
	cr_assert_eq(status_of("\x01\x02 / HTTP/1.1\r\n\r\n", 18), 400);
	cr_assert_eq(status_of("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 30), 400);
}

Test(gw_http, reset_forgets_partial_request)
{
	gw_http_t h;
	gw_req_t r;
	cr_assert_eq(gw_http_init(&h, &lim), 0);
	feed(&h, "GET /kv/a HT", 12);
	cr_assert_eq(gw_http_next(&h, &r), GW_HTTP_MORE);
	cr_assert(gw_http_partial(&h));
	gw_http_reset(&h);
	feed(&h, "GET /kv/b HTTP/1.1\r\n\r\n", 22);
	cr_assert_eq(gw_http_next(&h, &r), GW_HTTP_REQ);
	cr_assert(memcmp(r.url, "/kv/b", 5) == 0);
	gw_http_free(&h);
}
