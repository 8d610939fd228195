/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LVM metadata reader (src/pmem/lvm_meta.c) on real metadata areas, dumped
 * in the test guest after real pvcreate/vgcreate/lvcreate runs (see
 * gen-lvm-meta-fixtures.py), compared row by row with what `pvs` printed for
 * the same state; and on images made here from metadata text, for the cases
 * it must refuse (-EOPNOTSUPP: the driver then runs pvs).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pmem/lvm_meta.h"
#include "pmem/lvm_report.h"
#include "test.h"
#include "lvm-meta-fixtures.h"

#define IMG_SIZE (1024 * 1024)

struct image {
	uint8_t *data;
	size_t len;
};

static void fixture_image(const struct fixture_dev *d, struct image *ret)
{
	ret->data = calloc(1, IMG_SIZE);
	ret->len = IMG_SIZE;
	for (size_t i = 0; i < d->n_chunks; i++)
		memcpy(ret->data + d->chunks[i].off, d->chunks[i].data, d->chunks[i].len);
}

static void lvm_report_rows_free_one(struct lvm_report_row *row)
{
	free(row->name);
	free(row->vg);
	free(row->path);
	free(row->attr);
	free(row->lv);
}

static int row_cmp(const void *a, const void *b)
{
	const struct lvm_report_row *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (!c)
		c = strcmp(x->lv, y->lv);
	return c;
}

/* The reader's rows for a fixture, optionally with its devices changed by @mangle. */
static int fixture_rows(const struct fixture *f, void (*mangle)(struct image *, size_t), struct lvm_report_row **ret,
			size_t *ret_n)
{
	struct lvm_meta_image imgs[8];
	struct image im[8];
	int r;

	for (size_t i = 0; i < f->n_devs; i++) {
		fixture_image(&f->devs[i], &im[i]);
		if (mangle)
			mangle(&im[i], i);
		imgs[i] = (struct lvm_meta_image){ f->devs[i].name, im[i].data, im[i].len };
	}
	r = lvm_meta_rows_images(imgs, f->n_devs, f->dm, f->n_dm, ret, ret_n);
	for (size_t i = 0; i < f->n_devs; i++)
		free(im[i].data);
	return r;
}

/* The reader gives the rows pvs printed (the same set: pvs sorts segments of a
 * PV by their start as the reader does, but both are sorted here by name). */
static void check_like_pvs(const struct fixture *f)
{
	struct lvm_report_row *rows = NULL, *want = NULL;
	size_t n = 0, n_want = 0;

	CHECK_INT(fixture_rows(f, NULL, &rows, &n), 0);
	CHECK_INT(lvm_report_parse(f->pvs_json, strlen(f->pvs_json), "pv", &want, &n_want), 0);
	/* pvs printed every PV of the guest: keep the rows of the fixture's devices. */
	for (size_t i = 0, k = 0; want && i < n_want; i++) {
		bool mine = false;
		for (size_t d = 0; d < f->n_devs; d++)
			mine |= strcmp(want[i].name, f->devs[d].name) == 0;
		if (mine)
			want[k++] = want[i];
		else
			lvm_report_rows_free_one(&want[i]);
		if (i + 1 == n_want)
			n_want = k;
	}
	CHECK_INT(n, n_want);
	if (n != n_want || !rows || !want) {
		fprintf(stderr, "  fixture %s: %zu rows, pvs printed %zu\n", f->name, n, n_want);
		goto out;
	}
	/* Same order as pvs (per PV, by extent) ... */
	for (size_t i = 0; i < n; i++) {
		CHECK_STR(rows[i].name, want[i].name);
		CHECK_STR(rows[i].lv, want[i].lv);
	}
	/* ... and the same values. */
	qsort(rows, n, sizeof(*rows), row_cmp);
	qsort(want, n, sizeof(*want), row_cmp);
	for (size_t i = 0; i < n; i++) {
		CHECK_STR(rows[i].name, want[i].name);
		CHECK_STR(rows[i].vg, want[i].vg);
		CHECK_STR(rows[i].lv, want[i].lv);
		CHECK_STR(rows[i].attr, want[i].attr);
		CHECK(rows[i].lv_size == want[i].lv_size);
		CHECK(rows[i].vg_size == want[i].vg_size);
		CHECK(rows[i].vg_free == want[i].vg_free);
	}
out:
	lvm_report_rows_free(rows, n);
	lvm_report_rows_free(want, n_want);
}

static void check_refused(const struct fixture *f, void (*mangle)(struct image *, size_t))
{
	struct lvm_report_row *rows = NULL;
	size_t n = 0;

	CHECK_INT(fixture_rows(f, mangle, &rows, &n), -EOPNOTSUPP);
	CHECK(rows == NULL);
}

