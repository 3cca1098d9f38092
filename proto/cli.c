/*
 * geokv: the command-line client, in the style of `nats kv`.
 *
 *   geokv [-s host:port,...] [--timeout DUR] COMMAND [ARGS] [OPTIONS]
 *
 * Output is for scripts first: values and revisions go to stdout bare, everything human
 * (errors, progress) goes to stderr, and the exit code says what happened (cli.h, and
 * docs/cli.md). One blocking client (proto/client.h) per run.
 */
#include "proto/cli.h"
#include "proto/version.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPT_TIMEOUT 1000
#define OPT_HISTORY 1001
#define OPT_MAXVAL  1002
#define OPT_TTL     1003
#define OPT_CTYPE   1004
#define OPT_REV     1005
#define OPT_RAW     1006
#define OPT_BATCH   1007
#define OPT_WINDOW  1008
#define OPT_SKIPBAD 1009
#define OPT_TLS_CA   1010
#define OPT_TLS_CERT 1011
#define OPT_TLS_KEY  1012
#define OPT_STALE    1013
#define OPT_CHECKSUM 1014
#define OPT_JSON     1015
#define OPT_TOKEN_FILE 1016
#define OPT_CONTEXT  1017
#define OPT_CLUSTER  1018
#define OPT_VERSION  1019
#define OPT_DESC     1020
#define OPT_SELECT   1021
#define OPT_FORMAT   1022
#define OPT_KEYF     1023
#define OPT_VALF     1024
#define OPT_HEADER   1025
#define OPT_MAXERR   1026
#define OPT_CKPT     1027
#define OPT_RESUME   1028
#define OPT_PROGRESS 1029
#define OPT_FROMREV  1030
#define OPT_COUNT    1031
#define OPT_RETRY    1032

struct cmd;

/* One run of a command: what the dispatcher parsed, and what the command hands back. */
typedef struct call {
	const struct cmd *c;
	opts_t o;
	char **a;                 /* positionals, a[0..n-1] */
	int n;
	const char *val;          /* put, create: the value, from argv or buf */
	size_t vlen;
	char *buf;                /* put, create: the value read from stdin; freed by the dispatcher */
	uint64_t exp;             /* update: the revision the key must have */
	uint64_t rev;             /* the revision written, printed when the command has CMD_REV */
	bool json;                /* -o json */
} call_t;

/* What a command's errors are about (the "geokv: <what>: ..." prefix), and what it prints. */
enum {
	CMD_ABOUT_KEY = 1,        /* the bucket for bucket errors, else the key: a[0], a[1] */
	CMD_ABOUT_BUCKET = 2,     /* a[0] */
	CMD_REV = 4,              /* prints the revision it wrote */
	CMD_LOCAL = 8,            /* needs no connection settings (context commands) */
};

/*
 * A command is its own logic only: the dispatcher (call_cmd) parses the options, runs
 * `prep`, opens the client, runs `run`, and maps its error to a message and an exit code.
 */
typedef struct cmd {
	const char *name;         /* "put", "bucket add" */
	const char *args;         /* positional synopsis */
	const char *summary;
	const char *help;         /* command options and details */
	/* NULL, or what needs no server, before the client is opened (so a usage error stays a
	 * usage error when no server is up): -1 to go on, or the exit code */
	int (*prep)(cli_ctx_t *cx, call_t *cl);
	/* the request: 0, or a geokv error for the dispatcher to report */
	int (*run)(kvc_t *k, call_t *cl);
	int min_args, max_args;
	int flags;                /* CMD_* */
} cmd_t;

static const char *exit_help =
	"Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict (exists / wrong\n"
	"revision), 5 connection (no server, lost, timed out), 6 invalid input.\n";

static void cmd_help(const cmd_t *c, FILE *f)
{
	fprintf(f, "Usage: geokv %s %s\n\n%s\n", c->name, c->args, c->summary);
	fprintf(f, "\nOptions:\n%s%s\n%s", c->help ? c->help : "", cli_common_help, exit_help);
}

/* The options every command takes, also before the command (cli_common_help). */
#define COMMON_OPTIONS                                                  \
	{"server", required_argument, NULL, 's'},                      \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},             \
	{"tls-ca", required_argument, NULL, OPT_TLS_CA},               \
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},           \
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},             \
	{"stale", no_argument, NULL, OPT_STALE},                       \
	{"json", no_argument, NULL, OPT_JSON},                         \
	{"output", required_argument, NULL, 'o'},                      \
	{"token-file", required_argument, NULL, OPT_TOKEN_FILE},       \
	{"context", required_argument, NULL, OPT_CONTEXT},             \
	{"cluster", required_argument, NULL, OPT_CLUSTER},             \
	{"help", no_argument, NULL, 'h'}

/*
 * Apply common option ch (but -h, whose help depends on where it stands) to cx. Returns -1
 * when ch is not one, 0 when applied, or the exit code of a usage error (cmd names the
 * command for the hint, NULL before it).
 */
static int common_opt(cli_ctx_t *cx, int ch, const char *cmd)
{
	switch (ch) {
	case 's':
		cx->servers = optarg;
		return 0;
	case OPT_TIMEOUT:
		if (proto_conf_parse_duration(optarg, 1000, &cx->timeout_ms) || cx->timeout_ms == 0)
			return cli_usage_error(cmd, "bad --timeout '%s'", optarg);
		cx->timeout_str = optarg;
		cx->timeout_set = true;
		return 0;
	case OPT_TLS_CA:
		cx->tls_ca = optarg;
		return 0;
	case OPT_TLS_CERT:
		cx->tls_cert = optarg;
		return 0;
	case OPT_TLS_KEY:
		cx->tls_key = optarg;
		return 0;
	case OPT_STALE:
		cx->stale = true;
		return 0;
	case OPT_JSON:
		cx->json = true;
		return 0;
	case 'o':
		if (strcmp(optarg, "json") == 0)
			cx->json = true;
		else if (strcmp(optarg, "text") == 0)
			cx->json = false;
		else
			return cli_usage_error(cmd, "bad -o '%s' (want text or json)", optarg);
		return 0;
	case OPT_TOKEN_FILE:
		cx->token_file = optarg;
		return 0;
	case OPT_CONTEXT:
		if (!proto_bucket_valid(optarg, strlen(optarg)))
			return cli_usage_error(cmd, "bad --context '%s'", optarg);
		cx->context = optarg;
		return 0;
	case OPT_CLUSTER:
		if (strlen(optarg) > PROTO_MAX_CLUSTER)
			return cli_usage_error(cmd, "--cluster longer than %d bytes", PROTO_MAX_CLUSTER);
		cx->cluster = optarg;
		return 0;
	default:
		return -1;
	}
}

