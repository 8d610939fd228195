/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LVM device manager. Layout, compatible with intel/pmem-csi 1.x: per PMEM
 * region one fsdax namespace named "pmem-csi" (sized by -pmemPercentage), in
 * a volume group "<bus><region>fsdax"; one logical volume per volume, named by
 * the volume ID.
 *
 * There is no supported C API for LVM, so the lvm2 tools run through exec/
 * with JSON reports. Each tool run costs 0.3-0.6 s in an emulated guest, so
 * the manager keeps the VGs' free space and the LVs in memory (it is the only
 * writer of its VGs) and answers GetCapacity and lookups without running LVM.
 * At start-up it does not run LVM either when it can help it: the VGs, their
 * sizes and LVs come from the PVs' on-disk metadata (lvm_meta.c), and `pvs`
 * runs only when that reader is not sure of what it read.
 *
 * Locking: `lock` protects the in-memory tables and is never held while a
 * tool runs. Each VG has its own mutex, held around lvcreate/lvremove, so
 * volumes in different VGs are created in parallel. Space is reserved in the
 * table before lvcreate runs, so concurrent creates never pick a VG that
 * cannot hold them all.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "blockdev.h"
#include "exec/exec.h"
#include "convert.h"
#include "lvm_meta.h"
#include "lvm_report.h"
#include "ndctl.h"
#include "pmem.h"

#define LVM_ALIGN (4 * MiB)
#define LVM_NAMESPACE_NAME "pmem-csi"
#define LVM_TIMEOUT_MS (120 * 1000)
/* Below this a namespace is not worth creating (LVM metadata alone takes 1 MiB). */
#define LVM_MIN_NAMESPACE (64 * MiB)

/* No udev in containers and test VMs: LVM must create device nodes itself and
 * not wait for udev. No metadata backups: /etc/lvm is not persistent in a pod. */
static const char lvm_config[] =
	"activation{udev_sync=0 udev_rules=0 verify_udev_operations=1} "
	"devices{obtain_device_list_from_udev=0 multipath_component_detection=0 md_component_detection=0} "
	"backup{backup=0 archive=0} global{notify_dbus=0}";

struct lvm_lv {
	char *name;
	uint64_t size;
	size_t vg; /* index into vgs */
};

struct lvm_vg {
	char *name;
	uint64_t size;
	uint64_t free;
	uint64_t reserved; /* by creates in progress */
	pthread_mutex_t lock;
};

struct lvm {
	pthread_mutex_t lock;
	struct lvm_vg *vgs;
	size_t n_vgs;
	struct lvm_lv *lvs;
	size_t n_lvs, cap_lvs;
	uint64_t total;
};