TEST(lvm_meta_crc)
{
	/* LVM's crc32 of nothing is its initial value; the label checksum of a
	 * real label (fixture A) is checked by every fixture test below. */
	CHECK(lvm_meta_crc(LVM_META_CRC_INIT, "", 0) == LVM_META_CRC_INIT);
	CHECK(lvm_meta_crc(0xffffffffu, "123456789", 9) == ~0xcbf43926u);
}

TEST(lvm_meta_vg_with_lvs)
{
	/* One active LV, one removed (a free gap), one deactivated by hand. */
	check_like_pvs(&A_fixture);
}

TEST(lvm_meta_empty_vg)
{
	check_like_pvs(&B_fixture);
}

TEST(lvm_meta_small_area)
{
	/* A 60 KiB metadata area after 40 lvcreate (every third followed by an
	 * lvremove): old copies all over the circular buffer. */
	check_like_pvs(&C_fixture);
}

TEST(lvm_meta_wrapped_text)
{
	/* The same PV after the 38th lvcreate, when the committed text ran past
	 * the end of the area and continued after the header (pvs was not run
	 * then: the rows are checked for consistency, and the checksum over both
	 * parts is what the reader verified). */
	struct lvm_report_row *rows = NULL;
	size_t n = 0;
	uint64_t used = 0, lvs = 0;

	CHECK_INT(fixture_rows(&Cwrap_fixture, NULL, &rows, &n), 0);
	for (size_t i = 0; rows && i < n; i++) {
		CHECK_STR(rows[i].vg, "vgc");
		CHECK(rows[i].vg_size == 125829120);
		if (rows[i].lv[0]) {
			CHECK(rows[i].lv_size == 4194304);
			CHECK(rows[i].lv[0] == 'l');
			used += rows[i].lv_size;
			lvs++;
		}
	}
	CHECK(n > 0 && rows[0].vg_free + used == rows[0].vg_size);
	CHECK(lvs >= 20);
	lvm_report_rows_free(rows, n);
}

TEST(lvm_meta_two_pvs)
{
	/* One VG on two PVs: a linear LV spanning both and a striped one. */
	check_like_pvs(&E_fixture);
}

TEST(lvm_meta_orphan_refused)
{
	check_refused(&D_fixture, NULL);
}

TEST(lvm_meta_failed_snapshot_leftover)
{
	/* `lvcreate -s` of an LV on fsdax PMEM fails in device-mapper (a DAX
	 * origin cannot get a snapshot target) and leaves a plain inactive LV
	 * "snap" behind: that is what pvs shows, and so must the reader. */
	check_like_pvs(&F_fixture);
}

static void only_first(struct image *im, size_t i)
{
	if (i > 0)
		memset(im->data, 0, 4096); /* no label: the VG's second PV is missing */
}

TEST(lvm_meta_missing_pv_refused)
{
	check_refused(&E_fixture, only_first);
}

