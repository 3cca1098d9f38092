/*
 * geokv-gateway: start-up, signals, shutdown.
 *
 * The main thread owns the configuration, the store handle (read-only, shared by the
 * workers: LMDB allows a read txn per thread on one environment) and the TLS files; it runs a
 * small loop that waits for signals and, every 250 ms, checks whether the node replaced
 * state/ (store_check_cb: then the new store is opened and the workers follow it):
 *   SIGHUP   re-read certificate and key; workers switch for new connections, open ones keep
 *            theirs. A broken file is logged and the old certificate stays.
 *   SIGTERM / SIGINT  stop accepting, finish open requests (up to shutdown_grace_ms), exit 0.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static void wake_all(gw_main_t *m);

/* Identity of the data.mdb an environment has open (its own fd, not the path's). */
static int env_ident(kv_store_t *s, uint64_t *dev, uint64_t *ino)
{
	mdb_filehandle_t fd;
	struct stat st;

	if (mdb_env_get_fd(kv_env(s), &fd) != 0 || fstat(fd, &st) != 0)
		return -1;
	*dev = (uint64_t)st.st_dev;
	*ino = (uint64_t)st.st_ino;
	return 0;
}

/* Open the store in cfg.data as a generation with `refs` references. 0 or an error (logged
 * by the caller). */
static int open_gen(gw_main_t *m, uint32_t refs, gw_storegen_t **out, char *why, size_t n)
{
	kv_opts_t kopts = {.flags = KV_OPEN_RDONLY};
	gw_storegen_t *g = calloc(1, sizeof *g);
	int rc;

	*out = NULL;
	if (g == NULL)
		return -ENOMEM;
	if ((rc = kv_open(&g->store, m->cfg.data, &kopts)) != 0) {
		snprintf(why, n, "%s", geokv_errname(rc));
		free(g);
		return rc;
	}
	if (check_reader_slot(g->store, why, n) != 0 || env_ident(g->store, &g->dev, &g->ino) != 0) {
		if (why[0] == '\0')
			snprintf(why, n, "cannot stat data.mdb");
		kv_close(g->store);
		free(g);
		return -EPERM;
	}
	atomic_init(&g->next, NULL);
	atomic_init(&g->refs, refs);
	*out = g;
	return 0;
}

/*
 * Every 250 ms: has the node replaced state/ (a snapshot install renames a new directory
 * into place)? Then open the new store and link it after the current one; workers switch
 * at their next request boundary and the last one to leave the old store closes it. LMDB
 * must never open the same file twice in a process, hence the identity comparison with the
 * file the current environment holds.
 */
static void store_check_cb(uv_timer_t *t)
{
	gw_main_t *m = t->data;
	char path[4096], why[256] = "";
	struct stat st;
	gw_storegen_t *g, *old = m->cur;

	if (atomic_load(&m->stop))
		return;
	snprintf(path, sizeof path, "%s/data.mdb", m->cfg.data);
	if (stat(path, &st) != 0)
		return; /* mid-swap (state/ renamed away, the new one not yet in place) */
	if ((uint64_t)st.st_dev == old->dev && (uint64_t)st.st_ino == old->ino)
		return;
	if (open_gen(m, m->nworkers + 1, &g, why, sizeof why) != 0) {
		if ((uint64_t)st.st_dev != m->bad_dev || (uint64_t)st.st_ino != m->bad_ino)
			GK_WARN("gateway", "store replaced, cannot open the new one; serving the old",
				"dir=%s err=\"%s\"", m->cfg.data, why);
		m->bad_dev = (uint64_t)st.st_dev;
		m->bad_ino = (uint64_t)st.st_ino;
		return;
	}
	if (g->dev == old->dev && g->ino == old->ino) { /* swapped back under us: keep the old */
		kv_close(g->store);
		free(g);
		return;
	}
	m->cur = g;
	atomic_store_explicit(&old->next, g, memory_order_release);
	GK_INFO("gateway", "store replaced, reopened", "dir=%s applied=%" PRIu64 " revision=%"
		PRIu64, m->cfg.data, kv_applied_index(g->store), kv_revision(g->store));
	gw_storegen_release(old); /* the main thread's reference */
	wake_all(m);
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
	uv_timer_t store_timer;
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
	kv_store_t *store = NULL;
	kv_opts_t kopts = {.flags = KV_OPEN_RDONLY};
	rc = kv_open(&store, m.cfg.data, &kopts);
	if (rc != 0) {
		GK_ERROR("gateway", "cannot open store", "dir=%s err=%s%s", m.cfg.data,
			 geokv_errname(rc), rc == -EACCES || rc == -EROFS
			 ? " hint=\"the gateway needs write access to lock.mdb\"" : "");
		return 1;
	}
	if (check_reader_slot(store, err, sizeof err) != 0) {
		GK_ERROR("gateway", "store readers cannot register, refusing to start",
			 "dir=%s lock=%s/lock.mdb err=\"%s\" hint=\"the gateway needs write access "
			 "to lock.mdb (mount state/ read-write; data.mdb may stay read-only)\"",
			 m.cfg.data, m.cfg.data, err);
		kv_close(store);
		return 1;
	}
	if ((m.first = calloc(1, sizeof *m.first)) == NULL ||
	    env_ident(store, &m.first->dev, &m.first->ino) != 0) {
		GK_ERROR("gateway", "cannot stat the store file", "dir=%s", m.cfg.data);
		kv_close(store);
		return 1;
	}
	m.first->store = store;
	m.cur = m.first;
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
	atomic_init(&m.first->next, NULL);
	atomic_init(&m.first->refs, m.nworkers + 1); /* every worker + the main thread */
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
	uv_timer_init(loop, &store_timer);
	store_timer.data = &m;
	uv_timer_start(&store_timer, store_check_cb, 250, 250);
	uv_run(loop, UV_RUN_DEFAULT);

	for (uint32_t i = 0; i < m.nworkers; i++)
		gw_worker_join(&m.workers[i]);
	uv_close((uv_handle_t *)&sig_hup, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&store_timer, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	if (!m.cfg.plain) {
		proto_tls_shared_free(&m.tls_shared);
		proto_tls_pem_free(&m.pem);
	}
	uv_mutex_destroy(&m.pem_lock);
	free(m.workers);
	gw_storegen_release(m.cur); /* the workers have dropped theirs: this closes it */
	gw_config_free(&m.cfg);
	GK_INFO("gateway", "stopped", NULL);
	return 0;
}
