/* SPDX-License-Identifier: Apache-2.0 */
#include "fs.h"

#include <blkid/blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "exec/exec.h"

#define MKFS_TIMEOUT_MS (10 * 60 * 1000)
#define MOUNTINFO_MAX (16u * 1024 * 1024)

bool fs_type_supported(const char *type)
{
	return streq_ptr(type, "ext4") || streq_ptr(type, "xfs");
}

int fs_detect(const char *dev, char **ret)
{
	blkid_probe pr;
	const char *type = NULL;
	int r;

	pr = blkid_new_probe_from_filename(dev);
	if (!pr)
		return errno > 0 ? -errno : -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
	blkid_probe_enable_partitions(pr, 1);
	r = blkid_do_safeprobe(pr);
	if (r == -2) {
		/* Ambivalent: several signatures. Not something to format over. */
		blkid_free_probe(pr);
		*ret = strdup("ambivalent");
		return *ret ? 0 : -ENOMEM;
	}
	if (r < 0) {
		blkid_free_probe(pr);
		return -EIO;
	}
	if (r == 0 && blkid_probe_lookup_value(pr, "TYPE", &type, NULL) < 0 &&
	    blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL) < 0)
		type = NULL;
	if (r == 1)
		type = NULL;
	*ret = type ? strdup(type) : NULL;
	blkid_free_probe(pr);
	return type && !*ret ? -ENOMEM : 0;
}

int fs_mkfs(const char *dev, const char *type, char **ret_err)
{
	if (streq_ptr(type, "ext4")) {
		/* stride/stripe 512 x 4 KiB = 2 MiB: allocations aligned for huge pages. */
		const char *argv[] = { "mkfs.ext4", "-q", "-F", "-b", "4096", "-E",
				       "stride=512,stripe_width=512", dev, NULL };
		return exec_check(argv, MKFS_TIMEOUT_MS, NULL, ret_err);
	}
	if (streq_ptr(type, "xfs")) {
		const char *argv[] = { "mkfs.xfs", "-q", "-f", "-b", "size=4096", "-m", "reflink=0",
				       "-d", "su=2m,sw=1", dev, NULL };
		/* With a 2 MiB stripe unit, xfsprogs 6.x picks allocation groups too
		 * small for its 64 MB minimum log on filesystems below ~1 GiB ("Log
		 * size must be at least 64MB"); two larger groups fit. */
		const char *small[] = { "mkfs.xfs", "-q", "-f", "-b", "size=4096", "-m", "reflink=0",
					"-d", "su=2m,sw=1,agcount=2", dev, NULL };
		int r = exec_check(argv, MKFS_TIMEOUT_MS, NULL, NULL);
		if (r < 0)
			r = exec_check(small, MKFS_TIMEOUT_MS, NULL, ret_err);
		return r;
	}
	return -EOPNOTSUPP;
}

int fs_xfs_set_extsize(const char *mountpoint)
{
	_cleanup_close_ int fd = -1;
	struct fsxattr fa;

	fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) < 0)
		return -errno;
	fa.fsx_xflags |= FS_XFLAG_EXTSZINHERIT;
	fa.fsx_extsize = 2 * 1024 * 1024;
	if (ioctl(fd, FS_IOC_FSSETXATTR, &fa) < 0)
		return -errno;
	return 0;
}