/*
 * Parse the options of one command (argv[0] is the command's last word). Options may come
 * before or after positionals; "--" ends them. On success *pos and *npos are the positionals.
 * Returns -1 to continue, or an exit code (help printed, or a usage error).
 */
static int parse(cli_ctx_t *cx, const cmd_t *c, int argc, char **argv, opts_t *o, char ***pos,
		 int *npos)
{
	static const struct option lo[] = {
		COMMON_OPTIONS,
		{"history", required_argument, NULL, OPT_HISTORY},
		{"max-value", required_argument, NULL, OPT_MAXVAL},
		{"ttl", required_argument, NULL, OPT_TTL},
		{"content-type", required_argument, NULL, OPT_CTYPE},
		{"revision", required_argument, NULL, OPT_REV},
		{"rev", required_argument, NULL, OPT_REV},
		{"description", required_argument, NULL, OPT_DESC},
		{"select", no_argument, NULL, OPT_SELECT},
		{"format", required_argument, NULL, OPT_FORMAT},
		{"key-field", required_argument, NULL, OPT_KEYF},
		{"value-field", required_argument, NULL, OPT_VALF},
		{"header", no_argument, NULL, OPT_HEADER},
		{"max-errors", required_argument, NULL, OPT_MAXERR},
		{"checkpoint", required_argument, NULL, OPT_CKPT},
		{"resume", no_argument, NULL, OPT_RESUME},
		{"progress-every", required_argument, NULL, OPT_PROGRESS},
		{"from-rev", required_argument, NULL, OPT_FROMREV},
		{"count", required_argument, NULL, OPT_COUNT},
		{"retry", required_argument, NULL, OPT_RETRY},
		{"raw", no_argument, NULL, OPT_RAW},
		{"force", no_argument, NULL, 'f'},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"window", required_argument, NULL, OPT_WINDOW},
		{"skip-bad", no_argument, NULL, OPT_SKIPBAD},
		{"quiet", no_argument, NULL, 'q'},
		{"checksum", no_argument, NULL, OPT_CHECKSUM},
		{NULL, 0, NULL, 0},
	};
	/* which long options each command takes (others are usage errors) */
	const char *allowed = "";
	int ch, rc;

	if (strcmp(c->name, "bucket add") == 0)
		allowed = "history max-value ttl content-type";
	else if (strcmp(c->name, "get") == 0)
		allowed = "revision rev raw";
	else if (strcmp(c->name, "bucket rm") == 0)
		allowed = "force";
	else if (strcmp(c->name, "load") == 0)
		allowed = "batch window skip-bad quiet format key-field value-field header "
			  "max-errors checkpoint resume progress-every retry";
	else if (strcmp(c->name, "status") == 0)
		allowed = "checksum";
	else if (strcmp(c->name, "watch") == 0)
		allowed = "from-rev count";
	else if (strcmp(c->name, "context add") == 0)
		allowed = "force description select";

	memset(o, 0, sizeof *o);
	optind = 0; /* glibc: full re-initialisation for a new argv */
	opterr = 0;
	/* no "+": GNU getopt permutes, so options may follow positionals ("--" ends them) */
	while ((ch = getopt_long(argc, argv, "s:o:hfq", lo, NULL)) != -1) {
		const char *lname = NULL;
		for (const struct option *p = lo; p->name; p++)
			if (p->val == ch)
				lname = p->name;
		if ((rc = common_opt(cx, ch, c->name)) >= 0) {
			if (rc)
				return rc;
			continue;
		}
		if (ch != 'h' && ch != '?' && ch != ':' && !(lname && strstr(allowed, lname)))
			return cli_usage_error(c->name, "unknown option '%s' for '%s'",
					       argv[optind - 1], c->name);
		switch (ch) {
		case 'h':
			cmd_help(c, stdout);
			return CLI_OK;
		case OPT_HISTORY:
			if (proto_conf_parse_u64(optarg, &o->history) || o->history < 1 ||
			    o->history > PROTO_MAX_HISTORY)
				return cli_usage_error(c->name, "--history must be 1..%d", PROTO_MAX_HISTORY);
			break;
		case OPT_MAXVAL:
			if (proto_conf_parse_size(optarg, &o->max_value) || o->max_value == 0 ||
			    o->max_value > PROTO_MAX_VALUE)
				return cli_usage_error(c->name, "bad --max-value '%s'", optarg);
			break;
		case OPT_TTL:
			if (proto_conf_parse_duration(optarg, 1000, &o->ttl_ms))
				return cli_usage_error(c->name, "bad --ttl '%s' (e.g. 30s, 24h, 7d)", optarg);
			break;
		case OPT_CTYPE:
			if (strlen(optarg) > PROTO_MAX_CTYPE)
				return cli_usage_error(c->name, "--content-type longer than %d bytes",
						       PROTO_MAX_CTYPE);
			o->ctype = optarg;
			break;
		case OPT_REV:
			if (proto_conf_parse_u64(optarg, &o->rev) || o->rev == 0)
				return cli_usage_error(c->name, "bad --revision '%s'", optarg);
			o->has_rev = true;
			break;
		case OPT_RAW:
			o->raw = true;
			break;
		case 'f':
			o->force = true;
			break;
		case OPT_BATCH:
			if (proto_conf_parse_u64(optarg, &o->batch) || o->batch < 1 || o->batch > PROTO_MAX_BATCH)
				return cli_usage_error(c->name, "--batch must be 1..%d", PROTO_MAX_BATCH);
			break;
		case OPT_WINDOW:
			if (proto_conf_parse_u64(optarg, &o->window) || o->window < 1 || o->window > 256)
				return cli_usage_error(c->name, "--window must be 1..256");
			break;
		case OPT_SKIPBAD:
			o->skip_bad = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case OPT_CHECKSUM:
			o->checksum = true;
			break;
		case OPT_DESC:
			o->description = optarg;
			break;
		case OPT_SELECT:
			o->select = true;
			break;
		case OPT_FORMAT: {
			static const char *f[] = {"auto", "ndjson", "csv", "tsv"};
			o->format = -1;
			for (int i = 0; i < 4; i++)
				if (strcmp(optarg, f[i]) == 0 || (i == 1 && strcmp(optarg, "json") == 0))
					o->format = i;
			if (o->format < 0)
				return cli_usage_error(c->name, "bad --format '%s' (want auto, ndjson, "
						       "csv or tsv)", optarg);
			break;
		}
		case OPT_KEYF:
		case OPT_VALF: {
			uint64_t col = 0;
			if (!*optarg)
				return cli_usage_error(c->name, "%s needs a name or a column number",
						       argv[optind - 1]);
			if (strspn(optarg, "0123456789") == strlen(optarg) &&
			    (proto_conf_parse_u64(optarg, &col) || col < 1 || col > 100000))
				return cli_usage_error(c->name, "columns count from 1");
			if (ch == OPT_KEYF) {
				o->key_field = optarg;
				o->key_col = col;
			} else {
				o->value_field = optarg;
				o->value_col = col;
			}
			break;
		}
		case OPT_HEADER:
			o->header = true;
			break;
		case OPT_MAXERR:
			if (proto_conf_parse_u64(optarg, &o->max_errors))
				return cli_usage_error(c->name, "bad --max-errors '%s'", optarg);
			o->has_max_errors = true;
			break;
		case OPT_CKPT:
			o->checkpoint = optarg;
			break;
		case OPT_RESUME:
			o->resume = true;
			break;
		case OPT_FROMREV:
			if (proto_conf_parse_u64(optarg, &o->rev) || o->rev == 0)
				return cli_usage_error(c->name, "bad --from-rev '%s'", optarg);
			o->has_rev = true;
			break;
		case OPT_RETRY:
			if (proto_conf_parse_duration(optarg, 1000, &o->retry_ms) ||
			    o->retry_ms > 24 * 3600 * 1000ull)
				return cli_usage_error(c->name, "bad --retry '%s' (e.g. 30s, 0 = never)",
						       optarg);
			o->has_retry = true;
			break;
		case OPT_COUNT:
			if (proto_conf_parse_u64(optarg, &o->count) || o->count == 0)
				return cli_usage_error(c->name, "bad --count '%s'", optarg);
			break;
		case OPT_PROGRESS:
			if (proto_conf_parse_duration(optarg, 1000, &o->progress_ms) || o->progress_ms == 0)
				return cli_usage_error(c->name, "bad --progress-every '%s'", optarg);
			break;
		case ':':
			return cli_usage_error(c->name, "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error(c->name, "unknown option '%s'", argv[optind - 1]);
		}
	}
	*pos = argv + optind;
	*npos = argc - optind;
	if (*npos < c->min_args || *npos > c->max_args)
		return cli_usage_error(c->name, "'%s' takes %s", c->name, c->args);
	if (o->raw && cx->json)
		return cli_usage_error(c->name, "--raw and -o json exclude each other");
	return -1;
}

