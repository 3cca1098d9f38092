/*
 * `geokv load` input: a byte source that undoes gzip or zstd compression (chosen by the
 * stream's magic bytes, not its name), and a line reader over it with a bounded line length.
 *
 * Memory is bounded whatever the input: one raw buffer, one decompressed buffer, and a line
 * buffer that grows only up to the maximum line length the caller sets (a longer line is
 * reported and skipped, never buffered whole).
 */
#include "proto/cli_load.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define RAW_CAP  (1u << 20)
#define OUT_CAP  (1u << 20)

struct load_src {
	FILE *f;
	bool own;
	int codec;                 /* LOAD_CODEC_* */
	uint8_t *raw;              /* compressed input */
	size_t raw_len, raw_off;
	bool raw_eof;
	uint64_t raw_total;        /* raw bytes consumed from the file (progress) */
	z_stream z;
	bool z_init, z_end;        /* gzip member finished */
	ZSTD_DStream *zs;
	uint8_t *out;              /* decompressed, for the line reader */
	size_t out_len, out_off;
	bool eof;
	int err;                   /* sticky: -errno, or LOAD_EDATA (corrupt compressed input) */
	/* lines */
	char *line;
	size_t line_cap, max_line;
	uint64_t lineno;
};

static int raw_fill(load_src_t *s)
{
	if (s->raw_off < s->raw_len || s->raw_eof)
		return 0;
	s->raw_len = fread(s->raw, 1, RAW_CAP, s->f);
	s->raw_off = 0;
	s->raw_total += s->raw_len;
	if (s->raw_len == 0) {
		if (ferror(s->f))
			return s->err = -(errno ? errno : EIO);
		s->raw_eof = true;
	}
	return 0;
}

int load_src_open(load_src_t **out, const char *path, size_t max_line)
{
	load_src_t *s = calloc(1, sizeof *s);

	if (!s)
		return -ENOMEM;
	if (strcmp(path, "-") == 0) {
		s->f = stdin;
	} else if ((s->f = fopen(path, "rb")) == NULL) {
		int e = -errno;
		free(s);
		return e;
	} else {
		s->own = true;
	}
	s->raw = malloc(RAW_CAP);
	s->out = malloc(OUT_CAP);
	s->max_line = max_line;
	if (!s->raw || !s->out) {
		load_src_close(s);
		return -ENOMEM;
	}
	/* the magic bytes decide, so `zcat`-less pipes and misnamed files both work */
	if (raw_fill(s) != 0) {
		int e = s->err;
		load_src_close(s);
		return e;
	}
	if (s->raw_len >= 2 && s->raw[0] == 0x1f && s->raw[1] == 0x8b) {
		s->codec = LOAD_CODEC_GZIP;
		if (inflateInit2(&s->z, 15 + 16) != Z_OK) {
			load_src_close(s);
			return -ENOMEM;
		}
		s->z_init = true;
	} else if (s->raw_len >= 4 && s->raw[0] == 0x28 && s->raw[1] == 0xb5 && s->raw[2] == 0x2f &&
		   s->raw[3] == 0xfd) {
		s->codec = LOAD_CODEC_ZSTD;
		if ((s->zs = ZSTD_createDStream()) == NULL) {
			load_src_close(s);
			return -ENOMEM;
		}
		ZSTD_initDStream(s->zs);
	}
	*out = s;
	return 0;
}

void load_src_close(load_src_t *s)
{
	if (!s)
		return;
	if (s->z_init)
		inflateEnd(&s->z);
	if (s->zs)
		ZSTD_freeDStream(s->zs);
	if (s->own && s->f)
		fclose(s->f);
	free(s->raw);
	free(s->out);
	free(s->line);
	free(s);
}

int load_src_codec(const load_src_t *s) { return s->codec; }

uint64_t load_src_raw_bytes(const load_src_t *s)
{
	return s->raw_total - (s->raw_len - s->raw_off);
}

int64_t load_src_size(const load_src_t *s)
{
	struct stat st;

	if (fstat(fileno(s->f), &st) != 0 || !S_ISREG(st.st_mode))
		return -1;
	return (int64_t)st.st_size;
}

