/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lvm_report_parse(): the JSON that `vgs`, `lvs` and `pvs --reportformat json`
 * print, for each of the three kinds. LVM is trusted, but its output changes
 * between versions, and a device manager that crashes on it takes the node's
 * volumes down.
 *
 * Checked: a failure is one of the documented errors and leaves the outputs
 * untouched; every row of a success has its name, and a "vg" row's volume
 * group is its name.
 */
#include <errno.h>

#include "basic/strutil.h"
#include "fuzz.h"
#include "pmem/lvm_report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const kinds[] = { "vg", "lv", "pv" };
	struct lvm_report_row *const untouched = (struct lvm_report_row *)(uintptr_t)0x5a5a5a5a;

	if (size > 256 * 1024)
		return 0;
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		struct lvm_report_row *rows = untouched;
		size_t n = 12345;
		int r;

		r = lvm_report_parse((const char *)data, size, kinds[k], &rows, &n);
		if (r < 0) {
			FUZZ_CHECK(r == -EINVAL || r == -ERANGE || r == -E2BIG || r == -ENOMEM);
			FUZZ_CHECK(rows == untouched && n == 12345);
			continue;
		}
		FUZZ_CHECK(r == 0);
		FUZZ_CHECK(rows);
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(rows[i].name);
			if (strcmp(kinds[k], "vg") == 0)
				FUZZ_CHECK(streq_ptr(rows[i].vg, rows[i].name));
		}
		lvm_report_rows_free(rows, n);
	}
	return 0;
}
