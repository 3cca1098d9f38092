/*
 * Request targets: which route, which key, which query parameters.
 *
 * Keys arrive percent-encoded in the path ("/kv/a%2Fb" is the key "a/b"; a literal '/' is
 * also a valid key character, so "/kv/a/b" is the same key). The decoded key must pass the
 * store's key rules (proto_key_valid); the check happens here so that an invalid key is a 400
 * without a store lookup. Query parameters other than bucket, min_rev and wait_ms are
 * ignored, so cache-busting parameters added by load balancers do no harm.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int gw_pct_decode(const char *s, size_t n, char *out, size_t cap, size_t *outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= n)
				return -EINVAL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (o >= cap)
			return -E2BIG;
		out[o++] = c;
	}
	*outlen = o;
	return 0;
}

static bool eq(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n == l && memcmp(s, lit, l) == 0;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int bad(gw_target_t *t, const char *why)
{
	t->err = why;
	return 400;
}

static int parse_query(const char *q, size_t n, gw_target_t *t)
{
	size_t i = 0;

	while (i < n) {
		const char *p = q + i;
		const char *amp = memchr(p, '&', n - i);
		size_t plen = amp ? (size_t)(amp - p) : n - i;
		const char *eqs = memchr(p, '=', plen);
		size_t nlen = eqs ? (size_t)(eqs - p) : plen;
		const char *v = eqs ? eqs + 1 : p + plen;
		size_t vlen = eqs ? plen - nlen - 1 : 0;

		if (eq(p, nlen, "bucket")) {
			if (gw_pct_decode(v, vlen, t->bucket, sizeof t->bucket, &t->bucket_len) != 0 ||
			    !proto_bucket_valid(t->bucket, t->bucket_len))
				return bad(t, "invalid bucket");
		} else if (eq(p, nlen, "min_rev")) {
			if (parse_u64(v, vlen, &t->min_rev) != 0)
				return bad(t, "invalid min_rev");
			t->has_min_rev = true;
		} else if (eq(p, nlen, "wait_ms")) {
			if (parse_u64(v, vlen, &t->wait_ms) != 0)
				return bad(t, "invalid wait_ms");
			t->has_wait = true;
		}
		i += plen + 1;
	}
	return 0;
}

int gw_route_parse(const char *url, size_t len, gw_target_t *t)
{
	const char *q = memchr(url, '?', len);
	size_t plen = q ? (size_t)(q - url) : len;
	static const char kv[] = "/kv/";

	t->route = GW_R_OTHER;
	t->key_len = t->bucket_len = 0;
	t->has_min_rev = t->has_wait = false;
	t->min_rev = t->wait_ms = 0;
	t->err = NULL;

	if (plen >= sizeof kv - 1 && memcmp(url, kv, sizeof kv - 1) == 0) {
		t->route = GW_R_KV;
		int rc = gw_pct_decode(url + 4, plen - 4, t->key, sizeof t->key, &t->key_len);
		if (rc == -E2BIG)
			return bad(t, "key too long");
		if (rc != 0)
			return bad(t, "invalid percent-encoding");
		if (!proto_key_valid(t->key, t->key_len))
			return bad(t, "invalid key");
	} else if (eq(url, plen, "/healthz")) {
		t->route = GW_R_HEALTHZ;
	} else if (eq(url, plen, "/readyz")) {
		t->route = GW_R_READYZ;
	} else if (eq(url, plen, "/livez")) {
		t->route = GW_R_LIVEZ;
	} else if (eq(url, plen, "/metrics")) {
		t->route = GW_R_METRICS;
	} else {
		return 0; /* 404 */
	}
	if (q != NULL)
		return parse_query(q + 1, len - plen - 1, t);
	return 0;
}

void gw_route_restrict(gw_target_t *t, int *rc, bool metrics_port, bool metrics_on_public)
{
	bool is_metrics = t->route == GW_R_METRICS;

	if (metrics_port ? !is_metrics : is_metrics && !metrics_on_public) {
		t->route = GW_R_OTHER;
		t->err = NULL;
		*rc = 0;
	}
}

/*
 * RFC 9110 If-None-Match: "*" or a comma list of entity tags, each optionally W/-prefixed;
 * weak comparison, so W/"5" matches our "5". Anything unparsable does not match (the client
 * then simply gets the 200).
 */
bool gw_inm_match(const char *v, size_t n, uint64_t rev)
{
	char want[24];
	size_t wl = 0;
	uint64_t r = rev;
	size_t i = 0;

	do {
		want[wl++] = (char)('0' + r % 10);
		r /= 10;
	} while (r != 0);
	for (size_t a = 0, b = wl - 1; a < b; a++, b--) {
		char c = want[a];
		want[a] = want[b];
		want[b] = c;
	}
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		if (i >= n)
			break;
		if (v[i] == '*')
			return true;
		if (i + 1 < n && v[i] == 'W' && v[i + 1] == '/')
			i += 2;
		if (i >= n || v[i] != '"')
			return false;
		size_t s = ++i;
		while (i < n && v[i] != '"')
			i++;
		if (i >= n)
			return false;
		if (i - s == wl && memcmp(v + s, want, wl) == 0)
			return true;
		i++;
	}
	return false;
}
