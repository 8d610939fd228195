/* SPDX-License-Identifier: Apache-2.0 */
/* Pure parts of pmem/ and fs/ and csi/: LVM reports, mount options, status mapping. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/macro.h"
#include "csi/ownership.h"
#include "basic/strutil.h"
#include "csi/server.h"
#include "fs/fs.h"
#include "fs/kata.h"
#include "pmem/lvm_report.h"
#include "pmem/pmem.h"
#include "test.h"

TEST(lvm_report_vgs)
{
	/* `vgs --reportformat json --units b --nosuffix -o vg_name,vg_size,vg_free` (lvm2 2.03.16) */
	static const char json[] = "  {\n      \"report\": [\n          {\n              \"vg\": [\n"
				   "                  {\"vg_name\":\"ndbus0region0fsdax\", \"vg_size\":\"4278190080\", \"vg_free\":\"4273995776\"},\n"
				   "                  {\"vg_name\":\"ndbus0region1fsdax\", \"vg_size\":\"4278190080\", \"vg_free\":\"0\"}\n"
				   "              ]\n          }\n      ]\n  }\n";
	struct lvm_report_row *rows = NULL;
	size_t n = 0;

	CHECK_INT(lvm_report_parse(json, strlen(json), "vg", &rows, &n), 0);
	CHECK_INT(n, 2);
	CHECK_STR(rows[0].name, "ndbus0region0fsdax");
	CHECK(rows[0].size == 4278190080ULL);
	CHECK(rows[0].free == 4273995776ULL);
	CHECK(rows[1].free == 0);
	lvm_report_rows_free(rows, n);
}

TEST(lvm_report_pv_segments)
{
	/* `pvs --reportformat json --units b --nosuffix -o
	 * pv_name,vg_name,vg_size,vg_free,lv_name,lv_size,lv_attr`: LV columns make
	 * pvs print one row per PV segment; free space has an empty lv_name, an
	 * orphan PV an empty vg_name and zero sizes. */
	static const char json[] =
		"{\"report\":[{\"pv\":["
		"{\"pv_name\":\"/dev/pmem0\",\"vg_name\":\"ndbus0region0fsdax\",\"vg_size\":\"4278190080\","
		"\"vg_free\":\"4211081216\",\"lv_name\":\"pvc-7d-7187\",\"lv_size\":\"67108864\",\"lv_attr\":\"-wi-a-----\"},"
		"{\"pv_name\":\"/dev/pmem0\",\"vg_name\":\"ndbus0region0fsdax\",\"vg_size\":\"4278190080\","
		"\"vg_free\":\"4211081216\",\"lv_name\":\"\",\"lv_size\":\"0\",\"lv_attr\":\"\"},"
		"{\"pv_name\":\"/dev/pmem1\",\"vg_name\":\"\",\"vg_size\":\"0\",\"vg_free\":\"0\","
		"\"lv_name\":\"\",\"lv_size\":\"0\",\"lv_attr\":\"\"}"
		"]}]}";
	struct lvm_report_row *rows = NULL;
	size_t n = 0;

	CHECK_INT(lvm_report_parse(json, strlen(json), "pv", &rows, &n), 0);
	CHECK_INT(n, 3);
	CHECK_STR(rows[0].name, "/dev/pmem0");
	CHECK_STR(rows[0].vg, "ndbus0region0fsdax");
	CHECK_STR(rows[0].lv, "pvc-7d-7187");
	CHECK(rows[0].lv_size == 67108864);
	CHECK(rows[0].vg_size == 4278190080ULL);
	CHECK(rows[0].vg_free == 4211081216ULL);
	CHECK_STR(rows[0].attr, "-wi-a-----");
	CHECK_STR(rows[1].lv, "");
	CHECK(rows[1].lv_size == 0);
	CHECK_STR(rows[2].vg, "");
	CHECK(rows[2].vg_size == 0);
	lvm_report_rows_free(rows, n);
}

