/*
 * HTTP/1.1 request parsing on llhttp, with the gateway's limits.
 *
 * The buffer holds received plaintext; llhttp is fed each new byte once and reports the
 * URL and If-None-Match as pointers into it, which we keep as offsets. Pieces of one field
 * arriving in separate reads are contiguous in the buffer, so a field is (offset, total
 * length). on_message_complete pauses the parser, so exactly one request is handed out at a
 * time (pipelining: the following bytes stay buffered until the answer is produced, which
 * keeps answers in order and lets a ?min_rev wait hold the connection's queue).
 *
 * Limits are checked as bytes arrive, not when the request completes, so a client cannot
 * make us buffer more than max_header_bytes + 4 KiB: the attack is slowloris-with-volume.
 */
#include "gateway/gw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

uint64_t gw_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static gw_http_t *H(llhttp_t *p) { return p->data; }

static int fail(gw_http_t *h, int status, const char *reason)
{
	h->err_status = status;
	h->err_reason = reason;
	return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
	gw_http_t *h = H(p);

	h->in_message = true;
	h->t_start_ns = gw_now_ns();
	return 0;
}

/* Bytes of request line and headers so far must stay under the limit even when the whole
 * request arrives in one read (the buffer check in gw_http_next only sees partial ones). */
static int mark(gw_http_t *h, const char *at, size_t n)
{
	if ((size_t)(at + n - h->buf) - h->msg_start > h->lim->max_header_bytes) {
		h->err_status = h->nheaders == 0 && !h->url_done ? 414 : 431;
		h->err_reason = h->err_status == 414 ? "uri too long" : "request header too large";
		return HPE_USER;
	}
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	gw_http_t *h = H(p);

	if (h->url_len == 0)
		h->url_off = (size_t)(at - h->buf);
	h->url_len += n;
	if (h->url_len > h->lim->max_uri)
		return fail(h, 414, "uri too long");
	return mark(h, at, n);
}

static int on_url_complete(llhttp_t *p)
{
	H(p)->url_done = true;
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
	gw_http_t *h = H(p);

	/* Only a prefix is kept: enough to recognise the one header we read. */
	for (size_t i = 0; i < n && h->field_len < sizeof h->field; i++)
		h->field[h->field_len++] = (char)(at[i] | 0x20);
	return mark(h, at, n);
}

static int on_header_field_complete(llhttp_t *p)
{
	gw_http_t *h = H(p);
	static const char inm[] = "if-none-match";

	if (++h->nheaders > h->lim->max_headers)
		return fail(h, 431, "too many headers");
	h->in_inm = (h->field_len == sizeof inm - 1 && memcmp(h->field, inm, sizeof inm - 1) == 0);
	h->field_len = 0;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
	gw_http_t *h = H(p);

	if (mark(h, at, n) != 0)
		return HPE_USER;
	if (!h->in_inm)
		return 0;
	/* A repeated If-None-Match: the last one wins (lists belong in one header anyway). */
	if (!h->have_inm) {
		h->inm_off = (size_t)(at - h->buf);
		h->inm_len = 0;
		h->have_inm = true;
	}
	h->inm_len += n;
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	gw_http_t *h = H(p);

	if (h->in_inm)
		h->in_inm = false; /* have_inm stays: value complete */
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	gw_http_t *h = H(p);

	h->headers_done = true;
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > h->lim->max_body)
		return fail(h, 413, "body too large");
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	gw_http_t *h = H(p);

	h->body += n;
	if (h->body > h->lim->max_body)
		return fail(h, 413, "body too large");
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	gw_http_t *h = H(p);

	h->complete = true;
	return HPE_PAUSED;
}

static void clear_request(gw_http_t *h)
{
	h->url_off = h->url_len = h->inm_off = h->inm_len = 0;
	h->field_len = 0;
	h->in_inm = h->have_inm = h->headers_done = h->complete = h->in_message = false;
	h->url_done = false;
	h->nheaders = 0;
	h->body = 0;
	h->t_start_ns = 0;
}