int fs_parse_mount_options(const char *const *opts, size_t n, unsigned long *ret_flags,
			   char **ret_data)
{
	static const struct {
		const char *name;
		unsigned long set, clear;
	} table[] = {
		{ "ro", MS_RDONLY, 0 },	      { "rw", 0, MS_RDONLY },
		{ "noatime", MS_NOATIME, 0 }, { "nodiratime", MS_NODIRATIME, 0 },
		{ "relatime", MS_RELATIME, 0 }, { "strictatime", MS_STRICTATIME, 0 },
		{ "nosuid", MS_NOSUID, 0 },   { "nodev", MS_NODEV, 0 },
		{ "noexec", MS_NOEXEC, 0 },   { "sync", MS_SYNCHRONOUS, 0 },
		{ "dirsync", MS_DIRSYNC, 0 }, { "lazytime", MS_LAZYTIME, 0 },
		{ "suid", 0, MS_NOSUID },     { "dev", 0, MS_NODEV },
		{ "exec", 0, MS_NOEXEC },     { "async", 0, MS_SYNCHRONOUS },
		{ "defaults", 0, 0 },
	};
	struct strbuf data = STRBUF_INIT;
	unsigned long flags = 0;

	for (size_t i = 0; i < n; i++) {
		const char *o = opts[i];
		size_t j;

		if (!o || !*o)
			continue;
		if (streq_ptr(o, "bind") || streq_ptr(o, "rbind") || streq_ptr(o, "remount") ||
		    streq_ptr(o, "move") || strchr(o, ',')) {
			strbuf_free(&data);
			return -EINVAL;
		}
		for (j = 0; j < ELEMENTSOF(table); j++)
			if (streq_ptr(o, table[j].name))
				break;
		if (j < ELEMENTSOF(table)) {
			flags = (flags | table[j].set) & ~table[j].clear;
			continue;
		}
		if (strbuf_len(&data))
			strbuf_append_char(&data, ',');
		strbuf_append_str(&data, o);
	}
	*ret_data = strbuf_steal(&data);
	if (!*ret_data)
		return -ENOMEM;
	*ret_flags = flags;
	return 0;
}

int fs_mount(const char *src, const char *target, const char *type, unsigned long flags,
	     const char *data)
{
	if (mount(src, target, type, flags, data && *data ? data : NULL) < 0)
		return -errno;
	return 0;
}

int fs_bind_mount(const char *src, const char *target, bool readonly, unsigned long extra_flags)
{
	if (mount(src, target, NULL, MS_BIND, NULL) < 0)
		return -errno;
	/* Flags on a bind mount only take effect with a remount. */
	if (readonly || extra_flags) {
		unsigned long f = MS_BIND | MS_REMOUNT | extra_flags | (readonly ? MS_RDONLY : 0);
		if (mount(NULL, target, NULL, f, NULL) < 0) {
			int r = -errno;
			(void)umount2(target, MNT_DETACH);
			return r;
		}
	}
	return 0;
}