/* ---- values ------------------------------------------------------------------------- */

/* Read stdin whole (values up to PROTO_MAX_VALUE). */
static int read_stdin(char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *p = malloc(cap);

	if (!p)
		return -1;
	for (;;) {
		if (n == cap) {
			if (cap > PROTO_MAX_VALUE) {
				free(p);
				return KV_ETOOBIG;
			}
			char *q = realloc(p, cap * 2);
			if (!q) {
				free(p);
				return -1;
			}
			p = q;
			cap *= 2;
		}
		size_t r = fread(p + n, 1, cap - n, stdin);
		n += r;
		if (r == 0)
			break;
	}
	*out = p;
	*len = n;
	return 0;
}

/* ---- key commands --------------------------------------------------------------------- */

static int prep_put(cli_ctx_t *cx, call_t *cl)
{
	int rc;

	if (cl->n == 2 || strcmp(cl->a[2], "-") == 0) {
		if ((rc = read_stdin(&cl->buf, &cl->vlen)) != 0)
			return cli_fail(cx, rc ? rc : -12, "reading stdin");
		cl->val = cl->buf;
	} else {
		cl->val = cl->a[2];
		cl->vlen = strlen(cl->val);
	}
	return -1;
}

static int run_put(kvc_t *k, call_t *cl)
{
	if (strcmp(cl->c->name, "create") == 0)
		return kvc_create(k, cl->a[0], cl->a[1], cl->val, cl->vlen, &cl->rev);
	return kvc_put(k, cl->a[0], cl->a[1], cl->val, cl->vlen, &cl->rev);
}

static int prep_update(cli_ctx_t *cx, call_t *cl)
{
	(void)cx;
	if (proto_conf_parse_u64(cl->a[3], &cl->exp) || cl->exp == 0)
		return cli_usage_error(cl->c->name, "REV must be a revision number, got '%s'", cl->a[3]);
	return -1;
}

static int run_update(kvc_t *k, call_t *cl)
{
	return kvc_update(k, cl->a[0], cl->a[1], cl->a[2], strlen(cl->a[2]), cl->exp, &cl->rev);
}

static int run_del(kvc_t *k, call_t *cl)
{
	if (strcmp(cl->c->name, "purge") == 0)
		return kvc_purge(k, cl->a[0], cl->a[1], 0, &cl->rev);
	return kvc_delete(k, cl->a[0], cl->a[1], 0, &cl->rev);
}

static int run_get(kvc_t *k, call_t *cl)
{
	proto_rec_t r;
	char t[40];
	int rc;

	if ((rc = kvc_get(k, cl->a[0], cl->a[1], cl->o.has_rev ? cl->o.rev : 0, &r)) != 0)
		return rc;
	if (cl->json)
		return cli_json_emit(cli_json_rec(cl->a[0], &r, true));
	if (cl->o.raw) {
		fwrite(r.value.p, 1, r.value.len, stdout);
		return 0;
	}
	printf("%s > %.*s revision: %llu created: %s\n\n", cl->a[0], (int)r.key.len,
	       (const char *)r.key.p, (unsigned long long)r.rev, cli_fmt_time(r.time_ms, t, sizeof t));
	fwrite(r.value.p, 1, r.value.len, stdout);
	putchar('\n');
	return 0;
}

static int print_key(void *ctx, const proto_bytes_t *key)
{
	if (*(bool *)ctx) {
		json_t *o = json_object();
		if (o)
			json_object_set_new(o, "key", json_stringn((const char *)key->p, key->len));
		return cli_json_emit(o);
	}
	fwrite(key->p, 1, key->len, stdout);
	putchar('\n');
	return 0;
}

static int run_keys(kvc_t *k, call_t *cl)
{
	return kvc_keys(k, cl->a[0], cl->n > 1 ? cl->a[1] : "", print_key, &cl->json);
}

#define kind_name cli_kind_name

