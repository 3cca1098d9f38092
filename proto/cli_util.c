/* Small helpers of the geokv CLI: exit codes, error lines, formatting, the lazy client. */
#include "proto/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "proto/tls.h"

const char *cli_common_help =
	"  -s, --server LIST    servers, host:port[,host:port...] (env GEOKV_SERVER,\n"
	"                       default 127.0.0.1:7400)\n"
	"      --timeout DUR    per-request timeout, e.g. 5s, 500ms (default 10s)\n"
	"      --tls-ca FILE    use TLS; the servers' certificates must chain to this CA\n"
	"                       and name the host as given in -s (env GEOKV_TLS_CA)\n"
	"      --tls-cert FILE, --tls-key FILE\n"
	"                       client certificate and key, for servers that ask for one\n"
	"                       (env GEOKV_TLS_CERT, GEOKV_TLS_KEY)\n"
	"      --stale          reads from the member asked, without confirming it holds\n"
	"                       the latest writes (faster; default: linearizable)\n"
	"      --token-file FILE  credentials: the file's first line (env GEOKV_TOKEN,\n"
	"                       GEOKV_TOKEN_FILE)\n"
	"      --cluster ID     the cluster id the servers must have (env GEOKV_CLUSTER)\n"
	"      --context NAME   connection settings from a named context (env GEOKV_CONTEXT;\n"
	"                       default: the current one; see 'geokv context --help')\n"
	"  -o, --output FMT     text (default) or json; --json is -o json\n"
	"  -h, --help           this help\n";

int cli_exit_code(int err)
{
	switch (err) {
	case 0:
		return CLI_OK;
	case KV_ENOTFOUND:
	case KV_ENOBUCKET:
		return CLI_NOTFOUND;
	case KV_EEXIST:
	case KV_EREVISION:
	case KV_EBUCKETEXISTS:
		return CLI_CONFLICT;
	case KV_EBADKEY:
	case KV_EBADBUCKET:
	case KV_ETOOBIG:
	case KV_EBADCONFIG:
		return CLI_INVALID;
	case PROTO_ECLOSED:
	case PROTO_ETIMEDOUT:
	case PROTO_ENOTLEADER:
	case PROTO_ESHUTDOWN:
	case PROTO_ETLS:
	case UV_ECONNREFUSED:
	case UV_ECONNRESET:
	case UV_ETIMEDOUT:
	case UV_EHOSTUNREACH:
	case UV_ENETUNREACH:
	case UV_EAI_NONAME:
	case UV_EAI_AGAIN:
	case UV_EAI_FAIL:
	case UV_EADDRNOTAVAIL:
	case UV_EPIPE:
		return CLI_CONN;
	default:
		return CLI_ERR;
	}
}

int cli_fail(cli_ctx_t *cx, int err, const char *what)
{
	const char *srv = cx && cx->k ? kvc_errmsg(cx->k) : "";
	int code = cli_exit_code(err);

	fprintf(stderr, "geokv: ");
	if (what)
		fprintf(stderr, "%s: ", what);
	fprintf(stderr, "%s", geokv_strerror(err));
	if (code == CLI_CONN && cx)
		fprintf(stderr, " (servers %s)", cx->servers);
	/* the server's own words, when they add something */
	if (srv && *srv && strcmp(srv, geokv_strerror(err)) != 0)
		fprintf(stderr, ": %s", srv);
	fputc('\n', stderr);
	return code;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "geokv: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun 'geokv %s%s--help' for usage.\n", cmd ? cmd : "", cmd ? " " : "");
	return CLI_USAGE;
}

const char *cli_fmt_duration(uint64_t ms, char *buf, size_t n)
{
	static const struct { uint64_t ms; const char *u; } units[] = {
		{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
	size_t off = 0;

	if (ms == 0) {
		snprintf(buf, n, "0");
		return buf;
	}
	buf[0] = 0;
	for (size_t i = 0; i < sizeof units / sizeof units[0] && off < n; i++) {
		if (ms >= units[i].ms) {
			int w = snprintf(buf + off, n - off, "%llu%s",
					 (unsigned long long)(ms / units[i].ms), units[i].u);
			if (w < 0)
				break;
			off += (size_t)w;
			ms %= units[i].ms;
		}
	}
	return buf;
}

const char *cli_fmt_time(uint64_t ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
	return buf;
}

kvc_t *cli_client(cli_ctx_t *cx)
{
	if (cx->k == NULL)
		cx->k = cli_client_at(cx, cx->servers);
	return cx->k;
}

kvc_t *cli_client_at(cli_ctx_t *cx, const char *servers)
{
	kvc_opts_t o;
	kvc_t *k;
	int rc;

	memset(&o, 0, sizeof o);
	o.stale = cx->stale;
	o.request_timeout_ms = (uint32_t)(cx->timeout_ms > UINT32_MAX ? UINT32_MAX : cx->timeout_ms);
	o.connect_timeout_ms = o.request_timeout_ms < 2000 ? o.request_timeout_ms : 2000;
	if (cli_ctx_resolve(cx) != 0) {
		cx->open_exit = CLI_USAGE;
		return NULL;
	}
	o.cluster = cx->cluster;
	o.token = cx->token;
	if (cx->tls_ca && !*cx->tls_ca)
		cx->tls_ca = NULL;
	if (cx->tls_cert || cx->tls_key || cx->tls_ca) {
		proto_tls_pem_t pem;
		char err[200];
		if (!cx->tls_ca) {
			fprintf(stderr, "geokv: --tls-cert/--tls-key need --tls-ca (or GEOKV_TLS_CA)\n");
			cx->open_exit = CLI_USAGE;
			return NULL;
		}
		if (!cx->tls_cert != !cx->tls_key) {
			fprintf(stderr, "geokv: --tls-cert and --tls-key go together\n");
			cx->open_exit = CLI_USAGE;
			return NULL;
		}
		/* Read the files here too: the library only says PROTO_ETLS. */
		if (proto_tls_pem_load(&pem, cx->tls_cert, cx->tls_key, cx->tls_ca, err,
				       sizeof err) != 0) {
			fprintf(stderr, "geokv: TLS files: %s\n", err);
			cx->open_exit = CLI_USAGE;
			return NULL;
		}
		proto_tls_pem_free(&pem);
		o.tls_ca = cx->tls_ca;
		o.tls_cert = cx->tls_cert;
		o.tls_key = cx->tls_key;
	}
	if ((rc = kvc_open(&k, servers, &o)) != 0) {
		if (rc == -EINVAL) {
			fprintf(stderr, "geokv: invalid server list '%s' (want host:port[,host:port...])\n",
				servers);
			cx->open_exit = CLI_USAGE;
		} else {
			cx->open_exit = cli_fail(cx, rc, "client");
		}
		return NULL;
	}
	return k;
}