int fs_umount(const char *target)
{
	if (umount2(target, UMOUNT_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

void fs_mount_info_done(struct fs_mount_info *i)
{
	free(i->root);
	free(i->fstype);
	free(i->source);
	free(i->options);
	free(i->super_options);
	memset(i, 0, sizeof(*i));
}

/* Undo mountinfo's octal escapes (\040 for space etc.) in place. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
		    s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else
			*w++ = *s;
	}
	*w = 0;
}

/*
 * One line of mountinfo:
 * 36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 */
struct mi_line {
	unsigned major, minor;
	char *root, *mountpoint, *options, *fstype, *source, *super;
};

static int parse_mi_line(char *line, struct mi_line *ret)
{
	char *f[6], *save = NULL, *sep, *tail;
	unsigned ma, mi;

	sep = strstr(line, " - ");
	if (!sep)
		return -EINVAL;
	*sep = 0;
	tail = sep + 3;
	for (int i = 0; i < 6; i++) {
		f[i] = strtok_r(i == 0 ? line : NULL, " ", &save);
		if (!f[i])
			return -EINVAL;
	}
	if (sscanf(f[2], "%u:%u", &ma, &mi) != 2)
		return -EINVAL;
	ret->major = ma;
	ret->minor = mi;
	ret->root = f[3];
	ret->mountpoint = f[4];
	ret->options = f[5];
	save = NULL;
	ret->fstype = strtok_r(tail, " ", &save);
	ret->source = strtok_r(NULL, " ", &save);
	ret->super = strtok_r(NULL, " \n", &save);
	if (!ret->fstype || !ret->source || !ret->super)
		return -EINVAL;
	unescape(ret->root);
	unescape(ret->mountpoint);
	unescape(ret->source);
	return 0;
}

static int for_each_mount(int (*fn)(const struct mi_line *l, void *ud), void *ud)
{
	_cleanup_free_ char *buf = NULL;
	char *line, *save = NULL;
	int r;

	r = read_file_limited("/proc/self/mountinfo", MOUNTINFO_MAX, &buf, NULL);
	if (r < 0)
		return r;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct mi_line l;
		if (parse_mi_line(line, &l) < 0)
			continue;
		r = fn(&l, ud);
		if (r != 0)
			return r;
	}
	return 0;
}

struct find_ctx {
	const char *path;
	struct fs_mount_info info;
	bool found;
};

static int find_cb(const struct mi_line *l, void *ud)
{
	struct find_ctx *c = ud;

	if (strcmp(l->mountpoint, c->path) != 0)
		return 0;
	/* Later lines are mounted on top: keep the last match. */
	fs_mount_info_done(&c->info);
	c->info.major = l->major;
	c->info.minor = l->minor;
	c->info.root = strdup(l->root);
	c->info.fstype = strdup(l->fstype);
	c->info.source = strdup(l->source);
	c->info.options = strdup(l->options);
	c->info.super_options = strdup(l->super);
	if (!c->info.root || !c->info.fstype || !c->info.source || !c->info.options ||
	    !c->info.super_options)
		return -ENOMEM;
	c->found = true;
	return 0;
}

int fs_mount_info(const char *path, struct fs_mount_info *ret)
{
	struct find_ctx c = { .path = path };
	char resolved[4096];
	int r;

	/* mountinfo shows canonical paths. */
	if (realpath(path, resolved))
		c.path = resolved;
	r = for_each_mount(find_cb, &c);
	if (r < 0) {
		fs_mount_info_done(&c.info);
		return r;
	}
	if (!c.found)
		return 0;
	*ret = c.info;
	return 1;
}

struct count_ctx {
	dev_t dev;
	int count;
};

static int count_cb(const struct mi_line *l, void *ud)
{
	struct count_ctx *c = ud;

	if (l->major == major(c->dev) && l->minor == minor(c->dev)) {
		c->count++;
		return 0;
	}
	/* A device node bound onto a file (raw block publish) shows the
	 * filesystem the node lives in (devtmpfs, or tmpfs for a container's
	 * /dev), not the device: ask what the mount point is now. Only those
	 * file systems are stat()ed, so a hung network mount cannot block us. */
	if (streq_ptr(l->fstype, "devtmpfs") || streq_ptr(l->fstype, "tmpfs")) {
		struct stat st;
		if (stat(l->mountpoint, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == c->dev)
			c->count++;
	}
	return 0;
}

int fs_device_mount_count(const char *dev)
{
	struct count_ctx c = { 0, 0 };
	struct stat st;
	int r;

	if (stat(dev, &st) < 0)
		return -errno;
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	c.dev = st.st_rdev;
	r = for_each_mount(count_cb, &c);
	return r < 0 ? r : c.count;
}

bool fs_has_option(const char *list, const char *opt)
{
	size_t len = strlen(opt);
	const char *p = list;

	while (p && *p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == len && strncmp(p, opt, len) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

int fs_path_check(const char *path, const char **ret_why)
{
	const char *p;

	if (!path || !*path) {
		*ret_why = "is empty";
		return -EINVAL;
	}
	if (path[0] != '/') {
		*ret_why = "is not an absolute path";
		return -EINVAL;
	}
	if (strlen(path) >= PATH_MAX) {
		*ret_why = "is longer than PATH_MAX";
		return -EINVAL;
	}
	for (p = path; *p;) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
			*ret_why = n == 1 ? "has a \".\" component" : "has a \"..\" component";
			return -EINVAL;
		}
		p += n;
	}
	return 0;
}

int fs_path_resolve(const char *path, char **ret)
{
	_cleanup_free_ char *copy = NULL, *parent = NULL;
	char *slash, *name, *res;
	int r;

	res = realpath(path, NULL);
	if (res) {
		*ret = res;
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	/* The last component does not exist (or dangles): resolve its parent. */
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	for (size_t n = strlen(copy); n > 1 && copy[n - 1] == '/'; n--)
		copy[n - 1] = 0;
	slash = strrchr(copy, '/');
	if (!slash || !slash[1])
		return -ENOENT;
	name = slash + 1;
	while (slash > copy && slash[-1] == '/')
		slash--;
	*slash = 0;
	r = fs_path_resolve(*copy ? copy : "/", &parent);
	if (r < 0)
		return r;
	res = xasprintf("%s%s%s", parent, streq_ptr(parent, "/") ? "" : "/", name);
	if (!res)
		return -ENOMEM;
	*ret = res;
	return 0;
}
