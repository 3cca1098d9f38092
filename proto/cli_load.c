/*
 * `geokv load BUCKET FILE|-`: bulk PUTs through the client's pipelined loader.
 *
 * Input (docs/cli.md "load"): NDJSON ({"key","value"} or "value_b64"), CSV (RFC 4180, quoted
 * fields may span lines) or TSV, by --format or by the file's extension (.ndjson/.jsonl/.json,
 * .csv, .tsv), else chosen per line by its first non-blank byte ('{' = JSON, else TSV);
 * --key-field/--value-field pick other fields or columns; gzip or zstd input is undone by
 * magic bytes (cli_load_input.c). Every line is validated before it is sent (parse, key
 * rules, the bucket's max value) and a bad one is reported as FILE:LINE: reason.
 *
 * Stop rule: more than --max-errors bad lines (default 0; --skip-bad = no limit) stop the load
 * after flushing and waiting for everything read before, so the summary is exact and every
 * key it counts is acknowledged (durable). A batch the server refuses stops it too. The
 * first line not acknowledged is exact (kvc_load_stats_t.first_unacked) and a checkpoint
 * file (--checkpoint) records the line up to which every line is acknowledged, for --resume.
 *
 * Memory is bounded whatever the input: the input module's buffers, one line (at most
 * max_line), and the loader's window of batches.
 */
#include "proto/cli_load.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct span {
	size_t off, len;
} span_t;

typedef struct parser {
	int fmt;                  /* LOAD_FMT_*; AUTO = per line */
	const char *kname, *vname;/* JSON field names / CSV-TSV header names (NULL = by column) */
	int kcol, vcol;           /* CSV/TSV 1-based columns; vcol 0 in TSV = rest of the line */
	bool header;              /* the first record is a header: resolve names, then skip */
	char vb64[80];            /* "<value field>_b64" */
	size_t max_value;
	/* scratch, reused line to line */
	json_t *root;
	char *owned;              /* compact JSON text of a non-string value */
	uint8_t *bin;             /* decoded base64 */
	size_t bin_cap;
	char *fbuf;               /* unescaped CSV fields */
	size_t fbuf_cap;
	span_t *f;
	size_t nf, f_cap;
} parser_t;

enum { P_OK = 0, P_BAD = -1, P_MORE = 1, P_SKIP = 2 };

static void parser_reset(parser_t *ps)
{
	if (ps->root)
		json_decref(ps->root);
	ps->root = NULL;
	free(ps->owned);
	ps->owned = NULL;
}

static void parser_free(parser_t *ps)
{
	parser_reset(ps);
	free(ps->bin);
	free(ps->fbuf);
	free(ps->f);
}

static int fmt_by_name(const char *path)
{
	char b[512];
	size_t n = snprintf(b, sizeof b, "%s", path);

	if (n >= sizeof b)
		return LOAD_FMT_AUTO;
	/* the compression suffix says nothing of the records */
	const char *zs[] = {".gz", ".zst", ".zstd"};
	for (size_t i = 0; i < 3; i++) {
		size_t l = strlen(zs[i]);
		if (n > l && strcmp(b + n - l, zs[i]) == 0)
			b[n -= l] = 0;
	}
	const char *dot = strrchr(b, '.');
	if (!dot || strchr(dot, '/'))
		return LOAD_FMT_AUTO;
	if (!strcmp(dot, ".ndjson") || !strcmp(dot, ".jsonl") || !strcmp(dot, ".json"))
		return LOAD_FMT_NDJSON;
	if (!strcmp(dot, ".csv"))
		return LOAD_FMT_CSV;
	if (!strcmp(dot, ".tsv") || !strcmp(dot, ".tab"))
		return LOAD_FMT_TSV;
	return LOAD_FMT_AUTO;
}


/* ---- NDJSON ------------------------------------------------------------------------------ */

