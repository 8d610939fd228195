/* SPDX-License-Identifier: Apache-2.0 */
/*
 * volume_params_parse(): storage class parameters, volume contexts, ephemeral
 * volume attributes and state file parameters, all from outside the driver.
 *
 * The input is lines of "key=value" (a line without '=' is a key with a NULL
 * value), parsed once for every origin. Checked:
 *  - a failure is -EINVAL with a message (or -ENOMEM), and everything is freed;
 *  - a success never combines kataContainers with usage=FileIO;
 *  - CreateVolume parameters allocate nothing (controller.c relies on it) and
 *    only ephemeral attributes set fsType;
 *  - what volume_params_to_pairs() writes parses back to the same volume both
 *    as state file parameters and, without deviceMode, as the volume context
 *    that CreateVolume returns and NodePublishVolume gets;
 *  - every value, taken as a volume name, either has no volume ID or one that
 *    volume_id_is_valid() accepts (DeleteVolume and ListVolumes check IDs so).
 */
#include <errno.h>

#include "basic/strutil.h"
#include "fuzz.h"
#include "volume/params.h"

#define MAX_PAIRS 64 /* as CreateVolume and NodePublishVolume allow */

static const enum params_origin origins[] = {
	PARAMS_ORIGIN_CREATE_VOLUME,
	PARAMS_ORIGIN_EPHEMERAL,
	PARAMS_ORIGIN_PUBLISH_CONTEXT,
	PARAMS_ORIGIN_STATE,
};

static bool same_volume(const struct volume_params *a, const struct volume_params *b)
{
	return volume_params_equal(a, b) && a->ephemeral == b->ephemeral &&
	       streq_ptr(a->name, b->name) && streq_ptr(a->device_mode, b->device_mode);
}

/* Parse p's own pairs again as origin, skipping deviceMode if asked. */
static void check_round_trip(const struct volume_params *p, enum params_origin origin,
			     bool skip_mode)
{
	const char *keys[16], *values[16], *k2[16], *v2[16];
	struct volume_params q;
	char *err = NULL;
	size_t n, m = 0;
	int r;

	n = volume_params_to_pairs(p, keys, values, 16);
	for (size_t i = 0; i < n; i++) {
		if (skip_mode && strcmp(keys[i], "deviceMode") == 0)
			continue;
		k2[m] = keys[i];
		v2[m] = values[i];
		m++;
	}
	volume_params_init(&q);
	r = volume_params_parse(&q, origin, k2, v2, m, &err);
	if (r < 0)
		fprintf(stderr, "round trip as origin %d: %s\n", (int)origin, err ? err : "?");
	FUZZ_CHECK(r == 0 || r == -ENOMEM);
	if (r == 0) {
		FUZZ_CHECK(volume_params_equal(p, &q));
		FUZZ_CHECK(p->ephemeral == q.ephemeral);
		FUZZ_CHECK(streq_ptr(p->name, q.name));
		if (!skip_mode)
			FUZZ_CHECK(same_volume(p, &q));
	}
	volume_params_done(&q);
	free(err);
}

static void check_volume_id(const char *name)
{
	char id[VOLUME_ID_MAX];

	if (!name || volume_id_from_name(name, id) < 0)
		return;
	FUZZ_CHECK(strlen(id) < VOLUME_ID_MAX);
	FUZZ_CHECK(volume_id_is_valid(id));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *keys[MAX_PAIRS], *values[MAX_PAIRS];
	size_t n = 0;
	char *buf, *line;

	if (size > 16 * 1024)
		return 0;
	buf = fuzz_strndup(data, size);
	if (!buf)
		return 0;
	/* Split into lines, then each line at its first '='. */
	line = buf;
	while (n < MAX_PAIRS && *line) {
		char *nl = strchr(line, '\n'), *eq;
		if (nl)
			*nl = 0;
		eq = strchr(line, '=');
		if (eq)
			*eq = 0;
		keys[n] = line;
		values[n] = eq ? eq + 1 : NULL;
		n++;
		if (!nl)
			break;
		line = nl + 1;
	}

	for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++) {
		enum params_origin o = origins[i];
		struct volume_params p;
		char *err = NULL;
		int r;

		volume_params_init(&p);
		r = volume_params_parse(&p, o, keys, values, n, &err);
		if (r < 0) {
			FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
			FUZZ_CHECK(r == -ENOMEM || err);
		} else {
			FUZZ_CHECK(r == 0);
			FUZZ_CHECK(!err);
			FUZZ_CHECK(!(p.kata && p.usage == VOLUME_USAGE_FILE_IO));
			if (o == PARAMS_ORIGIN_CREATE_VOLUME)
				FUZZ_CHECK(!p.name && !p.device_mode && !p.fs_type && !p.has_size);
			if (o != PARAMS_ORIGIN_EPHEMERAL)
				FUZZ_CHECK(!p.fs_type);
			if (o != PARAMS_ORIGIN_STATE)
				FUZZ_CHECK(!p.device_mode);
			check_round_trip(&p, PARAMS_ORIGIN_STATE, false);
			/* An inline ephemeral volume has no CreateVolume context. */
			if (!p.ephemeral)
				check_round_trip(&p, PARAMS_ORIGIN_PUBLISH_CONTEXT, true);
		}
		volume_params_done(&p);
		FUZZ_CHECK(!p.name && !p.device_mode && !p.fs_type);
		free(err);

		/* The same without an error message: nothing to leak or to write. */
		volume_params_init(&p);
		(void)volume_params_parse(&p, o, keys, values, n, NULL);
		volume_params_done(&p);
	}
	for (size_t i = 0; i < n; i++)
		check_volume_id(values[i]);
	free(buf);
	return 0;
}
