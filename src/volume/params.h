/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Volume parameters: storage class parameters, CSI volume context, ephemeral
 * volume attributes and the parameters kept in the state file. The keys and
 * values are the ones intel/pmem-csi 1.x uses, so existing StorageClasses,
 * PVs and state files keep working. Pure logic, no I/O.
 */

enum volume_usage {
	VOLUME_USAGE_APP_DIRECT,
	VOLUME_USAGE_FILE_IO,
};

/* Where a parameter map came from: decides which keys are accepted. */
enum params_origin {
	PARAMS_ORIGIN_CREATE_VOLUME,   /* CreateVolumeRequest.parameters */
	PARAMS_ORIGIN_EPHEMERAL,       /* NodePublish volume_context of an inline volume */
	PARAMS_ORIGIN_PUBLISH_CONTEXT, /* NodeStage/Publish volume_context of a PV */
	PARAMS_ORIGIN_STATE,           /* the state file */
};

struct volume_params {
	bool erase_after;      /* default true */
	bool kata;             /* kataContainers */
	enum volume_usage usage;
	bool persistency_none; /* persistencyModel=none (legacy alias of normal) */
	bool cache;            /* persistencyModel=cache: a copy on each of cache_size nodes (0.7's cache volumes) */
	unsigned cache_size;   /* cacheSize, 1 when not given; only with persistencyModel=cache */
	bool ephemeral;        /* csi.storage.k8s.io/ephemeral=true, or persistencyModel=ephemeral in state */
	bool has_size;
	uint64_t size;         /* ephemeral "size" attribute */
	char *name;            /* CSI volume name (state, context) */
	char *device_mode;     /* "lvm" or "direct" (state) */
	char *fs_type;         /* ephemeral fsType */
};

void volume_params_init(struct volume_params *p);
void volume_params_done(struct volume_params *p);

/**
 * volume_params_parse() - parse n key/value pairs into p (initialised by the caller).
 * On error returns -EINVAL and a message naming the key in *ret_error (caller frees).
 */
int volume_params_parse(struct volume_params *p, enum params_origin origin, const char *const *keys,
			const char *const *values, size_t n, char **ret_error);

/**
 * volume_params_equal() - whether two parameter sets describe the same volume
 * (for CreateVolume idempotency): erase, kata, usage, persistency and cacheSize.
 */
bool volume_params_equal(const struct volume_params *a, const struct volume_params *b);

/**
 * volume_params_to_pairs() - the parameters as strings, in intel/pmem-csi
 * 1.1's format: the volume context CreateVolume returns (callers drop
 * deviceMode there). An inline ephemeral volume is persistencyModel=ephemeral,
 * as 1.1 writes it. Returns the number of pairs written (at most max); the
 * value strings are static or borrowed from p.
 */
size_t volume_params_to_pairs(const struct volume_params *p, const char **keys, const char **values,
			      size_t max);

#define VOLUME_PARAMS_SIZE_BUF 24
/* cacheSize above this is refused: a copy per node, and the peers are asked one by one. */
#define VOLUME_CACHE_SIZE_MAX 64u
/**
 * volume_params_to_state_pairs() - the same plus "size" when p has one (an
 * inline ephemeral volume's requested size, as 1.1 keeps it): the parameters
 * of a state file, all keys 1.1's NodeVolumeOrigin parser accepts. The size
 * string is written to size_buf.
 */
size_t volume_params_to_state_pairs(const struct volume_params *p, const char **keys, const char **values,
				    size_t max, char size_buf[VOLUME_PARAMS_SIZE_BUF]);

const char *volume_usage_to_string(enum volume_usage u);

/* Volume IDs ---------------------------------------------------------------- */

#define VOLUME_ID_MAX 64 /* 63 characters + NUL */

/**
 * volume_id_from_name() - the upstream-compatible volume ID: the first (up to) 6
 * bytes of the name, "-", and the hex SHA-224 of the name, exactly as 1.1
 * makes it when those bytes are a valid LVM name start. Bytes outside
 * [A-Za-z0-9+_.-], a leading '-' and the '_' of LVM's reserved suffixes are
 * replaced by '+' in the prefix, so the ID is always a valid LV, namespace
 * and file name. -EINVAL only for an empty name.
 */
int volume_id_from_name(const char *name, char ret[VOLUME_ID_MAX]);

/** volume_id_is_valid() - whether s has the shape of a volume ID. */
bool volume_id_is_valid(const char *s);