static int parse_json(parser_t *ps, char *p, size_t len, const char **k, size_t *kl,
		      const char **v, size_t *vl, char *why, size_t wl)
{
	json_error_t err;
	json_t *jk, *jv, *jb;
	const char *kn = ps->kname ? ps->kname : "key", *vn = ps->vname ? ps->vname : "value";

	ps->root = json_loadb(p, len, 0, &err);
	if (!ps->root) {
		snprintf(why, wl, "invalid JSON at column %d: %s", err.column, err.text);
		return P_BAD;
	}
	if (!json_is_object(ps->root)) {
		snprintf(why, wl, "expected a JSON object");
		return P_BAD;
	}
	jk = json_object_get(ps->root, kn);
	jv = json_object_get(ps->root, vn);
	jb = json_object_get(ps->root, ps->vb64);
	if (!json_is_string(jk)) {
		snprintf(why, wl, "JSON object needs a string \"%s\"", kn);
		return P_BAD;
	}
	*k = json_string_value(jk);
	*kl = json_string_length(jk);
	if (jv && jb) {
		snprintf(why, wl, "both \"%s\" and \"%s\"", vn, ps->vb64);
		return P_BAD;
	}
	if (jb) {
		const char *s = json_string_value(jb);
		size_t sl = json_string_length(jb), out = 0;
		if (!s) {
			snprintf(why, wl, "\"%s\" must be a base64 string", ps->vb64);
			return P_BAD;
		}
		if (sl / 4 * 3 + 3 > ps->bin_cap) {
			uint8_t *nb = realloc(ps->bin, sl / 4 * 3 + 3);
			if (!nb) {
				snprintf(why, wl, "out of memory");
				return P_BAD;
			}
			ps->bin = nb;
			ps->bin_cap = sl / 4 * 3 + 3;
		}
		if (mbedtls_base64_decode(ps->bin, ps->bin_cap, &out, (const unsigned char *)s, sl)) {
			snprintf(why, wl, "\"%s\" is not valid base64", ps->vb64);
			return P_BAD;
		}
		*v = (const char *)ps->bin;
		*vl = out;
		return P_OK;
	}
	if (!jv) {
		snprintf(why, wl, "JSON object needs a \"%s\" (or \"%s\")", vn, ps->vb64);
		return P_BAD;
	}
	if (json_is_string(jv)) {
		*v = json_string_value(jv);
		*vl = json_string_length(jv);
		return P_OK;
	}
	/* any other JSON value is stored as its compact text */
	if (!(ps->owned = json_dumps(jv, JSON_COMPACT | JSON_ENCODE_ANY))) {
		snprintf(why, wl, "cannot encode \"%s\"", vn);
		return P_BAD;
	}
	*v = ps->owned;
	*vl = strlen(ps->owned);
	return P_OK;
}

/* ---- CSV and TSV ------------------------------------------------------------------------- */

static int add_field(parser_t *ps, size_t off, size_t len)
{
	if (ps->nf == ps->f_cap) {
		size_t cap = ps->f_cap ? ps->f_cap * 2 : 16;
		span_t *nf = realloc(ps->f, cap * sizeof *nf);
		if (!nf)
			return -1;
		ps->f = nf;
		ps->f_cap = cap;
	}
	ps->f[ps->nf++] = (span_t){off, len};
	return 0;
}

/*
 * Split one CSV record (RFC 4180: ',' separated, '"' quoted with "" for a quote; a quoted
 * field may hold ',' and newlines) into ps->f spans over ps->fbuf. P_MORE when a quoted
 * field is still open at the end (the caller appends the next line and calls again).
 */
static int split_csv(parser_t *ps, const char *p, size_t len, char *why, size_t wl)
{
	size_t i = 0, o = 0;

	if (len + 1 > ps->fbuf_cap) {
		char *nb = realloc(ps->fbuf, len + 1);
		if (!nb)
			return P_BAD;
		ps->fbuf = nb;
		ps->fbuf_cap = len + 1;
	}
	ps->nf = 0;
	for (;;) {
		size_t start = o;
		if (i < len && p[i] == '"') {
			i++;
			for (;;) {
				if (i >= len)
					return P_MORE;
				if (p[i] == '"') {
					if (i + 1 < len && p[i + 1] == '"') {
						ps->fbuf[o++] = '"';
						i += 2;
						continue;
					}
					i++;
					break;
				}
				ps->fbuf[o++] = p[i++];
			}
			if (i < len && p[i] != ',') {
				snprintf(why, wl, "CSV: text after a closing quote at column %zu", i + 1);
				return P_BAD;
			}
		} else {
			while (i < len && p[i] != ',')
				ps->fbuf[o++] = p[i++];
		}
		if (add_field(ps, start, o - start) != 0)
			return P_BAD;
		if (i >= len)
			return P_OK;
		i++; /* the ',' */
	}
}

