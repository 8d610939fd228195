/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

/*
 * Request deadlines for HTTP servers whose library only knows idle timeouts
 * (libmicrohttpd restarts its timeout at every byte received, so a client
 * that trickles one byte every few seconds holds its connection forever):
 * a watched connection must deliver a complete request within the deadline,
 * counted from when it connected or from its previous response; past it, a
 * thread shuts the socket down and the server then closes the connection as
 * a broken one. shutdown() only, never close(): the descriptor stays the
 * server's until it calls reaper_forget().
 */
struct reaper;
struct reaper_conn;

/**
 * reaper_new() - start the thread that enforces deadline_s for the server named what (for the log).
 * Returns 0, or -errno (then *ret is untouched).
 */
int reaper_new(const char *what, unsigned deadline_s, struct reaper **ret);
/** reaper_free() - stop the thread; every connection must have been forgotten. NULL is fine. */
void reaper_free(struct reaper *r);
/** reaper_watch() - a new connection on fd: its clock starts. NULL when out of memory (no deadline then). */
struct reaper_conn *reaper_watch(struct reaper *r, int fd);
/** reaper_pause() - the whole request arrived: no deadline while it is served. NULL is fine. */
void reaper_pause(struct reaper *r, struct reaper_conn *c);
/** reaper_restart() - the response is out: the next request has the deadline from now. NULL is fine. */
void reaper_restart(struct reaper *r, struct reaper_conn *c);
/** reaper_forget() - the server closed the connection; call before the descriptor is closed. NULL is fine. */
void reaper_forget(struct reaper *r, struct reaper_conn *c);
