/*
 * Output staging (gateway/gw.h, gw_out_t).
 *
 * Why stage: a TLS record costs a header, a tag and a cipher call; a write(2) costs a
 * syscall. Pipelined keep-alive clients send many requests per read, so their answers are
 * gathered here and leave as one record and one write when the read is processed (or when
 * the staging fills). Big values skip the copy: staged bytes are flushed, then the value goes
 * from the LMDB map straight into the TLS record (or the socket) inside the read txn.
 */
#include "gateway/gw.h"

#include <string.h>

int gw_out_flush(gw_out_t *o)
{
	if (o->len > 0 && o->err == 0) {
		int rc = o->flush(o->ctx, o->p, o->len);
		if (rc != 0)
			o->err = rc;
	}
	o->len = 0;
	return o->err;
}

void gw_out_put(gw_out_t *o, const void *p, size_t n)
{
	const char *s = p;

	o->bytes += n;
	while (n > 0) {
		size_t room = o->cap - o->len;
		if (room == 0) {
			gw_out_flush(o);
			continue;
		}
		size_t k = n < room ? n : room;
		memcpy(o->p + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
	}
}

void gw_out_str(gw_out_t *o, const char *s) { gw_out_put(o, s, strlen(s)); }

void gw_out_u64(gw_out_t *o, uint64_t v)
{
	char b[24];
	size_t i = sizeof b;

	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	gw_out_put(o, b + i, sizeof b - i);
}

void gw_out_big(gw_out_t *o, const void *p, size_t n)
{
	if (n <= GW_OUT_BIG || n <= o->cap - o->len) {
		gw_out_put(o, p, n);
		return;
	}
	gw_out_flush(o);
	o->bytes += n;
	if (o->err == 0) {
		int rc = o->flush(o->ctx, p, n);
		if (rc != 0)
			o->err = rc;
	}
}