TEST(lvm_report_lvs_and_errors)
{
	static const char json[] = "{\"report\":[{\"lv\":[{\"lv_name\":\"pvc-7d-7187\",\"vg_name\":\"ndbus0region0fsdax\","
				   "\"lv_size\":\"8388608\",\"lv_path\":\"/dev/ndbus0region0fsdax/pvc-7d-7187\"}]}]}";
	static const char *const bad[] = {
		"", "{}", "{\"report\":[]}", "{\"report\":[{\"vg\":[]}]}",
		"{\"report\":[{\"lv\":[{\"vg_name\":\"x\"}]}]}",
		"{\"report\":[{\"lv\":[{\"lv_name\":\"a\",\"lv_size\":\"12x\"}]}]}",
		"{\"report\":[{\"lv\":[{\"lv_name\":\"a\",\"lv_size\":\"-5\"}]}]}",
	};
	struct lvm_report_row *rows = NULL;
	size_t n = 0;

	CHECK_INT(lvm_report_parse(json, strlen(json), "lv", &rows, &n), 0);
	CHECK_INT(n, 1);
	CHECK_STR(rows[0].vg, "ndbus0region0fsdax");
	CHECK_STR(rows[0].path, "/dev/ndbus0region0fsdax/pvc-7d-7187");
	CHECK(rows[0].size == 8388608);
	lvm_report_rows_free(rows, n);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		rows = NULL;
		n = 0;
		CHECK(lvm_report_parse(bad[i], strlen(bad[i]), "lv", &rows, &n) < 0);
	}
	/* an empty list is fine */
	CHECK_INT(lvm_report_parse("{\"report\":[{\"lv\":[]}]}", 22, "lv", &rows, &n), 0);
	CHECK_INT(n, 0);
	lvm_report_rows_free(rows, n);
}

TEST(mount_options)
{
	const char *opts[] = { "ro", "noatime", "discard", "nosuid" };
	const char *bad[] = { "bind" };
	const char *inject[] = { "dax,remount" };
	unsigned long flags = 0;
	char *data = NULL;

	CHECK_INT(fs_parse_mount_options(opts, 4, &flags, &data), 0);
	CHECK(flags & MS_RDONLY);
	CHECK(flags & MS_NOATIME);
	CHECK(flags & MS_NOSUID);
	CHECK_STR(data, "discard");
	free(data);
	CHECK_INT(fs_parse_mount_options(NULL, 0, &flags, &data), 0);
	CHECK_STR(data, "");
	free(data);
	CHECK_INT(fs_parse_mount_options(bad, 1, &flags, &data), -EINVAL);
	CHECK_INT(fs_parse_mount_options(inject, 1, &flags, &data), -EINVAL);
}

TEST(has_option)
{
	CHECK(fs_has_option("rw,dax=always,noatime", "dax=always"));
	CHECK(fs_has_option("ro", "ro"));
	CHECK(!fs_has_option("rw,relatime", "ro"));
	CHECK(!fs_has_option("", "ro"));
}

TEST(status_from_errno)
{
	CHECK_INT(csi_code_from_errno(-ENOENT), CSI_CODE_NOT_FOUND);
	CHECK_INT(csi_code_from_errno(-EEXIST), CSI_CODE_ALREADY_EXISTS);
	CHECK_INT(csi_code_from_errno(-ENOSPC), CSI_CODE_RESOURCE_EXHAUSTED);
	CHECK_INT(csi_code_from_errno(-EBUSY), CSI_CODE_FAILED_PRECONDITION);
	CHECK_INT(csi_code_from_errno(-EINVAL), CSI_CODE_INVALID_ARGUMENT);
	CHECK_INT(csi_code_from_errno(-ERANGE), CSI_CODE_OUT_OF_RANGE);
	CHECK_INT(csi_code_from_errno(-EIO), CSI_CODE_INTERNAL);
	CHECK_STR(csi_code_name(CSI_CODE_RESOURCE_EXHAUSTED), "ResourceExhausted");
	CHECK_STR(csi_code_name(CSI_CODE_OK), "OK");
}

