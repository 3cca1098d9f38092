/*
 * Internals of the `geokv` CLI shared between its files (cli.c: commands and main;
 * cli_util.c: exit codes, formatting; cli_load.c: `geokv load`).
 * Not a library: nothing outside proto/cli*.c includes this.
 */
#ifndef GEOKV_PROTO_CLI_H
#define GEOKV_PROTO_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "proto/client.h"
#include "proto/conf.h"

enum { LOAD_FMT_AUTO, LOAD_FMT_NDJSON, LOAD_FMT_CSV, LOAD_FMT_TSV };

/* Exit codes: part of the CLI's contract (docs/cli.md). */
enum {
	CLI_OK = 0,
	CLI_ERR = 1,        /* any other failure */
	CLI_USAGE = 2,      /* bad command line */
	CLI_NOTFOUND = 3,   /* key or bucket not found */
	CLI_CONFLICT = 4,   /* revision mismatch, key exists, bucket exists differently */
	CLI_CONN = 5,       /* no server reachable, connection lost, timed out */
	CLI_INVALID = 6,    /* refused input: bad name, value too large, bad config, bad load line */
};

typedef struct cli_ctx {
	/* flags first; cli_ctx_resolve() fills what no flag set from the context and the
	 * environment (precedence: cli_context.c) */
	const char *servers;
	uint64_t timeout_ms;
	const char *timeout_str;  /* --timeout as given (context add stores it) */
	bool timeout_set;
	const char *tls_ca, *tls_cert, *tls_key; /* --tls-ca etc. or GEOKV_TLS_*; NULL = plain */
	const char *cluster;      /* --cluster or GEOKV_CLUSTER */
	const char *token_file;   /* --token-file */
	const char *context;      /* --context NAME */
	const char *token;        /* resolved credentials (GEOKV_TOKEN or a token file) */
	char *token_buf;
	char *owned[8];           /* strings copied out of the context file */
	int nowned;
	bool resolved;
	const char *ctx_name;     /* the context in use, or NULL */
	char ctx_name_buf[65];
	bool json;          /* -o json / --json: JSON on stdout (docs/cli.md) */
	bool stale;         /* --stale: reads from the member's local copy */
	kvc_t *k;           /* opened lazily by cli_client() */
	int open_exit;      /* exit code when cli_client() failed */
} cli_ctx_t;

/* Map a geokv error to the exit code above. */
int cli_exit_code(int err);

/*
 * Print "geokv: <what>: <error text>[: <server message>]" to stderr and return the exit code
 * for err. `what` may be NULL.
 */
int cli_fail(cli_ctx_t *cx, int err, const char *what);

/* Print "geokv: <msg>" to stderr; returns CLI_USAGE. Adds a hint to run --help. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Durations, sizes and numbers are parsed with proto/conf.h's proto_conf_parse_duration
 * (bare number = seconds here: bare unit 1000), proto_conf_parse_size, proto_conf_parse_u64:
 * the same rules as the daemons' config files. */

/* Format ms as a short duration ("1h30m", "0" for 0) into buf. */
const char *cli_fmt_duration(uint64_t ms, char *buf, size_t n);
/* Format a UTC time in ms as RFC 3339 into buf. */
const char *cli_fmt_time(uint64_t ms, char *buf, size_t n);

/* The blocking client, opened on first use. NULL after printing an error; then exit with
 * cx->open_exit. */
kvc_t *cli_client(cli_ctx_t *cx);
/* A client of its own to `servers`, with cx's options (status asks each member). */
kvc_t *cli_client_at(cli_ctx_t *cx, const char *servers);

/* Per-command option values, filled by cli.c's option parser. */
typedef struct opts {
	uint64_t history, max_value, ttl_ms, rev;
	bool has_rev, raw, force;
	const char *ctype;
	uint64_t batch, window;   /* load: 0 = defaults */
	bool skip_bad, quiet;     /* load */
	bool checksum;            /* status: each member's content checksum */
	/* load */
	int format;               /* LOAD_FMT_* */
	const char *key_field, *value_field; /* names; also columns when all digits: */
	uint64_t key_col, value_col;
	bool header;
	uint64_t max_errors;
	bool has_max_errors;
	const char *checkpoint;
	bool resume;
	uint64_t progress_ms;     /* 0 = 250 ms on a terminal, else 5 s */
	uint64_t retry_ms;        /* load: resend unknown outcomes this long */
	bool has_retry;
	uint64_t count;           /* watch: stop after this many changes (0 = never) */
	const char *description;  /* context add */
	bool select;              /* context add: make it the current context */
} opts_t;

/* watch, dump, snapshot save (cli_stream.c). Return the exit code. */
int cli_cmd_watch(cli_ctx_t *cx, const char *bucket, const char *prefix, const opts_t *o);
int cli_cmd_dump(cli_ctx_t *cx, const char *bucket, const char *prefix, const opts_t *o);
int cli_cmd_snapshot_save(cli_ctx_t *cx, const char *file, const opts_t *o);

/* `geokv load BUCKET FILE|-` (cli_load.c). Returns the exit code. */
int cli_cmd_load(cli_ctx_t *cx, const char *bucket, const char *file, const opts_t *o);

/* Fill the connection settings no flag gave from the context file and the environment, and
 * read the token file. 0, or the exit code after a message. Idempotent. */
int cli_ctx_resolve(cli_ctx_t *cx);
void cli_ctx_free(cli_ctx_t *cx);
/* `geokv context add|ls|use|rm|show` (cli_context.c); returns the exit code. */
int cli_cmd_context(cli_ctx_t *cx, const char *sub, char **a, int n, const opts_t *o);

/* JSON output (cli_json.c). emit prints o as one compact line on stdout and frees it. */
int cli_json_emit(json_t *o);
/* o["value"] when the bytes are UTF-8, else o["value_b64"] (base64). 0 or -1. */
int cli_json_set_value(json_t *o, const void *p, size_t len);
/* A record as an object (bucket may be NULL; the value only when with_value and a PUT). */
json_t *cli_json_rec(const char *bucket, const proto_rec_t *r, bool with_value);
json_t *cli_json_bucket(const proto_bucket_info_t *b);
const char *cli_kind_name(uint8_t kind);

/* Shared option parsing for subcommands: handles -s/--server, --timeout, -h/--help. */
extern const char *cli_common_help;

#endif