static int split_tsv(parser_t *ps, const char *p, size_t len)
{
	size_t s = 0;

	ps->fbuf = ps->fbuf ? ps->fbuf : NULL;
	ps->nf = 0;
	for (size_t i = 0; i <= len; i++)
		if (i == len || p[i] == '\t') {
			if (add_field(ps, s, i - s) != 0)
				return P_BAD;
			s = i + 1;
		}
	return P_OK;
}

/* The header record: turn --key-field/--value-field names into columns. */
static int resolve_header(parser_t *ps, const char *base, char *why, size_t wl)
{
	const char *names[2] = {ps->kname, ps->vname};
	int *cols[2] = {&ps->kcol, &ps->vcol};

	for (int j = 0; j < 2; j++) {
		if (!names[j])
			continue;
		*cols[j] = 0;
		for (size_t i = 0; i < ps->nf; i++)
			if (ps->f[i].len == strlen(names[j]) &&
			    memcmp(base + ps->f[i].off, names[j], ps->f[i].len) == 0) {
				*cols[j] = (int)i + 1;
				break;
			}
		if (!*cols[j]) {
			snprintf(why, wl, "no column \"%s\" in the header", names[j]);
			return P_BAD;
		}
	}
	ps->header = false;
	return P_SKIP;
}

static int parse_cols(parser_t *ps, int fmt, char *p, size_t len, const char **k, size_t *kl,
		      const char **v, size_t *vl, char *why, size_t wl)
{
	int rc;
	const char *base;

	if (fmt == LOAD_FMT_TSV && !ps->header && ps->kcol == 1 && ps->vcol == 0) {
		/* the classic shape: key, TAB, the rest of the line is the value */
		char *tab = memchr(p, '\t', len);
		if (!tab) {
			snprintf(why, wl, "expected key<TAB>value%s", ps->fmt == LOAD_FMT_AUTO ?
				 " or a JSON object" : "");
			return P_BAD;
		}
		*k = p;
		*kl = (size_t)(tab - p);
		*v = tab + 1;
		*vl = len - *kl - 1;
		return P_OK;
	}
	if (fmt == LOAD_FMT_CSV) {
		if ((rc = split_csv(ps, p, len, why, wl)) != P_OK)
			return rc;
		base = ps->fbuf;
	} else {
		if ((rc = split_tsv(ps, p, len)) != P_OK)
			return rc;
		base = p;
	}
	if (ps->header)
		return resolve_header(ps, base, why, wl);
	int need = ps->kcol > ps->vcol ? ps->kcol : ps->vcol;
	if ((int)ps->nf < need) {
		snprintf(why, wl, "%zu field%s, the %s is column %d", ps->nf, ps->nf == 1 ? "" : "s",
			 ps->kcol == need ? "key" : "value", need);
		return P_BAD;
	}
	*k = base + ps->f[ps->kcol - 1].off;
	*kl = ps->f[ps->kcol - 1].len;
	if (ps->vcol == 0) { /* TSV with a header or named key: the rest after the key's TAB */
		*v = base + ps->f[ps->kcol - 1].off + ps->f[ps->kcol - 1].len;
		*vl = (size_t)(p + len - *v);
		if (*vl) {
			(*v)++;
			(*vl)--;
		}
	} else {
		*v = base + ps->f[ps->vcol - 1].off;
		*vl = ps->f[ps->vcol - 1].len;
	}
	return P_OK;
}

/* One record: P_OK with key/value (valid until the next call), P_BAD with why, P_MORE (CSV
 * record continues on the next line), P_SKIP (a header). */
