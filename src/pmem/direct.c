/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Direct device manager: one namespace per volume, alt-name = volume ID, as
 * intel/pmem-csi 1.x does it. AppDirect volumes are fsdax namespaces with the
 * page map on the device and 2 MiB alignment (huge-page DAX); FileIO volumes
 * are sector (BTT, 4 KiB) namespaces.
 *
 * Sizes: a namespace's raw size must be a multiple of the region's alignment
 * times its interleave ways, and fsdax keeps 64 bytes of page map per 4 KiB on
 * the device. Upstream passed the requested size as the raw size, so a 1500 GiB
 * volume had 1476 GiB usable (intel/pmem-csi#933). Here the raw size is chosen
 * so that the block device holds at least the requested size, and checked
 * after creation.
 *
 * Every region is used; a volume goes to the region with the largest free
 * extent that can hold it. Allocation is serialized per region only.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "blockdev.h"
#include "ndctl.h"
#include "pmem.h"
#include "volume/state.h"

/* A namespace needs at least this much for its info block and alignment padding. */
#define DIRECT_FIXED_OVERHEAD (4 * MiB)
#define DIRECT_PFN_ALIGN (2 * MiB)

struct direct_vol {
	char *name;
	char *dev;      /* namespace0.3 */
	char *blockdev; /* pmem0.3 */
	size_t region;
	uint64_t size;  /* usable */
};

struct direct_region {
	char bus[32], name[32];
	uint64_t size, align;
	uint64_t available, max_extent; /* refreshed after every change */
	pthread_mutex_t lock;
};

struct direct {
	pthread_mutex_t lock; /* tables */
	struct direct_region *regions;
	size_t n_regions;
	struct direct_vol *vols;
	size_t n_vols, cap_vols;
	uint64_t total;
	size_t n_labelless; /* regions left out: no labels, so no namespace per volume */
};

static uint64_t region_step(const struct ndctl_region_info *ri)
{
	return pmem_namespace_step(ri->align, ri->interleave_ways, DIRECT_PFN_ALIGN);
}

/* The raw namespace size that leaves at least `want` bytes usable. */
static uint64_t raw_size_for(uint64_t want, enum volume_usage usage, uint64_t step)
{
	uint64_t raw;

	if (usage == VOLUME_USAGE_FILE_IO)
		/* BTT: a 4-byte map entry per 4 KiB block plus flog and info blocks. */
		raw = want + want / 512 + DIRECT_FIXED_OVERHEAD;
	else
		/* fsdax, map=dev: 64 bytes of struct page per 4 KiB = 1/64 of the space. */
		raw = want + (want + 62) / 63 + DIRECT_FIXED_OVERHEAD;
	return round_up_u64(raw, step);
}

static void direct_free(void *priv)
{
	struct direct *m = priv;

	if (!m)
		return;
	for (size_t i = 0; i < m->n_regions; i++)
		pthread_mutex_destroy(&m->regions[i].lock);
	for (size_t i = 0; i < m->n_vols; i++) {
		free(m->vols[i].name);
		free(m->vols[i].dev);
		free(m->vols[i].blockdev);
	}
	free(m->regions);
	free(m->vols);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static int add_vol(struct direct *m, const struct ndctl_namespace_info *ns, size_t region)
{
	struct direct_vol *v;

	if (m->n_vols == m->cap_vols) {
		size_t ncap = m->cap_vols ? m->cap_vols * 2 : 64;
		struct direct_vol *n = realloc(m->vols, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->vols = n;
		m->cap_vols = ncap;
	}
	v = &m->vols[m->n_vols];
	v->name = strdup(ns->name);
	v->dev = strdup(ns->dev);
	v->blockdev = strdup(ns->blockdev);
	v->region = region;
	v->size = ns->usable;
	if (!v->name || !v->dev || !v->blockdev) {
		free(v->name);
		free(v->dev);
		free(v->blockdev);
		return -ENOMEM;
	}
	m->n_vols++;
	return 0;
}

static struct direct_vol *find_vol(struct direct *m, const char *name)
{
	for (size_t i = 0; i < m->n_vols; i++)
		if (strcmp(m->vols[i].name, name) == 0)
			return &m->vols[i];
	return NULL;
}

/* Re-read free space of all regions (cheap: sysfs reads). */
static void refresh_regions(struct direct *m)
{
	struct ndctl_region_info *ri = NULL;
	size_t n = 0;

	if (pmem_ndctl_regions(&ri, &n) < 0)
		return;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_regions; i++)
		for (size_t j = 0; j < n; j++)
			if (strcmp(ri[j].bus, m->regions[i].bus) == 0 && strcmp(ri[j].region, m->regions[i].name) == 0) {
				m->regions[i].available = ri[j].available;
				m->regions[i].max_extent = ri[j].max_extent;
			}
	pthread_mutex_unlock(&m->lock);
	pmem_ndctl_regions_free(ri, n);
}

static int fill_device(const struct direct_vol *v, struct pmem_device *ret)
{
	struct pmem_device d = { strdup(v->name), xasprintf("/dev/%s", v->blockdev), v->size };

	if (!d.name || !d.path) {
		pmem_device_done(&d);
		return -ENOMEM;
	}
	*ret = d;
	return 0;
}

/* For the ndctl clean-ups: no namespace is ours by its name alone (ownership.c). */
static bool never_ours(const char *name _unused_)
{
	return false;
}

static int try_create(struct direct *m, size_t ri, const char *name, uint64_t size, enum volume_usage usage,
		      struct ndctl_namespace_info *ns)
{
	struct direct_region *reg = &m->regions[ri];
	uint64_t step = reg->align, raw = raw_size_for(size, usage, step);
	enum ndctl_ns_mode mode = usage == VOLUME_USAGE_FILE_IO ? NDCTL_NS_SECTOR : NDCTL_NS_FSDAX;
	int r;

	/* The metadata estimate is conservative; if it is ever short, grow and retry. */
	for (int attempt = 0, busy = 0; attempt < 3; attempt++, raw += step) {
		r = pmem_ndctl_create_namespace(reg->bus, reg->name, raw, name, mode, ns);
		if (r == -EBUSY && busy++ < 3) {
			/* The seed is claimed or still being probed: leftovers of a
			 * creation cut off by a crash, or the kernel catching up.
			 * We hold the region lock, so no creation of ours is under way. */
			log_info("Seed namespace of %s is busy, releasing stale claims and retrying", reg->name);
			(void)pmem_ndctl_cleanup_region(reg->bus, reg->name, never_ours, true);
			usleep(200 * 1000);
			attempt--;
			raw -= step;
			continue;
		}
		if (r < 0)
			return r;
		if (ns->usable >= size && ns->blockdev[0])
			return 0;
		log_warning("Namespace %s has %" PRIu64 " usable bytes of %" PRIu64 " raw, %" PRIu64
			    " requested: retrying larger",
			    ns->dev, ns->usable, raw, size);
		r = pmem_ndctl_destroy_namespace(reg->bus, reg->name, ns->dev);
		if (r < 0)
			return r;
	}
	return -ENOSPC;
}

static int direct_delete(void *priv, const char *name, bool erase);

static int direct_create(void *priv, const char *name, uint64_t size, enum volume_usage usage,
			 struct pmem_device *ret)
{
	struct direct *m = priv;
	struct ndctl_namespace_info ns;
	bool tried[64] = {};
	_cleanup_free_ char *path = NULL;
	int r = -ENOSPC;

	if (!size)
		size = 4 * MiB;
	pthread_mutex_lock(&m->lock);
	if (find_vol(m, name)) {
		pthread_mutex_unlock(&m->lock);
		return -EEXIST;
	}
	pthread_mutex_unlock(&m->lock);
	/* The table is what was there at start plus our own work; a namespace
	 * of that name made by hand since then must not get a twin. */
	r = pmem_ndctl_name_exists(name);
	if (r != 0)
		return r > 0 ? -EEXIST : r;
	r = -ENOSPC;

	/* Largest free extent first; a region that turns out too small (another
	 * create took the space meanwhile) is skipped and the next one tried. */
	for (;;) {
		size_t best = SIZE_MAX;
		uint64_t best_extent = 0;

		pthread_mutex_lock(&m->lock);
		for (size_t i = 0; i < m->n_regions && i < ELEMENTSOF(tried); i++) {
			uint64_t need = raw_size_for(size, usage, m->regions[i].align);
			if (!tried[i] && m->regions[i].max_extent >= need && m->regions[i].max_extent > best_extent) {
				best = i;
				best_extent = m->regions[i].max_extent;
			}
		}
		pthread_mutex_unlock(&m->lock);
		if (best == SIZE_MAX)
			break;
		tried[best] = true;
		pthread_mutex_lock(&m->regions[best].lock);
		r = try_create(m, best, name, size, usage, &ns);
		pthread_mutex_unlock(&m->regions[best].lock);
		refresh_regions(m);
		if (r >= 0) {
			pthread_mutex_lock(&m->lock);
			r = add_vol(m, &ns, best);
			pthread_mutex_unlock(&m->lock);
			if (r < 0) {
				/* Not in the table: destroy it here, or it leaks. */
				pthread_mutex_lock(&m->regions[best].lock);
				(void)pmem_ndctl_destroy_namespace(m->regions[best].bus, m->regions[best].name, ns.dev);
				pthread_mutex_unlock(&m->regions[best].lock);
				refresh_regions(m);
				return r;
			}
			break;
		}
		if (r != -ENOSPC)
			break;
	}
	if (r == -ENOSPC && m->n_regions == 0 && m->n_labelless > 0)
		/* Not a matter of space: nothing here can hold a namespace per volume. */
		return -EMEDIUMTYPE;
	if (r < 0) {
		int k;

		if (r != -ENOSPC)
			log_error_errno(r, "Creating namespace %s failed: %m", name);
		/* A failed create leaves nothing: libndctl's undo can fail half-way
		 * (a personality still claiming the namespace), so look again. The
		 * name is ours: the caller holds its record and creation marker. */
		k = pmem_ndctl_name_exists(name);
		if (k > 0) {
			log_warning("Namespace %s is left over from the failed create: destroying it", name);
			(void)pmem_ndctl_destroy_named(name);
			refresh_regions(m);
		}
		return r;
	}
	path = xasprintf("/dev/%s", ns.blockdev);
	r = path ? blockdev_wait(path, 5000) : -ENOMEM;
	if (r >= 0)
		r = blockdev_erase(path, false);
	if (r < 0) {
		/* A create that fails leaves nothing behind: the caller has no
		 * device to delete and no record that would make it ours. */
		log_error_errno(r, "Failed to clear the start of namespace %s: %m", ns.dev);
		(void)direct_delete(m, name, false);
		return r;
	}
	log_debug("Created namespace %s (%s, %" PRIu64 " usable bytes) for %s", ns.dev, ns.blockdev, ns.usable, name);
	ret->name = strdup(name);
	ret->path = TAKE_PTR(path);
	ret->size = ns.usable;
	if (!ret->name) {
		pmem_device_done(ret);
		return -ENOMEM;
	}
	return 0;
}

static int direct_get(void *priv, const char *name, struct pmem_device *ret)
{
	struct direct *m = priv;
	struct direct_vol *v;
	int r;

	pthread_mutex_lock(&m->lock);
	v = find_vol(m, name);
	r = v ? fill_device(v, ret) : -ENOENT;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int direct_delete(void *priv, const char *name, bool erase)
{
	struct direct *m = priv;
	struct direct_vol *v;
	_cleanup_free_ char *path = NULL, *dev = NULL;
	size_t region = 0;
	int r;

	pthread_mutex_lock(&m->lock);
	v = find_vol(m, name);
	if (v) {
		path = xasprintf("/dev/%s", v->blockdev);
		dev = strdup(v->dev);
		region = v->region;
	}
	pthread_mutex_unlock(&m->lock);
	if (!v) {
		/* Not enabled, so not in the table: a creation cut off by a crash.
		 * The caller only deletes what is its own. */
		r = pmem_ndctl_cleanup_named(name);
		if (r > 0)
			refresh_regions(m);
		return r > 0 ? 0 : r < 0 ? r : -ENOENT;
	}
	if (!path || !dev)
		return -ENOMEM;
	r = blockdev_erase(path, erase);
	if (r == -EBUSY)
		return r;
	if (r < 0 && r != -ENOENT)
		return log_error_errno(r, "Failed to erase %s: %m", path);

	pthread_mutex_lock(&m->regions[region].lock);
	r = pmem_ndctl_destroy_namespace(m->regions[region].bus, m->regions[region].name, dev);
	pthread_mutex_unlock(&m->regions[region].lock);
	if (r == -EBUSY)
		return r;
	if (r < 0 && r != -ENOENT)
		return log_error_errno(r, "Failed to destroy namespace %s: %m", dev);
	refresh_regions(m);
	pthread_mutex_lock(&m->lock);
	v = find_vol(m, name);
	if (v) {
		free(v->name);
		free(v->dev);
		free(v->blockdev);
		*v = m->vols[--m->n_vols];
	}
	pthread_mutex_unlock(&m->lock);
	log_debug("Destroyed namespace %s of %s (erase=%d)", dev, name, erase);
	return 0;
}

static int direct_list(void *priv, struct pmem_device **ret, size_t *ret_n)
{
	struct direct *m = priv;
	struct pmem_device *d;
	size_t n;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	n = m->n_vols;
	d = calloc(n ? n : 1, sizeof(*d));
	if (!d)
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = fill_device(&m->vols[i], &d[i]);
	pthread_mutex_unlock(&m->lock);
	if (r < 0) {
		pmem_device_array_free(d, n);
		return r;
	}
	*ret = d;
	*ret_n = n;
	return 0;
}

/* The largest `want` whose raw size fits into extent (inverse of raw_size_for). */
static uint64_t usable_for_extent(uint64_t extent, uint64_t step)
{
	uint64_t raw = extent - extent % step, want;

	if (raw <= DIRECT_FIXED_OVERHEAD + step)
		return 0;
	/* Multiples of 4 MiB: the CSI layer rounds requests up to that unit, so
	 * the maximum it reports must be one. */
	want = (raw - DIRECT_FIXED_OVERHEAD) / 64 * 63;
	want -= want % (4 * MiB);
	while (want >= 4 * MiB && raw_size_for(want, VOLUME_USAGE_APP_DIRECT, step) > raw)
		want -= 4 * MiB;
	return want;
}

static void direct_capacity(void *priv, struct pmem_capacity *ret)
{
	struct direct *m = priv;
	struct pmem_capacity c = { .total = m->total };

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_regions; i++) {
		c.managed += m->regions[i].size;
		c.available += usable_for_extent(m->regions[i].available, m->regions[i].align);
		c.max_volume_size = MAX(c.max_volume_size, usable_for_extent(m->regions[i].max_extent, m->regions[i].align));
	}
	pthread_mutex_unlock(&m->lock);
	*ret = c;
}

static const struct pmem_manager_ops direct_ops = {
	.mode = "direct",
	.create = direct_create,
	.get = direct_get,
	.delete = direct_delete,
	.list = direct_list,
	.capacity = direct_capacity,
	.free = direct_free,
};

int pmem_direct_new(const struct pmem_manager_ops **ret_ops, void **ret_priv)
{
	struct ndctl_region_info *ri = NULL;
	size_t n = 0;
	struct direct *m;
	int r;

	/* Only unnamed seeds with settings (nothing on them) are cleaned here:
	 * a disabled namespace named like a volume may be someone else's. Ours,
	 * cut off by a crash, carry a "creating" marker and are removed by name
	 * when the driver reconciles its state (pmem_delete()). */
	r = pmem_ndctl_cleanup_incomplete(never_ours);
	if (r < 0)
		log_warning_errno(r, "Cannot check for incomplete namespaces: %m");
	r = pmem_ndctl_regions(&ri, &n);
	if (r < 0)
		return log_error_errno(r, "Failed to list PMEM regions: %m");
	m = calloc(1, sizeof(*m));
	if (!m) {
		pmem_ndctl_regions_free(ri, n);
		return -ENOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->regions = calloc(n ? n : 1, sizeof(*m->regions));
	if (!m->regions) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		m->total += ri[i].size;
		if (!ri[i].enabled)
			continue;
		if (ri[i].labelless) {
			/* One namespace spans the region and none can be created: the
			 * kernel only keeps per-namespace layout in labels. LVM mode can
			 * use it (after -mode=force-convert-raw-namespaces). */
			char hbuf[32];
			log_warning("Direct mode cannot use %s/%s (%s, %s): it has no namespace labels, so it cannot "
				    "hold a namespace per volume; use LVM mode after -mode=force-convert-raw-namespaces",
				    ri[i].bus, ri[i].region, pmem_ndctl_region_kind(&ri[i]),
				    format_bytes(hbuf, sizeof(hbuf), ri[i].size));
			m->n_labelless++;
			continue;
		}
		struct direct_region *reg = &m->regions[m->n_regions];
		snprintf(reg->bus, sizeof(reg->bus), "%s", ri[i].bus);
		snprintf(reg->name, sizeof(reg->name), "%s", ri[i].region);
		reg->size = ri[i].size;
		reg->align = region_step(&ri[i]);
		reg->available = ri[i].available;
		reg->max_extent = ri[i].max_extent;
		pthread_mutex_init(&reg->lock, NULL);
		/* Volumes and snapshots are namespaces named like their IDs; LVM
		 * mode's "pmem-csi" namespaces and foreign ones are left alone. */
		for (size_t j = 0; j < ri[i].n_namespaces; j++) {
			const struct ndctl_namespace_info *ns = &ri[i].namespaces[j];
			if ((!volume_id_is_valid(ns->name) && !snapshot_id_is_valid(ns->name)) || !ns->blockdev[0])
				continue;
			r = add_vol(m, ns, m->n_regions);
			if (r < 0) {
				m->n_regions++;
				goto fail;
			}
		}
		m->n_regions++;
	}
	pmem_ndctl_regions_free(ri, n);
	*ret_ops = &direct_ops;
	*ret_priv = m;
	return 0;
fail:
	pmem_ndctl_regions_free(ri, n);
	direct_free(m);
	return r;
}