static int lvm_run(const char *const *args, char **ret_out, char **ret_err)
{
	const char *argv[32];
	size_t n = 0;

	argv[n++] = args[0];
	argv[n++] = "--config";
	argv[n++] = lvm_config;
	for (size_t i = 1; args[i]; i++) {
		if (n + 1 >= ELEMENTSOF(argv))
			return -E2BIG;
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	return exec_check(argv, LVM_TIMEOUT_MS, ret_out, ret_err);
}

static int lvm_report(const char *const *args, const char *kind, struct lvm_report_row **ret,
		      size_t *ret_n)
{
	_cleanup_free_ char *out = NULL, *err = NULL;
	int r;

	r = lvm_run(args, &out, &err);
	if (r < 0)
		return log_debug_errno(r, "%s failed: %s", args[0], err ? err : "");
	return lvm_report_parse(out, strlen(out), kind, ret, ret_n);
}

char *pmem_lvm_vg_name(const char *bus, const char *region)
{
	return xasprintf("%s%sfsdax", bus, region);
}

static char *vg_name_for(const struct ndctl_region_info *ri)
{
	return pmem_lvm_vg_name(ri->bus, ri->region);
}

int pmem_lvm_pvs(struct lvm_report_row **ret, size_t *ret_n)
{
	const char *argv[] = { "pvs", "--reportformat", "json", "-o", "pv_name,vg_name", NULL };

	return lvm_report(argv, "pv", ret, ret_n);
}

int pmem_lvm_vg_add(const char *vg, bool exists, const char *const *devs, size_t n, char **ret_err)
{
	const char *argv[24];
	size_t k = 0;

	if (n == 0 || n > 16)
		return -EINVAL;
	argv[k++] = exists ? "vgextend" : "vgcreate";
	argv[k++] = "--force";
	argv[k++] = "--yes";
	argv[k++] = vg;
	for (size_t i = 0; i < n; i++)
		argv[k++] = devs[i];
	argv[k] = NULL;
	return lvm_run(argv, NULL, ret_err);
}

/* Create the "pmem-csi" namespace in a region if the percentage allows more. */
static int setup_namespace(const struct ndctl_region_info *ri, unsigned percentage)
{
	uint64_t used = 0, can_use, align;
	char sizebuf[32], hbuf[32];
	_cleanup_free_ char *err = NULL;
	int r;

	for (size_t i = 0; i < ri->n_namespaces; i++)
		if (strcmp(ri->namespaces[i].name, LVM_NAMESPACE_NAME) == 0)
			used += ri->namespaces[i].size;
	can_use = ri->size / 100 * percentage;
	can_use = can_use > used ? can_use - used : 0;
	can_use = MIN(can_use, ri->available);
	can_use = MIN(can_use, ri->max_extent);
	/* Namespace sizes must be multiples of the region alignment times the
	 * interleave ways; ndctl refuses anything else. */
	align = MAX(pmem_region_align(ri->align), (uint64_t)16 * MiB) * MAX(ri->interleave_ways, 1u);
	can_use -= can_use % align;
	if (can_use < LVM_MIN_NAMESPACE)
		return 0;
	snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64, can_use);
	log_info("Creating a %s fsdax namespace \"%s\" in %s/%s", format_bytes(hbuf, sizeof(hbuf), can_use),
		 LVM_NAMESPACE_NAME, ri->bus, ri->region);
	{
		const char *argv[] = { "ndctl", "create-namespace", "--bus", ri->bus, "--region", ri->region,
				       "--mode", "fsdax", "--map", "dev", "--size", sizebuf, "--name",
				       LVM_NAMESPACE_NAME, NULL };
		r = exec_check(argv, LVM_TIMEOUT_MS, NULL, &err);
	}
	if (r < 0)
		return log_error_errno(r, "Failed to create a namespace in %s: %s", ri->region, err ? err : "");
	return 1;
}

/* Put every pmem-csi namespace of a region into the region's VG. */
static int setup_vg(const struct ndctl_region_info *ri, const struct lvm_report_row *pvs, size_t n_pvs,
		    bool vg_exists)
{
	_cleanup_free_ char *vg = vg_name_for(ri);
	const char *devs[8];
	char paths[8][48];
	size_t np = 0;
	_cleanup_free_ char *err = NULL;
	int r;

	if (!vg)
		return -ENOMEM;
	for (size_t i = 0; i < ri->n_namespaces && np < ELEMENTSOF(paths); i++) {
		const struct ndctl_namespace_info *ns = &ri->namespaces[i];
		bool in_vg = false;

		if (strcmp(ns->name, LVM_NAMESPACE_NAME) != 0 || !ns->active || !ns->blockdev[0] ||
		    strcmp(ns->mode, "fsdax") != 0)
			continue;
		snprintf(paths[np], sizeof(paths[np]), "/dev/%s", ns->blockdev);
		for (size_t j = 0; j < n_pvs; j++)
			if (strcmp(pvs[j].name, paths[np]) == 0 && pvs[j].vg && pvs[j].vg[0]) {
				in_vg = true;
				if (strcmp(pvs[j].vg, vg) != 0)
					log_warning("%s belongs to volume group %s, not %s: left alone", paths[np],
						    pvs[j].vg, vg);
			}
		if (!in_vg)
			np++;
	}
	if (np == 0)
		return 0;
	for (size_t i = 0; i < np; i++)
		devs[i] = paths[i];
	r = pmem_lvm_vg_add(vg, vg_exists, devs, np, &err);
	if (r < 0)
		return log_error_errno(r, "%s %s failed: %s", vg_exists ? "vgextend" : "vgcreate", vg,
				       err ? err : "");
	log_info("%s volume group %s with %zu namespace(s)", vg_exists ? "Extended" : "Created", vg, np);
	return 1;
}

