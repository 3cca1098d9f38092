/*
 * geokv-leaf: entry point, start-up and shutdown. The following is in follow.c, the ring of
 * recent entries in ring.c, /metrics and the probes in http.c.
 *
 *   geokv-leaf --data DIR --primaries H:P,... [--listen H:P] [--metrics-listen H:P]
 *   geokv-leaf checksum STATE_DIR     content checksum of a (running) leaf's store, read-only
 */
#include "leaf/leaf.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const double lat_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				    0.01, 0.025, 0.05, 0.1, 0.25, 1};
static const uint64_t lat_bounds_us[] = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
					 50000, 100000, 250000, 1000000};
_Static_assert(sizeof lat_bounds / sizeof lat_bounds[0] ==
	       sizeof lat_bounds_us / sizeof lat_bounds_us[0], "bounds tables differ");

static int checksum_main(const char *dir)
{
	kv_store_t *s;
	kv_opts_t o = {.flags = KV_OPEN_RDONLY};
	kv_snap_meta_t m;
	uint64_t h;
	int rc;

	if ((rc = kv_open(&s, dir, &o)) != 0 || (rc = kv_checksum(s, &m, &h)) != 0) {
		fprintf(stderr, "geokv-leaf: checksum of %s: %s\n", dir, geokv_strerror(rc));
		return 1;
	}
	printf("applied=%" PRIu64 " revision=%" PRIu64 " records=%" PRIu64 " hash=%016" PRIx64 "\n",
	       m.applied, m.revision, m.records, h);
	kv_close(s);
	return 0;
}

static int parse_sources(leaf_t *l)
{
	char buf[4096], *save = NULL;

	snprintf(buf, sizeof buf, "%s", l->cfg->sources);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		if (*t == '\0')
			continue;
		if (l->nsrc == LEAF_MAX_SOURCES) {
			fprintf(stderr, "geokv-leaf: more than %d sources\n", LEAF_MAX_SOURCES);
			return -EINVAL;
		}
		leaf_source_t *s = &l->src[l->nsrc];
		snprintf(s->addr, sizeof s->addr, "%s", t);
		if (proto_fs_parse_addr(t, &s->ss, s->host, sizeof s->host) != 0) {
			fprintf(stderr, "geokv-leaf: bad source address '%s'\n", t);
			return -EINVAL;
		}
		l->nsrc++;
	}
	return l->nsrc ? 0 : -EINVAL;
}

static int tls_setup(leaf_t *l)
{
	const leaf_config_t *c = l->cfg;
	proto_tls_pem_t pem;
	char err[256] = "";

	if (c->tls_ca[0] != '\0') {
		proto_tls_opts_t o = {.server = false, .verify_peer = true};
		if (proto_tls_pem_load(&pem, c->tls_cert[0] ? c->tls_cert : NULL,
				       c->tls_key[0] ? c->tls_key : NULL, c->tls_ca, err, sizeof err) != 0)
			goto fail;
		if ((l->tls_client = calloc(1, sizeof *l->tls_client)) == NULL ||
		    proto_tls_conf_init(l->tls_client, &o, &pem, NULL, err, sizeof err) != 0) {
			proto_tls_pem_free(&pem);
			free(l->tls_client);
			l->tls_client = NULL;
			goto fail;
		}
		proto_tls_pem_free(&pem);
	}
	if (c->tls_cert[0] != '\0' && c->listen[0] != '\0') {
		proto_tls_opts_t o = {.server = true, .tickets = true,
				      .verify_peer = c->tls_client_ca[0] != '\0'};
		if (proto_tls_pem_load(&pem, c->tls_cert, c->tls_key,
				       o.verify_peer ? c->tls_client_ca : NULL, err, sizeof err) != 0)
			goto fail;
		if ((l->tls_shared = calloc(1, sizeof *l->tls_shared)) == NULL ||
		    proto_tls_shared_init(l->tls_shared, &o, err, sizeof err) != 0 ||
		    (l->tls_server = calloc(1, sizeof *l->tls_server)) == NULL ||
		    proto_tls_conf_init(l->tls_server, &o, &pem, l->tls_shared, err, sizeof err) != 0) {
			proto_tls_pem_free(&pem);
			goto fail;
		}
		proto_tls_pem_free(&pem);
	}
	return 0;
fail:
	GK_ERROR("leaf", "cannot set up TLS", "err=\"%s\"", err);
	return -EINVAL;
}

static void tls_free(leaf_t *l)
{
	if (l->tls_client) {
		proto_tls_conf_free(l->tls_client);
		free(l->tls_client);
	}
	if (l->tls_server) {
		proto_tls_conf_free(l->tls_server);
		free(l->tls_server);
	}
	if (l->tls_shared) {
		proto_tls_shared_free(l->tls_shared);
		free(l->tls_shared);
	}
}

