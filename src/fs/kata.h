/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Kata Containers volumes. Kata's QEMU maps a file from the volume into the
 * VM as an NVDIMM; the guest kernel then finds the DAX metadata in it and
 * offers the filesystem inside as /dev/pmem0 with DAX. The image file, as
 * intel/pmem-csi 1.x writes it (same name, same layout, so volumes move
 * between the two drivers):
 *
 *   0 .. 512         MBR, one Linux partition from 2 MiB to the end
 *   4 KiB .. 8 KiB   struct nd_pfn_sb ("NVDIMM_PFN_INFO", mode RAM,
 *                    dataoff = align = 2 MiB) that the nvdimm driver probes
 *   2 MiB .. end     the filesystem (ext4 or xfs, 4 KiB blocks)
 *
 * On the host the filesystem is reached through a loop device at offset 2 MiB.
 */

#define KATA_IMAGE_NAME "kata-containers-pmem-csi-vm.img"
#define KATA_HEADER_SIZE (2ULL * 1024 * 1024) /* = DAX alignment */
#define KATA_PFN_SB_OFFSET 4096
#define KATA_PFN_SB_SIZE 4096

/**
 * kata_header_build() - the first KATA_HEADER_SIZE bytes of an image file of
 * image_size bytes (a multiple of 2 MiB, larger than the header): MBR and
 * nd_pfn_sb, zeros elsewhere. buf must hold KATA_HEADER_SIZE bytes.
 * -EINVAL for a size that cannot be described (not aligned, > 2 TiB).
 */
int kata_header_build(uint8_t *buf, uint64_t image_size);

/** kata_fletcher64() - the nvdimm driver's checksum over len bytes (len % 4 == 0). */
uint64_t kata_fletcher64(const void *addr, size_t len);

/**
 * kata_image_ensure() - make dir/KATA_IMAGE_NAME with a filesystem of type fs
 * ("ext4" or "xfs") filling the filesystem mounted at dir, unless it exists.
 * Built under a temporary name and renamed when complete, so a crash never
 * leaves a torn image under the real name. ret_err: the failing step.
 */
int kata_image_ensure(const char *dir, const char *fs, char **ret_err);

/**
 * kata_loop_attach() - a new loop device over image from KATA_HEADER_SIZE on,
 * detached by the kernel when its last user goes (autoclear). Returns an open
 * fd of the device (the caller closes it after mounting) and its path in
 * ret_path (size >= 32).
 */
int kata_loop_attach(const char *image, char *ret_path, size_t path_size);

/**
 * kata_loop_backing() - whether the block device major:minor is a loop device
 * over image: 1 yes, 0 no.
 */
int kata_loop_backing(unsigned major, unsigned minor, const char *image);

/**
 * kata_loop_find() - a loop device over image (at the image's offset): 1 and
 * its path, or 0 when there is none.
 */
int kata_loop_find(const char *image, char *ret_path, size_t path_size);

/** kata_loop_detach_all() - detach every loop device over image; returns how many. */
int kata_loop_detach_all(const char *image);