bool pmem_lvm_vg_in(const struct lvm_report_row *pvs, size_t n, const char *vg)
{
	for (size_t i = 0; i < n; i++)
		if (pvs[i].vg && strcmp(pvs[i].vg, vg) == 0)
			return true;
	return false;
}

static void lvm_free(void *priv)
{
	struct lvm *m = priv;

	if (!m)
		return;
	for (size_t i = 0; i < m->n_vgs; i++) {
		free(m->vgs[i].name);
		pthread_mutex_destroy(&m->vgs[i].lock);
	}
	for (size_t i = 0; i < m->n_lvs; i++)
		free(m->lvs[i].name);
	free(m->vgs);
	free(m->lvs);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static int add_lv(struct lvm *m, const char *name, uint64_t size, size_t vg)
{
	if (m->n_lvs == m->cap_lvs) {
		size_t ncap = m->cap_lvs ? m->cap_lvs * 2 : 64;
		struct lvm_lv *n = realloc(m->lvs, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->lvs = n;
		m->cap_lvs = ncap;
	}
	m->lvs[m->n_lvs].name = strdup(name);
	if (!m->lvs[m->n_lvs].name)
		return -ENOMEM;
	m->lvs[m->n_lvs].size = size;
	m->lvs[m->n_lvs].vg = vg;
	m->n_lvs++;
	return 0;
}

static struct lvm_lv *find_lv(struct lvm *m, const char *name)
{
	for (size_t i = 0; i < m->n_lvs; i++)
		if (strcmp(m->lvs[i].name, name) == 0)
			return &m->lvs[i];
	return NULL;
}

/* Re-read one VG's size and free space after a change (VG lock held). */
static int refresh_vg(struct lvm *m, size_t vg)
{
	struct lvm_report_row *rows = NULL;
	size_t n = 0;
	const char *argv[] = { "vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
			       "vg_name,vg_size,vg_free", m->vgs[vg].name, NULL };
	int r;

	r = lvm_report(argv, "vg", &rows, &n);
	if (r < 0)
		return r;
	if (n == 1) {
		pthread_mutex_lock(&m->lock);
		m->vgs[vg].size = rows[0].size;
		m->vgs[vg].free = rows[0].free;
		pthread_mutex_unlock(&m->lock);
	}
	lvm_report_rows_free(rows, n);
	return n == 1 ? 0 : -ENOENT;
}

static bool ours(const struct ndctl_region_info *regions, size_t n, const char *vg)
{
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *name = vg_name_for(&regions[i]);
		if (name && strcmp(name, vg) == 0)
			return true;
	}
	return false;
}

static bool seen_lv(const struct lvm_report_row *rows, size_t k)
{
	for (size_t j = 0; j < k; j++)
		if (rows[j].lv && rows[j].vg && strcmp(rows[j].lv, rows[k].lv) == 0 &&
		    strcmp(rows[j].vg, rows[k].vg) == 0)
			return true;
	return false;
}

/* An LV of ours in the report: a visible LV (hidden ones are "[name]") of a VG. */
static bool is_lv_row(const struct lvm_report_row *row)
{
	return row->vg && row->vg[0] && row->lv && row->lv[0] && row->lv[0] != '[';
}

/*
 * Build the VG and LV tables from one segment report (see START_REPORT): a VG
 * appears once per PV segment, an LV once per segment it has.
 */
static int load(struct lvm *m, const struct ndctl_region_info *regions, size_t n_regions,
		const struct lvm_report_row *rows, size_t n_rows)
{
	/* Activate the LVs of our VGs that are not: after a reboot without
	 * lvm2's boot services, or an lvcreate cut off by a crash, an LV can
	 * exist without its device node. */
	{
		const char *argv[20] = { "vgchange", "--activate", "y" };
		size_t n = 3;
		_cleanup_free_ char *err = NULL;

		for (size_t k = 0; k < n_rows && n + 1 < ELEMENTSOF(argv); k++) {
			bool dup = false;
			if (!is_lv_row(&rows[k]) || !ours(regions, n_regions, rows[k].vg) ||
			    (rows[k].attr && strlen(rows[k].attr) > 4 && rows[k].attr[4] == 'a'))
				continue;
			for (size_t j = 3; j < n; j++)
				dup |= strcmp(argv[j], rows[k].vg) == 0;
			if (!dup)
				argv[n++] = rows[k].vg;
		}
		argv[n] = NULL;
		if (n > 3 && lvm_run(argv, NULL, &err) < 0)
			log_warning("vgchange -ay failed: %s", err ? err : "");
	}
	m->vgs = calloc(n_regions ? n_regions : 1, sizeof(*m->vgs));
	if (!m->vgs)
		return -ENOMEM;
	for (size_t i = 0; i < n_regions; i++) {
		_cleanup_free_ char *name = vg_name_for(&regions[i]);
		if (!name)
			return -ENOMEM;
		for (size_t j = 0; j < n_rows; j++) {
			struct lvm_vg *vg;
			if (!rows[j].vg || strcmp(rows[j].vg, name) != 0)
				continue;
			vg = &m->vgs[m->n_vgs];
			vg->name = TAKE_PTR(name);
			vg->size = rows[j].vg_size;
			vg->free = rows[j].vg_free;
			pthread_mutex_init(&vg->lock, NULL);
			m->n_vgs++;
			for (size_t k = 0; k < n_rows; k++)
				if (is_lv_row(&rows[k]) && strcmp(rows[k].vg, vg->name) == 0 && !seen_lv(rows, k)) {
					int r = add_lv(m, rows[k].lv, rows[k].lv_size, m->n_vgs - 1);
					if (r < 0)
						return r;
				}
			break;
		}
	}
	return 0;
}

static char *lv_path(const struct lvm *m, const struct lvm_lv *lv)
{
	return xasprintf("/dev/%s/%s", m->vgs[lv->vg].name, lv->name);
}

static int fill_device(const struct lvm *m, const struct lvm_lv *lv, struct pmem_device *ret)
{
	struct pmem_device d = { strdup(lv->name), lv_path(m, lv), lv->size };

	if (!d.name || !d.path) {
		pmem_device_done(&d);
		return -ENOMEM;
	}
	*ret = d;
	return 0;
}

static int lvm_delete(void *priv, const char *name, bool erase);

static int lvm_create(void *priv, const char *name, uint64_t size, enum volume_usage usage _unused_,
		      struct pmem_device *ret)
{
	struct lvm *m = priv;
	struct lvm_vg *vg = NULL;
	size_t vgi = 0;
	char sizebuf[32];
	_cleanup_free_ char *err = NULL, *path = NULL;
	int r;

	size = round_up_u64(size ? size : LVM_ALIGN, LVM_ALIGN);
	if (size == 0)
		return -ENOSPC;

	/* Pick the VG with the most free space that fits and reserve the space. */
	pthread_mutex_lock(&m->lock);
	if (find_lv(m, name)) {
		pthread_mutex_unlock(&m->lock);
		return -EEXIST;
	}
	for (size_t i = 0; i < m->n_vgs; i++) {
		uint64_t avail = m->vgs[i].free > m->vgs[i].reserved ? m->vgs[i].free - m->vgs[i].reserved : 0;
		if (avail >= size && (!vg || avail > vg->free - vg->reserved)) {
			vg = &m->vgs[i];
			vgi = i;
		}
	}
	if (vg)
		vg->reserved += size;
	pthread_mutex_unlock(&m->lock);
	if (!vg)
		return -ENOSPC;

	snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64 "b", size);
	pthread_mutex_lock(&vg->lock);
	{
		/* -Zn: LVM's own zeroing would write the whole LV; we clear the first 4 KiB. */
		const char *argv[] = { "lvcreate", "--yes", "-Zn", "-L", sizebuf, "-n", name, vg->name, NULL };
		r = lvm_run(argv, NULL, &err);
	}
	/* The driver is the only writer of its VGs and sizes are whole 4 MiB
	 * extents, so the new free space is known without running vgs (0.3-0.6 s
	 * in a VM). After a failure the VG is read again. */
	if (r < 0 && !strstr(err ? err : "", "already exists"))
		(void)refresh_vg(m, vgi);
	pthread_mutex_lock(&m->lock);
	vg->reserved -= size;
	if (r >= 0) {
		vg->free = vg->free > size ? vg->free - size : 0;
		r = add_lv(m, name, size, vgi);
	}
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&vg->lock);
	if (r < 0) {
		if (err && strstr(err, "insufficient free space"))
			return -ENOSPC;
		if (err && strstr(err, "already exists"))
			return -EEXIST; /* an LV made by hand since start-up */
		return log_error_errno(r, "lvcreate %s in %s failed: %s", name, vg->name, err ? err : "");
	}

	path = xasprintf("/dev/%s/%s", vg->name, name);
	r = path ? blockdev_wait(path, 5000) : -ENOMEM;
	if (r >= 0)
		r = blockdev_erase(path, false);
	if (r < 0) {
		/* A create that fails leaves nothing behind: the caller has no
		 * device to delete and no record that would make it ours. */
		log_error_errno(r, "Failed to clear the start of LV %s/%s: %m", vg->name, name);
		(void)lvm_delete(m, name, false);
		return r;
	}
	log_debug("Created LV %s (%" PRIu64 " bytes) in %s", name, size, vg->name);
	ret->name = strdup(name);
	ret->path = TAKE_PTR(path);
	ret->size = size;
	if (!ret->name) {
		pmem_device_done(ret);
		return -ENOMEM;
	}
	return 0;
}

