/*
 * A worker: one thread, one libuv loop, one SO_REUSEPORT listener.
 *
 * Why threads and not processes: resumption must work whichever worker the kernel hands a
 * returning client to, so all workers share one session-ticket key set and one session cache
 * (proto_tls_shared_t, mutex-protected inside mbedTLS), and /metrics on any worker sums every
 * worker's counters. Everything on the request path is per worker: listener, loop, read
 * transaction (an LMDB reader slot per thread), node-status mapping, TLS configuration, output
 * staging, connection pool. The kernel balances connections across the listeners.
 *
 * Reload (SIGHUP): the main thread parses the new files into gw_main.pem and bumps pem_gen;
 * each worker, woken, builds a new TLS configuration from them. New connections use it; open
 * connections keep the one they started with (reference counted) until they close.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/log.h"

#define RBUF_CAP (64u << 10)
#define OUT_CAP  (32u << 10)

static gw_worker_t *W(uv_handle_t *h) { return h->data; }

void gw__worker_tls_release(gw_worker_t *w, gw_tlsgen_t *g)
{
	(void)w;
	if (g != NULL && --g->refs == 0) {
		proto_tls_conf_free(&g->conf);
		free(g);
	}
}

/* Build a TLS configuration from the current PEM bytes; NULL on failure (logged). */
static gw_tlsgen_t *tls_build(gw_worker_t *w)
{
	gw_main_t *m = w->m;
	gw_tlsgen_t *g = calloc(1, sizeof *g);
	char err[256] = "";
	int rc;

	if (g == NULL)
		return NULL;
	uv_mutex_lock(&m->pem_lock);
	g->gen = atomic_load(&m->pem_gen);
	rc = proto_tls_conf_init(&g->conf, &m->tls_opts, &m->pem, &m->tls_shared, err, sizeof err);
	uv_mutex_unlock(&m->pem_lock);
	if (rc != 0) {
		GK_ERROR("gateway", "tls configuration failed", "worker=%u err=\"%s\"", w->id, err);
		free(g);
		return NULL;
	}
	g->refs = 1; /* the worker's "current" reference */
	return g;
}

