/* SPDX-License-Identifier: Apache-2.0 */
#include "lvm_report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "json/json.h"

#define LVM_REPORT_MAX_ROWS 100000

void lvm_report_rows_free(struct lvm_report_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++) {
		free(rows[i].name);
		free(rows[i].vg);
		free(rows[i].path);
		free(rows[i].attr);
		free(rows[i].lv);
	}
	free(rows);
}

static int dup_opt(const struct jv *row, const char *key, char **ret)
{
	const char *s = jv_string(jv_object_get(row, key));

	if (!s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

static int u64_opt(const struct jv *row, const char *key, uint64_t *ret)
{
	struct jv *v = jv_object_get(row, key);
	const char *s = jv_string(v);

	if (!v)
		return 0;
	if (s && !*s) /* LVM prints "" for an unset value */
		return 0;
	return jv_get_u64(v, ret);
}

int lvm_report_parse(const char *json, size_t len, const char *kind, struct lvm_report_row **ret,
		     size_t *ret_n)
{
	_cleanup_(jv_unrefp) struct jv *root = NULL;
	_cleanup_free_ char *err = NULL;
	struct jv *report, *arr;
	struct lvm_report_row *rows;
	char name_key[16], size_key[16], free_key[16], path_key[16];
	size_t n;
	int r;

	r = jv_parse(json, len, &root, &err);
	if (r < 0)
		return log_debug_errno(r, "LVM report is not JSON: %s", err ? err : "");
	report = jv_object_get(root, "report");
	if (!jv_is_array(report) || jv_array_size(report) < 1)
		return -EINVAL;
	arr = jv_object_get(jv_array_get(report, 0), kind);
	if (!jv_is_array(arr))
		return -EINVAL;
	n = jv_array_size(arr);
	if (n > LVM_REPORT_MAX_ROWS)
		return -E2BIG;
	rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	snprintf(name_key, sizeof(name_key), "%s_name", kind);
	snprintf(size_key, sizeof(size_key), "%s_size", kind);
	snprintf(free_key, sizeof(free_key), "%s_free", kind);
	snprintf(path_key, sizeof(path_key), "%s_path", kind);
	for (size_t i = 0; i < n; i++) {
		struct jv *row = jv_array_get(arr, i);
		if (!jv_is_object(row) || !jv_string(jv_object_get(row, name_key))) {
			r = -EINVAL;
			goto fail;
		}
		if ((r = dup_opt(row, name_key, &rows[i].name)) < 0 ||
		    (r = dup_opt(row, "vg_name", &rows[i].vg)) < 0 ||
		    (r = dup_opt(row, path_key, &rows[i].path)) < 0 ||
		    (r = dup_opt(row, "lv_attr", &rows[i].attr)) < 0 ||
		    (r = u64_opt(row, size_key, &rows[i].size)) < 0 ||
		    (r = u64_opt(row, free_key, &rows[i].free)) < 0 ||
		    (r = dup_opt(row, "lv_name", &rows[i].lv)) < 0 ||
		    (r = u64_opt(row, "lv_size", &rows[i].lv_size)) < 0 ||
		    (r = u64_opt(row, "vg_size", &rows[i].vg_size)) < 0 ||
		    (r = u64_opt(row, "vg_free", &rows[i].vg_free)) < 0)
			goto fail;
	}
	*ret = rows;
	*ret_n = n;
	return 0;
fail:
	lvm_report_rows_free(rows, n);
	return r;
}
