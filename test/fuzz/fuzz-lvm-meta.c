/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LVM metadata reader (pmem/lvm_meta.c) on a device image: the PV label,
 * the metadata area header, the circular text area and LVM's config syntax.
 * The devices are the driver's own namespaces, but anyone with access to them
 * can write anything there, and a driver that crashes or loops on it at
 * start-up serves no volumes.
 *
 * Input: an image of the start of a device; or 'T' and a metadata text, which
 * is put into an image with valid checksums (once at the start of the area,
 * once wrapped around its end), so that the fuzzer reaches the parser without
 * having to find CRCs; or 'D' and an image used as two devices (the same
 * PV twice must be refused).
 *
 * Checked: the result is 0, -EOPNOTSUPP, -E2BIG or -ENOMEM, and the outputs
 * are untouched on failure; every row names its device, has a VG, an LV name
 * and an attr string, and its VG's free space is at most its size.
 */
#include <errno.h>

#include "fuzz.h"
#include "pmem/lvm_meta.h"

#define MDA_OFF 4096u
#define MDA_SIZE (16u * 1024u)

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A PV with one metadata area holding @text at @at (relative to the area). */
static uint8_t *make_image(const uint8_t *text, size_t len, uint32_t at)
{
	uint8_t *img = calloc(1, MDA_OFF + MDA_SIZE), *lh, *ph, *mh;
	size_t part1;

	if (!img)
		return NULL;
	lh = img + 512;
	ph = lh + 32;
	mh = img + MDA_OFF;
	memcpy(lh, "LABELONE", 8);
	put64(lh + 8, 1);
	put32(lh + 20, 32);
	memcpy(lh + 24, "LVM2 001", 8);
	memcpy(ph, "0123456789abcdefghijABCDEFGHIJkl", 32);
	put64(ph + 32, 1u << 30);
	put64(ph + 40, 1u << 20);
	put64(ph + 72, MDA_OFF);
	put64(ph + 80, MDA_SIZE);
	put32(lh + 16, lvm_meta_crc(LVM_META_CRC_INIT, lh + 20, 512 - 20));
	memcpy(mh + 4, " LVM2 x[5A%r0N*>", 16);
	put32(mh + 20, 1);
	put64(mh + 24, MDA_OFF);
	put64(mh + 32, MDA_SIZE);
	put64(mh + 40, at);
	put64(mh + 48, len);
	put32(mh + 56, lvm_meta_crc(LVM_META_CRC_INIT, text, len));
	part1 = len < MDA_SIZE - at ? len : MDA_SIZE - at;
	memcpy(mh + at, text, part1);
	memcpy(mh + 512, text + part1, len - part1);
	put32(mh, lvm_meta_crc(LVM_META_CRC_INIT, mh + 4, 512 - 4));
	return img;
}

static void check(const struct lvm_meta_image *imgs, size_t n)
{
	static const char *const active[] = { "LVM-0123456789abcdefghijABCDEFGHIJkl0123456789abcdefghijABCDEFGHIJkl" };
	struct lvm_report_row *const untouched = (struct lvm_report_row *)(uintptr_t)0x5a5a5a5a;
	struct lvm_report_row *rows = untouched;
	size_t n_rows = 12345;
	int r;

	r = lvm_meta_rows_images(imgs, n, active, 1, &rows, &n_rows);
	if (r < 0) {
		FUZZ_CHECK(r == -EOPNOTSUPP || r == -E2BIG || r == -ENOMEM);
		FUZZ_CHECK(rows == untouched && n_rows == 12345);
		return;
	}
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(rows);
	for (size_t i = 0; i < n_rows; i++) {
		bool known = false;
		for (size_t k = 0; k < n; k++)
			known |= strcmp(rows[i].name, imgs[k].name) == 0;
		FUZZ_CHECK(known);
		FUZZ_CHECK(rows[i].vg && rows[i].vg[0]);
		FUZZ_CHECK(rows[i].lv && rows[i].attr);
		FUZZ_CHECK(rows[i].vg_free <= rows[i].vg_size);
		FUZZ_CHECK(rows[i].lv_size <= rows[i].vg_size);
	}
	lvm_report_rows_free(rows, n_rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256 * 1024)
		return 0;
	if (size > 0 && data[0] == 'T') {
		size_t len = size - 1;
		if (len == 0 || len > MDA_SIZE - 512)
			return 0;
		for (int wrap = 0; wrap < 2; wrap++) {
			uint32_t at = wrap ? (uint32_t)(MDA_SIZE - len / 2 - 1) : 512u;
			uint8_t *img = make_image(data + 1, len, at < 512 ? 512 : at);
			struct lvm_meta_image im = { "/dev/pmem0", img, MDA_OFF + MDA_SIZE };
			if (!img)
				return 0;
			check(&im, 1);
			free(img);
		}
		return 0;
	}
	if (size > 0 && data[0] == 'D') {
		struct lvm_meta_image two[2] = { { "/dev/pmem0", data + 1, size - 1 },
						 { "/dev/pmem1", data + 1, size - 1 } };
		check(two, 2);
		return 0;
	}
	{
		struct lvm_meta_image one = { "/dev/pmem0", data, size };
		check(&one, 1);
	}
	return 0;
}
