/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Named locks: one mutex per key (a volume ID), created on first use and
 * freed when nobody holds or waits for it. Gives CSI's per-volume
 * serialization without a global lock around slow operations.
 */
struct keylock;

struct keylock *keylock_new(void);
void keylock_free(struct keylock *k);
/** keylock_lock() - block until key is ours. -ENOMEM if no entry can be made. */
int keylock_lock(struct keylock *k, const char *key);
void keylock_unlock(struct keylock *k, const char *key);