int gw_http_init(gw_http_t *h, const gw_limits_t *lim)
{
	memset(h, 0, sizeof *h);
	h->lim = lim;
	h->cap = (size_t)lim->max_header_bytes + 4096;
	h->buf = malloc(h->cap);
	if (h->buf == NULL)
		return -ENOMEM;
	llhttp_settings_init(&h->settings);
	h->settings.on_message_begin = on_message_begin;
	h->settings.on_url = on_url;
	h->settings.on_url_complete = on_url_complete;
	h->settings.on_header_field = on_header_field;
	h->settings.on_header_field_complete = on_header_field_complete;
	h->settings.on_header_value = on_header_value;
	h->settings.on_header_value_complete = on_header_value_complete;
	h->settings.on_headers_complete = on_headers_complete;
	h->settings.on_body = on_body;
	h->settings.on_message_complete = on_message_complete;
	gw_http_reset(h);
	return 0;
}

void gw_http_reset(gw_http_t *h)
{
	llhttp_init(&h->parser, HTTP_REQUEST, &h->settings);
	h->parser.data = h;
	h->len = h->fed = h->msg_start = 0;
	h->err_status = 0;
	h->err_reason = NULL;
	clear_request(h);
}

void gw_http_free(gw_http_t *h)
{
	free(h->buf);
	h->buf = NULL;
}

char *gw_http_space(gw_http_t *h, size_t *avail)
{
	/* Compact: drop answered requests so the partial one starts at 0. Offsets of fields
	 * already seen move with it. */
	if (h->msg_start > 0 && (h->cap - h->len) < 4096) {
		size_t s = h->msg_start;
		memmove(h->buf, h->buf + s, h->len - s);
		h->len -= s;
		h->fed -= s;
		h->msg_start = 0;
		if (h->url_len)
			h->url_off -= s;
		if (h->have_inm)
			h->inm_off -= s;
	}
	*avail = h->cap - h->len;
	return h->buf + h->len;
}

void gw_http_commit(gw_http_t *h, size_t n) { h->len += n; }

int gw_http_next(gw_http_t *h, gw_req_t *req)
{
	llhttp_errno_t e;

	if (h->err_status != 0)
		return GW_HTTP_ERROR;
	if (h->complete)
		goto ready; /* handed out, not yet done: hand out again */
	if (h->fed < h->len) {
		const char *start = h->buf + h->fed;
		e = llhttp_execute(&h->parser, start, h->len - h->fed);
		/* A limit callback failed: llhttp reports its own code for callbacks that are not
		 * data spans, so our status is the authority. */
		if (h->err_status != 0)
			return GW_HTTP_ERROR;
		if (e == HPE_OK) {
			h->fed = h->len;
		} else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
			h->fed = (size_t)(llhttp_get_error_pos(&h->parser) - h->buf);
		} else {
			h->err_status = 400;
			h->err_reason = "bad request";
			return GW_HTTP_ERROR;
		}
	}
	if (!h->complete) {
		/* The request line and headers so far exceed the limit; or the buffer is full
		 * with one unfinished request. */
		if (!h->headers_done && h->len - h->msg_start > h->lim->max_header_bytes) {
			h->err_status = !h->url_done ? 414 : 431; /* still in the request line */
			h->err_reason = "request header too large";
			return GW_HTTP_ERROR;
		}
		if (h->len - h->msg_start >= h->cap) {
			h->err_status = 431;
			h->err_reason = "request too large";
			return GW_HTTP_ERROR;
		}
		return GW_HTTP_MORE;
	}
ready:
	req->method = h->parser.method;
	req->http_minor = h->parser.http_minor;
	req->keep_alive = llhttp_should_keep_alive(&h->parser) != 0;
	req->upgrade = h->parser.upgrade != 0;
	if (req->upgrade)
		req->keep_alive = false; /* we speak nothing else: answer, then close */
	req->url = h->buf + h->url_off;
	req->url_len = h->url_len;
	req->inm = h->have_inm ? h->buf + h->inm_off : NULL;
	req->inm_len = h->have_inm ? h->inm_len : 0;
	req->t_start_ns = h->t_start_ns;
	return GW_HTTP_REQ;
}

void gw_http_done(gw_http_t *h)
{
	if (!h->complete)
		return;
	h->msg_start = h->fed;
	clear_request(h);
	if (h->parser.upgrade) {
		/* After an Upgrade request the connection is closed by the caller; nothing more
		 * is parsed. */
		return;
	}
	llhttp_resume(&h->parser);
	if (h->msg_start == h->len) {
		/* Nothing buffered: start the next request at the beginning of the buffer. */
		h->len = h->fed = h->msg_start = 0;
	}
}
