/*
 * Named contexts of the geokv CLI (like `nats context`): a small INI file of connection
 * settings, so `geokv --context prod ...` (or the file's current context) replaces a line of
 * -s/--tls-ca/--token-file flags.
 *
 * File: $GEOKV_CONFIG, else $XDG_CONFIG_HOME/geokv/contexts.ini, else
 * ~/.config/geokv/contexts.ini. Written whole (temporary file + rename, mode 0600: it names
 * credential files):
 *
 *   current = prod
 *   [prod]
 *   server = 10.0.0.1:7400,10.0.0.2:7400
 *   tls_ca = /etc/geokv/ca.crt
 *   token_file = /etc/geokv/token
 *
 * Keys: server, tls_ca, tls_cert, tls_key, token_file, cluster, timeout, description.
 *
 * Precedence, highest first: flags; the context named by --context or GEOKV_CONTEXT;
 * environment (GEOKV_SERVER, GEOKV_TLS_*, GEOKV_TOKEN, GEOKV_TOKEN_FILE, GEOKV_CLUSTER); the
 * file's current context; defaults. So an explicit context beats a stray environment, and
 * the environment beats the remembered default.
 */
#include "proto/cli.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { F_SERVER, F_TLS_CA, F_TLS_CERT, F_TLS_KEY, F_TOKEN_FILE, F_CLUSTER, F_TIMEOUT, F_DESC,
       F_N };
static const char *const fnames[F_N] = {"server", "tls_ca", "tls_cert", "tls_key",
					"token_file", "cluster", "timeout", "description"};

typedef struct context {
	char name[PROTO_MAX_BUCKET + 1];
	char *f[F_N];             /* NULL = not set */
} context_t;

typedef struct ctxfile {
	char path[PATH_MAX];
	char *current;
	context_t *v;
	size_t n;
	int bad_line;             /* first unparsable line, 0 if none */
} ctxfile_t;

static int file_path(char *out, size_t n)
{
	const char *e = getenv("GEOKV_CONFIG"), *x = getenv("XDG_CONFIG_HOME"), *h = getenv("HOME");

	if (e && *e)
		return snprintf(out, n, "%s", e) < (int)n ? 0 : -1;
	if (x && *x)
		return snprintf(out, n, "%s/geokv/contexts.ini", x) < (int)n ? 0 : -1;
	if (h && *h)
		return snprintf(out, n, "%s/.config/geokv/contexts.ini", h) < (int)n ? 0 : -1;
	return -1;
}

static context_t *find(ctxfile_t *cf, const char *name)
{
	for (size_t i = 0; i < cf->n; i++)
		if (strcmp(cf->v[i].name, name) == 0)
			return &cf->v[i];
	return NULL;
}

static context_t *add(ctxfile_t *cf, const char *name)
{
	context_t *c = find(cf, name), *v;

	if (c)
		return c;
	if (!(v = realloc(cf->v, (cf->n + 1) * sizeof *v)))
		return NULL;
	cf->v = v;
	c = &v[cf->n++];
	memset(c, 0, sizeof *c);
	snprintf(c->name, sizeof c->name, "%s", name);
	return c;
}

static int on_ini(void *arg, const char *section, const char *key, const char *val)
{
	ctxfile_t *cf = arg;

	if (!*section) {
		if (strcmp(key, "current") != 0)
			return 1; /* unknown top-level keys: kept for later versions, ignored */
		free(cf->current);
		return (cf->current = strdup(val)) != NULL;
	}
	if (!proto_bucket_valid(section, strlen(section)))
		return 0;
	context_t *c = add(cf, section);
	if (!c)
		return 0;
	for (int i = 0; i < F_N; i++)
		if (strcmp(key, fnames[i]) == 0) {
			free(c->f[i]);
			return (c->f[i] = strdup(val)) != NULL;
		}
	return 1;
}

static void cf_free(ctxfile_t *cf)
{
	for (size_t i = 0; i < cf->n; i++)
		for (int j = 0; j < F_N; j++)
			free(cf->v[i].f[j]);
	free(cf->v);
	free(cf->current);
	memset(cf, 0, sizeof *cf);
}

