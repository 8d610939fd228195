/* SPDX-License-Identifier: Apache-2.0 */
#include "pmem.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"

struct pmem_manager {
	const struct pmem_manager_ops *ops;
	void *priv;
	/* The other device mode, for volumes created in it (see pmem.h). */
	struct pmem_manager *other;
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
	pmem_manager_free(m->other);
	free(m);
}

int pmem_manager_add_other(struct pmem_manager *m, unsigned percentage)
{
	const char *mode = strcmp(m->ops->mode, "lvm") == 0 ? "direct" : "lvm";
	struct pmem_manager *o;
	int r;

	if (m->other)
		return 0;
	r = pmem_manager_new(mode, percentage, &o);
	if (r < 0)
		return r;
	m->other = o;
	return 0;
}

const char *pmem_manager_other_mode(const struct pmem_manager *m)
{
	return m->other ? m->other->ops->mode : NULL;
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
	int r = m->ops->get(m->priv, name, ret);

	if (r == -ENOENT && m->other)
		r = m->other->ops->get(m->other->priv, name, ret);
	return r;
}

int pmem_delete(struct pmem_manager *m, const char *name, bool erase)
{
	int r = m->ops->delete(m->priv, name, erase);

	if (r == -ENOENT && m->other)
		r = m->other->ops->delete(m->other->priv, name, erase);
	return r;
}

int pmem_expand(struct pmem_manager *m, const char *name, uint64_t size, struct pmem_device *ret)
{
	struct pmem_device dev = {};
	int r;

	/* Which manager holds the device decides, not the primary mode: an LV
	 * served beside direct mode grows, a namespace beside LVM does not. */
	r = m->ops->get(m->priv, name, &dev);
	if (r == -ENOENT && m->other) {
		pmem_device_done(&dev);
		return pmem_expand(m->other, name, size, ret);
	}
	pmem_device_done(&dev);
	if (r < 0)
		return r;
	if (!m->ops->expand)
		return -EOPNOTSUPP;
	return m->ops->expand(m->priv, name, size, ret);
}

bool pmem_can_expand(const struct pmem_manager *m, const char *mode)
{
	if (!mode || strcmp(mode, m->ops->mode) == 0 ||
	    (strcmp(mode, "ndctl") == 0 && strcmp(m->ops->mode, "direct") == 0))
		return m->ops->expand != NULL;
	return m->other ? pmem_can_expand(m->other, mode) : false;
}

uint64_t pmem_region_align(uint64_t raw)
{
	/* libndctl reports ULONG_MAX when the region has no "align" attribute
	 * (kernels before 5.7), and some hypervisors report 0 or 1. Such regions
	 * still need aligned namespace sizes: intel/pmem-csi 1.x falls back to
	 * 96 MiB (emulated PMEM in libvirt refused 100 MiB but took 96 MiB), a
	 * multiple of the 16 MiB the kernel uses by default. */
	if (raw <= 1 || raw >= (uint64_t)ULONG_MAX)
		return PMEM_REGION_ALIGN_FALLBACK;
	return raw;
}

uint64_t pmem_namespace_step(uint64_t raw_align, unsigned interleave_ways, uint64_t pfn_align)
{
	uint64_t a = pfn_align * (interleave_ways ? interleave_ways : 1), b = pmem_region_align(raw_align);
	uint64_t x = a, y = b;

	/* lcm(a, b): sizes must be multiples of both */
	while (y) {
		uint64_t t = x % y;
		x = y;
		y = t;
	}
	return a / x * b;
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