static int lvm_get(void *priv, const char *name, struct pmem_device *ret)
{
	struct lvm *m = priv;
	struct lvm_lv *lv;
	int r;

	pthread_mutex_lock(&m->lock);
	lv = find_lv(m, name);
	r = lv ? fill_device(m, lv, ret) : -ENOENT;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int lvm_delete(void *priv, const char *name, bool erase)
{
	struct lvm *m = priv;
	struct lvm_lv *lv;
	struct lvm_vg *vg;
	size_t vgi;
	_cleanup_free_ char *path = NULL, *lvarg = NULL, *err = NULL;
	int r;

	pthread_mutex_lock(&m->lock);
	lv = find_lv(m, name);
	if (lv) {
		vgi = lv->vg;
		path = lv_path(m, lv);
		lvarg = xasprintf("%s/%s", m->vgs[vgi].name, name);
	}
	pthread_mutex_unlock(&m->lock);
	if (!lv)
		return -ENOENT;
	if (!path || !lvarg)
		return -ENOMEM;
	vg = &m->vgs[vgi];

	/* The erase doubles as the in-use check: it opens the device O_EXCL. */
	r = blockdev_erase(path, erase);
	if (r == -ENOENT || r == -ENXIO) {
		/* Inactive LV (e.g. an lvcreate cut off by a crash): activate, then erase. */
		const char *argv[] = { "lvchange", "--activate", "y", lvarg, NULL };
		if (lvm_run(argv, NULL, NULL) >= 0 && blockdev_wait(path, 5000) >= 0)
			r = blockdev_erase(path, erase);
	}
	if (r == -EBUSY)
		return r;
	if (r < 0 && r != -ENOENT)
		return log_error_errno(r, "Failed to erase %s: %m", path);

	pthread_mutex_lock(&vg->lock);
	{
		const char *argv[] = { "lvremove", "--yes", "--force", lvarg, NULL };
		r = lvm_run(argv, NULL, &err);
	}
	if (r < 0 && err && strstr(err, "Failed to find logical volume")) {
		r = 0; /* gone already: a previous attempt got this far */
		(void)refresh_vg(m, vgi);
	} else if (r >= 0) {
		pthread_mutex_lock(&m->lock);
		lv = find_lv(m, name);
		if (lv)
			vg->free = MIN(vg->free + lv->size, vg->size);
		pthread_mutex_unlock(&m->lock);
	}
	pthread_mutex_unlock(&vg->lock);
	if (r < 0) {
		if (err && strstr(err, "in use"))
			return -EBUSY;
		return log_error_errno(r, "lvremove %s failed: %s", lvarg, err ? err : "");
	}

	pthread_mutex_lock(&m->lock);
	lv = find_lv(m, name);
	if (lv) {
		free(lv->name);
		*lv = m->lvs[--m->n_lvs];
	}
	pthread_mutex_unlock(&m->lock);
	log_debug("Removed LV %s (erase=%d)", lvarg, erase);
	return 0;
}

/*
 * Grow an LV in place: lvextend reloads the device-mapper table of the active
 * LV, so a mounted filesystem sees the larger device at once and can be grown
 * online. The space is reserved in the table first, as for a create, so a
 * concurrent create cannot pick the same free extents.
 */
static int lvm_expand(void *priv, const char *name, uint64_t size, struct pmem_device *ret)
{
	struct lvm *m = priv;
	struct lvm_lv *lv;
	struct lvm_vg *vg;
	uint64_t old = 0, delta = 0;
	size_t vgi = 0;
	char sizebuf[32];
	_cleanup_free_ char *lvarg = NULL, *err = NULL;
	int r;

	size = round_up_u64(size ? size : LVM_ALIGN, LVM_ALIGN);
	if (size == 0)
		return -ENOSPC;

	pthread_mutex_lock(&m->lock);
	lv = find_lv(m, name);
	if (lv) {
		vgi = lv->vg;
		lvarg = xasprintf("%s/%s", m->vgs[vgi].name, name);
	}
	pthread_mutex_unlock(&m->lock);
	if (!lv)
		return -ENOENT;
	if (!lvarg)
		return -ENOMEM;
	vg = &m->vgs[vgi];

	/* The VG lock orders this against creates and deletes in the VG; the
	 * caller's volume lock against another expand of the same LV. */
	pthread_mutex_lock(&vg->lock);
	pthread_mutex_lock(&m->lock);
	lv = find_lv(m, name);
	if (!lv)
		r = -ENOENT;
	else if (lv->size >= size)
		r = 0; /* never shrink: what is there is enough */
	else {
		uint64_t avail = vg->free > vg->reserved ? vg->free - vg->reserved : 0;
		old = lv->size;
		delta = size - old;
		r = avail >= delta ? 1 : -ENOSPC;
		if (r > 0)
			vg->reserved += delta;
	}
	pthread_mutex_unlock(&m->lock);
	if (r <= 0) {
		pthread_mutex_unlock(&vg->lock);
		if (r < 0)
			return r;
		return lvm_get(m, name, ret);
	}

	snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64 "b", size);
	{
		const char *argv[] = { "lvextend", "--yes", "-L", sizebuf, lvarg, NULL };
		r = lvm_run(argv, NULL, &err);
	}
	if (r < 0)
		(void)refresh_vg(m, vgi);
	pthread_mutex_lock(&m->lock);
	vg->reserved -= delta;
	lv = find_lv(m, name);
	if (r >= 0) {
		vg->free = vg->free > delta ? vg->free - delta : 0;
		if (lv)
			lv->size = size;
	}
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&vg->lock);
	if (r < 0) {
		if (err && strstr(err, "insufficient free space"))
			return -ENOSPC;
		return log_error_errno(r, "lvextend %s to %s failed: %s", lvarg, sizebuf, err ? err : "");
	}
	log_debug("Extended LV %s from %" PRIu64 " to %" PRIu64 " bytes", lvarg, old, size);
	return lvm_get(m, name, ret);
}