static void update_date(gw_worker_t *w)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now == w->date_sec)
		return;
	w->date_sec = now;
	gmtime_r(&now, &tm);
	strftime(w->date, sizeof w->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

static void check_nodestat(gw_worker_t *w, uint64_t now)
{
	const char *dir = w->m->cfg.data;

	if (now < w->ns_check_ms)
		return;
	w->ns_check_ms = now + 1000;
	if (w->ns.page != NULL && kv_nodestat_moved(&w->ns, dir))
		kv_nodestat_close(&w->ns);
	if (w->ns.page == NULL) {
		int rc = kv_nodestat_open_reader(&w->ns, dir);
		if (rc == 0)
			GK_DEBUG("gateway", "node status mapped", "worker=%u", w->id);
	}
}

void gw_storegen_release(gw_storegen_t *g)
{
	if (g == NULL || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (atomic_load_explicit(&g->next, memory_order_acquire) != NULL)
		GK_INFO("gateway", "old store closed", "no worker reads it any more");
	kv_close(g->store);
	free(g);
}

void gw__worker_store_sync(gw_worker_t *w)
{
	gw_storegen_t *g = w->sg, *n;

	if (g == NULL || (n = atomic_load_explicit(&g->next, memory_order_acquire)) == NULL)
		return;
	/* The read txn belongs to the old environment: end and free it before letting go. */
	gw_ctx_end_read(&w->ctx);
	kv_read_close(&w->rtxn);
	w->rtxn = (kv_rtxn_t){0};
	for (;;) {
		gw_storegen_t *nn = atomic_load_explicit(&n->next, memory_order_acquire);
		gw_storegen_release(g);
		g = n;
		if (nn == NULL)
			break;
		n = nn;
	}
	w->sg = g;
	w->ctx.store = g->store;
	w->ctx.ctype_valid = false;
	GK_DEBUG("gateway", "worker switched store", "worker=%u", w->id);
}

static void close_handles(gw_worker_t *w)
{
	if (!uv_is_closing((uv_handle_t *)&w->tick))
		uv_close((uv_handle_t *)&w->tick, NULL);
	if (!uv_is_closing((uv_handle_t *)&w->wait_timer))
		uv_close((uv_handle_t *)&w->wait_timer, NULL);
	if (!uv_is_closing((uv_handle_t *)&w->resume))
		uv_close((uv_handle_t *)&w->resume, NULL);
	if (!uv_is_closing((uv_handle_t *)&w->wake))
		uv_close((uv_handle_t *)&w->wake, NULL);
	if (!uv_is_closing((uv_handle_t *)&w->listener))
		uv_close((uv_handle_t *)&w->listener, NULL);
	if (w->has_mlistener && !uv_is_closing((uv_handle_t *)&w->mlistener))
		uv_close((uv_handle_t *)&w->mlistener, NULL);
}

static void tick_cb(uv_timer_t *t)
{
	gw_worker_t *w = W((uv_handle_t *)t);
	uint64_t now = uv_now(&w->loop);

	update_date(w);
	check_nodestat(w, now);
	gw__worker_store_sync(w);
	gw__conn_tick(w, now);
	if (w->stopping) {
		if (w->nconns > 0 && now >= w->stop_deadline_ms) {
			GK_WARN("gateway", "shutdown grace expired", "worker=%u open=%u", w->id, w->nconns);
			gw__conn_stop_all(w, true);
		}
		if (w->nconns == 0 && !w->stopped) {
			w->stopped = true;
			close_handles(w);
		}
	}
}

void gw__worker_wait_cb(uv_timer_t *t)
{
	gw_worker_t *w = W((uv_handle_t *)t);
	gw__conn_wait_tick(w, uv_now(&w->loop));
}

static void wake_cb(uv_async_t *a)
{
	gw_worker_t *w = W((uv_handle_t *)a);
	gw_main_t *m = w->m;

	if (!m->cfg.plain && atomic_load(&m->pem_gen) != w->seen_gen) {
		gw_tlsgen_t *g = tls_build(w);
		w->seen_gen = atomic_load(&m->pem_gen);
		if (g != NULL) {
			gw_tlsgen_t *old = w->tls;
			w->tls = g;
			gw__worker_tls_release(w, old);
			GK_INFO("gateway", "certificates reloaded", "worker=%u gen=%u", w->id, g->gen);
		}
	}
	if (atomic_load(&m->stop) && !w->stopping) {
		w->stopping = true;
		w->stop_deadline_ms = uv_now(&w->loop) + m->cfg.shutdown_grace_ms;
		/* Stop accepting first, so the kernel sends new clients to nobody (other
		 * instances behind the GTM take them), then let open requests finish. */
		uv_close((uv_handle_t *)&w->listener, NULL);
		if (w->has_mlistener)
			uv_close((uv_handle_t *)&w->mlistener, NULL);
		gw__conn_stop_all(w, false);
	}
}

static void on_connection(uv_stream_t *s, int status)
{
	gw_worker_t *w = W((uv_handle_t *)s);

	if (status < 0) {
		GK_WARN("gateway", "accept failed", "worker=%u err=%s", w->id, uv_err_name(status));
		return;
	}
	gw__conn_accept(w, s == (uv_stream_t *)&w->mlistener);
}

/* libuv 1.44 has no SO_REUSEPORT flag: make the socket ourselves. `reuseport` for the
 * public listener (one per worker); the metrics listener is a single socket. */
static int listen_fd(const char *host, int portn, bool reuseport, int *out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char port[16];
	int fd = -1, one = 1, rc;

	snprintf(port, sizeof port, "%d", portn);
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0) {
		GK_ERROR("gateway", "cannot resolve listen address", "host=%s err=\"%s\"", host,
			 gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
		goto fail;
	freeaddrinfo(ai);
	*out = fd;
	return 0;
fail:
	rc = -errno;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	GK_ERROR("gateway", "cannot listen", "addr=%s:%d err=\"%s\"", host, portn, strerror(-rc));
	return rc;
}

static void thread_main(void *arg)
{
	gw_worker_t *w = arg;

	uv_run(&w->loop, UV_RUN_DEFAULT);
	/* Closing handles that are still open (e.g. after a forced stop), then the loop. */
	gw__conn_stop_all(w, true);
	close_handles(w);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	gw__conn_pool_free(w);
	if (w->rtxn_open)
		kv_read_end(&w->rtxn);
	kv_read_close(&w->rtxn);
	/* Drop our reference on our generation and on every later one (each counts us). */
	for (gw_storegen_t *g = w->sg, *n; g != NULL; g = n) {
		n = atomic_load_explicit(&g->next, memory_order_acquire);
		gw_storegen_release(g);
	}
	w->sg = NULL;
	kv_nodestat_close(&w->ns);
	gw__worker_tls_release(w, w->tls);
	w->tls = NULL;
	proto_metrics_buf_free(&w->mbuf);
	free(w->rbuf);
	free(w->out.p);
	if (uv_loop_close(&w->loop) != 0)
		GK_WARN("gateway", "loop not closed cleanly", "worker=%u", w->id);
}

int gw_worker_start(gw_worker_t *w)
{
	gw_main_t *m = w->m;
	int fd = -1, rc;

	gw_stats_init(&w->stats);
	proto_metrics_buf_init(&w->mbuf);
	w->rbuf_cap = RBUF_CAP;
	w->rbuf = malloc(RBUF_CAP);
	w->out.cap = OUT_CAP;
	w->out.p = malloc(OUT_CAP);
	if (w->rbuf == NULL || w->out.p == NULL)
		return -ENOMEM;
	w->max_conns = m->cfg.max_conns / m->nworkers;
	if (w->max_conns == 0)
		w->max_conns = 1;
	if (!m->cfg.plain) {
		w->seen_gen = atomic_load(&m->pem_gen);
		if ((w->tls = tls_build(w)) == NULL)
			return -EINVAL;
	}
	update_date(w);
	w->sg = m->first;
	w->ctx = (gw_ctx_t){
		.cfg = &m->cfg, .store = m->first->store, .rtxn = &w->rtxn, .rtxn_open = &w->rtxn_open,
		.ns = &w->ns, .stats = &w->stats, .workers = m->workers, .nworkers = m->nworkers,
		.mbuf = &w->mbuf, .date = w->date,
	};
	check_nodestat(w, 0);
	w->ns_check_ms = 0;

	if ((rc = uv_loop_init(&w->loop)) != 0)
		return rc;
	uv_timer_init(&w->loop, &w->tick);
	uv_timer_init(&w->loop, &w->wait_timer);
	uv_idle_init(&w->loop, &w->resume);
	uv_async_init(&w->loop, &w->wake, wake_cb);
	w->tick.data = w->wait_timer.data = w->wake.data = w->resume.data = w;
	uv_tcp_init(&w->loop, &w->listener);
	w->listener.data = w;
	if ((rc = listen_fd(m->host, m->port, true, &fd)) != 0)
		goto fail;
	if ((rc = uv_tcp_open(&w->listener, fd)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&w->listener, (int)m->cfg.backlog, on_connection)) != 0) {
		GK_ERROR("gateway", "cannot listen", "err=%s", uv_err_name(rc));
		goto fail;
	}
	if (w->id == 0 && m->mport != 0) {
		/* /metrics on its own plain-HTTP socket, served by worker 0 (a scrape is rare). */
		uv_tcp_init(&w->loop, &w->mlistener);
		w->mlistener.data = w;
		w->has_mlistener = true;
		if ((rc = listen_fd(m->mhost, m->mport, false, &fd)) != 0)
			goto fail;
		if ((rc = uv_tcp_open(&w->mlistener, fd)) != 0 ||
		    (rc = uv_listen((uv_stream_t *)&w->mlistener, 64, on_connection)) != 0) {
			GK_ERROR("gateway", "cannot listen", "addr=%s:%d err=%s", m->mhost, m->mport,
				 uv_err_name(rc));
			goto fail;
		}
	}
	uv_timer_start(&w->tick, tick_cb, 100, 100);
	if ((rc = uv_thread_create(&w->thread, thread_main, w)) != 0)
		goto fail;
	return 0;
fail:
	close_handles(w);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	uv_loop_close(&w->loop);
	return rc;
}

void gw_worker_join(gw_worker_t *w) { uv_thread_join(&w->thread); }

void gw_worker_wake(gw_worker_t *w) { uv_async_send(&w->wake); }
