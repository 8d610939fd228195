/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

/*
 * Leader election with a coordination.k8s.io/v1 Lease, the algorithm of client-go's
 * leaderelection package: a candidate takes the lease when it is free or when its
 * record has not changed for a lease duration as this process observed it (local
 * clock only, so clock skew between replicas does not matter); the leader renews it
 * every retry period and gives up leadership when it could not renew within the
 * renew deadline. One thread per elector.
 */

struct k8s_client;
struct leader;

/** struct leader_config - the lease and its timing; zero timings take client-go's defaults. */
struct leader_config {
	const char *namespace;
	const char *name;     /* 1.x's operator: pmem-csi-operator-lock */
	const char *identity; /* unique per replica: pod name + random suffix */
	unsigned lease_duration_s; /* 15 */
	unsigned renew_deadline_s; /* 10 */
	unsigned retry_period_s;   /* 2 */
	/* Called from the elector's thread when leadership starts (true) or ends (false). */
	void (*on_change)(bool leading, void *ud);
	void *ud;
};

/**
 * leader_start() - start electing in a thread of its own with client c (which should
 * have a short per-request timeout: a renew must not outlive the renew deadline).
 * cfg's strings must stay valid until leader_stop().
 */
int leader_start(struct k8s_client *c, const struct leader_config *cfg, struct leader **ret);

/** leader_is_leading() - whether this replica holds the lease now; true for NULL (no election). */
bool leader_is_leading(const struct leader *l);

/**
 * leader_stop() - stop the elector, release the lease when held (holder cleared, so
 * that another replica takes over at once instead of after the lease duration), free.
 */
void leader_stop(struct leader *l);
