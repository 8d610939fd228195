/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kata Containers image files (layout in kata.h) and the loop devices that
 * expose their filesystem on the host.
 *
 * The MBR and the nd_pfn_sb are written here from their published layouts
 * (the MBR partition table; struct nd_pfn_sb of the Linux nvdimm driver) so
 * that the image needs neither parted nor a temporary copy of the filesystem:
 * the file is allocated in place, the header written, and mkfs runs on a loop
 * device over the filesystem part.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "fs.h"
#include "kata.h"

#define SECTOR 512
#define MIB (1024ULL * 1024)
#define FILL_CHUNK ((off_t)(4 * MIB))
#define LOOP_MAJOR_NUM 7

/* struct nd_pfn_sb (drivers/nvdimm/pfn.h), offsets in bytes. */
#define PFN_SIG "NVDIMM_PFN_INFO"
#define PFN_OFF_VERSION_MINOR 54
#define PFN_OFF_DATAOFF 56
#define PFN_OFF_MODE 72
#define PFN_OFF_ALIGN 84
#define PFN_OFF_CHECKSUM (KATA_PFN_SB_SIZE - 8)
#define PFN_MODE_RAM 1 /* page structs in RAM: nothing reserved inside the image */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

uint64_t kata_fletcher64(const void *addr, size_t len)
{
	const uint8_t *b = addr;
	uint32_t lo = 0;
	uint64_t hi = 0;

	for (size_t i = 0; i + 4 <= len; i += 4) {
		lo += (uint32_t)b[i] | (uint32_t)b[i + 1] << 8 | (uint32_t)b[i + 2] << 16 | (uint32_t)b[i + 3] << 24;
		hi += lo;
	}
	return hi << 32 | lo;
}

/* CHS of an LBA for the MBR, with the conventional 255 heads x 63 sectors;
 * beyond cylinder 1023 the "use LBA" marker 1023/254/63. */
static void chs(uint8_t *p, uint64_t lba)
{
	uint64_t c = lba / (255 * 63);
	unsigned h = (lba / 63) % 255, s = lba % 63 + 1;

	if (c > 1023) {
		c = 1023;
		h = 254;
		s = 63;
	}
	p[0] = h;
	p[1] = (uint8_t)(s | ((c >> 2) & 0xc0));
	p[2] = c & 0xff;
}

int kata_header_build(uint8_t *buf, uint64_t image_size)
{
	uint64_t first = KATA_HEADER_SIZE / SECTOR, count;
	uint8_t *part = buf + 446, *sb = buf + KATA_PFN_SB_OFFSET;

	if (image_size <= KATA_HEADER_SIZE || image_size % KATA_HEADER_SIZE)
		return -EINVAL;
	count = (image_size - KATA_HEADER_SIZE) / SECTOR;
	if (count > UINT32_MAX)
		return -EFBIG; /* an MBR cannot describe it (2 TiB) */
	memset(buf, 0, KATA_PFN_SB_OFFSET + KATA_PFN_SB_SIZE);

	/* One primary Linux (0x83) partition: the filesystem. */
	part[0] = 0x00;
	chs(part + 1, first);
	part[4] = 0x83;
	chs(part + 5, first + count - 1);
	put_le32(part + 8, (uint32_t)first);
	put_le32(part + 12, (uint32_t)count);
	buf[510] = 0x55;
	buf[511] = 0xaa;

	/* The info block the nvdimm driver probes at 4 KiB: data (the
	 * filesystem) at 2 MiB, 2 MiB mapping alignment, minor version 2 (the
	 * first with the align field). uuid and parent_uuid stay zero, which is
	 * what a label-less NVDIMM of Kata's QEMU reports as its parent. */
	memcpy(sb, PFN_SIG, sizeof(PFN_SIG));
	put_le16(sb + PFN_OFF_VERSION_MINOR, 2);
	put_le64(sb + PFN_OFF_DATAOFF, KATA_HEADER_SIZE);
	put_le32(sb + PFN_OFF_MODE, PFN_MODE_RAM);
	put_le32(sb + PFN_OFF_ALIGN, KATA_HEADER_SIZE);
	put_le64(sb + PFN_OFF_CHECKSUM, kata_fletcher64(sb, KATA_PFN_SB_SIZE));
	return 0;
}

static int loop_configure(int lfd, int ffd, const char *image)
{
	struct loop_config cfg = {};

	cfg.fd = (uint32_t)ffd;
	cfg.info.lo_offset = KATA_HEADER_SIZE;
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", image);
	if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOTTY)
		return -errno;
	/* Kernels before 5.8: two steps. */
	if (ioctl(lfd, LOOP_SET_FD, ffd) < 0)
		return -errno;
	if (ioctl(lfd, LOOP_SET_STATUS64, &cfg.info) < 0) {
		int r = -errno;
		(void)ioctl(lfd, LOOP_CLR_FD, 0);
		return r;
	}
	return 0;
}