static int parse_rec(parser_t *ps, char *p, size_t len, const char **k, size_t *kl,
		     const char **v, size_t *vl, char *why, size_t wl)
{
	int fmt = ps->fmt, rc;

	parser_reset(ps);
	if (fmt == LOAD_FMT_AUTO) {
		size_t i = 0;
		while (i < len && (p[i] == ' ' || p[i] == '\t'))
			i++;
		fmt = i < len && p[i] == '{' ? LOAD_FMT_NDJSON : LOAD_FMT_TSV;
	}
	if (fmt == LOAD_FMT_NDJSON)
		rc = parse_json(ps, p, len, k, kl, v, vl, why, wl);
	else
		rc = parse_cols(ps, fmt, p, len, k, kl, v, vl, why, wl);
	if (rc != P_OK)
		return rc;
	if (!proto_key_valid(*k, *kl)) {
		snprintf(why, wl, "invalid key \"%.*s%s\"", *kl > 60 ? 60 : (int)*kl, *k,
			 *kl > 60 ? "..." : "");
		return P_BAD;
	}
	if (*vl > ps->max_value) {
		snprintf(why, wl, "value of %zu bytes is over the bucket's max value (%zu)", *vl,
			 ps->max_value);
		return P_BAD;
	}
	return P_OK;
}

/* ---- progress, checkpoint, summary -------------------------------------------------------- */

static double secs_since(uint64_t t0)
{
	return (double)(uv_hrtime() - t0) / 1e9;
}

static const char *human_bytes(uint64_t b, char *buf, size_t n)
{
	if (b >= (1ull << 30))
		snprintf(buf, n, "%.1f GiB", (double)b / (1ull << 30));
	else if (b >= (1u << 20))
		snprintf(buf, n, "%.1f MiB", (double)b / (1u << 20));
	else
		snprintf(buf, n, "%.1f KiB", (double)b / 1024);
	return buf;
}

typedef struct run {
	const char *file, *name;   /* name: "stdin" for "-" */
	load_src_t *src;
	kvc_loader_t *l;
	int64_t size;
	uint64_t t0, next_tick, tick_ns;
	bool tty, quiet, drawn;
	uint64_t bad, puts, lines, resumed_through;
	const char *checkpoint;
	/* the session a checkpoint names (format 2), so that --resume numbers the same
	 * batches the same way and the group drops the ones it had applied */
	uint64_t client, batch_ops, max_value;
	bool session_resume;
} run_t;

static void progress(run_t *r, bool final)
{
	kvc_load_stats_t st;
	char b[32], eta[32] = "";
	double secs = secs_since(r->t0), pct = -1;
	uint64_t raw = load_src_raw_bytes(r->src);

	if (r->quiet)
		return;
	kvc_loader_stats(r->l, &st);
	double rate = secs > 0 ? (double)st.acked / secs : 0;
	if (r->size > 0) {
		pct = 100.0 * (double)raw / (double)r->size;
		if (pct > 100)
			pct = 100;
		if (pct > 0 && pct < 100)
			cli_fmt_duration((uint64_t)(secs * (100 - pct) / pct) * 1000 + 1000, eta, sizeof eta);
	}
	if (r->tty) {
		fprintf(stderr, "\r%" PRIu64 " keys  %s", st.acked, human_bytes(raw, b, sizeof b));
		if (pct >= 0)
			fprintf(stderr, "  %.0f%%", pct);
		if (*eta)
			fprintf(stderr, "  ETA %s", eta);
		fprintf(stderr, "  %.0f keys/s  %" PRIu64 " error%s\033[K", rate, r->bad,
			r->bad == 1 ? "" : "s");
		if (final)
			fputc('\n', stderr);
		r->drawn = !final;
	} else if (!final) {
		fprintf(stderr, "progress: %" PRIu64 " keys, %" PRIu64 " bytes", st.acked, raw);
		if (pct >= 0)
			fprintf(stderr, ", %.1f%%", pct);
		if (*eta)
			fprintf(stderr, ", eta %s", eta);
		fprintf(stderr, ", %.0f keys/s, %" PRIu64 " errors\n", rate, r->bad);
	}
}

/* Before a message line on a terminal: end the progress line. */
static void progress_break(run_t *r)
{
	if (r->tty && r->drawn) {
		fputc('\n', stderr);
		r->drawn = false;
	}
}

