/* SPDX-License-Identifier: Apache-2.0 */
#include "pmem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"

struct pmem_manager {
	const struct pmem_manager_ops *ops;
	void *priv;
};

int pmem_manager_new(const char *mode, unsigned percentage, struct pmem_manager **ret)
{
	struct pmem_manager *m;
	int r;

	if (percentage > 100)
		return log_error_errno(-EINVAL, "-pmemPercentage=%u is not between 0 and 100", percentage);
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (strcmp(mode, "lvm") == 0)
		r = pmem_lvm_new(percentage, &m->ops, &m->priv);
	else if (strcmp(mode, "direct") == 0 || strcmp(mode, "ndctl") == 0)
		r = pmem_direct_new(&m->ops, &m->priv); /* -pmemPercentage does not apply */
	else
		r = log_error_errno(-EINVAL, "Unknown device manager \"%s\" (lvm or direct)", mode);
	if (r < 0) {
		free(m);
		return r;
	}
	*ret = m;
	return 0;
}

void pmem_manager_free(struct pmem_manager *m)
{
	if (!m)
		return;
	m->ops->free(m->priv);
	free(m);
}

const char *pmem_manager_mode(const struct pmem_manager *m)
{
	return m->ops->mode;
}

int pmem_create(struct pmem_manager *m, const char *name, uint64_t size, enum volume_usage usage,
		struct pmem_device *ret)
{
	return m->ops->create(m->priv, name, size, usage, ret);
}

int pmem_get(struct pmem_manager *m, const char *name, struct pmem_device *ret)
{
	return m->ops->get(m->priv, name, ret);
}

int pmem_delete(struct pmem_manager *m, const char *name, bool erase)
{
	return m->ops->delete(m->priv, name, erase);
}

int pmem_list(struct pmem_manager *m, struct pmem_device **ret, size_t *ret_n)
{
	return m->ops->list(m->priv, ret, ret_n);
}

void pmem_capacity(struct pmem_manager *m, struct pmem_capacity *ret)
{
	m->ops->capacity(m->priv, ret);
}

void pmem_device_done(struct pmem_device *d)
{
	if (!d)
		return;
	free(d->name);
	free(d->path);
	d->name = d->path = NULL;
}

void pmem_device_array_free(struct pmem_device *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pmem_device_done(&d[i]);
	free(d);
}
