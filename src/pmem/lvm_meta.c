/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LVM2's on-disk format, as far as this reader uses it (all integers little
 * endian; lvm2's lib/label/label.h, lib/format_text/layout.h and
 * format-text.c are the reference):
 *
 * - The label sits in one of the first four 512-byte sectors: "LABELONE",
 *   u64 its own sector number, u32 checksum of the rest of the sector from
 *   the next field on, u32 offset of the PV header from the label's start,
 *   "LVM2 001".
 * - The PV header: the PV UUID (32 characters, no dashes), u64 device size,
 *   then {u64 offset, u64 size} data areas ended by a zero offset, then
 *   metadata areas in the same form, ended the same way.
 * - A metadata area starts with a 512-byte header: u32 checksum of the rest
 *   of the header, magic " LVM2 x[5A%r0N*>", u32 version 1, u64 start (the
 *   area's offset on the device), u64 size, then raw locations {u64 offset
 *   (from the area's start), u64 size, u32 text checksum, u32 flags}; the
 *   first is the committed metadata. The area after the header is a circular
 *   buffer: text that reaches the end of the area continues just after the
 *   header.
 * - Checksums are CRC-32 (reflected 0xedb88320) started from 0xf597a6cf and
 *   not inverted at the end.
 * - The text is LVM's config syntax: one section named after the VG with
 *   physical_volumes and logical_volumes, then a few top-level keys
 *   (contents = "Text Format Volume Group", version = 1, ...).
 */
#include "lvm_meta.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"

#define SECTOR 512u
#define LABEL_SCAN_SECTORS 4u
#define MDA_HEADER_SIZE 512u
#define MDA_MAGIC " LVM2 x[5A%r0N*>"
#define ID_LEN 32u
#define TEXT_MAX (16 * MiB)
#define CFG_MAX_DEPTH 16
#define CFG_MAX_NODES 200000
#define META_MAX_DEVS 256
#define DIRECT_ALIGN 4096u

/* --- checksums --- */

uint32_t lvm_meta_crc(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
	}
	return crc;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Log why the reader gives up and return -EOPNOTSUPP: the caller runs pvs. */
#define unsupported(...)                                    \
	({                                                  \
		log_v(2, "LVM metadata reader: " __VA_ARGS__); \
		-EOPNOTSUPP;                               \
	})

/* --- the config syntax --- */

enum cfg_type { CFG_INT, CFG_STR, CFG_ARRAY, CFG_SECTION };

struct cfg {
	enum cfg_type type;
	char *key; /* NULL for array elements */
	int64_t i;
	char *s;
	struct cfg *child; /* sections and arrays */
	struct cfg *next;
};

static void cfg_free(struct cfg *c)
{
	while (c) {
		struct cfg *next = c->next;
		cfg_free(c->child); /* depth is bounded by CFG_MAX_DEPTH */
		free(c->key);
		free(c->s);
		free(c);
		c = next;
	}
}

struct lexer {
	const char *p, *end;
	size_t nodes;
};

static void skip_space(struct lexer *lx)
{
	while (lx->p < lx->end) {
		char ch = *lx->p;
		if (ch == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
			lx->p++;
		else
			break;
	}
}

static bool ident_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
	       ch == '.' || ch == '+' || ch == '-';
}

static struct cfg *cfg_node(struct lexer *lx, enum cfg_type type)
{
	struct cfg *c;

	if (++lx->nodes > CFG_MAX_NODES)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c)
		c->type = type;
	return c;
}

/* A quoted string with LVM's escapes (\" and \\). */
static int parse_string(struct lexer *lx, char **ret)
{
	const char *start = ++lx->p; /* past the quote */
	size_t n = 0;
	char *s;

	for (const char *q = start;; q++) {
		if (q >= lx->end || *q == '\0')
			return -EINVAL;
		if (*q == '"')
			break;
		if (*q == '\\') {
			if (++q >= lx->end)
				return -EINVAL;
		}
		n++;
	}
	s = malloc(n + 1);
	if (!s)
		return -ENOMEM;
	n = 0;
	while (*lx->p != '"') {
		if (*lx->p == '\\')
			lx->p++;
		s[n++] = *lx->p++;
	}
	s[n] = '\0';
	lx->p++;
	*ret = s;
	return 0;
}

static int parse_int(struct lexer *lx, int64_t *ret)
{
	bool neg = false;
	uint64_t v = 0;
	size_t digits = 0;

	if (lx->p < lx->end && *lx->p == '-') {
		neg = true;
		lx->p++;
	}
	while (lx->p < lx->end && *lx->p >= '0' && *lx->p <= '9') {
		if (v > (UINT64_MAX - 9) / 10 || ++digits > 19)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*lx->p++ - '0');
	}
	/* Floats and other tokens glued to the number: not in VG metadata. */
	if (digits == 0 || (lx->p < lx->end && ident_char(*lx->p)))
		return -EINVAL;
	if (v > INT64_MAX)
		return -ERANGE;
	*ret = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

static int parse_value(struct lexer *lx, struct cfg **ret, bool in_array)
{
	struct cfg *c;
	int r;

	skip_space(lx);
	if (lx->p >= lx->end)
		return -EINVAL;
	if (*lx->p == '[') {
		struct cfg **tail;
		if (in_array)
			return -EINVAL; /* no nested arrays in LVM's syntax */
		c = cfg_node(lx, CFG_ARRAY);
		if (!c)
			return -ENOMEM;
		tail = &c->child;
		lx->p++;
		for (;;) {
			skip_space(lx);
			if (lx->p >= lx->end) {
				cfg_free(c);
				return -EINVAL;
			}
			if (*lx->p == ']') {
				lx->p++;
				break;
			}
			r = parse_value(lx, tail, true);
			if (r < 0) {
				cfg_free(c);
				return r;
			}
			tail = &(*tail)->next;
			skip_space(lx);
			if (lx->p < lx->end && *lx->p == ',')
				lx->p++;
		}
		*ret = c;
		return 0;
	}
	if (*lx->p == '"') {
		c = cfg_node(lx, CFG_STR);
		if (!c)
			return -ENOMEM;
		r = parse_string(lx, &c->s);
	} else {
		c = cfg_node(lx, CFG_INT);
		if (!c)
			return -ENOMEM;
		r = parse_int(lx, &c->i);
	}
	if (r < 0) {
		cfg_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

/* Items up to the closing brace (depth > 0) or the end of the text. */
static int parse_body(struct lexer *lx, struct cfg **ret, int depth)
{
	struct cfg *first = NULL, **tail = &first;
	int r;

	if (depth > CFG_MAX_DEPTH)
		return -EINVAL;
	for (;;) {
		const char *key;
		size_t klen;
		struct cfg *c;

		skip_space(lx);
		if (lx->p >= lx->end) {
			if (depth > 0)
				goto fail_inval;
			break;
		}
		if (*lx->p == '}') {
			if (depth == 0)
				goto fail_inval;
			lx->p++;
			break;
		}
		key = lx->p;
		while (lx->p < lx->end && ident_char(*lx->p))
			lx->p++;
		klen = (size_t)(lx->p - key);
		if (klen == 0)
			goto fail_inval;
		skip_space(lx);
		if (lx->p >= lx->end)
			goto fail_inval;
		if (*lx->p == '{') {
			lx->p++;
			c = cfg_node(lx, CFG_SECTION);
			if (!c) {
				r = -ENOMEM;
				goto fail;
			}
			*tail = c;
			tail = &c->next;
			r = parse_body(lx, &c->child, depth + 1);
		} else if (*lx->p == '=') {
			lx->p++;
			r = parse_value(lx, tail, false);
			if (r >= 0) {
				c = *tail;
				tail = &c->next;
			}
		} else
			goto fail_inval;
		if (r < 0)
			goto fail;
		c->key = strndup(key, klen);
		if (!c->key) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*ret = first;
	return 0;
fail_inval:
	r = -EINVAL;
fail:
	cfg_free(first);
	return r;
}

static const struct cfg *cfg_get(const struct cfg *section, const char *key)
{
	for (const struct cfg *c = section ? section->child : NULL; c; c = c->next)
		if (c->key && strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

static int cfg_uint(const struct cfg *section, const char *key, uint64_t *ret)
{
	const struct cfg *c = cfg_get(section, key);

	if (!c || c->type != CFG_INT || c->i < 0)
		return -EINVAL;
	*ret = (uint64_t)c->i;
	return 0;
}

static const char *cfg_str(const struct cfg *section, const char *key)
{
	const struct cfg *c = cfg_get(section, key);

	return c && c->type == CFG_STR ? c->s : NULL;
}

/* Whether @key is absent or an empty array. */
static bool cfg_empty_array(const struct cfg *section, const char *key)
{
	const struct cfg *c = cfg_get(section, key);

	return !c || (c->type == CFG_ARRAY && !c->child);
}

/* Whether every key of @section is one of @allowed (NULL-terminated); sections
 * are allowed when @sections. */
static const char *cfg_unknown_key(const struct cfg *section, const char *const *allowed, bool sections)
{
	for (const struct cfg *c = section->child; c; c = c->next) {
		bool ok = sections && c->type == CFG_SECTION;
		for (size_t i = 0; !ok && allowed[i]; i++)
			ok = strcmp(c->key, allowed[i]) == 0 && c->type != CFG_SECTION;
		if (!ok)
			return c->key;
	}
	return NULL;
}

/* A string array holding exactly the flags in @required plus any of @optional. */
static bool cfg_flags(const struct cfg *section, const char *key, const char *const *required,
		      const char *const *optional)
{
	const struct cfg *a = cfg_get(section, key);
	unsigned seen = 0;

	if (!a || a->type != CFG_ARRAY)
		return false;
	for (const struct cfg *c = a->child; c; c = c->next) {
		bool ok = false;
		if (c->type != CFG_STR)
			return false;
		for (size_t i = 0; required && required[i]; i++)
			if (strcmp(c->s, required[i]) == 0) {
				seen |= 1u << i;
				ok = true;
			}
		for (size_t i = 0; !ok && optional && optional[i]; i++)
			ok = strcmp(c->s, optional[i]) == 0;
		if (!ok)
			return false;
	}
	for (size_t i = 0; required && required[i]; i++)
		if (!(seen & (1u << i)))
			return false;
	return true;
}

/* --- reading the areas --- */

struct source {
	const char *name;
	int fd;                          /* a device, or -1 */
	const struct lvm_meta_image *img; /* or an image */
};

/* @len bytes at @off: O_DIRECT needs aligned offsets, lengths and buffers. */
static int source_read(const struct source *s, uint64_t off, void *buf, size_t len)
{
	uint64_t start, end;
	void *tmp = NULL;
	ssize_t k;

	if (len > TEXT_MAX + DIRECT_ALIGN || off > UINT64_MAX - len)
		return -EINVAL;
	if (s->img) {
		if (off > s->img->len || len > s->img->len - off)
			return -EIO;
		memcpy(buf, s->img->data + off, len);
		return 0;
	}
	start = off - off % DIRECT_ALIGN;
	end = round_up_u64(off + len, DIRECT_ALIGN);
	if (end < off + len || posix_memalign(&tmp, DIRECT_ALIGN, end - start) != 0)
		return -ENOMEM;
	k = pread(s->fd, tmp, end - start, (off_t)start);
	if (k < 0 || (uint64_t)k < off + len - start) {
		int r = k < 0 ? -errno : -EIO;
		free(tmp);
		return r;
	}
	memcpy(buf, (uint8_t *)tmp + (off - start), len);
	free(tmp);
	return 0;
}

struct meta_pv {
	const char *dev;
	char uuid[ID_LEN + 1];
	bool labelled;
	char *text;
	size_t text_len;
	struct cfg *root;
	const struct cfg *vg;     /* the VG section of root */
	const struct cfg *pv;     /* this PV's section in the VG's physical_volumes */
	size_t group;             /* index of the first PV with the same VG */
	uint64_t pe_count;
};

/* The PV label of one device; 0 without a label (not a PV). Fills uuid and the
 * metadata area's position. */
static int read_label(const struct source *s, struct meta_pv *pv, uint64_t *ret_mda_off, uint64_t *ret_mda_size)
{
	uint8_t buf[LABEL_SCAN_SECTORS * SECTOR] = { 0 };
	const uint8_t *lh = NULL, *p, *end;
	unsigned n_mdas = 0;
	int r;

	r = source_read(s, 0, buf, sizeof(buf));
	if (r < 0)
		return r == -EIO && s->img ? 0 : r; /* an image shorter than the label area */
	for (unsigned i = 0; i < LABEL_SCAN_SECTORS; i++)
		if (memcmp(buf + (size_t)i * SECTOR, "LABELONE", 8) == 0) {
			lh = buf + (size_t)i * SECTOR;
			if (le64(lh + 8) != i)
				return unsupported("%s: label in sector %u says sector %" PRIu64, s->name, i,
						   le64(lh + 8));
			break;
		}
	if (!lh)
		return 0;
	if (le32(lh + 16) != lvm_meta_crc(LVM_META_CRC_INIT, lh + 20, SECTOR - 20))
		return unsupported("%s: label checksum mismatch", s->name);
	if (memcmp(lh + 24, "LVM2 001", 8) != 0)
		return unsupported("%s: label type is not LVM2 001", s->name);
	if (le32(lh + 20) < 32 || le32(lh + 20) > SECTOR - ID_LEN - 8 - 16)
		return unsupported("%s: PV header offset %" PRIu32, s->name, le32(lh + 20));
	p = lh + le32(lh + 20);
	end = lh + SECTOR;
	memcpy(pv->uuid, p, ID_LEN);
	pv->uuid[ID_LEN] = '\0';
	if (strlen(pv->uuid) != ID_LEN)
		return unsupported("%s: PV UUID is not 32 characters", s->name);
	p += ID_LEN + 8;
	/* Data areas, then metadata areas, each list ended by a zero offset. */
	for (int list = 0; list < 2; list++)
		for (;;) {
			uint64_t off, size;
			if (p + 16 > end)
				return unsupported("%s: PV header runs past its sector", s->name);
			off = le64(p);
			size = le64(p + 8);
			p += 16;
			if (off == 0)
				break;
			if (list == 1) {
				*ret_mda_off = off;
				*ret_mda_size = size;
				n_mdas++;
			}
		}
	if (n_mdas != 1)
		return unsupported("%s: %u metadata areas (only one is read)", s->name, n_mdas);
	pv->labelled = true;
	return 1;
}

static int read_text(const struct source *s, struct meta_pv *pv, uint64_t mda_off, uint64_t mda_size)
{
	uint8_t hdr[MDA_HEADER_SIZE] = { 0 };
	uint64_t off, size, part1;
	uint32_t crc;
	int r;

	if (mda_size <= MDA_HEADER_SIZE)
		return unsupported("%s: metadata area of %" PRIu64 " bytes", s->name, mda_size);
	r = source_read(s, mda_off, hdr, sizeof(hdr));
	if (r < 0)
		return r == -EIO && s->img ? unsupported("%s: metadata area header truncated", s->name) : r;
	if (le32(hdr) != lvm_meta_crc(LVM_META_CRC_INIT, hdr + 4, MDA_HEADER_SIZE - 4))
		return unsupported("%s: metadata area header checksum mismatch", s->name);
	if (memcmp(hdr + 4, MDA_MAGIC, 16) != 0)
		return unsupported("%s: metadata area magic mismatch", s->name);
	if (le32(hdr + 20) != 1)
		return unsupported("%s: metadata area version %" PRIu32, s->name, le32(hdr + 20));
	if (le64(hdr + 24) != mda_off || le64(hdr + 32) != mda_size)
		return unsupported("%s: metadata area header does not match the label", s->name);
	off = le64(hdr + 40);
	size = le64(hdr + 48);
	crc = le32(hdr + 56);
	if (le32(hdr + 60) != 0)
		return unsupported("%s: metadata location flags %#" PRIx32, s->name, le32(hdr + 60));
	if (off == 0 && size == 0)
		return unsupported("%s: PV without a volume group (orphan)", s->name);
	if (off < MDA_HEADER_SIZE || off >= mda_size || size == 0 || size > mda_size - MDA_HEADER_SIZE ||
	    size > TEXT_MAX)
		return unsupported("%s: metadata location %" PRIu64 "+%" PRIu64 " outside its area", s->name, off,
				   size);
	pv->text = malloc(size + 1);
	if (!pv->text)
		return -ENOMEM;
	/* The circular buffer: what does not fit before the area's end continues
	 * right after the header. */
	part1 = MIN(size, mda_size - off);
	r = source_read(s, mda_off + off, pv->text, part1);
	if (r >= 0 && part1 < size)
		r = source_read(s, mda_off + MDA_HEADER_SIZE, pv->text + part1, size - part1);
	if (r < 0)
		return r == -EIO && s->img ? unsupported("%s: metadata text truncated", s->name) : r;
	if (lvm_meta_crc(LVM_META_CRC_INIT, pv->text, size) != crc)
		return unsupported("%s: metadata text checksum mismatch", s->name);
	/* LVM counts the text's terminating NUL; one inside the text is not LVM's. */
	while (size > 0 && pv->text[size - 1] == '\0')
		size--;
	if (memchr(pv->text, '\0', size))
		return unsupported("%s: NUL inside the metadata text", s->name);
	pv->text[size] = '\0';
	pv->text_len = size;
	return 0;
}

static int parse_text(struct meta_pv *pv)
{
	struct lexer lx = { pv->text, pv->text + pv->text_len, 0 };
	const struct cfg *vg = NULL;
	uint64_t version;
	const char *contents;
	int r;

	r = parse_body(&lx, &pv->root, 0);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return unsupported("%s: metadata text does not parse", pv->dev);
	for (const struct cfg *c = pv->root; c; c = c->next)
		if (c->type == CFG_SECTION) {
			if (vg)
				return unsupported("%s: more than one section in the metadata", pv->dev);
			vg = c;
		}
	{
		/* The top level is a pseudo-section: wrap it for the getters. */
		const struct cfg top = { .type = CFG_SECTION, .child = pv->root };
		contents = cfg_str(&top, "contents");
		if (!vg || !contents || strcmp(contents, "Text Format Volume Group") != 0 ||
		    cfg_uint(&top, "version", &version) < 0 || version != 1)
			return unsupported("%s: not LVM2 text format version 1 volume group metadata", pv->dev);
	}
	pv->vg = vg;
	return 0;
}

/* A UUID as LVM prints it in metadata (dashes) compared with one without. */
static bool uuid_eq(const char *dashed, const char *plain)
{
	size_t n = 0;

	for (const char *p = dashed; *p; p++) {
		if (*p == '-')
			continue;
		if (n >= ID_LEN || *p != plain[n])
			return false;
		n++;
	}
	return n == ID_LEN && plain[n] == '\0';
}

static int undash(const char *id, char out[ID_LEN + 1])
{
	size_t n = 0;

	for (const char *p = id; *p; p++) {
		if (*p == '-')
			continue;
		if (n >= ID_LEN)
			return -EINVAL;
		out[n++] = *p;
	}
	out[n] = '\0';
	return n == ID_LEN ? 0 : -EINVAL;
}

/* --- building the rows --- */

struct area {
	uint64_t start, len;
	const struct cfg *lv; /* NULL: free */
};

struct rows {
	struct lvm_report_row *v;
	size_t n, cap;
};

static int rows_add(struct rows *rs, const char *dev, const char *vg, const char *lv, const char *attr,
		    uint64_t lv_size, uint64_t vg_size, uint64_t vg_free)
{
	struct lvm_report_row *row;

	if (rs->n == rs->cap) {
		size_t ncap = rs->cap ? rs->cap * 2 : 16;
		struct lvm_report_row *nv = realloc(rs->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		rs->v = nv;
		rs->cap = ncap;
	}
	row = &rs->v[rs->n];
	*row = (struct lvm_report_row){ .lv_size = lv_size, .vg_size = vg_size, .vg_free = vg_free };
	rs->n++;
	row->name = strdup(dev);
	row->vg = strdup(vg);
	row->lv = strdup(lv);
	row->attr = strdup(attr);
	if (!row->name || !row->vg || !row->lv || !row->attr)
		return -ENOMEM;
	return 0;
}

static int area_cmp(const void *a, const void *b)
{
	const struct area *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static bool is_active(const char *vg_id, const char *lv_id, const char *const *active, size_t n_active)
{
	char v[ID_LEN + 1], l[ID_LEN + 1], uuid[4 + 2 * ID_LEN + 1];

	if (undash(vg_id, v) < 0 || undash(lv_id, l) < 0)
		return false;
	snprintf(uuid, sizeof(uuid), "LVM-%s%s", v, l);
	for (size_t i = 0; i < n_active; i++)
		if (strcmp(active[i], uuid) == 0)
			return true;
	return false;
}

/* Tags ("tags = [...]") are labels for LVM's own selection and change nothing
 * the report shows: intel/pmem-csi 0.x tagged its VGs with the namespace mode
 * ("fsdax"), so an upgraded node has them. */
static const char *const vg_keys[] = { "id", "seqno", "format", "status", "flags", "tags", "extent_size", "max_lv",
				       "max_pv", "metadata_copies", "creation_host", "creation_time", NULL };
static const char *const pv_keys[] = { "id", "device", "device_id", "device_id_type", "status", "flags", "tags",
				       "dev_size", "pe_start", "pe_count", "ba_start", "ba_size", NULL };
static const char *const lv_keys[] = { "id", "status", "flags", "tags", "creation_time", "creation_host",
				       "segment_count", NULL };

/* Absent, or an array of strings. */
static bool cfg_tags_ok(const struct cfg *section)
{
	const struct cfg *a = cfg_get(section, "tags");

	if (!a)
		return true;
	if (a->type != CFG_ARRAY)
		return false;
	for (const struct cfg *c = a->child; c; c = c->next)
		if (c->type != CFG_STR)
			return false;
	return true;
}
static const char *const seg_keys[] = { "start_extent", "extent_count", "type", "stripe_count",
					"stripe_size", "stripes", NULL };

/* Check one VG's metadata and append its PVs' rows. @pvs[first..] with
 * group == first are the devices that hold it. */
static int vg_rows(struct meta_pv *pvs, size_t n, size_t first, const char *const *active, size_t n_active,
		   struct rows *rs)
{
	static const char *const vg_status[] = { "READ", "WRITE", NULL };
	static const char *const vg_status_opt[] = { "RESIZEABLE", NULL };
	static const char *const pv_status_opt[] = { "ALLOCATABLE", NULL };
	static const char *const lv_status[] = { "READ", "VISIBLE", NULL };
	static const char *const lv_status_opt[] = { "WRITE", NULL };
	static const char *const lv_status_rw[] = { "READ", "VISIBLE", "WRITE", NULL };
	const struct cfg *vg = pvs[first].vg, *pvsec, *lvsec;
	const char *vgname = vg->key, *vg_id = cfg_str(vg, "id"), *format = cfg_str(vg, "format");
	uint64_t extent, total = 0, used = 0, ext_bytes;
	struct area *areas = NULL;
	size_t n_areas = 0, cap_areas = 0;
	int r = 0;

	if (cfg_unknown_key(vg, vg_keys, true))
		return unsupported("VG %s: unknown key %s", vgname, cfg_unknown_key(vg, vg_keys, true));
	if (!vg_id || !format || strcmp(format, "lvm2") != 0 || cfg_uint(vg, "extent_size", &extent) < 0 ||
	    extent == 0 || extent > (1u << 30))
		return unsupported("VG %s: no id, format or extent size", vgname);
	if (!cfg_flags(vg, "status", vg_status, vg_status_opt) || !cfg_empty_array(vg, "flags") || !cfg_tags_ok(vg))
		return unsupported("VG %s: status or flags other than READ, WRITE, RESIZEABLE", vgname);
	pvsec = cfg_get(vg, "physical_volumes");
	lvsec = cfg_get(vg, "logical_volumes");
	for (const struct cfg *c = vg->child; c; c = c->next)
		if (c->type == CFG_SECTION && c != pvsec && c != lvsec)
			return unsupported("VG %s: section %s", vgname, c->key);
	if (!pvsec || pvsec->type != CFG_SECTION || (lvsec && lvsec->type != CFG_SECTION))
		return unsupported("VG %s: no physical_volumes", vgname);
	ext_bytes = extent * SECTOR;

	/* Every PV of the VG is one of the devices read, and every device that
	 * holds the VG's metadata is one of its PVs. */
	for (const struct cfg *p = pvsec->child; p; p = p->next) {
		const char *id = cfg_str(p, "id");
		uint64_t pe_count, pe_start;
		size_t found = n;

		if (p->type != CFG_SECTION || !id)
			return unsupported("VG %s: PV entry %s", vgname, p->key);
		if (cfg_unknown_key(p, pv_keys, false))
			return unsupported("VG %s: PV %s has key %s", vgname, p->key, cfg_unknown_key(p, pv_keys, false));
		if (!cfg_flags(p, "status", NULL, pv_status_opt) || !cfg_empty_array(p, "flags") || !cfg_tags_ok(p) ||
		    cfg_uint(p, "pe_count", &pe_count) < 0 || cfg_uint(p, "pe_start", &pe_start) < 0 ||
		    pe_count > UINT64_MAX / ext_bytes)
			return unsupported("VG %s: PV %s status, flags or extents", vgname, p->key);
		for (size_t i = first; i < n; i++)
			if (pvs[i].group == first && uuid_eq(id, pvs[i].uuid))
				found = i;
		if (found == n)
			return unsupported("VG %s: PV %s is not on the devices read", vgname, id);
		if (pvs[found].pv)
			return unsupported("VG %s: PV %s listed twice", vgname, id);
		pvs[found].pv = p;
		pvs[found].pe_count = pe_count;
		total += pe_count;
	}
	for (size_t i = first; i < n; i++)
		if (pvs[i].group == first && !pvs[i].pv)
			return unsupported("VG %s: %s holds its metadata but is not its PV", vgname, pvs[i].dev);

	/* The LVs' areas on the PVs. */
	for (const struct cfg *lv = lvsec ? lvsec->child : NULL; lv; lv = lv->next) {
		uint64_t n_segs = 0, segs_seen = 0;

		if (lv->type != CFG_SECTION || !cfg_str(lv, "id"))
			return unsupported("VG %s: LV entry %s", vgname, lv->key);
		if (!cfg_flags(lv, "status", lv_status, lv_status_opt) || !cfg_empty_array(lv, "flags") ||
		    !cfg_tags_ok(lv))
			return unsupported("VG %s: LV %s is not a plain visible LV", vgname, lv->key);
		for (const struct cfg *c = lv->child; c; c = c->next)
			if (c->type == CFG_SECTION && strncmp(c->key, "segment", 7) != 0)
				return unsupported("VG %s: LV %s has section %s", vgname, lv->key, c->key);
		if (cfg_unknown_key(lv, lv_keys, true))
			return unsupported("VG %s: LV %s has key %s", vgname, lv->key, cfg_unknown_key(lv, lv_keys, true));
		if (cfg_uint(lv, "segment_count", &n_segs) < 0 || n_segs == 0)
			return unsupported("VG %s: LV %s segment count", vgname, lv->key);
		for (const struct cfg *seg = lv->child; seg; seg = seg->next) {
			const char *type;
			const struct cfg *stripes;
			uint64_t count, n_stripes, start, len;

			if (seg->type != CFG_SECTION)
				continue;
			segs_seen++;
			type = cfg_str(seg, "type");
			stripes = cfg_get(seg, "stripes");
			if (cfg_unknown_key(seg, seg_keys, false) || !type || strcmp(type, "striped") != 0 ||
			    cfg_uint(seg, "extent_count", &count) < 0 || cfg_uint(seg, "start_extent", &start) < 0 ||
			    cfg_uint(seg, "stripe_count", &n_stripes) < 0 || n_stripes == 0 || count == 0 ||
			    count % n_stripes != 0 || !stripes || stripes->type != CFG_ARRAY)
				return unsupported("VG %s: LV %s segment %s is not a plain striped one", vgname,
						   lv->key, seg->key);
			len = count / n_stripes;
			for (const struct cfg *e = stripes->child; e; e = e->next ? e->next->next : NULL) {
				const struct cfg *pe = e->next;
				struct meta_pv *owner = NULL;

				if (e->type != CFG_STR || !pe || pe->type != CFG_INT || pe->i < 0 || n_stripes == 0)
					return unsupported("VG %s: LV %s stripes", vgname, lv->key);
				for (size_t i = first; i < n; i++)
					if (pvs[i].group == first && strcmp(pvs[i].pv->key, e->s) == 0)
						owner = &pvs[i];
				if (!owner || (uint64_t)pe->i > owner->pe_count || len > owner->pe_count - (uint64_t)pe->i)
					return unsupported("VG %s: LV %s stripe on %s outside the PV", vgname, lv->key,
							   e->s);
				used += len;
				n_stripes--;
			}
			if (n_stripes != 0)
				return unsupported("VG %s: LV %s stripe count does not match its stripes", vgname,
						   lv->key);
		}
		if (segs_seen != n_segs)
			return unsupported("VG %s: LV %s has %" PRIu64 " segments, says %" PRIu64, vgname, lv->key,
					   segs_seen, n_segs);
	}
	if (used > total)
		return unsupported("VG %s: more extents used than it has", vgname);

	/* The rows, per PV in device order: its areas sorted, free gaps between. */
	for (size_t i = first; i < n && r >= 0; i++) {
		struct meta_pv *pv = &pvs[i];
		size_t k = 0;
		uint64_t at = 0;

		if (pv->group != first)
			continue;
		n_areas = 0;
		for (const struct cfg *lv = lvsec ? lvsec->child : NULL; lv; lv = lv->next)
			for (const struct cfg *seg = lv->child; seg; seg = seg->next) {
				const struct cfg *stripes = cfg_get(seg, "stripes");
				uint64_t count = 0, n_stripes = 1;
				if (seg->type != CFG_SECTION)
					continue;
				(void)cfg_uint(seg, "extent_count", &count);
				(void)cfg_uint(seg, "stripe_count", &n_stripes);
				for (const struct cfg *e = stripes->child; e; e = e->next->next) {
					if (strcmp(e->s, pv->pv->key) != 0)
						continue;
					if (n_areas == cap_areas) {
						size_t ncap = cap_areas ? cap_areas * 2 : 16;
						struct area *na = realloc(areas, ncap * sizeof(*na));
						if (!na) {
							free(areas);
							return -ENOMEM;
						}
						areas = na;
						cap_areas = ncap;
					}
					areas[n_areas++] = (struct area){ (uint64_t)e->next->i, count / n_stripes, lv };
				}
			}
		if (n_areas > 1)
			qsort(areas, n_areas, sizeof(*areas), area_cmp);
		for (k = 0; k < n_areas && r >= 0; k++) {
			const struct area *a = &areas[k];
			uint64_t lv_ext = 0;
			char attr[11] = "-wi-------";

			if (a->start < at) {
				free(areas);
				return unsupported("VG %s: overlapping extents on %s", vgname, pv->dev);
			}
			if (a->start > at)
				r = rows_add(rs, pv->dev, vgname, "", "", 0, total * ext_bytes, (total - used) * ext_bytes);
			if (r < 0)
				break;
			for (const struct cfg *seg = a->lv->child; seg; seg = seg->next) {
				uint64_t count = 0;
				if (seg->type == CFG_SECTION && cfg_uint(seg, "extent_count", &count) >= 0)
					lv_ext += count;
			}
			if (!cfg_flags(a->lv, "status", lv_status_rw, NULL))
				attr[1] = 'r';
			if (is_active(vg_id, cfg_str(a->lv, "id"), active, n_active))
				attr[4] = 'a';
			r = rows_add(rs, pv->dev, vgname, a->lv->key, attr, lv_ext * ext_bytes, total * ext_bytes,
				     (total - used) * ext_bytes);
			at = a->start + a->len;
		}
		if (r >= 0 && (at < pv->pe_count || n_areas == 0))
			r = rows_add(rs, pv->dev, vgname, "", "", 0, total * ext_bytes, (total - used) * ext_bytes);
	}
	free(areas);
	return r;
}

static void meta_pvs_free(struct meta_pv *pvs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(pvs[i].text);
		cfg_free(pvs[i].root);
	}
	free(pvs);
}

static int rows_from_sources(const struct source *srcs, size_t n, const char *const *active, size_t n_active,
			     struct lvm_report_row **ret, size_t *ret_n)
{
	struct meta_pv *pvs;
	struct rows rs = {};
	int r = 0;

	if (n > META_MAX_DEVS)
		return -E2BIG;
	pvs = calloc(n ? n : 1, sizeof(*pvs));
	if (!pvs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint64_t mda_off = 0, mda_size = 0;

		pvs[i].dev = srcs[i].name;
		r = read_label(&srcs[i], &pvs[i], &mda_off, &mda_size);
		if (r < 0)
			goto out;
		if (r == 0)
			continue;
		for (size_t j = 0; j < i; j++)
			if (pvs[j].labelled && strcmp(pvs[j].uuid, pvs[i].uuid) == 0) {
				r = unsupported("%s and %s have the same PV UUID", pvs[j].dev, pvs[i].dev);
				goto out;
			}
		r = read_text(&srcs[i], &pvs[i], mda_off, mda_size);
		if (r >= 0)
			r = parse_text(&pvs[i]);
		if (r < 0)
			goto out;
	}
	/* Group the devices by VG: copies of one VG's metadata must agree. */
	for (size_t i = 0; i < n; i++) {
		const char *id = pvs[i].labelled ? cfg_str(pvs[i].vg, "id") : NULL;

		pvs[i].group = i;
		if (!pvs[i].labelled)
			continue;
		if (!id) {
			r = unsupported("%s: VG without an id", pvs[i].dev);
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			const char *jid = pvs[j].labelled ? cfg_str(pvs[j].vg, "id") : NULL;
			bool same_id = jid && strcmp(jid, id) == 0;
			bool same_name = pvs[j].labelled && strcmp(pvs[j].vg->key, pvs[i].vg->key) == 0;

			if (!same_id && !same_name)
				continue;
			if (!same_id || !same_name) {
				r = unsupported("two volume groups named %s, or one with two names", pvs[i].vg->key);
				goto out;
			}
			if (pvs[j].text_len != pvs[i].text_len || memcmp(pvs[j].text, pvs[i].text, pvs[i].text_len) != 0) {
				r = unsupported("VG %s: %s and %s hold different metadata", pvs[i].vg->key, pvs[j].dev,
						pvs[i].dev);
				goto out;
			}
			pvs[i].group = pvs[j].group;
			break;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (pvs[i].labelled && pvs[i].group == i) {
			r = vg_rows(pvs, n, i, active, n_active, &rs);
			if (r < 0)
				goto out;
		}
	*ret = rs.v ? rs.v : calloc(1, sizeof(**ret));
	if (!*ret) {
		r = -ENOMEM;
		goto out;
	}
	*ret_n = rs.n;
	rs.v = NULL;
	rs.n = 0;
	r = 0;
out:
	lvm_report_rows_free(rs.v, rs.n);
	meta_pvs_free(pvs, n);
	return r;
}

int lvm_meta_rows_images(const struct lvm_meta_image *imgs, size_t n, const char *const *active,
			 size_t n_active, struct lvm_report_row **ret, size_t *ret_n)
{
	_cleanup_free_ struct source *srcs = NULL;

	if (n > META_MAX_DEVS)
		return -E2BIG;
	srcs = calloc(n ? n : 1, sizeof(*srcs));
	if (!srcs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		srcs[i] = (struct source){ imgs[i].name, -1, &imgs[i] };
	return rows_from_sources(srcs, n, active, n_active, ret, ret_n);
}

bool lvm_meta_usable(void)
{
	return access("/etc/lvm/devices/system.devices", F_OK) < 0 && errno == ENOENT;
}

/* The uuids of the device-mapper devices that exist: an LV is active when
 * its device does (what lv_attr's fifth character 'a' says). */
static int dm_uuids(char ***ret, size_t *ret_n)
{
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	char **v = NULL;
	size_t n = 0;
	int r = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char path[300];
		char *s = NULL;
		size_t len = 0;
		char **nv;

		if (strncmp(de->d_name, "dm-", 3) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dm/uuid", de->d_name);
		if (read_file_limited(path, 256, &s, &len) < 0)
			continue; /* gone meanwhile */
		while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\0'))
			s[--len] = '\0';
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			free(s);
			r = -ENOMEM;
			break;
		}
		v = nv;
		v[n++] = s;
	}
	closedir(d);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/*
 * LVM commands serialise on flock()s of files in its locking directory
 * (V_<vg name> per VG, P_global, P_orphans), exclusive while they write. pvs
 * waits for a writer; the reader does not wait but gives up, so that it never
 * reads a VG in the middle of a change (an lvremove left running by a driver
 * that was killed, an administrator's vgextend): it takes a shared lock on
 * every lock file there is, without blocking, and holds them while it reads.
 * A writer that starts after the listing creates its lock file anew; what the
 * reader then sees is the metadata before or after its write (a torn one fails
 * the checksum).
 */
#define LVM_LOCK_DIR "/run/lock/lvm"
#define LVM_MAX_LOCKS 256

static void unlock_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]); /* drops the flock */
}

static int lock_all(int *fds, size_t *ret_n)
{
	DIR *d = opendir(LVM_LOCK_DIR);
	struct dirent *de;
	size_t n = 0;
	int r = 0;

	*ret_n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		int fd;

		if (strncmp(de->d_name, "V_", 2) != 0 && strncmp(de->d_name, "P_", 2) != 0)
			continue;
		if (n == LVM_MAX_LOCKS) {
			r = unsupported("more than %d LVM lock files", LVM_MAX_LOCKS);
			break;
		}
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue; /* released and removed meanwhile */
		if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
			close(fd);
			r = errno == EWOULDBLOCK ? unsupported("an LVM command holds %s/%s", LVM_LOCK_DIR, de->d_name)
						 : -errno;
			break;
		}
		fds[n++] = fd;
	}
	closedir(d);
	if (r < 0) {
		unlock_all(fds, n);
		return r;
	}
	*ret_n = n;
	return 0;
}

int lvm_meta_rows(const char *const *devs, size_t n, struct lvm_report_row **ret, size_t *ret_n)
{
	int locks[LVM_MAX_LOCKS];
	size_t n_locks = 0;
	struct source *srcs;
	char **active = NULL;
	size_t n_active = 0;
	int r;

	if (n > META_MAX_DEVS)
		return -E2BIG;
	if (!lvm_meta_usable())
		return unsupported("LVM uses a devices file");
	srcs = calloc(n ? n : 1, sizeof(*srcs));
	if (!srcs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		srcs[i].fd = -1;
	for (size_t i = 0; i < n; i++) {
		srcs[i].name = devs[i];
		srcs[i].fd = open(devs[i], O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (srcs[i].fd < 0) {
			r = log_debug_errno(errno, "Failed to open %s: %m", devs[i]);
			goto out;
		}
	}
	r = lock_all(locks, &n_locks);
	if (r < 0)
		goto out;
	r = dm_uuids(&active, &n_active);
	if (r < 0)
		log_debug_errno(r, "Failed to list device-mapper devices: %m");
	else
		r = rows_from_sources(srcs, n, (const char *const *)active, n_active, ret, ret_n);
	unlock_all(locks, n_locks);
out:
	for (size_t i = 0; i < n; i++)
		if (srcs[i].fd >= 0)
			close(srcs[i].fd);
	free(srcs);
	for (size_t i = 0; i < n_active; i++)
		free(active[i]);
	free(active);
	return r;
}
