/*
 * geokv-gateway: start-up, signals, shutdown.
 *
 * The main thread owns the configuration, the store handle (read-only, shared by the
 * workers: LMDB allows a read txn per thread on one environment) and the TLS files; it runs a
 * small loop that only waits for signals:
 *   SIGHUP   re-read certificate and key; workers switch for new connections, open ones keep
 *            theirs. A broken file is logged and the old certificate stays.
 *   SIGTERM / SIGINT  stop accepting, finish open requests (up to shutdown_grace_ms), exit 0.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/log.h"

static int parse_listen(const char *s, char *host, size_t hcap, int *port_out)
{
	const char *colon;
	size_t hl;
	char *end;
	long port;

	if (s[0] == '[') { /* [v6]:port */
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':')
			return -EINVAL;
		hl = (size_t)(rb - s - 1);
		if (hl >= hcap)
			return -EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -EINVAL;
		hl = (size_t)(colon - s);
		if (hl >= hcap)
			return -EINVAL;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65535)
		return -EINVAL;
	*port_out = (int)port;
	return 0;
}

/*
 * LMDB readers must register in the environment's lock file (lock.mdb): the writer then knows
 * which snapshot each reader uses and does not reuse those pages. When lock.mdb sits on a
 * read-only file system (a read-only bind mount of state/, say), LMDB opens an MDB_RDONLY
 * environment *without* a lock table and read transactions register nowhere: the node may
 * overwrite pages the gateway is reading, and answers can be torn or wrong without any error.
 * So after opening, begin one read transaction and check that the reader table lists it (our
 * pid and its txn id); refuse to start otherwise. 0, or -1 with `why` filled.
 */
struct reader_find {
	pid_t pid;
	size_t txnid;
	bool no_table, found;
};

static int reader_line(const char *msg, void *ctx)
{
	struct reader_find *f = ctx;
	int pid;
	size_t tid, txnid;

	/* "(no reader locks)" in LMDB 0.9.24, "(no reader locktable)" in later releases */
	if (strstr(msg, "(no reader lock") != NULL)
		f->no_table = true;
	else if (sscanf(msg, "%d %zx %zu", &pid, &tid, &txnid) == 3 && pid == (int)f->pid &&
		 txnid == f->txnid)
		f->found = true;
	return 0;
}

static int check_reader_slot(kv_store_t *store, char *why, size_t n)
{
	MDB_env *env = kv_env(store);
	struct reader_find f = {.pid = getpid()};
	kv_rtxn_t t = {0};
	unsigned flags = 0;
	int rc;

	if (mdb_env_get_flags(env, &flags) == 0 && (flags & MDB_NOLOCK)) {
		snprintf(why, n, "the environment is open with MDB_NOLOCK");
		return -1;
	}
	if ((rc = kv_read_begin(store, &t)) != 0) {
		snprintf(why, n, "cannot begin a read transaction: %s", geokv_errname(rc));
		kv_read_close(&t);
		return -1;
	}
	f.txnid = mdb_txn_id(t.txn);
	rc = mdb_reader_list(env, reader_line, &f);
	kv_read_end(&t);
	kv_read_close(&t);
	if (f.no_table) {
		snprintf(why, n, "lock.mdb could not be opened for writing (read-only file system?), "
				 "so LMDB runs without a reader table");
		return -1;
	}
	if (rc < 0 || !f.found) {
		snprintf(why, n, "our read transaction is not in lock.mdb's reader table");
		return -1;
	}
	return 0;
}

static void wake_all(gw_main_t *m)
{
	for (uint32_t i = 0; i < m->nworkers; i++)
		gw_worker_wake(&m->workers[i]);
}

static void on_signal(uv_signal_t *s, int signum)
{
	gw_main_t *m = s->data;

	if (signum == SIGHUP) {
		proto_tls_pem_t pem;
		char err[256] = "";
		if (m->cfg.plain)
			return;
		if (proto_tls_pem_load(&pem, m->cfg.cert, m->cfg.key, NULL, err, sizeof err) != 0) {
			GK_ERROR("gateway", "certificate reload failed", "err=\"%s\"", err);
			return;
		}
		uv_mutex_lock(&m->pem_lock);
		proto_tls_pem_free(&m->pem);
		m->pem = pem;
		atomic_fetch_add(&m->pem_gen, 1);
		uv_mutex_unlock(&m->pem_lock);
		wake_all(m);
		return;
	}
	GK_INFO("gateway", "stopping", "signal=%d", signum);
	atomic_store(&m->stop, true);
	wake_all(m);
	uv_stop(s->loop);
}