/* history's state: the first row prints the header; json prints NDJSON records instead */
typedef struct rows {
	bool first, json;
	const char *bucket;
} rows_t;

static int print_rec(void *ctx, const proto_rec_t *r)
{
	char t[40];
	rows_t *rw = ctx;
	bool *first = &rw->first;

	if (rw->json) {
		*first = false;
		return cli_json_emit(cli_json_rec(rw->bucket, r, true));
	}
	if (*first) {
		printf("%-10s %-6s %-25s %10s  %s\n", "REVISION", "OP", "CREATED", "LENGTH", "VALUE");
		*first = false;
	}
	/* show a printable preview only: history is for humans, `get --revision` for bytes */
	int shown = r->value.len > 40 ? 40 : (int)r->value.len;
	bool printable = true;
	for (int i = 0; i < shown; i++)
		if (r->value.p[i] < 0x20 || r->value.p[i] > 0x7e)
			printable = false;
	printf("%-10llu %-6s %-25s %10u  ", (unsigned long long)r->rev, kind_name(r->kind),
	       cli_fmt_time(r->time_ms, t, sizeof t), r->value.len);
	if (r->kind != PROTO_REC_PUT)
		printf("\n");
	else if (printable)
		printf("%.*s%s\n", shown, (const char *)r->value.p, r->value.len > 40 ? "..." : "");
	else
		printf("(binary)\n");
	return 0;
}

static int run_history(kvc_t *k, call_t *cl)
{
	rows_t rw = {true, cl->json, cl->a[0]};
	int rc;

	if ((rc = kvc_history(k, cl->a[0], cl->a[1], print_rec, &rw)) != 0)
		return rc;
	return rw.first ? KV_ENOTFOUND : 0; /* no revision retained: as `get` would say */
}

/* ---- buckets --------------------------------------------------------------------------- */

static int run_bucket_add(kvc_t *k, call_t *cl)
{
	proto_bucket_cfg_t cfg;
	const opts_t *o = &cl->o;

	memset(&cfg, 0, sizeof cfg);
	cfg.history = o->history ? (uint32_t)o->history : 1;
	cfg.max_value = (uint32_t)o->max_value;
	cfg.max_age_ms = o->ttl_ms;
	if (o->ctype)
		cfg.content_type = (proto_bytes_t){(const uint8_t *)o->ctype, (uint32_t)strlen(o->ctype)};
	return kvc_bucket_add(k, cl->a[0], &cfg, &cl->rev);
}

static int print_bucket_row(void *ctx, const proto_bucket_info_t *b)
{
	char ttl[32];
	rows_t *rw = ctx;
	bool *first = &rw->first;

	if (rw->json)
		return cli_json_emit(cli_json_bucket(b));
	if (*first) {
		printf("%-24s %12s %14s %8s %10s\n", "BUCKET", "KEYS", "BYTES", "HISTORY", "TTL");
		*first = false;
	}
	printf("%-24.*s %12llu %14llu %8u %10s\n", (int)b->name.len, (const char *)b->name.p,
	       (unsigned long long)b->keys, (unsigned long long)b->bytes, b->cfg.history,
	       cli_fmt_duration(b->cfg.max_age_ms, ttl, sizeof ttl));
	return 0;
}

static int run_bucket_ls(kvc_t *k, call_t *cl)
{
	rows_t rw = {true, cl->json, NULL};

	return kvc_bucket_list(k, print_bucket_row, &rw);
}

static int run_bucket_info(kvc_t *k, call_t *cl)
{
	proto_bucket_info_t b;
	char ttl[32];
	int rc;

	if ((rc = kvc_bucket_info(k, cl->a[0], &b)) != 0)
		return rc;
	if (cl->json)
		return cli_json_emit(cli_json_bucket(&b));
	printf("bucket:        %.*s\n", (int)b.name.len, (const char *)b.name.p);
	printf("history:       %u\n", b.cfg.history);
	printf("max value:     %u\n", b.cfg.max_value ? b.cfg.max_value : PROTO_DEFAULT_MAX_VALUE);
	printf("ttl:           %s\n", cli_fmt_duration(b.cfg.max_age_ms, ttl, sizeof ttl));
	printf("content type:  %.*s\n", (int)b.cfg.content_type.len,
	       b.cfg.content_type.len ? (const char *)b.cfg.content_type.p : "");
	printf("keys:          %llu\n", (unsigned long long)b.keys);
	printf("bytes:         %llu\n", (unsigned long long)b.bytes);
	printf("created rev:   %llu\n", (unsigned long long)b.created_rev);
	return 0;
}

static int prep_bucket_rm(cli_ctx_t *cx, call_t *cl)
{
	char line[16];

	(void)cx;
	if (cl->o.force)
		return -1;
	/* never wait on a pipe or /dev/null: scripts must say -f */
	if (!isatty(STDIN_FILENO))
		return cli_usage_error(cl->c->name, "refusing to delete bucket '%s' without -f "
				       "(stdin is not a terminal)", cl->a[0]);
	fprintf(stderr, "Delete bucket '%s' and all its keys? [y/N] ", cl->a[0]);
	if (!fgets(line, sizeof line, stdin) || (line[0] != 'y' && line[0] != 'Y')) {
		fprintf(stderr, "geokv: not deleted\n");
		return CLI_ERR;
	}
	return -1;
}

static int run_bucket_rm(kvc_t *k, call_t *cl)
{
	return kvc_bucket_del(k, cl->a[0], &cl->rev);
}

/* One member's row in `geokv status`. */
typedef struct member_row {
	uint64_t id;
	char addr[PROTO_MAX_ADDR + 1];
	int err;                  /* 0, or why it could not be asked */
	bool leader, has_hash;
	uint64_t term, commit, applied, revision, match;
	bool has_match;
	proto_hash_t hash;
} member_row_t;

static void row_from_status(member_row_t *r, const proto_status_t *s)
{
	r->leader = s->is_leader;
	r->term = s->term;
	r->commit = s->commit;
	r->applied = s->applied;
	r->revision = s->revision;
}

static void ask_member(cli_ctx_t *cx, kvc_t *k, member_row_t *r, bool checksum)
{
	proto_status_t s;

	if ((r->err = kvc_status(k, &s)) != 0)
		return;
	row_from_status(r, &s);
	if (checksum && (r->err = kvc_hash(k, &r->hash)) == 0)
		r->has_hash = true;
	(void)cx;
}