static int lvm_list(void *priv, struct pmem_device **ret, size_t *ret_n)
{
	struct lvm *m = priv;
	struct pmem_device *d;
	size_t n;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	n = m->n_lvs;
	d = calloc(n ? n : 1, sizeof(*d));
	if (!d)
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = fill_device(m, &m->lvs[i], &d[i]);
	pthread_mutex_unlock(&m->lock);
	if (r < 0) {
		pmem_device_array_free(d, n);
		return r;
	}
	*ret = d;
	*ret_n = n;
	return 0;
}

static void lvm_capacity(void *priv, struct pmem_capacity *ret)
{
	struct lvm *m = priv;
	struct pmem_capacity c = { .total = m->total };

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_vgs; i++) {
		uint64_t avail = m->vgs[i].free > m->vgs[i].reserved ? m->vgs[i].free - m->vgs[i].reserved : 0;
		c.managed += m->vgs[i].size;
		c.available += avail;
		c.max_volume_size = MAX(c.max_volume_size, avail - avail % LVM_ALIGN);
	}
	pthread_mutex_unlock(&m->lock);
	*ret = c;
}

static const struct pmem_manager_ops lvm_ops = {
	.mode = "lvm",
	.create = lvm_create,
	.get = lvm_get,
	.delete = lvm_delete,
	.expand = lvm_expand,
	.list = lvm_list,
	.capacity = lvm_capacity,
	.free = lvm_free,
};