/* A state.new left by a crash between the two renames of an install replaces state/ (it is
 * complete: install_done renames only a verified store); any other leftover is dropped. */
static void finish_swap(leaf_t *l)
{
	char nw[1200], cmd[2600];
	struct stat st;

	snprintf(nw, sizeof nw, "%s.new", l->state_dir);
	if (stat(nw, &st) != 0)
		return;
	if (stat(l->state_dir, &st) != 0 && rename(nw, l->state_dir) == 0) {
		GK_INFO("leaf", "finished an interrupted snapshot install", "dir=%s", l->state_dir);
		return;
	}
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", nw);
	if (system(cmd) != 0)
		GK_WARN("leaf", "cannot remove a stale install", "dir=%s", nw);
}

static void on_signal(uv_signal_t *s, int signum)
{
	leaf_t *l = s->data;

	if (l->stopping) {
		GK_WARN("leaf", "second signal, exiting now", "signal=%d", signum);
		exit(1);
	}
	GK_INFO("leaf", "stopping", "signal=%s applied=%" PRIu64, signum == SIGTERM ? "TERM" : "INT",
		l->pos_index);
	leaf_follow_stop(l);
	kv_feed_close(l->feed);
	l->feed = NULL;
	leaf_http_stop(l);
	uv_close((uv_handle_t *)&l->sig_term, NULL);
	uv_close((uv_handle_t *)&l->sig_int, NULL);
}

int main(int argc, char **argv)
{
	leaf_config_t cfg;
	leaf_t *l;
	int rc;

	if (argc == 3 && strcmp(argv[1], "checksum") == 0)
		return checksum_main(argv[2]);
	if ((rc = leaf_config_parse(&cfg, argc, argv)) != 0)
		return rc > 0 ? 0 : 2;
	signal(SIGPIPE, SIG_IGN);
	geokv_log_set_level(cfg.log_level);
	if ((l = calloc(1, sizeof *l)) == NULL)
		return 1;
	l->cfg = &cfg;
	l->loop = uv_default_loop();
	l->snap_fd = -1;
	proto_metrics_hist_init(&l->st.apply_latency, lat_bounds, lat_bounds_us,
				(int)(sizeof lat_bounds / sizeof lat_bounds[0]), 1e6);
	snprintf(l->state_dir, sizeof l->state_dir, "%s/state", cfg.data);
	if (mkdir(cfg.data, 0700) != 0 && errno != EEXIST) {
		GK_ERROR("leaf", "cannot create data directory", "dir=%s err=\"%s\"", cfg.data,
			 strerror(errno));
		return 1;
	}
	if (parse_sources(l) != 0)
		return 2;
	finish_swap(l);
	if ((rc = leaf_open_store(l)) != 0 || (rc = leaf_ring_init(&l->ring, cfg.ring_bytes)) != 0 ||
	    (rc = tls_setup(l)) != 0)
		return 1;
	if (cfg.listen[0] != '\0') {
		kv_feed_opts_t o = {.listen = cfg.listen, .tls = l->tls_server,
				    .cluster_id = cfg.cluster_id, .token = cfg.token,
				    .token_len = cfg.token_len, .node_id = cfg.node_id,
				    .snap_dir = cfg.data, .max_out = cfg.max_out};
		kv_feed_src_t src;
		leaf_feed_src(l, &src);
		if ((rc = kv_feed_start(&l->feed, l->loop, &o, &src)) != 0)
			return 1;
	}
	if (leaf_http_start(l) != 0)
		return 1;
	uv_signal_init(l->loop, &l->sig_term);
	uv_signal_init(l->loop, &l->sig_int);
	l->sig_term.data = l->sig_int.data = l;
	uv_signal_start(&l->sig_term, on_signal, SIGTERM);
	uv_signal_start(&l->sig_int, on_signal, SIGINT);
	leaf_follow_start(l);
	GK_INFO("leaf", "serving", "data=%s sources=%s listen=%s metrics=%s applied=%" PRIu64
		" revision=%" PRIu64 " tls=%s", cfg.data, cfg.sources,
		cfg.listen[0] ? cfg.listen : "-", cfg.metrics_listen[0] ? cfg.metrics_listen : "-",
		l->pos_index, kv_revision(l->store), l->tls_client ? "on" : "off");
	uv_run(l->loop, UV_RUN_DEFAULT);
	if (l->sync_running)
		uv_run(l->loop, UV_RUN_DEFAULT);
	rc = kv_sync(l->store);
	GK_INFO("leaf", "stopped", "applied=%" PRIu64 " revision=%" PRIu64 " sync=%s", l->pos_index,
		kv_revision(l->store), rc ? geokv_errname(rc) : "ok");
	leaf_close_store(l);
	leaf_ring_free(&l->ring);
	tls_free(l);
	free(l->in);
	free(l->res);
	uv_loop_close(l->loop);
	free(l);
	return 0;
}
