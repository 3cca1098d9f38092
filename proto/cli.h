/*
 * Internals of the `geokv` CLI shared between its files (cli.c: commands and main;
 * cli_util.c: exit codes, formatting; cli_load.c: `geokv load`).
 * Not a library: nothing outside proto/cli*.c includes this.
 */
#ifndef GEOKV_PROTO_CLI_H
#define GEOKV_PROTO_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/client.h"
#include "proto/conf.h"

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
	const char *servers;
	uint64_t timeout_ms;
	const char *tls_ca, *tls_cert, *tls_key; /* --tls-ca etc. or GEOKV_TLS_*; NULL = plain */
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
} opts_t;

/* `geokv load BUCKET FILE|-` (cli_load.c). Returns the exit code. */
int cli_cmd_load(cli_ctx_t *cx, const char *bucket, const char *file, const opts_t *o);

/* Shared option parsing for subcommands: handles -s/--server, --timeout, -h/--help. */
extern const char *cli_common_help;

#endif