/* Load the file; a missing file is an empty one. 0, or the exit code after a message. */
static int cf_load(ctxfile_t *cf)
{
	int rc;

	memset(cf, 0, sizeof *cf);
	if (file_path(cf->path, sizeof cf->path) != 0) {
		fprintf(stderr, "geokv: no context file: set GEOKV_CONFIG or HOME\n");
		return CLI_USAGE;
	}
	rc = ini_parse(cf->path, on_ini, cf);
	if (rc == -1 && errno == ENOENT)
		return 0;
	if (rc != 0) {
		if (rc == -1)
			fprintf(stderr, "geokv: %s: %s\n", cf->path, strerror(errno));
		else
			fprintf(stderr, "geokv: %s:%d: not a context line (want [NAME] or key = value)\n",
				cf->path, rc);
		cf_free(cf);
		return CLI_USAGE;
	}
	return 0;
}

static int mkdirs(const char *path)
{
	char d[PATH_MAX];
	snprintf(d, sizeof d, "%s", path);
	for (char *s = d + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(d, 0700) != 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return 0;
}

static int cf_save(const ctxfile_t *cf)
{
	char tmp[PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof tmp, "%s.tmp", cf->path);
	if (mkdirs(cf->path) != 0 || (f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "geokv: %s: %s\n", cf->path, strerror(errno));
		return CLI_ERR;
	}
	fchmod(fileno(f), 0600);
	fprintf(f, "# geokv contexts: geokv context add|ls|use|rm|show (docs/cli.md)\n");
	if (cf->current)
		fprintf(f, "current = %s\n", cf->current);
	for (size_t i = 0; i < cf->n; i++) {
		fprintf(f, "\n[%s]\n", cf->v[i].name);
		for (int j = 0; j < F_N; j++)
			if (cf->v[i].f[j])
				fprintf(f, "%s = %s\n", fnames[j], cf->v[i].f[j]);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, cf->path) != 0) {
		fprintf(stderr, "geokv: %s: %s\n", cf->path, strerror(errno));
		unlink(tmp);
		return CLI_ERR;
	}
	return 0;
}

/* ---- resolution ------------------------------------------------------------------------ */

