/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Parser for `vgs`/`lvs`/`pvs --reportformat json --units b --nosuffix`
 * output: {"report": [{"vg": [{"vg_name": "...", ...}]}]}. LVM prints all
 * values as strings. Pure; fuzzed.
 */

struct lvm_report_row {
	char *name;   /* vg_name, lv_name or pv_name */
	char *vg;     /* vg_name (lv and pv rows) */
	char *path;   /* lv_path */
	char *attr;   /* lv_attr, e.g. "-wi-a-----" (5th character 'a': active) */
	uint64_t size; /* vg_size, lv_size */
	uint64_t free; /* vg_free */
	/* Any report kind may carry other objects' columns: `pvs` with LV columns
	 * prints one row per PV segment, which is how one command tells PVs, VGs
	 * and LVs at start-up. Unset when the report lacks the column. */
	char *lv;         /* lv_name ("" for free space) */
	uint64_t lv_size; /* lv_size */
	uint64_t vg_size; /* vg_size */
	uint64_t vg_free; /* vg_free */
};

/**
 * lvm_report_parse() - rows of the first report's `kind` ("vg", "lv" or "pv")
 * array. Unknown fields are ignored; a row without its name is an error.
 */
int lvm_report_parse(const char *json, size_t len, const char *kind, struct lvm_report_row **ret,
		     size_t *ret_n);
void lvm_report_rows_free(struct lvm_report_row *rows, size_t n);
