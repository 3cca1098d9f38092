/*
 * `geokv load BUCKET FILE|-`: bulk PUTs through the client's pipelined loader.
 *
 * Input: one key per line, either NDJSON {"key":"k","value":"v"} or key<TAB>value, chosen
 * per line by its first non-blank byte ('{' = JSON). A JSON value that is not a string is
 * stored as its compact JSON text. Lines are tagged with their line number, so an error the
 * server reports for one op of a batch names the line.
 *
 * Stop rule: on a bad line (unparsable, invalid key, value too large) the load stops after
 * flushing and waiting for everything read before it, so "loaded N keys" is exact and every
 * one of them is acknowledged (durable). --skip-bad reports the line and goes on.
 */
#include "proto/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct line {
	const char *key, *val;
	size_t klen, vlen;
	char *owned;              /* JSON-encoded value to free, or NULL */
	json_t *root;
} line_t;

/* Parse one line (no trailing newline). 0, or -1 with *why set. */
static int parse_line(char *p, size_t len, line_t *ln, char *why, size_t whylen)
{
	size_t i = 0;

	memset(ln, 0, sizeof *ln);
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i < len && p[i] == '{') {
		json_error_t err;
		json_t *k, *v;
		ln->root = json_loadb(p, len, 0, &err);
		if (!ln->root) {
			snprintf(why, whylen, "invalid JSON: %s", err.text);
			return -1;
		}
		if (!json_is_object(ln->root)) {
			snprintf(why, whylen, "expected a JSON object");
			return -1;
		}
		k = json_object_get(ln->root, "key");
		v = json_object_get(ln->root, "value");
		if (!json_is_string(k)) {
			snprintf(why, whylen, "JSON object needs a string \"key\"");
			return -1;
		}
		if (!v) {
			snprintf(why, whylen, "JSON object needs a \"value\"");
			return -1;
		}
		ln->key = json_string_value(k);
		ln->klen = json_string_length(k);
		if (json_is_string(v)) {
			ln->val = json_string_value(v);
			ln->vlen = json_string_length(v);
		} else {
			ln->owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			if (!ln->owned) {
				snprintf(why, whylen, "cannot encode \"value\"");
				return -1;
			}
			ln->val = ln->owned;
			ln->vlen = strlen(ln->owned);
		}
		return 0;
	}
	char *tab = memchr(p, '\t', len);
	if (!tab) {
		snprintf(why, whylen, "expected key<TAB>value or a JSON object");
		return -1;
	}
	ln->key = p;
	ln->klen = (size_t)(tab - p);
	ln->val = tab + 1;
	ln->vlen = len - ln->klen - 1;
	return 0;
}

static void line_free(line_t *ln)
{
	free(ln->owned);
	if (ln->root)
		json_decref(ln->root);
}

static double secs_since(uint64_t t0)
{
	return (double)(uv_hrtime() - t0) / 1e9;
}

int cli_cmd_load(cli_ctx_t *cx, const char *bucket, const char *file, const opts_t *o)
{
	FILE *f;
	kvc_t *k;
	kvc_loader_t *l;
	kvc_load_opts_t lo;
	kvc_load_stats_t st;
	proto_bucket_info_t bi;
	char *buf = NULL, why[256];
	size_t cap = 0;
	ssize_t n;
	uint64_t lineno = 0, bad = 0, t0, last_progress = 0;
	int rc, exit_code = CLI_OK;
	bool progress = !o->quiet && isatty(STDERR_FILENO);

	if (!(k = cli_client(cx)))
		return cx->open_exit;
	/* Fail before reading a byte when the bucket is missing: a clearer error than a
	 * failed first batch, and nothing half-done. */
	if ((rc = kvc_bucket_info(k, bucket, &bi)) != 0)
		return cli_fail(cx, rc, bucket);
	if (strcmp(file, "-") == 0) {
		f = stdin;
	} else if ((f = fopen(file, "r")) == NULL) {
		fprintf(stderr, "geokv: %s: %s\n", file, strerror(errno));
		return CLI_ERR;
	}
	memset(&lo, 0, sizeof lo);
	lo.batch_ops = (uint32_t)o->batch;
	lo.window = (uint32_t)o->window;
	if ((rc = kvc_loader_new(k, bucket, &lo, &l)) != 0) {
		if (f != stdin)
			fclose(f);
		return cli_fail(cx, rc, bucket);
	}
	t0 = uv_hrtime();
	while ((n = getline(&buf, &cap, f)) >= 0) {
		line_t ln;
		size_t len = (size_t)n;
		lineno++;
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			len--;
		size_t i = 0;
		while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		if (i == len)
			continue; /* blank line */
		if (parse_line(buf, len, &ln, why, sizeof why) == 0) {
			rc = kvc_loader_put(l, ln.key, ln.klen, ln.val, ln.vlen, lineno);
			line_free(&ln);
			if (rc == KV_EBADKEY || rc == KV_ETOOBIG) {
				snprintf(why, sizeof why, "%s", geokv_strerror(rc));
			} else if (rc) {
				break; /* the server refused a batch: reported below */
			} else {
				if (progress && (lineno & 1023) == 0 &&
				    uv_hrtime() - last_progress > 1000000000ull) {
					kvc_loader_stats(l, &st);
					last_progress = uv_hrtime();
					fprintf(stderr, "\rloaded %llu keys (%.0f keys/s)   ",
						(unsigned long long)st.acked, (double)st.acked / secs_since(t0));
				}
				continue;
			}
		} else {
			line_free(&ln);
		}
		bad++;
		if (progress && last_progress)
			fputc('\n', stderr);
		fprintf(stderr, "geokv: %s:%llu: %s\n", strcmp(file, "-") ? file : "stdin",
			(unsigned long long)lineno, why);
		if (!o->skip_bad) {
			exit_code = CLI_INVALID;
			break;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "geokv: %s: %s\n", file, strerror(errno));
		exit_code = CLI_ERR;
	}
	free(buf);
	if (f != stdin)
		fclose(f);
	rc = kvc_loader_finish(l, &st);
	double secs = secs_since(t0);
	if (progress && last_progress)
		fputc('\n', stderr);
	if (rc) {
		int why_code = st.failed_status ? st.failed_status : rc;
		fprintf(stderr, "geokv: %s:%llu: %s", strcmp(file, "-") ? file : "stdin",
			(unsigned long long)st.failed_tag, geokv_strerror(why_code));
		if (*kvc_errmsg(k) && strcmp(kvc_errmsg(k), geokv_strerror(why_code)))
			fprintf(stderr, " (%s)", kvc_errmsg(k));
		fputc('\n', stderr);
		exit_code = cli_exit_code(why_code);
		if (exit_code == CLI_OK || (rc == KV_EBATCH && exit_code == CLI_ERR))
			exit_code = CLI_ERR;
	}
	printf("loaded %llu key%s in %.2fs (%.0f keys/s)", (unsigned long long)st.acked,
	       st.acked == 1 ? "" : "s", secs,
	       secs > 0 ? (double)st.acked / secs : 0.0);
	if (st.last_rev)
		printf(", last revision %llu", (unsigned long long)st.last_rev);
	if (bad)
		printf(", %llu bad line%s", (unsigned long long)bad, bad == 1 ? "" : "s");
	printf("\n");
	return exit_code;
}