int main(int argc, char **argv)
{
	static gw_main_t m;
	enum geokv_log_level lvl;
	uv_loop_t *loop;
	uv_signal_t sig_hup, sig_term, sig_int;
	kv_opts_t kopts = {.flags = KV_OPEN_RDONLY};
	char err[256] = "";
	uint32_t started = 0;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	gw_config_defaults(&m.cfg);
	rc = gw_config_load(&m.cfg, argc, argv);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	if (geokv_log_parse_level(m.cfg.log_level, &lvl) != 0) {
		GK_ERROR("gateway", "invalid setting", "key=gateway.log_level");
		return 2;
	}
	geokv_log_set_level(lvl);
	if (parse_listen(m.cfg.listen, m.host, sizeof m.host, &m.port) != 0) {
		GK_ERROR("gateway", "invalid setting", "key=gateway.listen value=\"%s\"", m.cfg.listen);
		return 2;
	}
	if (m.cfg.metrics_listen != NULL && m.cfg.metrics_listen[0] != '\0' &&
	    parse_listen(m.cfg.metrics_listen, m.mhost, sizeof m.mhost, &m.mport) != 0) {
		GK_ERROR("gateway", "invalid setting", "key=gateway.metrics_listen value=\"%s\"",
			 m.cfg.metrics_listen);
		return 2;
	}
	rc = kv_open(&m.store, m.cfg.data, &kopts);
	if (rc != 0) {
		GK_ERROR("gateway", "cannot open store", "dir=%s err=%s%s", m.cfg.data,
			 geokv_errname(rc), rc == -EACCES || rc == -EROFS
			 ? " hint=\"the gateway needs write access to lock.mdb\"" : "");
		return 1;
	}
	if (check_reader_slot(m.store, err, sizeof err) != 0) {
		GK_ERROR("gateway", "store readers cannot register, refusing to start",
			 "dir=%s lock=%s/lock.mdb err=\"%s\" hint=\"the gateway needs write access "
			 "to lock.mdb (mount state/ read-write; data.mdb may stay read-only)\"",
			 m.cfg.data, m.cfg.data, err);
		kv_close(m.store);
		return 1;
	}
	uv_mutex_init(&m.pem_lock);
	if (!m.cfg.plain) {
		m.tls_opts = (proto_tls_opts_t){
			.server = true, .ciphersuites = m.cfg.ciphersuites, .curves = m.cfg.curves,
			.alpn = m.cfg.alpn, .tickets = m.cfg.tickets,
			.ticket_lifetime_s = m.cfg.ticket_lifetime_s, .cache_size = m.cfg.cache_size,
		};
		if (proto_tls_pem_load(&m.pem, m.cfg.cert, m.cfg.key, NULL, err, sizeof err) != 0 ||
		    proto_tls_shared_init(&m.tls_shared, &m.tls_opts, err, sizeof err) != 0) {
			GK_ERROR("gateway", "tls set-up failed", "err=\"%s\"", err);
			return 1;
		}
	}
	m.nworkers = m.cfg.workers ? m.cfg.workers : uv_available_parallelism();
	if (m.nworkers == 0)
		m.nworkers = 1;
	if (!m.cfg.plain && m.cfg.handshake_threads >= 0 && getenv("UV_THREADPOOL_SIZE") == NULL) {
		/* Full handshakes run on libuv's pool (conn.c); size it before its first use.
		 * One thread per core: more only queue for the same CPUs. */
		char n[16];
		snprintf(n, sizeof n, "%u", m.cfg.handshake_threads > 0
						    ? (unsigned)m.cfg.handshake_threads
						    : uv_available_parallelism());
		setenv("UV_THREADPOOL_SIZE", n, 1);
	}
	if (getenv("GEOKV_GW_TEST_HS_DELAY_MS") != NULL) /* tests only: see conn.c hs_work_cb */
		m.test_hs_delay_ms = (uint32_t)strtoul(getenv("GEOKV_GW_TEST_HS_DELAY_MS"), NULL, 10);
	m.workers = calloc(m.nworkers, sizeof *m.workers);
	if (m.workers == NULL)
		return 1;
	for (uint32_t i = 0; i < m.nworkers; i++) {
		m.workers[i].id = i;
		m.workers[i].m = &m;
	}
	for (; started < m.nworkers; started++)
		if (gw_worker_start(&m.workers[started]) != 0)
			break;
	if (started < m.nworkers) {
		/* Only the started ones: the failed worker's loop and handles are closed already. */
		atomic_store(&m.stop, true);
		for (uint32_t i = 0; i < started; i++)
			gw_worker_wake(&m.workers[i]);
		for (uint32_t i = 0; i < started; i++)
			gw_worker_join(&m.workers[i]);
		return 1;
	}
	GK_INFO("gateway", "listening", "addr=%s:%d workers=%u tls=%s data=%s bucket=%s", m.host,
		m.port, m.nworkers, m.cfg.plain ? "off" : "on", m.cfg.data, m.cfg.bucket);
	if (m.mport != 0)
		GK_INFO("gateway", "metrics listening", "addr=%s:%d tls=off public=%s", m.mhost,
			m.mport, m.cfg.metrics_on_public ? "on" : "off");
	else if (!m.cfg.metrics_on_public)
		GK_INFO("gateway", "metrics not served",
			"hint=\"set gateway.metrics_listen, or gateway.metrics_on_public = true\"");

	loop = uv_default_loop();
	uv_signal_init(loop, &sig_hup);
	uv_signal_init(loop, &sig_term);
	uv_signal_init(loop, &sig_int);
	sig_hup.data = sig_term.data = sig_int.data = &m;
	uv_signal_start(&sig_hup, on_signal, SIGHUP);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	uv_run(loop, UV_RUN_DEFAULT);

	for (uint32_t i = 0; i < m.nworkers; i++)
		gw_worker_join(&m.workers[i]);
	uv_close((uv_handle_t *)&sig_hup, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	if (!m.cfg.plain) {
		proto_tls_shared_free(&m.tls_shared);
		proto_tls_pem_free(&m.pem);
	}
	uv_mutex_destroy(&m.pem_lock);
	free(m.workers);
	kv_close(m.store);
	gw_config_free(&m.cfg);
	GK_INFO("gateway", "stopped", NULL);
	return 0;
}