int kata_loop_attach(const char *image, char *ret_path, size_t path_size)
{
	_cleanup_close_ int ctl = -1, ffd = -1;

	ffd = open(image, O_RDWR | O_CLOEXEC);
	if (ffd < 0)
		return -errno;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	/* Another process may take the free device between the two calls: retry. */
	for (int attempt = 0; attempt < 32; attempt++) {
		char path[32];
		int n = ioctl(ctl, LOOP_CTL_GET_FREE), lfd, r;

		if (n < 0)
			return -errno;
		snprintf(path, sizeof(path), "/dev/loop%d", n);
		lfd = open(path, O_RDWR | O_CLOEXEC);
		if (lfd < 0 && errno == ENOENT) {
			/* /dev without devtmpfs or udev: make the node ourselves. */
			if (mknod(path, S_IFBLK | 0660, makedev(LOOP_MAJOR_NUM, (unsigned)n)) < 0 && errno != EEXIST)
				return -errno;
			lfd = open(path, O_RDWR | O_CLOEXEC);
		}
		if (lfd < 0)
			return -errno;
		r = loop_configure(lfd, ffd, image);
		if (r == -EBUSY) {
			close(lfd);
			continue;
		}
		if (r < 0) {
			close(lfd);
			return r;
		}
		snprintf(ret_path, path_size, "%s", path);
		return lfd;
	}
	return -EBUSY;
}

/* The backing file of loop device sysdir (…/block/loopN), without " (deleted)". */
static int loop_backing_file(const char *sysdir, char **ret)
{
	_cleanup_free_ char *p = xasprintf("%s/loop/backing_file", sysdir), *s = NULL;
	size_t len;
	int r;

	if (!p)
		return -ENOMEM;
	r = read_file_limited(p, 8192, &s, &len);
	if (r < 0)
		return r;
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		s[--len] = 0;
	*ret = TAKE_PTR(s);
	return 0;
}

static int loop_offset_ok(const char *sysdir)
{
	_cleanup_free_ char *p = xasprintf("%s/loop/offset", sysdir), *s = NULL;
	uint64_t off;
	size_t len;

	if (!p)
		return -ENOMEM;
	if (read_file_limited(p, 64, &s, &len) < 0)
		return 0;
	while (len > 0 && s[len - 1] == '\n')
		s[--len] = 0;
	return safe_atou64(s, &off) >= 0 && off == KATA_HEADER_SIZE;
}

int kata_loop_backing(unsigned major, unsigned minor, const char *image)
{
	char sysdir[64];
	_cleanup_free_ char *backing = NULL, *real = realpath(image, NULL);

	if (major != LOOP_MAJOR_NUM || !real)
		return 0;
	snprintf(sysdir, sizeof(sysdir), "/sys/dev/block/%u:%u", major, minor);
	if (loop_backing_file(sysdir, &backing) < 0)
		return 0;
	return streq_ptr(backing, real) && loop_offset_ok(sysdir) > 0;
}

/* Call fn for every loop device over image; stops at fn's first non-zero return. */
static int for_each_loop_of(const char *image, int (*fn)(const char *dev, void *ud), void *ud)
{
	_cleanup_free_ char *real = realpath(image, NULL);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (!real)
		return errno == ENOENT ? 0 : -errno;
	d = opendir("/sys/block");
	if (!d)
		return -errno;
	while (r == 0 && (de = readdir(d))) {
		char sysdir[300], dev[300];
		_cleanup_free_ char *backing = NULL;

		if (!startswith(de->d_name, "loop"))
			continue;
		snprintf(sysdir, sizeof(sysdir), "/sys/block/%s", de->d_name);
		if (loop_backing_file(sysdir, &backing) < 0 || !streq_ptr(backing, real) || loop_offset_ok(sysdir) <= 0)
			continue;
		snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
		r = fn(dev, ud);
	}
	closedir(d);
	return r < 0 ? r : 0;
}

struct find_ud {
	char *path;
	size_t size;
	bool found;
};

static int find_cb(const char *dev, void *ud)
{
	struct find_ud *f = ud;

	snprintf(f->path, f->size, "%s", dev);
	f->found = true;
	return 1;
}

int kata_loop_find(const char *image, char *ret_path, size_t path_size)
{
	struct find_ud f = { .path = ret_path, .size = path_size };
	int r = for_each_loop_of(image, find_cb, &f);

	return r < 0 ? r : f.found;
}