/*
 * The checkpoint file (format 2), rewritten whole through a temporary file:
 *   geokv-load-checkpoint 2
 *   input SIZE NAME
 *   acked_through LINE          every line up to LINE is acknowledged
 *   session CLIENT BATCH MAXVAL the load's session id (hex), ops per batch, the bucket's max
 *                               value: what makes the batches of a resumed run the same
 * Format 1 (no session line) is still read: it resumes in a new session.
 */
static int ckpt_put(const run_t *r, uint64_t through, bool sync)
{
	char tmp[4200];
	FILE *f;

	if (!r->checkpoint)
		return 0;
	snprintf(tmp, sizeof tmp, "%s.tmp", r->checkpoint);
	if (!(f = fopen(tmp, "w")))
		return -errno;
	fprintf(f, "geokv-load-checkpoint 2\ninput %" PRId64 " %s\nacked_through %" PRIu64
		"\nsession %016" PRIx64 " %" PRIu64 " %" PRIu64 "\n", r->size, r->file, through,
		r->client, r->batch_ops, r->max_value);
	if (fflush(f) != 0 || (sync && fsync(fileno(f)) != 0) || fclose(f) != 0 ||
	    rename(tmp, r->checkpoint) != 0)
		return -errno;
	return 0;
}

static int ckpt_write(run_t *r, bool sync)
{
	kvc_load_stats_t st;

	if (!r->checkpoint)
		return 0;
	kvc_loader_stats(r->l, &st);
	return ckpt_put(r, st.acked_through > r->resumed_through ? st.acked_through :
			r->resumed_through, sync);
}

/* --resume: the line through which the checkpoint says everything is acknowledged, and
 * its session (format 2). */
static int ckpt_read(const char *path, run_t *r)
{
	FILE *f = fopen(path, "r");
	char magic[64] = "", name[4096] = "";
	int64_t sz = 0;
	int v = 0;

	r->resumed_through = 0;
	if (!f) {
		if (errno == ENOENT)
			return 0; /* nothing loaded yet: start at the top */
		fprintf(stderr, "geokv: checkpoint %s: %s\n", path, strerror(errno));
		return CLI_USAGE;
	}
	int n = fscanf(f, "%63s %d\ninput %" SCNd64 " %4095[^\n]\nacked_through %" SCNu64, magic, &v,
		       &sz, name, &r->resumed_through);
	uint64_t client = 0, batch = 0, maxval = 0;
	if (n == 5 && v == 2 &&
	    fscanf(f, "\nsession %" SCNx64 " %" SCNu64 " %" SCNu64, &client, &batch, &maxval) != 3)
		n = 0;
	fclose(f);
	if (n != 5 || strcmp(magic, "geokv-load-checkpoint") || (v != 1 && v != 2)) {
		fprintf(stderr, "geokv: checkpoint %s: not a geokv load checkpoint\n", path);
		return CLI_USAGE;
	}
	if (strcmp(name, r->file) || (r->size >= 0 && sz != r->size)) {
		fprintf(stderr, "geokv: checkpoint %s is for %s (%" PRId64 " bytes), not this input\n",
			path, name, sz);
		return CLI_USAGE;
	}
	if (v == 2) {
		/* Another max value would let other lines through, so the batches would differ
		 * and a number the group has seen could name new lines: refuse. */
		if (maxval != r->max_value) {
			fprintf(stderr, "geokv: checkpoint %s: the bucket's max value changed (%" PRIu64
				" -> %" PRIu64 "); resuming would not be exactly once: remove the "
				"checkpoint to load in a new session\n", path, maxval, r->max_value);
			return CLI_USAGE;
		}
		r->client = client;
		r->batch_ops = batch;
		r->session_resume = client != 0;
	}
	return 0;
}

/* ---- the load ------------------------------------------------------------------------------ */