TEST(csi_fail_message)
{
	struct csi_call c = {};

	CHECK_INT(csi_fail_errno(&c, -ENOSPC, "cannot create %s", "v1"), -1);
	CHECK_INT(c.code, CSI_CODE_RESOURCE_EXHAUSTED);
	CHECK_STR(c.message, "cannot create v1: No space left on device");
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

TEST(kata_fletcher64)
{
	const uint8_t one[4] = { 1, 0, 0, 0 }, two[8] = { 1, 0, 0, 0, 2, 0, 0, 0 };
	const uint8_t big[4] = { 0xff, 0xff, 0xff, 0xff };

	CHECK(kata_fletcher64(one, 4) == 0x0000000100000001ULL);
	CHECK(kata_fletcher64(two, 8) == 0x0000000400000003ULL);
	/* lo wraps at 32 bits, hi does not. */
	{
		uint8_t b[8];
		memcpy(b, big, 4);
		memcpy(b + 4, one, 4);
		CHECK(kata_fletcher64(b, 8) == ((0xffffffffULL + 0ULL) << 32 | 0));
	}
}

TEST(kata_header)
{
	static uint8_t buf[KATA_PFN_SB_OFFSET + KATA_PFN_SB_SIZE];
	const uint64_t size = 64ULL << 20;
	uint8_t *part = buf + 446, *sb = buf + KATA_PFN_SB_OFFSET;
	uint8_t copy[KATA_PFN_SB_SIZE];

	CHECK_INT(kata_header_build(buf, size), 0);
	CHECK_INT(buf[510], 0x55);
	CHECK_INT(buf[511], 0xaa);
	CHECK_INT(part[4], 0x83);
	CHECK_INT(le(part + 8, 4), 4096);             /* starts at 2 MiB */
	CHECK_INT(le(part + 12, 4), (62ULL << 20) / 512); /* to the end */
	CHECK_INT(part[1], 65);                       /* CHS of LBA 4096: head 65, sector 2, cylinder 0 */
	CHECK_INT(part[2], 2);
	CHECK_INT(part[3], 0);
	CHECK(memcmp(sb, "NVDIMM_PFN_INFO\0", 16) == 0);
	CHECK_INT(le(sb + 54, 2), 2);        /* version_minor */
	CHECK_INT(le(sb + 56, 8), 2 << 20);  /* dataoff */
	CHECK_INT(le(sb + 72, 4), 1);        /* mode RAM */
	CHECK_INT(le(sb + 84, 4), 2 << 20);  /* align */
	/* The kernel's check: the checksum over the block with the field zeroed. */
	memcpy(copy, sb, sizeof(copy));
	memset(copy + KATA_PFN_SB_SIZE - 8, 0, 8);
	CHECK(le(sb + KATA_PFN_SB_SIZE - 8, 8) == kata_fletcher64(copy, sizeof(copy)));
	CHECK(le(sb + KATA_PFN_SB_SIZE - 8, 8) != 0);

	CHECK_INT(kata_header_build(buf, KATA_HEADER_SIZE), -EINVAL);
	CHECK_INT(kata_header_build(buf, size + 4096), -EINVAL);
	CHECK_INT(kata_header_build(buf, (2ULL << 40) + (4ULL << 20)), -EFBIG);
	CHECK_INT(kata_header_build(buf, (2ULL << 40)), 0);
}

TEST(region_align_fallback)
{
	/* Kernels without the region "align" attribute: libndctl says ULONG_MAX. */
	CHECK(pmem_region_align(ULONG_MAX) == 96 * MiB);
	CHECK(pmem_region_align(UINT64_MAX) == 96 * MiB);
	CHECK(pmem_region_align(0) == 96 * MiB);
	CHECK(pmem_region_align(1) == 96 * MiB);
	CHECK(pmem_region_align(16 * MiB) == 16 * MiB);
	CHECK(pmem_region_align(4096) == 4096);
	/* Steps: lcm(pfn align x ways, region align); never 0 or absurd. */
	CHECK(pmem_namespace_step(16 * MiB, 1, 2 * MiB) == 16 * MiB);
	CHECK(pmem_namespace_step(ULONG_MAX, 1, 2 * MiB) == 96 * MiB);
	CHECK(pmem_namespace_step(ULONG_MAX, 2, 2 * MiB) == 96 * MiB);
	CHECK(pmem_namespace_step(ULONG_MAX, 0, 2 * MiB) == 96 * MiB);
	CHECK(pmem_namespace_step(16 * MiB, 3, 2 * MiB) == 48 * MiB);
	CHECK(pmem_namespace_step(4096, 4, 2 * MiB) == 8 * MiB);
}

TEST(ownership_decision_table)
{
	static const struct {
		struct ownership_facts f;
		enum ownership_action want;
	} rows[] = {
		/* record, creating, device, other mode, other mode available */
		{ { STATE_RECORD_OK, false, OWNERSHIP_DEVICE_PRESENT, false, false }, OWNERSHIP_SERVE },
		{ { STATE_RECORD_OK, false, OWNERSHIP_DEVICE_NONE, false, false }, OWNERSHIP_DROP_RECORD },
		{ { STATE_RECORD_OK, false, OWNERSHIP_DEVICE_UNKNOWN, false, false }, OWNERSHIP_RETRY_LATER },
		{ { STATE_RECORD_OK, true, OWNERSHIP_DEVICE_PRESENT, false, false }, OWNERSHIP_UNDO_CREATE },
		{ { STATE_RECORD_OK, true, OWNERSHIP_DEVICE_NONE, false, false }, OWNERSHIP_UNDO_CREATE },
		{ { STATE_RECORD_OK, true, OWNERSHIP_DEVICE_UNKNOWN, false, false }, OWNERSHIP_UNDO_CREATE },
		/* unreadable: never served, never removed, whatever else is there */
		{ { STATE_RECORD_UNREADABLE, false, OWNERSHIP_DEVICE_PRESENT, false, false }, OWNERSHIP_KEEP_REPORTED },
		{ { STATE_RECORD_UNREADABLE, true, OWNERSHIP_DEVICE_PRESENT, false, false }, OWNERSHIP_KEEP_REPORTED },
		{ { STATE_RECORD_UNREADABLE, false, OWNERSHIP_DEVICE_NONE, false, false }, OWNERSHIP_KEEP_REPORTED },
		/* a marker without a record: the device (if any) is not provably ours */
		{ { STATE_RECORD_NONE, true, OWNERSHIP_DEVICE_PRESENT, false, false }, OWNERSHIP_CLEAR_MARKER },
		{ { STATE_RECORD_NONE, true, OWNERSHIP_DEVICE_NONE, false, false }, OWNERSHIP_CLEAR_MARKER },
		{ { STATE_RECORD_NONE, false, OWNERSHIP_DEVICE_PRESENT, false, false }, OWNERSHIP_KEEP_REPORTED },
		/* the other device mode: served through its manager, else kept */
		{ { STATE_RECORD_OK, false, OWNERSHIP_DEVICE_PRESENT, true, true }, OWNERSHIP_SERVE },
		{ { STATE_RECORD_OK, false, OWNERSHIP_DEVICE_NONE, true, true }, OWNERSHIP_DROP_RECORD },
		{ { STATE_RECORD_OK, false, OWNERSHIP_DEVICE_NONE, true, false }, OWNERSHIP_RETRY_LATER },
		{ { STATE_RECORD_OK, false, OWNERSHIP_DEVICE_PRESENT, true, false }, OWNERSHIP_RETRY_LATER },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		enum ownership_action got = ownership_decide(&rows[i].f);
		if (got != rows[i].want) {
			fprintf(stderr, "  row %zu: %s, expected %s\n", i, ownership_action_name(got),
				ownership_action_name(rows[i].want));
			test_failures++;
		}
	}
	CHECK_STR(ownership_action_name(OWNERSHIP_SERVE), "serve");
}

TEST(fs_path_check)
{
	const char *why = NULL;

	CHECK_INT(fs_path_check("/var/lib/kubelet/pods/x/volumes/mount", &why), 0);
	CHECK_INT(fs_path_check("/a//b/", &why), 0); /* empty components are harmless */
	CHECK_INT(fs_path_check("/", &why), 0);
	CHECK_INT(fs_path_check("/a/.hidden/..b/...", &why), 0);
	CHECK_INT(fs_path_check("", &why), -EINVAL);
	CHECK_INT(fs_path_check(NULL, &why), -EINVAL);
	CHECK_INT(fs_path_check("rel/path", &why), -EINVAL);
	CHECK_STR(why, "is not an absolute path");
	CHECK_INT(fs_path_check("./a", &why), -EINVAL);
	CHECK_INT(fs_path_check("/a/../b", &why), -EINVAL);
	CHECK_STR(why, "has a \"..\" component");
	CHECK_INT(fs_path_check("/a/b/..", &why), -EINVAL);
	CHECK_INT(fs_path_check("/..", &why), -EINVAL);
	CHECK_INT(fs_path_check("/a/./b", &why), -EINVAL);
	CHECK_STR(why, "has a \".\" component");
	CHECK_INT(fs_path_check("/a/.", &why), -EINVAL);
}

TEST(fs_path_resolve)
{
	char dir[] = "/tmp/pmem-csi-unit.XXXXXX";
	char *res = NULL, *p = NULL, *l = NULL, *real = NULL;

	CHECK(mkdtemp(dir) != NULL);
	real = realpath(dir, NULL); /* /tmp may itself be a symlink */
	p = xasprintf("%s/real", dir);
	l = xasprintf("%s/link", dir);
	CHECK_INT(mkdir(p, 0700), 0);
	CHECK_INT(symlink(p, l), 0);
	free(p);

	p = xasprintf("%s/real", real);
	CHECK_INT(fs_path_resolve(l, &res), 0); /* existing: every symlink resolved */
	CHECK_STR(res, p);
	free(res);
	free(p);
	p = xasprintf("%s/link/new/deeper", dir); /* not existing yet: the existing prefix is resolved */
	CHECK_INT(fs_path_resolve(p, &res), 0);
	free(p);
	p = xasprintf("%s/real/new/deeper", real);
	CHECK_STR(res, p);
	free(res);
	free(p);
	p = xasprintf("%s//link//", dir);
	CHECK_INT(fs_path_resolve(p, &res), 0);
	free(p);
	p = xasprintf("%s/real", real);
	CHECK_STR(res, p);
	free(res);
	free(p);
	p = xasprintf("%s/dangling", dir); /* a dangling symlink is not followed */
	CHECK_INT(symlink("/nonexistent/pmem-csi", p), 0);
	CHECK_INT(fs_path_resolve(p, &res), 0);
	free(p);
	p = xasprintf("%s/dangling", real);
	CHECK_STR(res, p);
	free(res);
	unlink(p);
	free(p);
	p = xasprintf("%s/link", dir);
	unlink(p);
	free(p);
	p = xasprintf("%s/real", dir);
	rmdir(p);
	free(p);
	rmdir(dir);
	free(l);
	free(real);
}