static const char *envs(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static const char *pick(const char *flag, const context_t *explicit_ctx, int field,
			const char *env, const context_t *current)
{
	if (flag)
		return flag;
	if (explicit_ctx && explicit_ctx->f[field])
		return explicit_ctx->f[field];
	if (env && envs(env))
		return envs(env);
	if (current && current->f[field])
		return current->f[field];
	return NULL;
}

/* Read a token file: its first line, without the newline (like the daemons' token_file). */
static int read_token(cli_ctx_t *cx, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f) {
		fprintf(stderr, "geokv: token file %s: %s\n", path, strerror(errno));
		return CLI_USAGE;
	}
	n = getline(&line, &cap, f);
	fclose(f);
	if (n < 0) {
		free(line);
		fprintf(stderr, "geokv: token file %s is empty\n", path);
		return CLI_USAGE;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	if (n == 0 || n > PROTO_MAX_TOKEN) {
		free(line);
		fprintf(stderr, "geokv: token file %s: the token must be 1..%d bytes\n", path,
			PROTO_MAX_TOKEN);
		return CLI_USAGE;
	}
	free(cx->token_buf);
	cx->token_buf = line;
	cx->token = line;
	return 0;
}

int cli_ctx_resolve(cli_ctx_t *cx)
{
	ctxfile_t cf;
	const context_t *ex = NULL, *cur = NULL;
	const char *name = cx->context ? cx->context : envs("GEOKV_CONTEXT");
	int rc;

	if (cx->resolved)
		return 0;
	if ((rc = cf_load(&cf)) != 0)
		return rc;
	if (name) {
		if (!(ex = find(&cf, name))) {
			fprintf(stderr, "geokv: no context '%s' in %s (see geokv context ls)\n", name,
				cf.path);
			cf_free(&cf);
			return CLI_USAGE;
		}
	} else if (cf.current && !(cur = find(&cf, cf.current))) {
		fprintf(stderr, "geokv: current context '%s' is not in %s (geokv context use NAME)\n",
			cf.current, cf.path);
		cf_free(&cf);
		return CLI_USAGE;
	}
	const char *servers = pick(cx->servers, ex, F_SERVER, "GEOKV_SERVER", cur);
	const char *tls_ca = pick(cx->tls_ca, ex, F_TLS_CA, "GEOKV_TLS_CA", cur);
	const char *tls_cert = pick(cx->tls_cert, ex, F_TLS_CERT, "GEOKV_TLS_CERT", cur);
	const char *tls_key = pick(cx->tls_key, ex, F_TLS_KEY, "GEOKV_TLS_KEY", cur);
	const char *cluster = pick(cx->cluster, ex, F_CLUSTER, "GEOKV_CLUSTER", cur);
	const char *timeout = pick(NULL, ex, F_TIMEOUT, NULL, cur);
	/* a token: --token-file; the explicit context's file; GEOKV_TOKEN, GEOKV_TOKEN_FILE;
	 * the current context's file */
	const char *tfile = cx->token_file;
	const char *token = NULL;
	if (!tfile && ex && ex->f[F_TOKEN_FILE])
		tfile = ex->f[F_TOKEN_FILE];
	if (!tfile && !(token = envs("GEOKV_TOKEN"))) {
		tfile = envs("GEOKV_TOKEN_FILE");
		if (!tfile && cur)
			tfile = cur->f[F_TOKEN_FILE];
	}

	/* keep what the context gave past cf_free: one allocation per field, owned by cx */
	const char *src[] = {servers, tls_ca, tls_cert, tls_key, cluster};
	const char **dst[] = {&cx->servers, &cx->tls_ca, &cx->tls_cert, &cx->tls_key, &cx->cluster};
	for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) {
		if (src[i] && src[i] != *dst[i]) {
			char *d = strdup(src[i]);
			if (!d) {
				cf_free(&cf);
				return CLI_ERR;
			}
			cx->owned[cx->nowned++] = d;
			*dst[i] = d;
		} else if (!src[i]) {
			*dst[i] = NULL;
		}
	}
	if (!cx->servers)
		cx->servers = "127.0.0.1:7400";
	if (timeout && !cx->timeout_set &&
	    (proto_conf_parse_duration(timeout, 1000, &cx->timeout_ms) || cx->timeout_ms == 0)) {
		fprintf(stderr, "geokv: context: bad timeout '%s'\n", timeout);
		cf_free(&cf);
		return CLI_USAGE;
	}
	rc = 0;
	if (tfile)
		rc = read_token(cx, tfile);
	else if (token)
		cx->token = token;
	cx->ctx_name = ex ? ex->name : cur ? cur->name : NULL;
	if (cx->ctx_name) {
		snprintf(cx->ctx_name_buf, sizeof cx->ctx_name_buf, "%s", cx->ctx_name);
		cx->ctx_name = cx->ctx_name_buf;
	}
	cf_free(&cf);
	cx->resolved = rc == 0;
	return rc;
}

void cli_ctx_free(cli_ctx_t *cx)
{
	for (int i = 0; i < cx->nowned; i++)
		free(cx->owned[i]);
	cx->nowned = 0;
	free(cx->token_buf);
	cx->token_buf = NULL;
}

/* ---- geokv context add|ls|use|rm|show ---------------------------------------------------- */

/* A file named in a context is stored absolute: the context is used from any directory. */
static char *abs_file(const char *what, const char *p, int *rc)
{
	char buf[PATH_MAX];

	if (!realpath(p, buf)) {
		fprintf(stderr, "geokv: %s %s: %s\n", what, p, strerror(errno));
		*rc = CLI_USAGE;
		return NULL;
	}
	return strdup(buf);
}