int cli_cmd_load(cli_ctx_t *cx, const char *bucket, const char *file, const opts_t *o)
{
	kvc_t *k;
	kvc_load_opts_t lo;
	kvc_load_stats_t st;
	proto_bucket_info_t bi;
	parser_t ps;
	run_t r;
	char why[512];
	int rc, exit_code = CLI_OK;
	uint64_t max_errors = o->skip_bad ? UINT64_MAX : o->has_max_errors ? o->max_errors : 0;
	const char *stop_why = NULL;

	memset(&ps, 0, sizeof ps);
	memset(&r, 0, sizeof r);
	r.file = file;
	r.name = strcmp(file, "-") ? file : "stdin";
	r.quiet = o->quiet;
	r.tty = isatty(STDERR_FILENO);
	r.checkpoint = o->checkpoint;
	r.tick_ns = o->progress_ms ? o->progress_ms * 1000000ull :
		    r.tty ? 250000000ull : 5000000000ull;

	ps.fmt = o->format ? o->format : fmt_by_name(file);
	bool cols = ps.fmt == LOAD_FMT_CSV || ps.fmt == LOAD_FMT_TSV;
	/* a number names a column of CSV/TSV; JSON fields are names whatever they look like */
	ps.kname = o->key_field && !(cols && o->key_col) ? o->key_field : NULL;
	ps.vname = o->value_field && !(cols && o->value_col) ? o->value_field : NULL;
	ps.kcol = cols && o->key_col ? (int)o->key_col : 1;
	ps.vcol = cols && o->value_col ? (int)o->value_col : ps.fmt == LOAD_FMT_CSV ? 2 : 0;
	if (cols)
		ps.header = o->header || ps.kname || ps.vname;
	else if (o->header)
		return cli_usage_error("load", "--header needs --format csv or tsv (or a .csv/.tsv "
				       "file)");
	snprintf(ps.vb64, sizeof ps.vb64, "%s_b64", ps.vname ? ps.vname : "value");

	if (!(k = cli_client(cx)))
		return cx->open_exit;
	/* Fail before reading a byte when the bucket is missing: a clearer error than a
	 * failed first batch, and nothing half-done. */
	if ((rc = kvc_bucket_info(k, bucket, &bi)) != 0)
		return cli_fail(cx, rc, bucket);
	ps.max_value = bi.cfg.max_value ? bi.cfg.max_value : PROTO_DEFAULT_MAX_VALUE;
	/* the longest line a valid value can take: JSON's \u escapes are 6 bytes a byte */
	size_t max_line = ps.max_value * 6 + PROTO_MAX_KEY * 6 + 4096;
	if ((rc = load_src_open(&r.src, file, max_line)) != 0) {
		fprintf(stderr, "geokv: %s: %s\n", r.name, strerror(-rc));
		return CLI_ERR;
	}
	r.size = load_src_size(r.src);
	if (o->resume) {
		if (!r.checkpoint) {
			load_src_close(r.src);
			return cli_usage_error("load", "--resume needs --checkpoint FILE");
		}
		r.max_value = ps.max_value;
		if ((rc = ckpt_read(r.checkpoint, &r)) != 0) {
			load_src_close(r.src);
			return rc;
		}
	}
	memset(&lo, 0, sizeof lo);
	r.max_value = ps.max_value;
	if (!r.session_resume)
		r.batch_ops = o->batch ? o->batch : 1000;
	else if (o->batch && o->batch != r.batch_ops)
		fprintf(stderr, "geokv: --resume keeps the checkpoint's --batch %" PRIu64 "\n",
			r.batch_ops);
	lo.batch_ops = (uint32_t)r.batch_ops;
	lo.client = r.client;
	lo.skip_through = r.session_resume ? r.resumed_through : 0;
	lo.window = (uint32_t)o->window;
	lo.retry_ms = !o->has_retry ? 0 : o->retry_ms ? (uint32_t)o->retry_ms : 1;
	if ((rc = kvc_loader_new(k, bucket, &lo, &r.l)) != 0) {
		load_src_close(r.src);
		return cli_fail(cx, rc, bucket);
	}
	r.client = kvc_loader_client(r.l);
	r.t0 = uv_hrtime();
	r.next_tick = r.t0 + r.tick_ns;

	char *line = NULL, *rec = NULL;
	size_t len, rec_len = 0, rec_cap = 0;
	uint64_t rec_line = 0;
	for (;;) {
		const char *key, *val;
		size_t klen, vlen;
		rc = load_src_line(r.src, &line, &len);
		if (rc == 0 && rec_len == 0)
			break;
		uint64_t lineno = load_src_lineno(r.src);
		if ((lineno & 1023) == 0 && uv_hrtime() >= r.next_tick) {
			r.next_tick = uv_hrtime() + r.tick_ns;
			progress(&r, false);
			ckpt_write(&r, false);
		}
		if (rc < 0 && rc != LOAD_ELONG) {
			progress_break(&r);
			fprintf(stderr, "geokv: %s: %s\n", r.name, rc == LOAD_EDATA ?
				"corrupt or truncated compressed input" : strerror(-rc));
			exit_code = CLI_INVALID;
			stop_why = "unreadable input";
			break;
		}
		/* acknowledged before (--resume of a format 1 checkpoint); CSV is parsed all the
		 * same, since a quoted field may carry a record past the checkpoint's line (it
		 * skips whole records below). A session resume parses and batches every line, so
		 * that the batches are the same; the loader does not send those acknowledged. */
		if (lineno <= r.resumed_through && !ps.header && rc != 0 && ps.fmt != LOAD_FMT_CSV &&
		    !r.session_resume)
			continue;
		if (rc == LOAD_ELONG) {
			snprintf(why, sizeof why, "line of %zu bytes is longer than any valid record "
				 "(%zu)", len, max_line);
			rec_len = 0;
			goto bad;
		}
		if (rec_len) {
			/* a CSV record continued: join with the newline the quotes held */
			if (rc == 0) {
				snprintf(why, sizeof why, "CSV: a quoted field is not closed");
				lineno = rec_line;
				rec_len = 0;
				goto bad;
			}
			if (rec_len + 1 + len > max_line) {
				snprintf(why, sizeof why, "CSV record longer than any valid record");
				lineno = rec_line;
				rec_len = 0;
				goto bad;
			}
			if (rec_len + len + 2 > rec_cap) {
				rec_cap = (rec_len + len + 2) * 2;
				char *nr = realloc(rec, rec_cap);
				if (!nr) {
					exit_code = cli_fail(cx, -ENOMEM, "load");
					break;
				}
				rec = nr;
			}
			rec[rec_len++] = '\n';
			memcpy(rec + rec_len, line, len);
			rec_len += len;
			rec[rec_len] = 0;
			line = rec;
			len = rec_len;
			lineno = rec_line;
		} else {
			size_t i = 0;
			while (i < len && (line[i] == ' ' || line[i] == '\t'))
				i++;
			if (i == len)
				continue; /* blank line */
		}
		r.lines++;
		rc = parse_rec(&ps, line, len, &key, &klen, &val, &vlen, why, sizeof why);
		if (rc == P_MORE) {
			if (!rec_len) {
				if (len + 2 > rec_cap) {
					rec_cap = (len + 2) * 2;
					char *nr = realloc(rec, rec_cap);
					if (!nr) {
						exit_code = cli_fail(cx, -ENOMEM, "load");
						break;
					}
					rec = nr;
				}
				memcpy(rec, line, len);
				rec_len = len;
				rec_line = lineno;
			}
			r.lines--;
			continue;
		}
		rec_len = 0;
		if (rc == P_SKIP)
			continue;
		if (rc == P_BAD) {
			if (ps.header) {
				progress_break(&r);
				fprintf(stderr, "geokv: %s:%" PRIu64 ": %s\n", r.name, lineno, why);
				exit_code = CLI_INVALID;
				stop_why = "bad header";
				break;
			}
			goto bad;
		}
		if (lineno <= r.resumed_through && !r.session_resume)
			continue;
		rc = kvc_loader_put(r.l, key, klen, val, vlen, lineno);
		if (rc == KV_EBADKEY || rc == KV_ETOOBIG) {
			snprintf(why, sizeof why, "%s", geokv_strerror(rc));
			goto bad;
		}
		if (rc) {
			stop_why = "batch refused";
			break; /* the server refused a batch: reported below */
		}
		if (lineno > r.resumed_through)
			r.puts++;
		continue;
bad:
		if (lineno <= r.resumed_through)
			continue; /* reported by the run being resumed */
		r.bad++;
		progress_break(&r);
		fprintf(stderr, "geokv: %s:%" PRIu64 ": %s\n", r.name, lineno, why);
		if (r.bad > max_errors) {
			if (max_errors)
				fprintf(stderr, "geokv: more than %" PRIu64 " bad line%s, stopping\n",
					max_errors, max_errors == 1 ? "" : "s");
			exit_code = CLI_INVALID;
			stop_why = "bad lines";
			break;
		}
	}
	free(rec);
	uint64_t bytes = load_src_raw_bytes(r.src);
	rc = kvc_loader_finish(r.l, &st);
	r.l = NULL;
	double secs = secs_since(r.t0);
	if (!r.quiet && (r.tty || secs * 1e9 >= (double)r.tick_ns)) {
		/* the last progress line, from the final counters */
		progress_break(&r);
	}
	if (rc) {
		int why_code = st.failed_status ? st.failed_status : rc;
		progress_break(&r);
		fprintf(stderr, "geokv: %s:%" PRIu64 ": %s", r.name, st.failed_tag,
			geokv_strerror(why_code));
		if (*kvc_errmsg(k) && strcmp(kvc_errmsg(k), geokv_strerror(why_code)))
			fprintf(stderr, " (%s)", kvc_errmsg(k));
		fputc('\n', stderr);
		exit_code = cli_exit_code(why_code);
		if (exit_code == CLI_OK || (rc == KV_EBATCH && exit_code == CLI_ERR))
			exit_code = CLI_ERR;
		stop_why = "batch refused";
	}
	if (st.first_unacked)
		fprintf(stderr, "geokv: %s: first line not acknowledged: %" PRIu64 "%s\n", r.name,
			st.first_unacked, r.checkpoint ? " (--resume continues there)" : "");
	/* the checkpoint, from the loader's final marks (it is freed; use st) */
	uint64_t through = st.acked_through > r.resumed_through ? st.acked_through :
			   r.resumed_through;
	if (exit_code == CLI_OK && !st.first_unacked)
		through = load_src_lineno(r.src); /* all read, all loaded or skipped */
	int crc;
	if (r.checkpoint && (crc = ckpt_put(&r, through, true)) != 0)
		fprintf(stderr, "geokv: checkpoint %s: %s\n", r.checkpoint, strerror(-crc));
	load_src_close(r.src);
	parser_free(&ps);

	uint64_t failed = r.puts > st.acked ? r.puts - st.acked : 0;
	double rate = secs > 0 ? (double)st.acked / secs : 0.0;
	if (cx->json) {
		json_t *j = json_pack("{sssssIsIsIsIsIsfsfsIsIsi}", "bucket", bucket, "file", r.name,
				      "written", (json_int_t)st.acked, "skipped", (json_int_t)r.bad,
				      "failed", (json_int_t)failed, "lines", (json_int_t)r.lines,
				      "bytes", (json_int_t)bytes, "elapsed_s", (double)(int64_t)(secs * 1000) / 1000,
				      "keys_per_s", (double)(int64_t)rate, "last_revision", (json_int_t)st.last_rev,
				      "acked_through_line", (json_int_t)through,
				      "exit", exit_code);
		if (j && st.first_unacked)
			json_object_set_new(j, "first_unacked_line", json_integer((json_int_t)st.first_unacked));
		if (j && stop_why)
			json_object_set_new(j, "stopped", json_string(stop_why));
		if (j && rc)
			json_object_set_new(j, "error", json_string(geokv_strerror(
				st.failed_status ? st.failed_status : rc)));
		if (j && st.retries)
			json_object_set_new(j, "retries", json_integer((json_int_t)st.retries));
		if (j && r.resumed_through)
			json_object_set_new(j, "resumed_after_line", json_integer((json_int_t)r.resumed_through));
		cli_json_emit(j);
		return exit_code;
	}
	printf("loaded %llu key%s in %.2fs (%.0f keys/s)", (unsigned long long)st.acked,
	       st.acked == 1 ? "" : "s", secs, rate);
	if (st.last_rev)
		printf(", last revision %llu", (unsigned long long)st.last_rev);
	if (r.bad)
		printf(", %llu bad line%s", (unsigned long long)r.bad, r.bad == 1 ? "" : "s");
	if (failed)
		printf(", %llu not loaded", (unsigned long long)failed);
	if (st.retries)
		printf(", %llu batch%s resent", (unsigned long long)st.retries,
		       st.retries == 1 ? "" : "es");
	printf("\n");
	return exit_code;
}
