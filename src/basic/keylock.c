/* SPDX-License-Identifier: Apache-2.0 */
#include "keylock.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *next;
	char *key;
	unsigned users; /* holder + waiters */
	bool held;
	pthread_cond_t cond;
};

struct keylock {
	pthread_mutex_t lock;
	struct entry *head;
};

struct keylock *keylock_new(void)
{
	struct keylock *k = calloc(1, sizeof(*k));

	if (k)
		pthread_mutex_init(&k->lock, NULL);
	return k;
}

void keylock_free(struct keylock *k)
{
	struct entry *e, *n;

	if (!k)
		return;
	for (e = k->head; e; e = n) {
		n = e->next;
		pthread_cond_destroy(&e->cond);
		free(e->key);
		free(e);
	}
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static struct entry *find(struct keylock *k, const char *key)
{
	for (struct entry *e = k->head; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

int keylock_lock(struct keylock *k, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&k->lock);
	e = find(k, key);
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->key = strdup(key))) {
			free(e);
			pthread_mutex_unlock(&k->lock);
			return -ENOMEM;
		}
		pthread_cond_init(&e->cond, NULL);
		e->next = k->head;
		k->head = e;
	}
	e->users++;
	while (e->held)
		pthread_cond_wait(&e->cond, &k->lock);
	e->held = true;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

void keylock_unlock(struct keylock *k, const char *key)
{
	struct entry *e, **pp;

	pthread_mutex_lock(&k->lock);
	for (pp = &k->head; (e = *pp); pp = &e->next)
		if (strcmp(e->key, key) == 0)
			break;
	if (e) {
		e->held = false;
		if (--e->users == 0) {
			*pp = e->next;
			pthread_cond_destroy(&e->cond);
			free(e->key);
			free(e);
		} else
			pthread_cond_signal(&e->cond);
	}
	pthread_mutex_unlock(&k->lock);
}
