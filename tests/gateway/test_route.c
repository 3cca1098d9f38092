/* Percent-decoding, routing and If-None-Match (gateway/route.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "gateway/gw.h"

static int route(const char *url, gw_target_t *t) { return gw_route_parse(url, strlen(url), t); }

Test(gw_pct, decodes_escapes_in_either_case)
{
	char out[16];
	size_t n;
	cr_assert_eq(gw_pct_decode("a%2Fb%2fc", 9, out, sizeof out, &n), 0);
	cr_assert_eq(n, 5);
	cr_assert(memcmp(out, "a/b/c", 5) == 0);
}

Test(gw_pct, rejects_truncated_and_non_hex_escapes)
{
	char out[16];
	size_t n;
	cr_assert_eq(gw_pct_decode("a%2", 3, out, sizeof out, &n), -EINVAL);
	cr_assert_eq(gw_pct_decode("a%", 2, out, sizeof out, &n), -EINVAL);
	cr_assert_eq(gw_pct_decode("%g1", 3, out, sizeof out, &n), -EINVAL);
}

Test(gw_pct, refuses_output_longer_than_capacity)
{
	char out[4];
	size_t n;
	cr_assert_eq(gw_pct_decode("abcde", 5, out, sizeof out, &n), -E2BIG);
	cr_assert_eq(gw_pct_decode("abcd", 4, out, sizeof out, &n), 0);
}

Test(gw_route, kv_key_is_decoded_and_validated)
{
	gw_target_t t;
	cr_assert_eq(route("/kv/a%2Fb.c", &t), 0);
	cr_assert_eq(t.route, GW_R_KV);
	cr_assert_eq(t.key_len, 5);
	cr_assert(memcmp(t.key, "a/b.c", 5) == 0);
	cr_assert_eq(route("/kv/.hidden", &t), 400);
	cr_assert_eq(route("/kv/", &t), 400);
	cr_assert_eq(route("/kv/a%00b", &t), 400);
	cr_assert_eq(route("/kv/a b", &t), 400);
	cr_assert_eq(route("/kv/a+b", &t), 400);
}

Test(gw_route, key_of_1024_bytes_ok_1025_rejected)
{
	static char url[1100];
	gw_target_t t;
	strcpy(url, "/kv/");
	memset(url + 4, 'k', 1024);
	url[4 + 1024] = '\0';
	cr_assert_eq(route(url, &t), 0);
	url[4 + 1024] = 'k';
	url[4 + 1025] = '\0';
	cr_assert_eq(route(url, &t), 400);
}

Test(gw_route, fixed_routes_and_unknown_paths)
{
	gw_target_t t;
	cr_assert_eq(route("/healthz", &t), 0);
	cr_assert_eq(t.route, GW_R_HEALTHZ);
	cr_assert_eq(route("/readyz?x=1", &t), 0);
	cr_assert_eq(t.route, GW_R_READYZ);
	cr_assert_eq(route("/livez", &t), 0);
	cr_assert_eq(t.route, GW_R_LIVEZ);
	cr_assert_eq(route("/metrics", &t), 0);
	cr_assert_eq(t.route, GW_R_METRICS);
	cr_assert_eq(route("/healthzz", &t), 0);
	cr_assert_eq(t.route, GW_R_OTHER);
	cr_assert_eq(route("/kv", &t), 0);
	cr_assert_eq(t.route, GW_R_OTHER);
}

Test(gw_route, query_bucket_min_rev_wait_and_unknown_ignored)
{
	gw_target_t t;
	cr_assert_eq(route("/kv/k?_=123&bucket=b-1&min_rev=42&wait_ms=7&x", &t), 0);
	cr_assert_eq(t.bucket_len, 3);
	cr_assert(memcmp(t.bucket, "b-1", 3) == 0);
	cr_assert(t.has_min_rev && t.min_rev == 42);
	cr_assert(t.has_wait && t.wait_ms == 7);
	cr_assert_eq(route("/kv/k?bucket=a.b", &t), 400);
	cr_assert_eq(route("/kv/k?min_rev=-1", &t), 400);
	cr_assert_eq(route("/kv/k?min_rev=99999999999999999999", &t), 400);
	cr_assert_eq(route("/kv/k?min_rev=18446744073709551615", &t), 0);
	cr_assert_eq(route("/kv/k?wait_ms=", &t), 400);
}

Test(gw_inm, weak_lists_and_star)
{
	cr_assert(gw_inm_match("\"5\"", 3, 5));
	cr_assert(gw_inm_match("W/\"5\"", 5, 5));
	cr_assert(gw_inm_match("\"1\", W/\"2\" ,\"5\"", 16, 5));
	cr_assert(gw_inm_match("*", 1, 77));
	cr_assert_not(gw_inm_match("\"55\"", 4, 5));
	cr_assert_not(gw_inm_match("5", 1, 5));
	cr_assert_not(gw_inm_match("\"5", 2, 5));
	cr_assert_not(gw_inm_match("", 0, 5));
	cr_assert(gw_inm_match("\"0\"", 3, 0));
}

/* Which listener serves what: the metrics listener only /metrics, the public one /metrics
 * only with metrics_on_public; anything not served is a plain 404 route. */
Test(gw_route, restrict_by_listener)
{
	gw_target_t t;
	int rc;

	rc = route("/metrics", &t);
	gw_route_restrict(&t, &rc, false, false);
	cr_assert(rc == 0 && t.route == GW_R_OTHER, "public port served /metrics by default");
	rc = route("/metrics", &t);
	gw_route_restrict(&t, &rc, false, true);
	cr_assert(rc == 0 && t.route == GW_R_METRICS);
	rc = route("/metrics?x=1", &t);
	gw_route_restrict(&t, &rc, true, false);
	cr_assert(rc == 0 && t.route == GW_R_METRICS);
	rc = route("/healthz", &t);
	gw_route_restrict(&t, &rc, false, false);
	cr_assert(rc == 0 && t.route == GW_R_HEALTHZ);
	rc = route("/healthz", &t);
	gw_route_restrict(&t, &rc, true, true);
	cr_assert(rc == 0 && t.route == GW_R_OTHER);
	rc = route("/kv/.bad", &t); /* a 400 on the public port is a 404 on the metrics one */
	cr_assert_eq(rc, 400);
	gw_route_restrict(&t, &rc, true, false);
	cr_assert(rc == 0 && t.route == GW_R_OTHER && t.err == NULL);
	rc = route("/kv/.bad", &t);
	gw_route_restrict(&t, &rc, false, false);
	cr_assert_eq(rc, 400);
}
