/* SPDX-License-Identifier: Apache-2.0 */
#include "caps.h"

#include <string.h>

#include "driver.h"
#include "fs/fs.h"

static bool single_node(Csi__V1__VolumeCapability__AccessMode__Mode m)
{
	return m == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER ||
	       m == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY ||
	       m == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER ||
	       m == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER;
}

int csi_check_capability(struct csi_call *c, const Csi__V1__VolumeCapability *cap,
			 const char *field, struct csi_caps_summary *sum)
{
	if (!cap)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "%s is missing", field);
	if (!cap->access_mode)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "%s.access_mode is missing", field);
	if (!single_node(cap->access_mode->mode))
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"%s.access_mode %d is not supported: PMEM volumes are local to one node (use a SINGLE_NODE_* mode)",
				field, (int)cap->access_mode->mode);
	switch (cap->access_type_case) {
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK:
		sum->block = true;
		break;
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT: {
		const char *fs = cap->mount && cap->mount->fs_type && *cap->mount->fs_type ? cap->mount->fs_type
											   : "ext4";
		if (!fs_type_supported(fs))
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
					"%s.mount.fs_type \"%s\" is not supported (ext4 or xfs)", field, fs);
		if (sum->fs_type && strcmp(sum->fs_type, fs) != 0)
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
					"%s.mount.fs_type \"%s\" conflicts with \"%s\" in another capability", field,
					fs, sum->fs_type);
		sum->mount = true;
		sum->fs_type = fs;
		break;
	}
	default:
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "%s: access_type (mount or block) is missing", field);
	}
	return 0;
}

bool csi_expansion_supported(struct csi_driver *d)
{
	const char *mode = csi_driver_cfg(d)->device_mode;

	if (mode && *mode)
		return strcmp(mode, "lvm") == 0;
	/* Without the flag (tests that build the driver directly): the device manager's own answer. */
	return csi_driver_pm(d) && pmem_can_expand(csi_driver_pm(d), NULL);
}