static int detach_cb(const char *dev, void *ud)
{
	int *n = ud, fd = open(dev, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	/* On a mounted device this only marks it for autoclear: it goes with the last unmount. */
	if (ioctl(fd, LOOP_CLR_FD, 0) == 0)
		(*n)++;
	close(fd);
	return 0;
}

int kata_loop_detach_all(const char *image)
{
	int n = 0, r = for_each_loop_of(image, detach_cb, &n);

	return r < 0 ? r : n;
}

/* Allocate as much of the filesystem as the file can get, in whole 2 MiB units. */
static int allocate_fill(int fd, const char *dir, uint64_t *ret_size)
{
	struct statfs st;
	uint64_t size;

	if (fstatfs(fd, &st) < 0)
		return -errno;
	/* f_bfree, not f_bavail: the driver runs as root, and ext4's 5 % root
	 * reserve would otherwise be lost to the image for good. */
	size = (uint64_t)st.f_bfree * (uint64_t)st.f_bsize;
	/* Leave the filesystem some room: re-allocating after mkfs (see below)
	 * needs extent-tree blocks, and a completely full xfs fails even that. */
	size -= size / 64 > 8 * MIB ? size / 64 : (size > 16 * MIB ? 8 * MIB : 0);
	size -= size % KATA_HEADER_SIZE;
	/* Block maps and extent trees need a little room: shrink until it fits. */
	for (uint64_t step = KATA_HEADER_SIZE; size > KATA_HEADER_SIZE; size -= step, step *= 2) {
		if (fallocate(fd, 0, 0, (off_t)size) == 0) {
			*ret_size = size;
			return 0;
		}
		if (errno != ENOSPC)
			return -errno;
		if (ftruncate(fd, 0) < 0)
			return -errno;
		if (step > size)
			break;
	}
	log_debug("No room for a Kata image in %s", dir);
	return -ENOSPC;
}

/*
 * Allocate what mkfs's discard punched out of the file, in small pieces: xfs
 * reserves the whole length of an fallocate() call up front, so one call over
 * the image would fail on the nearly full filesystem even though most of the
 * range is allocated.
 */
static int fill_holes(int fd, uint64_t size)
{
	off_t pos = 0, end = (off_t)size;

	while (pos < end) {
		off_t hole = lseek(fd, pos, SEEK_HOLE), data;

		if (hole < 0)
			return -errno;
		if (hole >= end)
			break;
		data = lseek(fd, hole, SEEK_DATA);
		if (data < 0 || data > end)
			data = end;
		for (off_t p = hole; p < data; p += FILL_CHUNK) {
			off_t n = data - p < FILL_CHUNK ? data - p : FILL_CHUNK;
			if (fallocate(fd, 0, p, n) < 0)
				return -errno;
		}
		pos = data;
	}
	return 0;
}

int kata_image_ensure(const char *dir, const char *fs, char **ret_err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, KATA_IMAGE_NAME);
	_cleanup_free_ char *tmp = xasprintf("%s/.%s.tmp", dir, KATA_IMAGE_NAME);
	_cleanup_free_ char *mkfs_err = NULL;
	_cleanup_close_ int fd = -1, dfd = -1;
	uint8_t header[KATA_PFN_SB_OFFSET + KATA_PFN_SB_SIZE];
	char loopdev[32];
	uint64_t size = 0;
	struct stat st;
	const char *step;
	int r, lfd;

	if (!path || !tmp)
		return -ENOMEM;
	if (!fs_type_supported(fs)) {
		*ret_err = xasprintf("filesystem type %s is not supported for Kata Containers images", fs);
		return -EINVAL;
	}
	if (stat(path, &st) == 0)
		return S_ISREG(st.st_mode) ? 0 : -EEXIST;
	if (errno != ENOENT)
		return -errno;

	/* A leftover from a crash is incomplete by construction. */
	(void)unlink(tmp);
	step = "create the image file";
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	step = "allocate the image file";
	r = allocate_fill(fd, dir, &size);
	if (r < 0)
		goto fail;
	if (streq_ptr(fs, "xfs") && size - KATA_HEADER_SIZE < FS_XFS_MIN_SIZE) {
		step = "fit xfs (it needs 300 MiB) into the image";
		r = -ENOSPC;
		goto fail;
	}
	step = "write the image header";
	r = kata_header_build(header, size);
	if (r < 0)
		goto fail;
	if (pwrite(fd, header, sizeof(header), 0) != (ssize_t)sizeof(header)) {
		r = errno ? -errno : -EIO;
		goto fail;
	}
	step = "attach a loop device to the image";
	lfd = kata_loop_attach(tmp, loopdev, sizeof(loopdev));
	if (lfd < 0) {
		r = lfd;
		goto fail;
	}
	r = fs_mkfs(loopdev, fs, &mkfs_err);
	close(lfd); /* autoclear detaches it */
	if (r < 0) {
		step = "make the filesystem in the image";
		goto fail;
	}
	/* mkfs discards the device, which the loop driver turns into holes in
	 * the file: allocate them again, or a write in the VM could find the
	 * volume full (SIGBUS on a DAX mapping). (mkfs without discard is no
	 * way out: it then zeroes ranges, which the loop driver turns into
	 * fallocate(ZERO_RANGE), and that fails on a full xfs.) */
	step = "allocate the image file after mkfs";
	r = fill_holes(fd, size);
	if (r < 0)
		goto fail;
	step = "sync the image file";
	if (fsync(fd) < 0 || rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		(void)fsync(dfd);
	log_debug("Created Kata Containers image %s (%" PRIu64 " bytes, %s)", path, size, fs);
	return 0;
fail:
	(void)unlink(tmp);
	*ret_err = mkfs_err ? xasprintf("cannot %s: %s", step, mkfs_err)
			    : xasprintf("cannot %s: %s", step, strerror(-r));
	return r;
}
