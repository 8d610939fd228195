/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "convert.h"
#include "exec/exec.h"
#include "fs/fs.h"
#include "lvm_report.h"
#include "ndctl.h"
#include "volume/params.h"

#define NDCTL_TIMEOUT_MS (120 * 1000)
#define MAX_CONVERTED 64

static bool is_pv(const struct lvm_report_row *pvs, size_t n, const char *dev)
{
	for (size_t i = 0; i < n; i++)
		if (streq_ptr(pvs[i].name, dev))
			return true;
	return false;
}

static bool was_converted(char (*list)[64], size_t n, const char *region, const char *dev)
{
	char key[64];

	snprintf(key, sizeof(key), "%s/%s", region, dev);
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], key) == 0)
			return true;
	return false;
}

static int convert_raw(struct ndctl_region_info *regions, size_t n_regions, char (*done)[64], size_t *n_done,
		       char **ret_err)
{
	for (size_t i = 0; i < n_regions; i++) {
		struct ndctl_region_info *ri = &regions[i];

		if (!ri->enabled)
			continue;
		for (size_t j = 0; j < ri->n_namespaces; j++) {
			struct ndctl_namespace_info *ns = &ri->namespaces[j];
			const char *argv[] = { "ndctl", "create-namespace", "--force", "--mode", "fsdax", "--bus",
					       ri->bus, "--region", ri->region, "--reconfig", ns->dev, NULL };
			_cleanup_free_ char *err = NULL;
			int r;

			if (strcmp(ns->mode, "raw") != 0 || ns->size == 0)
				continue;
			/*
			 * The fsdax info block goes 4 KiB into the namespace, over
			 * whatever is there: a raw namespace that holds a filesystem
			 * (or any other signature) is someone's data, not free PMEM.
			 * 1.x converted it anyway.
			 */
			if (ns->blockdev[0]) {
				char path[48];
				_cleanup_free_ char *sig = NULL;

				snprintf(path, sizeof(path), "/dev/%s", ns->blockdev);
				if (fs_detect(path, &sig) < 0 || sig) {
					log_warning("Not converting raw namespace %s (%s) of %s/%s (%s): it holds %s; wipe it "
						    "(wipefs -a %s) if LVM mode should have it",
						    ns->dev, path, ri->bus, ri->region, pmem_ndctl_region_kind(ri),
						    sig ? sig : "unreadable data", path);
					continue;
				}
			}
			if (*n_done >= MAX_CONVERTED)
				return -E2BIG;
			log_info("Converting raw namespace %s of %s/%s (%s, %" PRIu64 " bytes) to fsdax", ns->dev, ri->bus,
				 ri->region, pmem_ndctl_region_kind(ri), ns->size);
			r = exec_check(argv, NDCTL_TIMEOUT_MS, NULL, &err);
			if (r < 0) {
				*ret_err = xasprintf("ndctl create-namespace --mode fsdax --reconfig %s (%s/%s) failed: %s",
						     ns->dev, ri->bus, ri->region, err ? err : strerror(-r));
				return r;
			}
			snprintf(done[(*n_done)++], 64, "%s/%s", ri->region, ns->dev);
		}
	}
	return 0;
}

int pmem_convert_raw_namespaces(struct pmem_convert_result *ret, char **ret_err)
{
	struct ndctl_region_info *regions = NULL;
	struct lvm_report_row *pvs = NULL;
	size_t n_regions = 0, n_pvs = 0, n_done = 0;
	char done[MAX_CONVERTED][64];
	struct pmem_convert_result res = {};
	int r;

	r = pmem_ndctl_regions(&regions, &n_regions);
	if (r < 0) {
		*ret_err = xasprintf("cannot list PMEM regions: %s", strerror(-r));
		return r;
	}
	r = convert_raw(regions, n_regions, done, &n_done, ret_err);
	pmem_ndctl_regions_free(regions, n_regions);
	regions = NULL;
	if (r < 0)
		return r;
	res.converted = (unsigned)n_done;

	/* Look again: the converted namespaces have block devices now. */
	r = pmem_ndctl_regions(&regions, &n_regions);
	if (r < 0) {
		*ret_err = xasprintf("cannot list PMEM regions: %s", strerror(-r));
		return r;
	}
	r = pmem_lvm_pvs(&pvs, &n_pvs);
	if (r < 0) {
		*ret_err = xasprintf("cannot list LVM physical volumes: %s", strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < n_regions; i++) {
		struct ndctl_region_info *ri = &regions[i];
		_cleanup_free_ char *vg = pmem_lvm_vg_name(ri->bus, ri->region);
		char paths[16][48];
		const char *devs[16];
		size_t n = 0;

		if (!vg) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t j = 0; j < ri->n_namespaces && n < ELEMENTSOF(paths); j++) {
			struct ndctl_namespace_info *ns = &ri->namespaces[j];
			_cleanup_free_ char *sig = NULL;

			if (strcmp(ns->mode, "fsdax") != 0 || !ns->active || !ns->blockdev[0])
				continue;
			if (strcmp(ns->name, "pmem-csi") == 0) {
				res.lvm_namespaces++;
				continue;
			}
			snprintf(paths[n], sizeof(paths[n]), "/dev/%s", ns->blockdev);
			if (is_pv(pvs, n_pvs, paths[n]))
				continue;
			if (!was_converted(done, n_done, ri->region, ns->dev)) {
				/*
				 * As 1.1 does: every other fsdax namespace goes into the
				 * volume group too (whatever its name), so that a node the
				 * admin prepared by hand ends up as 1.1 left it. Except
				 * where 1.1's "vgcreate --force" destroyed data: a direct-
				 * mode volume (named by a volume ID) or a namespace that
				 * holds a filesystem or other signature. Those are
				 * reported and left alone.
				 */
				if (volume_id_is_valid(ns->name)) {
					log_warning("Not adding fsdax namespace %s (%s) of %s to volume group %s: it is "
						    "a direct-mode PMEM-CSI volume",
						    ns->dev, ns->name, ri->region, vg);
					continue;
				}
				if (fs_detect(paths[n], &sig) < 0 || sig) {
					log_warning("Not adding fsdax namespace %s (%s) of %s to volume group %s: it "
						    "holds %s; wipe it (wipefs -a %s) if LVM mode should have it",
						    ns->dev, paths[n], ri->region, vg, sig ? sig : "unreadable data",
						    paths[n]);
					continue;
				}
			}
			devs[n] = paths[n];
			n++;
		}
		if (n > 0) {
			_cleanup_free_ char *err = NULL;
			r = pmem_lvm_vg_add(vg, pmem_lvm_vg_in(pvs, n_pvs, vg), devs, n, &err);
			if (r < 0) {
				*ret_err = xasprintf("setting up volume group %s with %s%s failed: %s", vg, devs[0],
						     n > 1 ? " and more" : "", err ? err : strerror(-r));
				goto out;
			}
			log_info("Volume group %s now has %zu more namespace(s), starting with %s", vg, n, devs[0]);
			res.added += (unsigned)n;
		}
		if (n > 0 || pmem_lvm_vg_in(pvs, n_pvs, vg))
			res.vgs++;
	}
	*ret = res;
	r = 0;
out:
	lvm_report_rows_free(pvs, n_pvs);
	pmem_ndctl_regions_free(regions, n_regions);
	return r;
}