/* The checksum verdict: -1 no pair compared, 0 equal, 1 members differ. */
static int checksums_differ(const member_row_t *rows, int n)
{
	int differ = 0, compared = 0;

	/* equal applied index and different hash: the members disagree */
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (rows[i].has_hash && rows[j].has_hash &&
			    rows[i].hash.applied == rows[j].hash.applied) {
				compared++;
				differ += rows[i].hash.hash != rows[j].hash.hash;
			}
	return differ ? 1 : compared ? 0 : -1;
}

/* status -o json: one object, the asked member's fields plus "members" (and "checksums"). */
static int status_json(json_t *js, const member_row_t *rows, int n, int self, uint64_t top,
		       bool checksum)
{
	json_t *ms = json_array();
	int down = 0;

	for (int i = 0; i < n; i++) {
		const member_row_t *r = &rows[i];
		json_t *m = json_pack("{sIss}", "id", (json_int_t)r->id, "address", r->addr);
		if (r->err && !(r->has_hash || i == self)) {
			down++;
			json_object_set_new(m, "role", json_string("unreachable"));
			json_object_set_new(m, "error", json_string(geokv_strerror(r->err)));
		} else {
			json_object_set_new(m, "role", json_string(r->leader ? "leader" : "follower"));
			json_object_set_new(m, "term", json_integer((json_int_t)r->term));
			json_object_set_new(m, "commit", json_integer((json_int_t)r->commit));
			json_object_set_new(m, "applied", json_integer((json_int_t)r->applied));
			json_object_set_new(m, "lag", json_integer((json_int_t)(top > r->applied ?
									 top - r->applied : 0)));
			if (r->has_hash) {
				char h[24];
				snprintf(h, sizeof h, "%016llx", (unsigned long long)r->hash.hash);
				json_object_set_new(m, "checksum", json_string(h));
			}
		}
		json_array_append_new(ms, m);
	}
	json_object_set_new(js, "members", ms);
	int d = checksum ? checksums_differ(rows, n) : -1;
	if (d >= 0)
		json_object_set_new(js, "checksums", json_string(d ? "differ" : "equal"));
	cli_json_emit(js);
	return d == 1 ? CLI_ERR : down ? CLI_CONN : CLI_OK;
}

typedef struct leaf_row {
	uint64_t id;
	uint8_t flags;
	uint64_t applied, lag_ms, contact_ms, lag;
	char name[256];
} leaf_row_t;

/* Lag in entries behind the answering member's commit index, and in ms as the leaf
 * reported it (the leader's clock). */
static void print_leaves(const leaf_row_t *r, unsigned n)
{
	if (n == 0)
		return;
	printf("\nleaves:\n  %-4s %-6s %-24s %-12s %12s %10s %9s %11s\n", "", "ID", "NAME", "STATE",
	       "APPLIED", "LAG", "LAG_MS", "CONTACT_MS");
	for (unsigned i = 0; i < n; i++)
		printf("  leaf %-6llu %-24s %-12s %12llu %10llu %9llu %11llu\n",
		       (unsigned long long)r[i].id, r[i].name,
		       (r[i].flags & PROTO_LEAF_CONNECTED) ? "connected" : "disconnected",
		       (unsigned long long)r[i].applied, (unsigned long long)r[i].lag,
		       (unsigned long long)r[i].lag_ms, (unsigned long long)r[i].contact_ms);
}

/*
 * status: the member asked, then every member of its configuration, each asked in turn for
 * its own view (role, term, commit, applied) and, with --checksum, its content checksum (a
 * full scan of its store, like `etcdctl endpoint hashkv`). Lag is in entries behind the
 * highest commit index seen. Exit 5 when a member could not be asked.
 */