static int ctx_add(cli_ctx_t *cx, ctxfile_t *cf, const char *name, const opts_t *o)
{
	const char *flags[F_N] = {cx->servers, cx->tls_ca, cx->tls_cert, cx->tls_key,
				  cx->token_file, cx->cluster, cx->timeout_str, o->description};
	context_t *c;
	int rc = 0;

	if (!proto_bucket_valid(name, strlen(name)))
		return cli_usage_error("context add", "bad context name '%s' (want [A-Za-z0-9_-]{1,64})",
				       name);
	if (find(cf, name) && !o->force) {
		fprintf(stderr, "geokv: context '%s' exists (use -f to replace it)\n", name);
		return CLI_CONFLICT;
	}
	if (!(c = add(cf, name)))
		return CLI_ERR;
	for (int i = 0; i < F_N; i++) {
		free(c->f[i]);
		c->f[i] = NULL;
		if (!flags[i])
			continue;
		if (i == F_TLS_CA || i == F_TLS_CERT || i == F_TLS_KEY || i == F_TOKEN_FILE)
			c->f[i] = abs_file(fnames[i], flags[i], &rc);
		else if (strchr(flags[i], '\n'))
			return cli_usage_error("context add", "%s must be one line", fnames[i]);
		else
			c->f[i] = strdup(flags[i]);
		if (!c->f[i])
			return rc ? rc : CLI_ERR;
	}
	if (!cf->current || o->select) {
		free(cf->current);
		cf->current = strdup(name);
	}
	return cf_save(cf);
}

static json_t *ctx_json(const context_t *c, bool current)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(c->name));
	json_object_set_new(o, "current", json_boolean(current));
	for (int i = 0; i < F_N; i++)
		if (c->f[i])
			json_object_set_new(o, fnames[i], json_string(c->f[i]));
	return o;
}

int cli_cmd_context(cli_ctx_t *cx, const char *sub, char **a, int n, const opts_t *o)
{
	ctxfile_t cf;
	int rc;

	if ((rc = cf_load(&cf)) != 0)
		return rc;
	if (strcmp(sub, "add") == 0) {
		rc = ctx_add(cx, &cf, a[0], o);
		if (rc == 0 && !cx->json)
			fprintf(stderr, "context '%s' saved in %s%s\n", a[0], cf.path,
				cf.current && strcmp(cf.current, a[0]) == 0 ? " (current)" : "");
	} else if (strcmp(sub, "ls") == 0) {
		if (!cx->json && cf.n)
			printf("%-2s%-20s %-40s %s\n", "", "NAME", "SERVER", "DESCRIPTION");
		for (size_t i = 0; i < cf.n; i++) {
			const context_t *c = &cf.v[i];
			bool cur = cf.current && strcmp(cf.current, c->name) == 0;
			if (cx->json)
				rc = cli_json_emit(ctx_json(c, cur));
			else
				printf("%-2s%-20s %-40s %s\n", cur ? "*" : "", c->name,
				       c->f[F_SERVER] ? c->f[F_SERVER] : "(default)",
				       c->f[F_DESC] ? c->f[F_DESC] : "");
		}
	} else if (strcmp(sub, "show") == 0) {
		const char *name = n > 0 ? a[0] : cx->context ? cx->context : cf.current;
		const context_t *c = name ? find(&cf, name) : NULL;
		if (!c) {
			fprintf(stderr, "geokv: %s%s%s\n", name ? "no context '" : "no current context",
				name ? name : "", name ? "'" : "");
			rc = CLI_NOTFOUND;
		} else if (cx->json) {
			rc = cli_json_emit(ctx_json(c, cf.current && strcmp(cf.current, c->name) == 0));
		} else {
			printf("name:          %s\n", c->name);
			for (int i = 0; i < F_N; i++)
				if (c->f[i])
					printf("%-14s %s\n", fnames[i], c->f[i]);
			printf("file:          %s\n", cf.path);
		}
	} else if (strcmp(sub, "use") == 0 || strcmp(sub, "rm") == 0) {
		context_t *c = find(&cf, a[0]);
		if (!c) {
			fprintf(stderr, "geokv: no context '%s' in %s\n", a[0], cf.path);
			rc = CLI_NOTFOUND;
		} else if (sub[0] == 'u') {
			free(cf.current);
			cf.current = strdup(a[0]);
			rc = cf_save(&cf);
		} else {
			for (int j = 0; j < F_N; j++)
				free(c->f[j]);
			memmove(c, c + 1, (size_t)(cf.v + cf.n - (c + 1)) * sizeof *c);
			cf.n--;
			if (cf.current && strcmp(cf.current, a[0]) == 0) {
				free(cf.current);
				cf.current = NULL;
			}
			rc = cf_save(&cf);
		}
	}
	cf_free(&cf);
	return rc;
}