/* Refill s->out with decompressed bytes. 0 (s->eof at the end) or the sticky error. */
static int out_fill(load_src_t *s)
{
	s->out_off = s->out_len = 0;
	while (s->out_len == 0 && !s->eof) {
		if (raw_fill(s) != 0)
			return s->err;
		size_t avail = s->raw_len - s->raw_off;
		if (s->codec == LOAD_CODEC_NONE) {
			if (s->raw_eof) {
				s->eof = true;
				break;
			}
			memcpy(s->out, s->raw + s->raw_off, avail);
			s->out_len = avail;
			s->raw_off = s->raw_len;
		} else if (s->codec == LOAD_CODEC_GZIP) {
			if (s->raw_eof && avail == 0) {
				if (!s->z_end)
					return s->err = LOAD_EDATA; /* truncated gzip */
				s->eof = true;
				break;
			}
			if (s->z_end) {
				/* concatenated members (`cat a.gz b.gz`) are one stream, as gzip -d says */
				if (inflateReset(&s->z) != Z_OK)
					return s->err = LOAD_EDATA;
				s->z_end = false;
			}
			s->z.next_in = s->raw + s->raw_off;
			s->z.avail_in = (uInt)avail;
			s->z.next_out = s->out;
			s->z.avail_out = OUT_CAP;
			int zr = inflate(&s->z, Z_NO_FLUSH);
			s->raw_off = s->raw_len - s->z.avail_in;
			s->out_len = OUT_CAP - s->z.avail_out;
			if (zr == Z_STREAM_END)
				s->z_end = true;
			else if (zr != Z_OK && !(zr == Z_BUF_ERROR && s->out_len))
				return s->err = LOAD_EDATA;
		} else {
			if (s->raw_eof && avail == 0) {
				s->eof = true;
				break;
			}
			ZSTD_inBuffer in = {s->raw + s->raw_off, avail, 0};
			ZSTD_outBuffer o = {s->out, OUT_CAP, 0};
			size_t zr = ZSTD_decompressStream(s->zs, &o, &in);
			if (ZSTD_isError(zr))
				return s->err = LOAD_EDATA;
			s->raw_off += in.pos;
			s->out_len = o.pos;
			if (s->raw_eof && s->raw_off == s->raw_len && o.pos == 0 && zr != 0)
				return s->err = LOAD_EDATA; /* truncated frame */
		}
	}
	return 0;
}

/*
 * The next line, without its "\n" or "\r\n". Returns 1 with *p, *len (valid until the next
 * call), 0 at the end, LOAD_ELONG for a line over max_line (skipped; *len is its length so
 * far, lineno names it), or an error.
 */
int load_src_line(load_src_t *s, char **p, size_t *len)
{
	size_t n = 0;
	bool toolong = false;

	if (s->err)
		return s->err;
	for (;;) {
		if (s->out_off == s->out_len) {
			if (out_fill(s) != 0)
				return s->err;
			if (s->eof && s->out_len == 0) {
				if (n == 0 && !toolong)
					return 0;
				break; /* a last line without "\n" */
			}
		}
		uint8_t *a = s->out + s->out_off;
		size_t avail = s->out_len - s->out_off;
		uint8_t *nl = memchr(a, '\n', avail);
		size_t take = nl ? (size_t)(nl - a) : avail;
		if (!toolong && n + take > s->max_line)
			toolong = true;
		if (!toolong) {
			if (n + take + 1 > s->line_cap) {
				size_t cap = s->line_cap ? s->line_cap : 4096;
				while (cap < n + take + 1)
					cap *= 2;
				char *q = realloc(s->line, cap);
				if (!q)
					return s->err = -ENOMEM;
				s->line = q;
				s->line_cap = cap;
			}
			memcpy(s->line + n, a, take);
		}
		n += take;
		s->out_off += take + (nl ? 1 : 0);
		if (nl)
			break;
	}
	s->lineno++;
	if (toolong) {
		*len = n;
		return LOAD_ELONG;
	}
	if (n && s->line[n - 1] == '\r')
		n--;
	s->line[n] = 0;
	*p = s->line;
	*len = n;
	return 1;
}

uint64_t load_src_lineno(const load_src_t *s) { return s->lineno; }