static int prep_status(cli_ctx_t *cx, call_t *cl)
{
	static const char *roles[] = {"?", "client", "primary", "leaf", "gateway"};
	member_row_t rows[PROTO_MAX_MEMBERS];
	proto_status_t s;
	kvc_t *k = cli_client(cx);
	uint64_t top = 0;
	int n, rc, down = 0;

	if (k == NULL)
		return cx->open_exit;
	if ((rc = kvc_status(k, &s)) != 0)
		return cli_fail(cx, rc, NULL);
	/* The leaves this member feeds, copied out (the views end with the next call) and
	 * printed last, as "  leaf ID ..." rows (scripts that read member rows, "  ID ...",
	 * never see them). */
	static leaf_row_t lrows[PROTO_MAX_LEAVES];
	unsigned nl = s.nleaves;
	for (unsigned i = 0; i < nl; i++) {
		const proto_leaf_info_t *lf = &s.leaves[i];
		lrows[i] = (leaf_row_t){lf->id, lf->flags, lf->applied, lf->lag_ms, lf->contact_age_ms,
					s.commit > lf->applied ? s.commit - lf->applied : 0, ""};
		snprintf(lrows[i].name, sizeof lrows[i].name, "%.*s", (int)lf->name.len,
			 lf->name.len ? (const char *)lf->name.p : "");
	}
	json_t *js = NULL;
	if (cx->json) {
		js = json_pack("{sIsssbss#sIsIsIsIsIsIss#}", "node", (json_int_t)s.node_id,
			       "role", roles[s.role < 5 ? s.role : 0], "leader", s.is_leader,
			       "leader_address", s.leader.len ? (const char *)s.leader.p : "",
			       (int)s.leader.len, "term", (json_int_t)s.term,
			       "revision", (json_int_t)s.revision, "commit", (json_int_t)s.commit,
			       "applied", (json_int_t)s.applied, "first_index", (json_int_t)s.first_index,
			       "last_index", (json_int_t)s.last_index,
			       "version", s.version.len ? (const char *)s.version.p : "", (int)s.version.len);
		if (!js)
			return cli_fail(cx, -12, NULL);
		if (nl > 0) {
			json_t *ls = json_array();
			for (unsigned i = 0; i < nl; i++)
				json_array_append_new(ls, json_pack("{sIsssbsIsIsIsI}",
					"id", (json_int_t)lrows[i].id, "name", lrows[i].name,
					"connected", (lrows[i].flags & PROTO_LEAF_CONNECTED) != 0,
					"applied", (json_int_t)lrows[i].applied,
					"lag", (json_int_t)lrows[i].lag, "lag_ms", (json_int_t)lrows[i].lag_ms,
					"contact_ms", (json_int_t)lrows[i].contact_ms));
			json_object_set_new(js, "leaves", ls);
		}
		if (s.nmembers == 0) {
			cli_json_emit(js);
			return CLI_OK;
		}
		goto members;
	}
	printf("node:          %llu\n", (unsigned long long)s.node_id);
	printf("role:          %s%s\n", roles[s.role < 5 ? s.role : 0], s.is_leader ? " (leader)" : "");
	printf("leader:        %.*s\n", (int)s.leader.len, s.leader.len ? (const char *)s.leader.p : "");
	printf("term:          %llu\n", (unsigned long long)s.term);
	printf("revision:      %llu\n", (unsigned long long)s.revision);
	printf("commit index:  %llu\n", (unsigned long long)s.commit);
	printf("applied index: %llu\n", (unsigned long long)s.applied);
	printf("log:           %llu..%llu\n", (unsigned long long)s.first_index,
	       (unsigned long long)s.last_index);
	printf("version:       %.*s\n", (int)s.version.len, s.version.len ? (const char *)s.version.p : "");
	if (s.nmembers == 0) {
		print_leaves(lrows, nl);
		return CLI_OK;
	}

members:
	/* copy out: the views end with the next call */
	memset(rows, 0, sizeof rows);
	n = s.nmembers;
	int self = -1;
	for (int i = 0; i < n; i++) {
		const proto_member_t *m = &s.members[i];
		rows[i].id = m->id;
		snprintf(rows[i].addr, sizeof rows[i].addr, "%.*s", (int)m->addr.len,
			 m->addr.len ? (const char *)m->addr.p : "");
		rows[i].has_match = m->flags & PROTO_MEMBER_MATCH;
		rows[i].match = m->match;
		if (m->flags & PROTO_MEMBER_SELF) {
			self = i;
			row_from_status(&rows[i], &s);
		}
	}
	for (int i = 0; i < n; i++) {
		member_row_t *r = &rows[i];
		if (i == self) {
			if (cl->o.checksum && (r->err = kvc_hash(k, &r->hash)) == 0)
				r->has_hash = true;
			continue;
		}
		if (!r->addr[0]) {
			r->err = PROTO_ECLOSED;
			continue;
		}
		kvc_t *mk = cli_client_at(cx, r->addr);
		if (mk == NULL) {
			r->err = PROTO_ECLOSED;
			continue;
		}
		ask_member(cx, mk, r, cl->o.checksum);
		kvc_close(mk);
	}
	for (int i = 0; i < n; i++)
		if (!rows[i].err && rows[i].commit > top)
			top = rows[i].commit;
	if (js)
		return status_json(js, rows, n, self, top, cl->o.checksum);
	printf("\nmembers:\n  %-4s %-22s %-9s %6s %12s %12s %8s%s\n", "ID", "ADDRESS", "ROLE", "TERM",
	       "COMMIT", "APPLIED", "LAG", cl->o.checksum ? "  CHECKSUM" : "");
	for (int i = 0; i < n; i++) {
		member_row_t *r = &rows[i];
		if (r->err && !(r->has_hash || i == self)) {
			down++;
			printf("  %-4llu %-22s unreachable: %s\n", (unsigned long long)r->id,
			       r->addr[0] ? r->addr : "(address not learned yet)", geokv_strerror(r->err));
			continue;
		}
		printf("  %-4llu %-22s %-9s %6llu %12llu %12llu %8llu", (unsigned long long)r->id,
		       r->addr, r->leader ? "leader" : "follower", (unsigned long long)r->term,
		       (unsigned long long)r->commit, (unsigned long long)r->applied,
		       (unsigned long long)(top > r->applied ? top - r->applied : 0));
		if (cl->o.checksum) {
			if (r->has_hash)
				printf("  %016llx", (unsigned long long)r->hash.hash);
			else
				printf("  (%s)", geokv_strerror(r->err));
		}
		printf("\n");
	}
	print_leaves(lrows, nl);
	if (cl->o.checksum) {
		int d = checksums_differ(rows, n);
		if (d == 1)
			printf("checksums: DIFFER between members at the same applied index\n");
		else if (d == 0)
			printf("checksums: equal where the applied index is equal\n");
		if (d == 1)
			return CLI_ERR;
	}
	return down ? CLI_CONN : CLI_OK;
}

/* load drives the client itself (cli_load.c: pipelined batches, progress, its own errors),
 * so it is all prep and returns the exit code. */
static int prep_load(cli_ctx_t *cx, call_t *cl)
{
	return cli_cmd_load(cx, cl->a[0], cl->a[1], &cl->o);
}

static int prep_watch(cli_ctx_t *cx, call_t *cl)
{
	const char *prefix = cl->n > 1 ? cl->a[1] : "";

	if (strcmp(cl->c->name, "dump") == 0)
		return cli_cmd_dump(cx, cl->a[0], prefix, &cl->o);
	return cli_cmd_watch(cx, cl->a[0], prefix, &cl->o);
}

static int prep_snapshot(cli_ctx_t *cx, call_t *cl)
{
	return cli_cmd_snapshot_save(cx, cl->a[0], &cl->o);
}

/* ---- dispatch --------------------------------------------------------------------------- */

/* What an error is about: the bucket for bucket errors, else the key. */
static const char *about(const call_t *cl, int err)
{
	if (cl->c->flags & CMD_ABOUT_BUCKET)
		return cl->a[0];
	if (!(cl->c->flags & CMD_ABOUT_KEY))
		return NULL;
	return err == KV_EBADBUCKET || err == KV_ENOBUCKET ? cl->a[0] : cl->a[1];
}

/* Run command c on argv (argv[0] is its last word); returns the exit code. */
static int call_cmd(cli_ctx_t *cx, const cmd_t *c, int argc, char **argv)
{
	call_t cl;
	kvc_t *k;
	int rc, err;

	memset(&cl, 0, sizeof cl);
	cl.c = c;
	if ((rc = parse(cx, c, argc, argv, &cl.o, &cl.a, &cl.n)) >= 0)
		return rc;
	cl.json = cx->json;
	if (c->flags & CMD_LOCAL) {
		/* "context add" -> "add" */
		return cli_cmd_context(cx, strchr(c->name, ' ') + 1, cl.a, cl.n, &cl.o);
	}
	if ((rc = cli_ctx_resolve(cx)) != 0)
		return rc;
	if (c->prep && (rc = c->prep(cx, &cl)) >= 0)
		goto out;
	if (!(k = cli_client(cx))) {
		rc = cx->open_exit;
		goto out;
	}
	if ((err = c->run(k, &cl)) != 0) {
		rc = cli_fail(cx, err, about(&cl, err));
		goto out;
	}
	if ((c->flags & CMD_REV) && cl.json)
		cli_json_emit(json_pack("{sI}", "revision", (json_int_t)cl.rev));
	else if (c->flags & CMD_REV)
		printf("%llu\n", (unsigned long long)cl.rev);
	rc = CLI_OK;
out:
	free(cl.buf);
	return rc;
}

