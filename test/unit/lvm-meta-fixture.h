/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* A device image as its non-zero stretches (see gen-lvm-meta-fixtures.py). */
struct fixture_chunk {
	uint32_t off, len;
	const char *data;
};

struct fixture_dev {
	const char *name;
	const struct fixture_chunk *chunks;
	size_t n_chunks;
};

struct fixture {
	const char *name;
	const struct fixture_dev *devs;
	size_t n_devs;
	const char *const *dm; /* device-mapper uuids that existed */
	size_t n_dm;
	const char *pvs_json; /* pvs's report for the same state ("" if none) */
};
