/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state_parse(): the JSON state files in the state directory, which survive
 * restarts and upgrades (and may have been written by intel/pmem-csi 1.x).
 *
 * Checked: a failure leaves the record untouched; a parsed record has a valid
 * volume ID; and it survives a round trip: state_format() writes it, and
 * state_parse() reads back the same ID, size and parameters (those that
 * volume_params_to_pairs() writes: erase, kata, usage, persistency, name,
 * device mode, ephemeral). A record the driver can read but not write back
 * would be lost at the next state_write(). The same for snapshot records
 * (snapshot_parse(), snapshot_format()), which live beside them.
 */
#include <errno.h>

#include "basic/strutil.h"
#include "fuzz.h"
#include "volume/state.h"

static void snapshot_round_trip(const uint8_t *data, size_t size)
{
	struct snapshot_record rec, before, again = {};
	char *err = NULL, *err2 = NULL, *json;
	int r;

	memset(&rec, 0xa5, sizeof(rec));
	memcpy(&before, &rec, sizeof(rec));
	r = snapshot_parse((const char *)data, size, &rec, &err);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(memcmp(&rec, &before, sizeof(rec)) == 0);
		free(err);
		return;
	}
	FUZZ_CHECK(snapshot_id_is_valid(rec.id));
	FUZZ_CHECK(!volume_id_is_valid(rec.id));
	FUZZ_CHECK(volume_id_is_valid(rec.source));
	json = snapshot_format(&rec);
	FUZZ_CHECK(json);
	r = snapshot_parse(json, strlen(json), &again, &err2);
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(strcmp(rec.id, again.id) == 0 && strcmp(rec.source, again.source) == 0);
	FUZZ_CHECK(rec.size == again.size && rec.content == again.content && rec.created_ns == again.created_ns);
	FUZZ_CHECK(rec.erase_after == again.erase_after && rec.usage == again.usage);
	FUZZ_CHECK(streq_ptr(rec.name, again.name) && streq_ptr(rec.device_mode, again.device_mode));
	snapshot_record_done(&again);
	snapshot_record_done(&rec);
	free(json);
	free(err2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct volume_record rec, before, again = {};
	char *err = NULL, *err2 = NULL, *json;
	int r;

	if (size > 64 * 1024) /* STATE_FILE_MAX: state_load_all() reads no more */
		return 0;
	snapshot_round_trip(data, size);
	memset(&rec, 0xa5, sizeof(rec));
	memcpy(&before, &rec, sizeof(rec));
	r = state_parse((const char *)data, size, &rec, &err);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(memcmp(&rec, &before, sizeof(rec)) == 0);
		free(err);
		return 0;
	}
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(!err);
	FUZZ_CHECK(memchr(rec.id, 0, sizeof(rec.id)));
	FUZZ_CHECK(volume_id_is_valid(rec.id));

	json = state_format(&rec);
	FUZZ_CHECK(json); /* every string came from valid JSON: only OOM could fail */
	r = state_parse(json, strlen(json), &again, &err2);
	if (r < 0)
		fprintf(stderr, "state_format() wrote %s, which state_parse() rejects: %s\n", json,
			err2 ? err2 : "?");
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(strcmp(rec.id, again.id) == 0);
	FUZZ_CHECK(rec.size == again.size);
	FUZZ_CHECK(volume_params_equal(&rec.params, &again.params));
	FUZZ_CHECK(rec.params.ephemeral == again.params.ephemeral); /* or the volume outlives its pod */
	FUZZ_CHECK(streq_ptr(rec.params.name, again.params.name));
	FUZZ_CHECK(streq_ptr(rec.params.device_mode, again.params.device_mode));

	volume_record_done(&again);
	volume_record_done(&rec);
	free(json);
	free(err2);
	return 0;
}