/* ---- table and main ------------------------------------------------------------------ */

static const cmd_t cmds[] = {
	{"bucket add", "NAME [options]", "Create a bucket (idempotent with the same config).",
	 "      --history N          revisions kept per key, 1..64 (default 1)\n"
	 "      --max-value BYTES    largest value, e.g. 4096, 64K, 1MiB (default 1MiB)\n"
	 "      --ttl DURATION       delete keys not written for this long, e.g. 24h (default none)\n"
	 "      --content-type T     served by the HTTPS gateway (default application/octet-stream)\n",
	 NULL, run_bucket_add, 1, 1, CMD_ABOUT_BUCKET | CMD_REV},
	{"bucket ls", "", "List buckets.", NULL, NULL, run_bucket_ls, 0, 0, 0},
	{"bucket info", "NAME", "Show a bucket's configuration and size.", NULL,
	 NULL, run_bucket_info, 1, 1, CMD_ABOUT_BUCKET},
	{"bucket rm", "NAME [-f]", "Delete a bucket and all its keys.",
	 "  -f, --force          do not ask (required when stdin is not a terminal)\n",
	 prep_bucket_rm, run_bucket_rm, 1, 1, CMD_ABOUT_BUCKET | CMD_REV},
	{"put", "BUCKET KEY [VALUE|-]", "Set KEY to VALUE (stdin when VALUE is '-' or absent).\n"
	 "Prints the new revision.", NULL, prep_put, run_put, 2, 3, CMD_ABOUT_KEY | CMD_REV},
	{"create", "BUCKET KEY [VALUE|-]", "Set KEY only if it has no value (exit 4 if it has).\n"
	 "Prints the new revision.", NULL, prep_put, run_put, 2, 3, CMD_ABOUT_KEY | CMD_REV},
	{"update", "BUCKET KEY VALUE REV", "Set KEY only if its last revision is REV (else exit 4).\n"
	 "Prints the new revision.", NULL, prep_update, run_update, 4, 4, CMD_ABOUT_KEY | CMD_REV},
	{"get", "BUCKET KEY [options]", "Print KEY's value (exit 3 if absent).",
	 "      --rev N, --revision N\n"
	 "                       the value KEY had at revision N (if still retained)\n"
	 "      --raw            only the value's bytes, no header, no newline\n",
	 NULL, run_get, 2, 2, CMD_ABOUT_KEY},
	{"del", "BUCKET KEY", "Delete KEY (a tombstone; history is kept).\nPrints the revision.",
	 NULL, NULL, run_del, 2, 2, CMD_ABOUT_KEY | CMD_REV},
	{"purge", "BUCKET KEY", "Delete KEY and its history.\nPrints the revision.", NULL,
	 NULL, run_del, 2, 2, CMD_ABOUT_KEY | CMD_REV},
	{"keys", "BUCKET [PREFIX]", "List keys, sorted, one per line (PREFIX e.g. 'user.').",
	 NULL, NULL, run_keys, 1, 2, CMD_ABOUT_BUCKET},
	{"history", "BUCKET KEY", "Show KEY's retained revisions, oldest first.", NULL,
	 NULL, run_history, 2, 2, CMD_ABOUT_KEY},
	{"load", "BUCKET FILE|- [options]",
	 "Load keys from FILE or stdin, batched and pipelined.\n\n"
	 "One key per line: NDJSON {\"key\":\"k\",\"value\":\"v\"} (or \"value_b64\": base64),\n"
	 "CSV (key,value; RFC 4180 quoting) or TSV (key<TAB>value: the rest of the line).\n"
	 "The format comes from --format, else the extension (.ndjson .jsonl .json, .csv,\n"
	 ".tsv, before any .gz/.zst), else each line's first byte ('{' = JSON, else TSV).\n"
	 "gzip and zstd input is recognised by its first bytes. Blank lines are skipped.\n"
	 "Every line is checked first (parse, key rules, the bucket's max value) and a bad\n"
	 "one is reported as FILE:LINE: reason. Keys go in batches (one atomic write\n"
	 "each, applied exactly once however often it is resent), several in flight;\n"
	 "every batch acknowledged is durable. Progress goes\n"
	 "to stderr (a live line on a terminal, a plain line every 5s otherwise), the\n"
	 "summary to stdout (one JSON object with -o json).",
	 "      --format F           auto (default), ndjson, csv or tsv\n"
	 "      --key-field F        JSON field, or CSV/TSV column: a header name or a\n"
	 "                           number from 1 (default: \"key\", column 1)\n"
	 "      --value-field F      likewise (default: \"value\" or \"value_b64\"; CSV\n"
	 "                           column 2; TSV the rest of the line)\n"
	 "      --header             CSV/TSV: the first line names the columns (implied by\n"
	 "                           a field given by name)\n"
	 "      --max-errors N       skip up to N bad lines, stop at the next (default 0)\n"
	 "      --skip-bad           skip every bad line (no limit)\n"
	 "      --checkpoint FILE    keep FILE saying through which line all is loaded\n"
	 "      --resume             with --checkpoint: skip the lines it says are loaded\n"
	 "      --batch N            ops per batch (default 1000)\n"
	 "      --window N           batches in flight (default 4)\n"
	 "      --retry DUR          resend a batch whose outcome is unknown (leader lost,\n"
	 "                           timeout) for this long; never applied twice (30s; 0 never)\n"
	 "      --progress-every DUR progress interval (default 250ms on a terminal, 5s)\n"
	 "  -q, --quiet              no progress on stderr\n",
	 prep_load, NULL, 2, 2, 0},
	{"watch", "BUCKET [PREFIX] [options]",
	 "Print every change (put, delete, purge) to keys under PREFIX as it is applied,\n"
	 "in revision order, from now or from --from-rev (changes still retained: the\n"
	 "bucket's history). Runs until interrupted, or --count changes.",
	 "      --from-rev N         start at revision N (default: the next one)\n"
	 "      --count N            exit after N changes\n",
	 prep_watch, NULL, 1, 2, 0},
	{"dump", "BUCKET [PREFIX]",
	 "Print the live keys under PREFIX as NDJSON {\"key\",\"value\"} lines (\"value_b64\"\n"
	 "for values that are not UTF-8), in key order: 'geokv load' reads it back.\n"
	 "Each page of 10,000 keys is one consistent read; use 'snapshot save' for one\n"
	 "consistent copy of the whole store.",
	 NULL, prep_watch, NULL, 1, 2, 0},
	{"snapshot save", "FILE",
	 "Save the member's whole store to FILE: its snapshot stream (one consistent read,\n"
	 "checksummed chunks), fetched in chunks and renamed into place when complete.\n"
	 "Prints its checksum, equal to 'status --checksum' at the same applied index.\n"
	 "Restore with: geokv-restore --data DIR FILE (see docs/cli.md).",
	 NULL, prep_snapshot, NULL, 1, 1, 0},
	{"status", "[--checksum]", "Show the member's status and every member's role, indexes and lag.\n"
	 "Exit 5 when a member cannot be reached, 1 when checksums differ.",
	 "      --checksum           each member's content checksum (reads its whole store);\n"
	 "                           equal on members at the same applied index\n",
	 prep_status, NULL, 0, 0, 0},
	{"context add", "NAME [options]", "Save connection settings as context NAME.\n\n"
	 "Takes the connection flags given (-s, --tls-ca, --tls-cert, --tls-key,\n"
	 "--token-file, --cluster, --timeout); files are stored as absolute paths. The\n"
	 "first context added becomes the current one.",
	 "  -f, --force              replace an existing context\n"
	 "      --description TEXT   shown by 'context ls'\n"
	 "      --select             make it the current context\n",
	 NULL, NULL, 1, 1, CMD_LOCAL},
	{"context ls", "", "List contexts; '*' marks the current one.", NULL, NULL, NULL, 0, 0,
	 CMD_LOCAL},
	{"context show", "[NAME]", "Show a context (default: the current one).", NULL, NULL, NULL,
	 0, 1, CMD_LOCAL},
	{"context use", "NAME", "Make NAME the current context.", NULL, NULL, NULL, 1, 1, CMD_LOCAL},
	{"context rm", "NAME", "Delete context NAME.", NULL, NULL, NULL, 1, 1, CMD_LOCAL},
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

static void main_help(FILE *f)
{
	fprintf(f, "Usage: geokv [options] COMMAND [ARGS]\n\n"
		   "Client for geokv, a replicated key-value store.\n\nCommands:\n");
	for (size_t i = 0; i < NCMDS; i++) {
		char syn[64];
		if (strncmp(cmds[i].name, "context ", 8) == 0 && strcmp(cmds[i].name, "context add"))
			continue; /* one line for the group: see 'geokv context --help' */
		snprintf(syn, sizeof syn, "%s %s", cmds[i].name, cmds[i].args);
		const char *nl = strchr(cmds[i].summary, '\n');
		fprintf(f, "  %-34s %.*s\n", syn,
			nl ? (int)(nl - cmds[i].summary) : (int)strlen(cmds[i].summary), cmds[i].summary);
	}
	fprintf(f, "  %-34s %s\n", "context ls|show|use|rm", "list, show, select, delete contexts");
	fprintf(f, "\nOptions:\n%s      --version        print the version\n"
		   "\nRun 'geokv COMMAND --help' for a command's options.\n\n%s",
		cli_common_help, exit_help);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		COMMON_OPTIONS,
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0},
	};
	cli_ctx_t cx;
	char name[64];
	int ch, rc;
	const cmd_t *c = NULL;

	memset(&cx, 0, sizeof cx);
	/* servers, TLS files, token: flags here and after the command, then cli_ctx_resolve()
	 * fills the rest from the context file and the environment */
	cx.timeout_ms = 10000;
	opterr = 0;
	/* "+": stop at the command; its own options are parsed by the command */
	while ((ch = getopt_long(argc, argv, "+s:o:h", lo, NULL)) != -1) {
		if ((rc = common_opt(&cx, ch, NULL)) >= 0) {
			if (rc)
				return rc;
			continue;
		}
		switch (ch) {
		case 'h':
			main_help(stdout);
			return CLI_OK;
		case OPT_VERSION:
			if (cx.json)
				cli_json_emit(json_pack("{ssss}", "version", geokv_version(),
							"release", GEOKV_VERSION));
			else
				printf("geokv %s, protocol %d\n", geokv_version(), PROTO_VERSION);
			return CLI_OK;
		case ':':
			return cli_usage_error(NULL, "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		main_help(stderr);
		return CLI_USAGE;
	}
	argv += optind;
	argc -= optind;
	if (strcmp(argv[0], "help") == 0) {
		main_help(stdout);
		return CLI_OK;
	}
	if (strcmp(argv[0], "bucket") == 0 || strcmp(argv[0], "context") == 0 ||
	    strcmp(argv[0], "snapshot") == 0) {
		const char *g = argv[0];
		size_t gl = strlen(g);
		if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
			FILE *f = argc < 2 ? stderr : stdout;
			fprintf(f, "Usage: geokv %s %s ...\n\n", g, g[0] == 'b' ? "add|ls|info|rm" :
				g[0] == 's' ? "save" : "add|ls|show|use|rm");
			for (size_t i = 0; i < NCMDS; i++) {
				char syn[64];
				if (strncmp(cmds[i].name, g, gl) != 0 || cmds[i].name[gl] != ' ')
					continue;
				snprintf(syn, sizeof syn, "%s %s", cmds[i].name, cmds[i].args);
				const char *nl = strchr(cmds[i].summary, '\n');
				fprintf(f, "  %-34s %.*s\n", syn, nl ? (int)(nl - cmds[i].summary) :
					(int)strlen(cmds[i].summary), cmds[i].summary);
			}
			if (g[0] == 'c')
				fprintf(f, "\nContexts live in $GEOKV_CONFIG, else "
					   "~/.config/geokv/contexts.ini.\n");
			fprintf(f, "\nRun 'geokv %s COMMAND --help' for a command's options.\n", g);
			return argc < 2 ? CLI_USAGE : CLI_OK;
		}
		snprintf(name, sizeof name, "%s %s", g, argv[1]);
		argv++;
		argc--;
	} else {
		snprintf(name, sizeof name, "%s", argv[0]);
	}
	for (size_t i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].name, name) == 0)
			c = &cmds[i];
	if (!c)
		return cli_usage_error(NULL, "unknown command '%s'", name);
	rc = call_cmd(&cx, c, argc, argv);
	fflush(stdout);
	if (ferror(stdout) && rc == CLI_OK) {
		fprintf(stderr, "geokv: writing output failed\n");
		rc = CLI_ERR;
	}
	kvc_close(cx.k);
	cli_ctx_free(&cx);
	return rc;
}