/*
 * The start-up report: `pvs` with VG and LV columns prints one row per PV
 * segment (LVM switches to segments when LV columns are asked for), so one
 * command gives PVs, VGs with their sizes, and LVs, where `pvs`, `vgs` and
 * `lvs` took three.
 */
static const char *const start_report[] = { "pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
					    "pv_name,vg_name,vg_size,vg_free,lv_name,lv_size,lv_attr", NULL };

/*
 * When LVM's metadata cannot be read directly (a devices file in use), the
 * start-up report runs while libndctl walks the regions (each costs about as
 * much as the other: together they took one `ndctl list` plus one `lvs`).
 */
struct start_job {
	pthread_t thread;
	bool started;
	struct lvm_report_row *rows;
	size_t n;
	int r;
};

static void *start_job_run(void *p)
{
	struct start_job *j = p;

	j->r = lvm_report(start_report, "pv", &j->rows, &j->n);
	return NULL;
}

/*
 * The start-up report's rows. Without a report running already, they come
 * from the PVs' on-disk metadata (lvm_meta.c: a few O_DIRECT reads of each
 * namespace, milliseconds, where `pvs` costs 0.4-0.6 s in a VM, more than
 * the rest of start-up), and from `pvs` only when the reader is not sure.
 * The devices read are the active namespaces with a block device: fsdax
 * ones (ours, and whatever else LVM may use), and raw ones that
 * -mode=force-convert-raw-namespaces made PVs.
 */
