/*
 * Writes the fuzz seed corpus: every sample into tests/proto/corpus/<target>/<name>.
 * Run by hand after changing the wire format (`build/tests/proto/gen_corpus tests/proto/corpus`)
 * and commit the result; the fuzz tests read the committed files.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/proto.h"
#include "samples.h"

static const char *target_of(enum sample_kind k)
{
	switch (k) {
	case SK_HELLO: return "hello";
	case SK_HELLO_OK: return "hello_ok";
	case SK_ERROR: return "error";
	case SK_OP: return "op";
	case SK_ENTRY: return "entry";
	default: return "resp";
	}
}

static int put(const char *root, const char *target, const char *name, const void *p,
	       size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", root, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
	if ((f = fopen(path, "wb")) == NULL)
		return -1;
	fwrite(p, 1, len, f);
	return fclose(f);
}

int main(int argc, char **argv)
{
	static sample_t s[64];
	uint8_t buf[8192];
	size_t n = samples_build(s, 64);

	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	mkdir(argv[1], 0755);
	for (size_t i = 0; i < n; i++) {
		const char *t = target_of(s[i].kind);
		if (strcmp(t, "resp") == 0) {
			/* the resp target picks the decoder by its first byte */
			buf[0] = (uint8_t)s[i].kind;
			memcpy(buf + 1, s[i].buf, s[i].len);
			if (put(argv[1], t, s[i].name, buf, s[i].len + 1))
				return 1;
		} else if (put(argv[1], t, s[i].name, s[i].buf, s[i].len)) {
			return 1;
		}
		/* hdr: the payload framed, as a REQ (ops) or RESP */
		proto_hdr_t h = {(uint32_t)s[i].len, s[i].kind == SK_OP ? PROTO_T_REQ : PROTO_T_RESP,
				 0, i + 1};
		proto_hdr_encode(buf, &h);
		memcpy(buf + PROTO_HDR_LEN, s[i].buf, s[i].len);
		if (put(argv[1], "hdr", s[i].name, buf, PROTO_HDR_LEN + s[i].len))
			return 1;
	}
	return 0;
}