/* Where fixture A's metadata area and text are (read from its header). */
static uint64_t le64_at(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A change that still parses (a digit of a creation time): only the text's
 * checksum can catch it. */
static void flip_text(struct image *im, size_t i)
{
	uint64_t at = 4096 + le64_at(im->data + 4096 + 40);
	uint8_t *p = memmem(im->data + at, im->len - at, "creation_time = ", 16);

	if (p)
		p[16] ^= 1;
	else
		im->data[at + 10] ^= 1;
}

static void flip_header(struct image *im, size_t i)
{
	im->data[4096 + 200] ^= 1;
}

static void flip_label(struct image *im, size_t i)
{
	im->data[512 + 100] ^= 1;
}

static void truncate_text(struct image *im, size_t i)
{
	im->len = 4096 + le64_at(im->data + 4096 + 40) + le64_at(im->data + 4096 + 48) / 2;
}

static void truncate_header(struct image *im, size_t i)
{
	im->len = 4096 + 100;
}

TEST(lvm_meta_damage_refused)
{
	check_refused(&A_fixture, flip_text);
	check_refused(&A_fixture, flip_header);
	check_refused(&A_fixture, flip_label);
	check_refused(&A_fixture, truncate_text);
	check_refused(&A_fixture, truncate_header);
	check_refused(&C_fixture, flip_text);
}

TEST(lvm_meta_no_label)
{
	/* A device that is no PV gives no rows, like pvs. */
	uint8_t *zero = calloc(1, 8192);
	struct lvm_meta_image img = { "/dev/pmem9", zero, 8192 };
	struct lvm_report_row *rows = NULL;
	size_t n = 1;

	CHECK_INT(lvm_meta_rows_images(&img, 1, NULL, 0, &rows, &n), 0);
	CHECK_INT(n, 0);
	lvm_report_rows_free(rows, n);
	free(zero);
}

/* --- images made here from metadata text --- */

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

#define MDA_OFF 4096
#define MDA_SIZE (60 * 1024)
#define PV_UUID "abcdef0123456789ABCDEF0123456789"
#define PV_ID "abcdef-0123-4567-89AB-CDEF-0123-456789"
#define VG_ID "vvvvvv-vvvv-vvvv-vvvv-vvvv-vvvv-vvvvvv"

/* A PV image holding @text (plus its NUL) at @at in the metadata area. */
static struct image make_image(const char *text, uint64_t at)
{
	struct image im = { calloc(1, MDA_OFF + MDA_SIZE), MDA_OFF + MDA_SIZE };
	uint8_t *lh = im.data + 512, *ph = lh + 32, *mh = im.data + MDA_OFF;
	size_t len = strlen(text) + 1, part1;

	memcpy(lh, "LABELONE", 8);
	put64(lh + 8, 1);
	put32(lh + 20, 32);
	memcpy(lh + 24, "LVM2 001", 8);
	memcpy(ph, PV_UUID, 32);
	put64(ph + 32, 1 << 30);
	put64(ph + 40, 1 << 20); /* data area at 1 MiB, then the end of the list */
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
	return im;
}

static int text_rows(const char *text, uint64_t at, struct lvm_report_row **rows, size_t *n)
{
	struct image im = make_image(text, at);
	struct lvm_meta_image img = { "/dev/pmem0", im.data, im.len };
	static const char *const active[] = { "LVM-vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvllllllllllllllllllllllllllllllll" };
	int r = lvm_meta_rows_images(&img, 1, active, 1, rows, n);

	free(im.data);
	return r;
}

#define VG_HEAD "vg0 {\nid = \"" VG_ID "\"\nseqno = 7\nformat = \"lvm2\"\n"
#define VG_PLAIN VG_HEAD "status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\nextent_size = 8192\n"
#define PVS_SEC                                                                                      \
	"physical_volumes {\npv0 {\nid = \"" PV_ID "\"\ndevice = \"/dev/pmem0\"\n"                    \
	"status = [\"ALLOCATABLE\"]\nflags = []\ndev_size = 2097152\npe_start = 2048\npe_count = 100\n}\n}\n"
#define LV(name, id, status, extra)                                                                  \
	name " {\nid = \"" id "\"\nstatus = " status "\nflags = []\n" extra "segment_count = 1\n"     \
	"segment1 {\nstart_extent = 0\nextent_count = 10\ntype = \"striped\"\nstripe_count = 1 # linear\n" \
	"stripes = [\n\"pv0\", 5\n]\n}\n}\n"
#define LV_ID "llllll-llll-llll-llll-llll-llll-llllll"
#define TAIL "}\n# Generated by LVM2\ncontents = \"Text Format Volume Group\"\nversion = 1\n" \
	     "description = \"a \\\"quoted\\\" \\\\ text\"\ncreation_time = 1700000000\n"

TEST(lvm_meta_synthetic_plain)
{
	static const char text[] = VG_PLAIN PVS_SEC "logical_volumes {\n"
		LV("pvc-1", LV_ID, "[\"READ\", \"WRITE\", \"VISIBLE\"]", "creation_host = \"h\"\n") "}\n" TAIL;
	struct lvm_report_row *rows = NULL;
	size_t n = 0;

	/* At the start of the area and wrapped around its end: the same rows. */
	for (int wrap = 0; wrap < 2; wrap++) {
		CHECK_INT(text_rows(text, wrap ? MDA_SIZE - 100 : 512, &rows, &n), 0);
		CHECK_INT(n, 3); /* free 0-4, the LV at 5-14, free 15-99 */
		if (n == 3) {
			CHECK_STR(rows[0].lv, "");
			CHECK_STR(rows[1].lv, "pvc-1");
			CHECK_STR(rows[1].attr, "-wi-a-----");
			CHECK(rows[1].lv_size == 10ULL * 4 * 1024 * 1024);
			CHECK(rows[1].vg_size == 100ULL * 4 * 1024 * 1024);
			CHECK(rows[1].vg_free == 90ULL * 4 * 1024 * 1024);
			CHECK_STR(rows[2].lv, "");
		}
		lvm_report_rows_free(rows, n);
		rows = NULL;
	}
}

TEST(lvm_meta_synthetic_tags)
{
	/* intel/pmem-csi 0.x tagged its VGs ("fsdax"): tags on the VG, a PV and an LV
	 * change nothing in the rows. */
	static const char plain[] = VG_PLAIN PVS_SEC "logical_volumes {\n"
		LV("pvc-1", LV_ID, "[\"READ\", \"WRITE\", \"VISIBLE\"]", "") "}\n" TAIL;
	static const char tagged[] = VG_PLAIN "tags = [\"fsdax\"]\n"
		"physical_volumes {\npv0 {\nid = \"" PV_ID "\"\ndevice = \"/dev/pmem0\"\n"
		"status = [\"ALLOCATABLE\"]\nflags = []\ntags = [\"a\", \"b\"]\ndev_size = 2097152\npe_start = 2048\n"
		"pe_count = 100\n}\n}\n"
		"logical_volumes {\n" LV("pvc-1", LV_ID, "[\"READ\", \"WRITE\", \"VISIBLE\"]", "tags = []\n") "}\n" TAIL;
	struct lvm_report_row *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;

	CHECK_INT(text_rows(plain, 512, &a, &na), 0);
	CHECK_INT(text_rows(tagged, 512, &b, &nb), 0);
	CHECK_INT(nb, na);
	for (size_t i = 0; i < na && i < nb; i++) {
		CHECK_STR(b[i].name, a[i].name);
		CHECK_STR(b[i].lv, a[i].lv);
		CHECK_STR(b[i].attr, a[i].attr);
		CHECK(b[i].lv_size == a[i].lv_size && b[i].vg_size == a[i].vg_size && b[i].vg_free == a[i].vg_free);
	}
	lvm_report_rows_free(a, na);
	lvm_report_rows_free(b, nb);
}

TEST(lvm_meta_synthetic_refused)
{
	static const char *const texts[] = {
		/* a lock type (lvmlockd), exported, a system ID */
		VG_PLAIN "lock_type = \"sanlock\"\n" PVS_SEC TAIL,
		VG_HEAD "status = [\"EXPORTED\", \"READ\", \"WRITE\"]\nflags = []\nextent_size = 8192\n" PVS_SEC TAIL,
		VG_PLAIN "system_id = \"other\"\n" PVS_SEC TAIL,
		VG_HEAD "status = [\"READ\", \"WRITE\"]\nflags = [\"PARTIAL\"]\nextent_size = 8192\n" PVS_SEC TAIL,
		/* a hidden LV, an LV with another segment type */
		VG_PLAIN PVS_SEC "logical_volumes {\n" LV("x", LV_ID, "[\"READ\", \"WRITE\"]", "") "}\n" TAIL,
		VG_PLAIN PVS_SEC "logical_volumes {\nx {\nid = \"" LV_ID "\"\nstatus = [\"READ\", \"VISIBLE\"]\n"
			"flags = []\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 10\n"
			"type = \"thin-pool\"\n}\n}\n}\n" TAIL,
		/* an old-style snapshot: the COW LV hidden, a snapshot segment */
		VG_PLAIN PVS_SEC "logical_volumes {\n" LV("cow", LV_ID, "[\"READ\", \"WRITE\"]", "")
			"snapshot0 {\nid = \"" LV_ID "\"\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\n"
			"segment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 10\ntype = \"snapshot\"\n"
			"chunk_size = 8\norigin = \"lv1\"\ncow_store = \"cow\"\n}\n}\n}\n" TAIL,
		/* tags that are not an array of strings */
		VG_PLAIN "tags = [1]\n" PVS_SEC TAIL,
		VG_PLAIN PVS_SEC "logical_volumes {\n" LV("x", LV_ID, "[\"READ\", \"VISIBLE\"]", "tags = \"t\"\n")
			"}\n" TAIL,
		/* a stripe outside the PV, a PV not among the devices */
		VG_PLAIN PVS_SEC "logical_volumes {\nx {\nid = \"" LV_ID "\"\nstatus = [\"READ\", \"VISIBLE\"]\n"
			"flags = []\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 10\n"
			"type = \"striped\"\nstripe_count = 1\nstripes = [\"pv0\", 95]\n}\n}\n}\n" TAIL,
		VG_PLAIN "physical_volumes {\npv0 {\nid = \"zzzzzz-0123-4567-89AB-CDEF-0123-456789\"\n"
			"status = [\"ALLOCATABLE\"]\nflags = []\npe_start = 2048\npe_count = 100\n}\n}\n" TAIL,
		/* not the text format, syntax errors, a float */
		VG_PLAIN PVS_SEC "}\ncontents = \"Something else\"\nversion = 1\n",
		VG_PLAIN PVS_SEC TAIL "x = [\n",
		VG_PLAIN PVS_SEC TAIL "x = \"unterminated\n",
		VG_PLAIN PVS_SEC TAIL "x = 1.5\n",
		VG_PLAIN PVS_SEC "}}\n" TAIL,
	};
	struct lvm_report_row *rows = NULL;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		int r = text_rows(texts[i], 512, &rows, &n);
		if (r != -EOPNOTSUPP)
			fprintf(stderr, "  text %zu: %d\n", i, r);
		CHECK_INT(r, -EOPNOTSUPP);
	}
	/* The plain text parses: the refusals above are for what they change. */
	CHECK_INT(text_rows(VG_PLAIN PVS_SEC TAIL, 512, &rows, &n), 0);
	CHECK_INT(n, 1);
	lvm_report_rows_free(rows, n);
}