static int start_rows(struct start_job *j, const struct ndctl_region_info *regions, size_t n_regions,
		      struct lvm_report_row **ret, size_t *ret_n)
{
	char paths[64][48];
	const char *devs[ELEMENTSOF(paths)];
	size_t n = 0;
	int r;

	if (j && j->started) {
		pthread_join(j->thread, NULL);
		j->started = false;
		*ret = TAKE_PTR(j->rows);
		*ret_n = j->n;
		return j->r;
	}
	for (size_t i = 0; i < n_regions; i++)
		for (size_t k = 0; k < regions[i].n_namespaces; k++) {
			const struct ndctl_namespace_info *ns = &regions[i].namespaces[k];
			if (!regions[i].enabled || !ns->active || !ns->blockdev[0])
				continue;
			if (n == ELEMENTSOF(devs))
				goto report; /* more than the reader is meant for */
			snprintf(paths[n], sizeof(paths[n]), "/dev/%s", ns->blockdev);
			devs[n] = paths[n];
			n++;
		}
	log_v(6, "Reading the LVM metadata of %zu namespace(s)", n);
	r = lvm_meta_rows(devs, n, ret, ret_n);
	if (r >= 0) {
		log_v(2, "Read the LVM metadata of %zu namespace(s) directly: %zu report row(s)", n, *ret_n);
		return r;
	}
	if (r == -ENOMEM)
		return r;
	log_v(2, "Reading LVM metadata directly did not work (%s): running pvs", strerror(-r));
report:
	return lvm_report(start_report, "pv", ret, ret_n);
}

