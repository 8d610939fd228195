/* SPDX-License-Identifier: Apache-2.0 */
#include "reaper.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "macro.h"

/* How often the thread looks, and how often it may log what it did. */
#define REAPER_TICK_MS 500
#define REAPER_LOG_INTERVAL_S 10

struct reaper_conn {
	struct reaper_conn *prev, *next;
	int fd;
	bool armed; /* a request is awaited: the deadline runs */
	bool fired;
	struct timespec since;
};

struct reaper {
	char what[64];
	unsigned deadline_s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock. */
	bool stop;
	struct reaper_conn *conns;
	unsigned n_conns;
	unsigned closed; /* since the last log line */
	struct timespec logged;
};

static void now_mono(struct timespec *t)
{
	clock_gettime(CLOCK_MONOTONIC, t);
}

static void *reaper_thread(void *arg)
{
	struct reaper *r = arg;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		struct timespec now, wake;
		unsigned closed = 0, open = 0;

		clock_gettime(CLOCK_REALTIME, &wake);
		wake.tv_nsec += REAPER_TICK_MS * 1000000L;
		if (wake.tv_nsec >= 1000000000L) {
			wake.tv_sec++;
			wake.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&r->cond, &r->lock, &wake);
		if (r->stop)
			break;
		now_mono(&now);
		for (struct reaper_conn *c = r->conns; c; c = c->next) {
			if (!c->armed || c->fired || now.tv_sec - c->since.tv_sec < (time_t)r->deadline_s)
				continue;
			/* The server sees the connection fail and closes it (and its descriptor) itself. */
			(void)shutdown(c->fd, SHUT_RDWR);
			c->fired = true;
			r->closed++;
		}
		if (r->closed && now.tv_sec - r->logged.tv_sec >= REAPER_LOG_INTERVAL_S) {
			closed = r->closed;
			open = r->n_conns;
			r->closed = 0;
			r->logged = now;
		}
		if (closed) {
			pthread_mutex_unlock(&r->lock);
			log_warning("%s: closed %u connection(s) that sent no complete request within %u s (%u open)",
				    r->what, closed, r->deadline_s, open);
			pthread_mutex_lock(&r->lock);
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int reaper_new(const char *what, unsigned deadline_s, struct reaper **ret)
{
	struct reaper *r;
	pthread_attr_t attr;
	sigset_t all, saved;
	int e;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	snprintf(r->what, sizeof(r->what), "%s", what);
	r->deadline_s = deadline_s;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	/* Signals are for the thread that waits for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	e = pthread_create(&r->thread, &attr, reaper_thread, r);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return -e;
	}
	*ret = r;
	return 0;
}

void reaper_free(struct reaper *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	while (r->conns)
		reaper_forget(r, r->conns);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

struct reaper_conn *reaper_watch(struct reaper *r, int fd)
{
	struct reaper_conn *c;

	if (!r || fd < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->armed = true;
	now_mono(&c->since);
	pthread_mutex_lock(&r->lock);
	c->next = r->conns;
	if (r->conns)
		r->conns->prev = c;
	r->conns = c;
	r->n_conns++;
	pthread_mutex_unlock(&r->lock);
	return c;
}

void reaper_pause(struct reaper *r, struct reaper_conn *c)
{
	if (!r || !c)
		return;
	pthread_mutex_lock(&r->lock);
	c->armed = false;
	pthread_mutex_unlock(&r->lock);
}

void reaper_restart(struct reaper *r, struct reaper_conn *c)
{
	if (!r || !c)
		return;
	pthread_mutex_lock(&r->lock);
	c->armed = true;
	now_mono(&c->since);
	pthread_mutex_unlock(&r->lock);
}

void reaper_forget(struct reaper *r, struct reaper_conn *c)
{
	if (!r || !c)
		return;
	pthread_mutex_lock(&r->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	r->n_conns--;
	pthread_mutex_unlock(&r->lock);
	free(c);
}
