/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lvm-meta-dump: the LVM metadata reader's rows next to pvs's, for the guest
 * test (test/guest/test_lvm_meta.py); installed nowhere.
 *
 *   lvm-meta-dump DEV...             rows read from the devices' metadata
 *   lvm-meta-dump --image FILE NAME  rows of an image file of a device's start
 *   lvm-meta-dump --pvs FILE         rows of a `pvs --reportformat json` output
 *
 * Prints {"rc": <0 or -errno>, "rows": [{pv_name, vg_name, vg_size, vg_free,
 * lv_name, lv_size, lv_attr}, ...]} in the order read.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "pmem/lvm_meta.h"
#include "pmem/lvm_report.h"

static void put_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

int main(int argc, char **argv)
{
	struct lvm_report_row *rows = NULL;
	size_t n = 0;
	char *data = NULL;
	size_t len = 0;
	int r;

	log_setup(LOG_FORMAT_TEXT, getenv("LVM_META_V") ? (int)strtol(getenv("LVM_META_V"), NULL, 10) : 0);
	if (argc >= 3 && strcmp(argv[1], "--pvs") == 0) {
		r = read_file_limited(argv[2], 64 << 20, &data, &len);
		if (r >= 0)
			r = lvm_report_parse(data, len, "pv", &rows, &n);
	} else if (argc >= 4 && strcmp(argv[1], "--image") == 0) {
		struct lvm_meta_image img = { argv[3], NULL, 0 };
		r = read_file_limited(argv[2], 64 << 20, &data, &len);
		img.data = (const uint8_t *)data;
		img.len = len;
		if (r >= 0)
			r = lvm_meta_rows_images(&img, 1, NULL, 0, &rows, &n);
	} else if (argc >= 2 && argv[1][0] != '-')
		r = lvm_meta_rows((const char *const *)argv + 1, (size_t)argc - 1, &rows, &n);
	else {
		fprintf(stderr, "usage: lvm-meta-dump DEV... | --image FILE NAME | --pvs FILE\n");
		return 2;
	}
	printf("{\"rc\": %d, \"rows\": [", r < 0 ? r : 0);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		printf("%s\n {\"pv_name\": ", i ? "," : "");
		put_str(rows[i].name);
		printf(", \"vg_name\": ");
		put_str(rows[i].vg);
		printf(", \"vg_size\": %" PRIu64 ", \"vg_free\": %" PRIu64 ", \"lv_name\": ", rows[i].vg_size,
		       rows[i].vg_free);
		put_str(rows[i].lv);
		printf(", \"lv_size\": %" PRIu64 ", \"lv_attr\": ", rows[i].lv_size);
		put_str(rows[i].attr);
		putchar('}');
	}
	printf("]}\n");
	lvm_report_rows_free(rows, n);
	free(data);
	return 0;
}