int pmem_lvm_new(unsigned percentage, const struct pmem_manager_ops **ret_ops, void **ret_priv)
{
	struct ndctl_region_info *regions = NULL;
	struct lvm_report_row *pvs = NULL;
	size_t n_regions = 0, n_pvs = 0;
	struct start_job job = {};
	struct lvm *m = NULL;
	bool changed = false;
	int r;

	/* New namespaces made below are no PVs yet, so the report stays right for
	 * them: setup_vg() adds them, and then the report is read again. Without
	 * a devices file, the metadata is read after the walk instead. */
	if (!lvm_meta_usable())
		job.started = pthread_create(&job.thread, NULL, start_job_run, &job) == 0;
	log_v(6, "Walking the PMEM regions");
	r = pmem_ndctl_regions(&regions, &n_regions);
	if (r < 0) {
		log_error_errno(r, "Failed to list PMEM regions: %m");
		goto out;
	}
	for (size_t i = 0; i < n_regions; i++) {
		if (!regions[i].enabled)
			continue;
		r = setup_namespace(&regions[i], percentage);
		if (r < 0)
			goto out;
		changed |= r > 0;
	}
	if (changed) {
		/* Re-read: the new namespaces have block devices now. */
		pmem_ndctl_regions_free(regions, n_regions);
		regions = NULL;
		r = pmem_ndctl_regions(&regions, &n_regions);
		if (r < 0)
			goto out;
	}
	/* Each LVM command costs 0.3-2 s in a VM: one report (or the metadata
	 * it is made from) tells which namespaces are in a VG, which VGs exist
	 * (ours always have PVs), their sizes, and their LVs. It is read again
	 * only if setup_vg() changed a VG. */
	r = start_rows(&job, regions, n_regions, &pvs, &n_pvs);
	if (r < 0)
		goto out;
	changed = false;
	for (size_t i = 0; i < n_regions; i++) {
		_cleanup_free_ char *vg = vg_name_for(&regions[i]);
		if (!vg) {
			r = -ENOMEM;
			goto out;
		}
		if (!regions[i].enabled)
			continue;
		if (regions[i].labelless && !pmem_lvm_vg_in(pvs, n_pvs, vg)) {
			/* No "pmem-csi" namespace can be made there: the one namespace it
			 * has may hold someone's data, so only the explicit conversion
			 * (node setup, as in intel/pmem-csi 1.x) hands it to LVM. */
			char hbuf[32];
			log_warning("%s/%s (%s, %s) has no namespace labels and is not in volume group %s: LVM mode "
				    "uses it after -mode=force-convert-raw-namespaces",
				    regions[i].bus, regions[i].region, pmem_ndctl_region_kind(&regions[i]),
				    format_bytes(hbuf, sizeof(hbuf), regions[i].size), vg);
			continue;
		}
		r = setup_vg(&regions[i], pvs, n_pvs, pmem_lvm_vg_in(pvs, n_pvs, vg));
		if (r < 0)
			goto out;
		changed |= r > 0;
	}
	if (changed) {
		lvm_report_rows_free(pvs, n_pvs);
		pvs = NULL;
		n_pvs = 0;
		r = start_rows(NULL, regions, n_regions, &pvs, &n_pvs);
		if (r < 0)
			goto out;
	}

	m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&m->lock, NULL);
	for (size_t i = 0; i < n_regions; i++)
		m->total += regions[i].size;
	r = load(m, regions, n_regions, pvs, n_pvs);
	if (r < 0) {
		log_error_errno(r, "Failed to read volume groups: %m");
		goto out;
	}
	*ret_ops = &lvm_ops;
	*ret_priv = TAKE_PTR(m);
	r = 0;
out:
	if (job.started) {
		pthread_join(job.thread, NULL);
		lvm_report_rows_free(job.rows, job.n);
	}
	lvm_free(m);
	pmem_ndctl_regions_free(regions, n_regions);
	lvm_report_rows_free(pvs, n_pvs);
	return r;
}
