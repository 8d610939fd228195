/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include "csi.pb-c.h"
#include "server.h"

struct csi_driver;

/*
 * Checks of CSI volume capabilities shared by Controller and Node: only
 * single-node access modes (PMEM is local), mount with ext4/xfs, or block.
 */

struct csi_caps_summary {
	bool block;
	bool mount;
	const char *fs_type; /* "ext4" when a mount capability gives none */
};

/**
 * csi_check_capability() - validate one capability; on error fails the call
 * with INVALID_ARGUMENT naming the problem and returns -1.
 */
int csi_check_capability(struct csi_call *c, const Csi__V1__VolumeCapability *cap,
			 const char *field, struct csi_caps_summary *sum);

/**
 * csi_expansion_supported() - whether volumes of this driver's device mode
 * can grow (LVM: yes; direct: a namespace cannot grow in place). Decides the
 * EXPAND_VOLUME and VolumeExpansion capabilities; known before the devices
 * are set up (from -deviceManager).
 */
bool csi_expansion_supported(struct csi_driver *d);
