/* SPDX-License-Identifier: Apache-2.0 */
/* volume/: parameters, volume IDs and the state store format. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "basic/macro.h"
#include "basic/strutil.h"
#include "volume/params.h"
#include "volume/state.h"
#include "test.h"

TEST(volume_id_upstream_compatible)
{
	char id[VOLUME_ID_MAX];

	/* Expected values computed with Python's hashlib: name[:6] + "-" + sha224(name). */
	CHECK_INT(volume_id_from_name("pvc-7d8e0c3a-1234-4bcd-9f00-0123456789ab", id), 0);
	CHECK_STR(id, "pvc-7d-718768fbab7c7a93e934fc007c064e07c26347ae914f396e989612ca");
	CHECK_INT(volume_id_from_name("sanity", id), 0);
	CHECK_STR(id, "sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219");
	CHECK_INT(volume_id_from_name("a", id), 0);
	CHECK_STR(id, "a-abd37534c7d9a2efb9465de931cd7055ffdb8879563ae98078d6d6d5");
	CHECK_INT(volume_id_from_name("ab-cd.ef_gh+ij", id), 0);
	CHECK_STR(id, "ab-cd.-6e6aa68f211847b0a4ac8f68a4f2c6512419bf334d81ea0aee036288");
	CHECK(strlen(id) <= 63);
	CHECK(volume_id_is_valid(id));
	CHECK(volume_id_from_name("", id) < 0);
	/* only the first 6 bytes have to be safe */
	CHECK_INT(volume_id_from_name("abcdef/ghi", id), 0);
}

TEST(volume_id_unsafe_prefix)
{
	/*
	 * 1.1 accepts any non-empty name and uses its first 6 bytes as they are;
	 * those that LVM (or a file name) cannot hold become '+', the hash is of
	 * the whole name as in 1.1 (hashes from Python's hashlib).
	 */
	static const struct {
		const char *name, *id;
	} cases[] = {
		{ "-abc", "+abc-a68b9eff2b9d13fb94a2255ebbaafbbf93e843a386fd6c3c4c911eda" },
		{ "a/b", "a+b-1cab3e2db062cf85214eb170012abab559369ab8ef736bf3738edac5" },
		{ "abc de", "abc+de-c86eb3e9f855a1d6d17b1ded3642666a9f153955b6439163c401d0ee" },
		{ "_mlog1", "+mlog1-055f310897789a6bc47f565324622d522d04a6d11a792682c7f6d389" },
		{ "\xc3\xa9t\xc3\xa9-vol", "++t++--eaef1ce563287bbb01f0fa5a01728fa3ec9c5b2c4a9013d909273ea9" },
		/* a valid prefix is 1.1's ID unchanged */
		{ "pvc-12", "pvc-12-2902e72e005b95be83c65f963c88c2585a16bcb8fc2d6c072437021a" },
	};
	char id[VOLUME_ID_MAX];

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		CHECK_INT(volume_id_from_name(cases[i].name, id), 0);
		CHECK_STR(id, cases[i].id);
		CHECK(volume_id_is_valid(id));
	}
}

/*
 * resource.Quantity.Value() for the inputs of apimachinery's TestQuantityParse
 * table (v0.25; the values are its expected quantities rounded up to a whole
 * number, as Value() does), its invalid list, and 1.1's parameter tests.
 */
TEST(quantity_kubernetes_cases)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "0", 0 }, { "0n", 0 }, { "0u", 0 }, { "0m", 0 }, { "0Ki", 0 }, { "0k", 0 },
		{ "0Mi", 0 }, { "0M", 0 }, { "0Gi", 0 }, { "0G", 0 }, { "0Ti", 0 }, { "0T", 0 },
		{ "1", 1 }, { "1Ki", 1024 }, { "8Ki", 8192 }, { "7Mi", 7340032 }, { "6Gi", 6442450944 },
		{ "5Ti", 5497558138880 }, { "4Pi", 4503599627370496 }, { "3Ei", 3458764513820540928 },
		{ "10Ti", 10995116277760 }, { "100Ti", 109951162777600 },
		{ "5n", 1 }, { "4u", 1 }, { "3m", 1 }, { "9", 9 }, { "8k", 8000 }, { "50k", 50000 },
		{ "7M", 7000000 }, { "6G", 6000000000 }, { "5T", 5000000000000 }, { "40T", 40000000000000 },
		{ "300T", 300000000000000 }, { "2P", 2000000000000000 }, { "1E", 1000000000000000000 },
		{ "1E-3", 1 }, { "1e3", 1000 }, { "1E6", 1000000 }, { "1e9", 1000000000 },
		{ "1E12", 1000000000000 }, { "1e15", 1000000000000000 }, { "1E18", 1000000000000000000 },
		{ "1e14", 100000000000000 }, { "1e13", 10000000000000 }, { "100.035k", 100035 },
		{ "0.001", 1 }, { "0.0005k", 1 }, { "0.005", 1 }, { "0.05", 1 }, { "0.5", 1 },
		{ "0.00050k", 1 }, { "0.00500", 1 }, { "0.05000", 1 }, { "0.50000", 1 }, { "0.5e0", 1 },
		{ "0.5e-1", 1 }, { "0.5e-2", 1 }, { "10.035M", 10035000 },
		{ "1.2e3", 1200 }, { "1.3E+6", 1300000 }, { "1.40e9", 1400000000 }, { "1.53E12", 1530000000000 },
		{ "1.6e15", 1600000000000000 }, { "1.7E18", 1700000000000000000 },
		{ "9.01", 10 }, { "8.1k", 8100 }, { "7.123456M", 7123456 }, { "6.987654321G", 6987654321 },
		{ "5.444T", 5444000000000 }, { "40.1T", 40100000000000 }, { "300.2T", 300200000000000 },
		{ "2.5P", 2500000000000000 }, { "1.01E", 1010000000000000000 },
		{ "3.001n", 1 }, { "1.1E-9", 1 }, { "0.0000000001", 1 }, { "0.0000000005", 1 },
		{ "0.00000000050", 1 }, { "0.5e-9", 1 }, { "0.9n", 1 }, { "0.00000012345", 1 },
		{ "9Ei", INT64_MAX }, { "9223372036854775807Ki", INT64_MAX }, /* maxAllowed cap */
		{ "100.035Ki", 102436 }, { "0.5Mi", 524288 }, { "0.05Gi", 53687092 }, { "0.025Ti", 27487790695 },
		{ "0.000000000001Ki", 1 }, { ".001", 1 }, { ".0001k", 1 }, { "1.", 1 }, { "1.G", 1000000000 },
		/* the same with an explicit '+' (the test does all of them) */
		{ "+1Gi", 1073741824 }, { "+0.5e-9", 1 },
		/* 1.1's parameter tests */
		{ "1Gi", 1073741824 }, { "100", 100 },
		/* the scanner's corners: a lone sign or '.', no digits before a suffix */
		{ "+", 0 }, { "-", 0 }, { ".", 0 }, { "-.", 0 }, { "Gi", 0 }, { "e5", 0 }, { "-0", 0 },
		{ "000", 0 }, { "007", 7 },
		/* exponents are truncated to int32 by Go: 4294967299 -> 3 */
		{ "1e4294967299", 1000 }, { "1e-30", 1 },
		/* exact rounding beyond int64 and float precision */
		{ "1.0000000000000000000000000001", 2 }, { "123456789012345678901234567890e-20", 1234567891 },
		{ "9223372036854775807", INT64_MAX }, { "9223372036854775806.5", INT64_MAX },
		{ "7.9999999999999999999Ei", INT64_MAX }, { "1.5Ei", 1729382256910270464 },
	};
	static const struct {
		const char *s;
		int err;
	} bad[] = {
		/* apimachinery's invalid list */
		{ "1.1.M", -EINVAL }, { "1+1.0M", -EINVAL }, { "0.1mi", -EINVAL }, { "0.1am", -EINVAL },
		{ "aoeu", -EINVAL }, { ".5i", -EINVAL }, { "1i", -EINVAL }, { "-3.01i", -EINVAL },
		{ "-3.01e-", -EINVAL }, { " 1", -EINVAL }, { "1 ", -EINVAL }, { "", -EINVAL },
		/* 1.1's parameter tests */
		{ "1X", -EINVAL }, { "foo", -EINVAL },
		/* no digits where Go takes its slow path: ErrNumeric */
		{ ".e-10", -EINVAL }, { "+Pi", -EINVAL }, { ".Ei", -EINVAL },
		{ "1e9223372036854775808", -EINVAL }, { "1e", -EINVAL }, { "1Ki1", -EINVAL },
		/* Kubernetes accepts these, but Value() is not the quantity */
		{ "-1", -ERANGE }, { "-0.1", -ERANGE }, { "-3.01e-1", -ERANGE }, { "12E", -ERANGE },
		{ "9223372036854775808", -ERANGE }, { "1e999", -ERANGE },
	};
	uint64_t v;

	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		v = 12345;
		CHECK_INT(parse_quantity(good[i].s, &v), 0);
		if (v != good[i].v)
			fprintf(stderr, "  quantity %s -> %" PRIu64 ", expected %" PRIu64 "\n", good[i].s, v, good[i].v);
		CHECK(v == good[i].v);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int r;
		v = 12345;
		r = parse_quantity(bad[i].s, &v);
		if (r != bad[i].err)
			fprintf(stderr, "  quantity \"%s\" -> %d (%" PRIu64 "), expected %d\n", bad[i].s, r, v,
				bad[i].err);
		CHECK(r == bad[i].err);
		CHECK(v == 12345);
	}
}

TEST(bool_as_go_parse_bool)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
	static const char *const bad[] = { "", "yes", "no", "on", "off", "tRUE", "TRue", "y", " true", "true " };
	bool b;

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		b = false;
		CHECK_INT(parse_bool(yes[i], &b), 0);
		CHECK(b);
	}
	for (size_t i = 0; i < ELEMENTSOF(no); i++) {
		b = true;
		CHECK_INT(parse_bool(no[i], &b), 0);
		CHECK(!b);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		CHECK(parse_bool(bad[i], &b) < 0);
}

TEST(volume_id_is_valid)
{
	CHECK(volume_id_is_valid("sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219"));
	CHECK(!volume_id_is_valid("invalid-token"));
	/* intel/pmem-csi 0.6: hex SHA-1 of the name */
	CHECK(volume_id_is_valid("daabcfa434ccbd7c596844352f02862d8f4a41cf"));
	CHECK(!volume_id_is_valid("daabcfa434ccbd7c596844352f02862d8f4a41c"));
	CHECK(!volume_id_is_valid("daabcfa434ccbd7c596844352f02862d8f4a41cF"));
	CHECK(!volume_id_is_valid("daabcfa434ccbd7c596844352f02862d8f4a41cf0"));
	CHECK(!volume_id_is_valid(""));
	CHECK(!volume_id_is_valid("sanity-E91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219"));
	CHECK(!volume_id_is_valid("toolong-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219"));
	CHECK(!volume_id_is_valid("sanity_e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219"));
	CHECK(!volume_id_is_valid("../../-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219"));
}

static int parse(enum params_origin o, const char *const *kv, size_t n, struct volume_params *p, char **err)
{
	const char *keys[16], *values[16];

	for (size_t i = 0; i < n; i++) {
		keys[i] = kv[2 * i];
		values[i] = kv[2 * i + 1];
	}
	volume_params_init(p);
	return volume_params_parse(p, o, keys, values, n, err);
}

TEST(params_defaults_and_values)
{
	struct volume_params p;
	char *err = NULL;
	const char *kv[] = { "eraseafter", "false", "usage", "FileIO", "persistencyModel", "none" };

	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, NULL, 0, &p, &err), 0);
	CHECK(p.erase_after);
	CHECK(!p.kata);
	CHECK_INT(p.usage, VOLUME_USAGE_APP_DIRECT);
	volume_params_done(&p);

	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, kv, 3, &p, &err), 0);
	CHECK(!p.erase_after);
	CHECK_INT(p.usage, VOLUME_USAGE_FILE_IO);
	CHECK(p.persistency_none);
	volume_params_done(&p);
}

TEST(params_cache)
{
	/* 0.7's names: persistencyModel=cache with cacheSize, kept in state and context. */
	struct volume_params p;
	struct volume_record r = {}, back = {};
	char *err = NULL, *json;
	const char *cache[] = { "persistencyModel", "cache", "cacheSize", "3" };
	const char *cache_first[] = { "cacheSize", "2", "persistencyModel", "cache" };
	const char *no_model[] = { "cacheSize", "2" };
	const char *normal[] = { "persistencyModel", "normal", "cacheSize", "2" };
	const char *zero[] = { "persistencyModel", "cache", "cacheSize", "0" };
	const char *big[] = { "persistencyModel", "cache", "cacheSize", "65" };
	const char *inline_cache[] = { "persistencyModel", "cache" };
	const char *keys[10], *values[10];
	size_t n;

	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, cache, 2, &p, &err), 0);
	CHECK(p.cache);
	CHECK_INT(p.cache_size, 3);
	n = volume_params_to_pairs(&p, keys, values, 10);
	CHECK_INT(n, 5);
	CHECK_STR(keys[3], "persistencyModel");
	CHECK_STR(values[3], "cache");
	CHECK_STR(keys[4], "cacheSize");
	CHECK_STR(values[4], "3");
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, cache, 1, &p, &err), 0);
	CHECK(p.cache);
	CHECK_INT(p.cache_size, 1);
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, cache_first, 2, &p, &err), 0);
	CHECK_INT(p.cache_size, 2);
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_PUBLISH_CONTEXT, cache, 2, &p, &err), 0);
	volume_params_done(&p);
	for (size_t i = 0; i < 5; i++) {
		const char **bad[] = { no_model, normal, zero, big, inline_cache };
		size_t nb[] = { 1, 2, 2, 2, 1 };
		enum params_origin o = i == 4 ? PARAMS_ORIGIN_EPHEMERAL : PARAMS_ORIGIN_CREATE_VOLUME;

		CHECK_INT(parse(o, bad[i], nb[i], &p, &err), -EINVAL);
		CHECK(err && (strstr(err, "cacheSize") || strstr(err, "persistencyModel")));
		free(err);
		err = NULL;
		volume_params_done(&p);
	}
	/* the state file keeps both, and reads them back */
	strcpy(r.id, "pvc-7d-718768fbab7c7a93e934fc007c064e07c26347ae914f396e989612ca");
	r.size = 1 << 30;
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, cache, 2, &r.params, &err), 0);
	json = state_format(&r);
	CHECK(json && strstr(json, "\"cacheSize\":\"3\"") && strstr(json, "\"persistencyModel\":\"cache\""));
	CHECK_INT(state_parse(json, strlen(json), &back, &err), 0);
	CHECK(back.params.cache);
	CHECK_INT(back.params.cache_size, 3);
	CHECK(volume_params_equal(&r.params, &back.params));
	back.params.cache_size = 2;
	CHECK(!volume_params_equal(&r.params, &back.params));
	free(json);
	volume_record_done(&r);
	volume_record_done(&back);
}

TEST(params_erase_after_doc_spelling)
{
	struct volume_params p;
	char *err = NULL;
	const char *kv[] = { "eraseAfter", "false" };

	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, kv, 1, &p, &err), 0);
	CHECK(!p.erase_after);
	volume_params_done(&p);
}

TEST(params_rejected_by_name)
{
	struct volume_params p;
	char *err = NULL;
	const char *unknown[] = { "fooBar", "1" };
	const char *badbool[] = { "eraseafter", "perhaps" };
	const char *badusage[] = { "usage", "Memory" };
	const char *size_in_create[] = { "size", "1Gi" };
	const char *kata_fileio[] = { "kataContainers", "true", "usage", "FileIO" };
	const char *badsize[] = { "size", "1Gb", "csi.storage.k8s.io/ephemeral", "true" };

	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, unknown, 1, &p, &err), -EINVAL);
	CHECK(err && strstr(err, "\"fooBar\""));
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, badbool, 1, &p, &err), -EINVAL);
	CHECK(err && strstr(err, "eraseafter") && strstr(err, "perhaps"));
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, badusage, 1, &p, &err), -EINVAL);
	CHECK(err && strstr(err, "Memory"));
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, size_in_create, 1, &p, &err), -EINVAL);
	CHECK(err && strstr(err, "\"size\""));
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, kata_fileio, 2, &p, &err), -EINVAL);
	CHECK(err && strstr(err, "kataContainers"));
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_EPHEMERAL, badsize, 2, &p, &err), -EINVAL);
	CHECK(err && strstr(err, "1Gb"));
	free(err);
	volume_params_done(&p);
}

TEST(params_origins)
{
	struct volume_params p;
	char *err = NULL;
	/* What kubelet passes to NodePublishVolume with podInfoOnMount, plus the provisioner's keys. */
	const char *ctx[] = { "csi.storage.k8s.io/pod.name", "app-0",
			      "csi.storage.k8s.io/serviceAccount.name", "default",
			      "storage.kubernetes.io/csiProvisionerIdentity", "1234-pmem-csi.intel.com",
			      "name", "pvc-1", "eraseafter", "true" };
	const char *ephemeral[] = { "csi.storage.k8s.io/ephemeral", "true", "size", "1Gi", "fsType", "xfs" };
	const char *extra[] = { "csi.storage.k8s.io/pvc/name", "data", "csi.storage.k8s.io/pvc/namespace", "default" };

	CHECK_INT(parse(PARAMS_ORIGIN_PUBLISH_CONTEXT, ctx, 5, &p, &err), 0);
	CHECK_STR(p.name, "pvc-1");
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_EPHEMERAL, ephemeral, 3, &p, &err), 0);
	CHECK(p.ephemeral);
	CHECK(p.has_size && p.size == 1ULL << 30);
	CHECK_STR(p.fs_type, "xfs");
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, extra, 2, &p, &err), 0);
	volume_params_done(&p);
	/* The pod name is not a storage class parameter. */
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, ctx, 1, &p, &err), -EINVAL);
	free(err);
	volume_params_done(&p);
}

TEST(params_equal)
{
	struct volume_params a, b;
	char *err = NULL;
	const char *kv[] = { "eraseafter", "false" };

	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, NULL, 0, &a, &err), 0);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, NULL, 0, &b, &err), 0);
	CHECK(volume_params_equal(&a, &b));
	volume_params_done(&b);
	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, kv, 1, &b, &err), 0);
	CHECK(!volume_params_equal(&a, &b));
	volume_params_done(&a);
	volume_params_done(&b);
}

TEST(state_roundtrip_upstream_format)
{
	struct volume_record r = {}, back = {};
	char *json, *err = NULL;

	strcpy(r.id, "pvc-7d-718768fbab7c7a93e934fc007c064e07c26347ae914f396e989612ca");
	r.size = 4294967296ULL;
	volume_params_init(&r.params);
	r.params.erase_after = false;
	r.params.name = strdup("pvc-7d8e0c3a-1234-4bcd-9f00-0123456789ab");
	r.params.device_mode = strdup("lvm");
	json = state_format(&r);
	CHECK(json != NULL);
	CHECK(strstr(json, "\"size\":4294967296") != NULL);
	CHECK(strstr(json, "\"eraseafter\":\"false\"") != NULL);
	CHECK(strstr(json, "\"deviceMode\":\"lvm\"") != NULL);
	CHECK_INT(state_parse(json, strlen(json), &back, &err), 0);
	CHECK_STR(back.id, r.id);
	CHECK(back.size == r.size);
	CHECK(!back.params.erase_after);
	CHECK_STR(back.params.name, r.params.name);
	CHECK_STR(back.params.device_mode, "lvm");
	free(json);
	volume_record_done(&r);
	volume_record_done(&back);
}

TEST(state_parse_upstream_file)
{
	/* A state file as intel/pmem-csi 1.x writes it. */
	static const char upstream[] =
		"{\"id\":\"pvc-7d-718768fbab7c7a93e934fc007c064e07c26347ae914f396e989612ca\",\"size\":4294967296,"
		"\"parameters\":{\"deviceMode\":\"direct\",\"eraseafter\":\"true\",\"kataContainers\":\"false\","
		"\"name\":\"pvc-7d8e0c3a-1234-4bcd-9f00-0123456789ab\",\"persistencyModel\":\"normal\",\"usage\":\"AppDirect\"}}";
	struct volume_record r = {};
	char *err = NULL;

	CHECK_INT(state_parse(upstream, strlen(upstream), &r, &err), 0);
	CHECK(r.params.erase_after);
	CHECK_STR(r.params.device_mode, "direct");
	volume_record_done(&r);
}

TEST(state_parse_v06_files)
{
	/* What the real intel/pmem-csi v0.6.52 binary wrote in the guest
	 * (test/guest/test_upstream_binary.py): the SHA-1 of the name as ID, the
	 * name under "Name", an inline volume with its whole volume context. */
	static const char pvc[] = "{\"id\":\"0b84a3a35c3b4d37937145e0c7e1ea5eda30d2d2\",\"size\":67108864,"
				  "\"parameters\":{\"Name\":\"pvc-up-named\",\"eraseafter\":\"false\","
				  "\"persistencyModel\":\"normal\"}}";
	static const char inline_vol[] =
		"{\"id\":\"fa12e2c4f2301e9e67596b48df5643a1f445cdca\",\"size\":100000000,\"parameters\":{"
		"\"Name\":\"csi-0606060606060606060606060606060606060606060606060606060606060606\","
		"\"csi.storage.k8s.io/ephemeral\":\"true\",\"csi.storage.k8s.io/pod.name\":\"app-0\","
		"\"csi.storage.k8s.io/pod.namespace\":\"default\",\"persistencyModel\":\"ephemeral\",\"size\":\"100Mi\"}}";
	struct volume_record r = {};
	char *err = NULL;

	CHECK_INT(state_parse(pvc, strlen(pvc), &r, &err), 0);
	CHECK_STR(r.id, "0b84a3a35c3b4d37937145e0c7e1ea5eda30d2d2");
	CHECK_STR(r.params.name, "pvc-up-named");
	CHECK(!r.params.erase_after && !r.params.ephemeral);
	volume_record_done(&r);

	CHECK_INT(state_parse(inline_vol, strlen(inline_vol), &r, &err), 0);
	CHECK(r.params.ephemeral);
	CHECK_STR(r.params.name, "csi-0606060606060606060606060606060606060606060606060606060606060606");
	CHECK(r.params.has_size && r.params.size == 100 * 1024 * 1024);
	volume_record_done(&r);
	free(err);
}

TEST(state_parse_rejects)
{
	static const char *const bad[] = {
		"",
		"{}",
		"[]",
		"{\"id\":\"x\",\"size\":1}",
		"{\"id\":\"sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219\"}",
		"{\"id\":\"sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219\",\"size\":-1}",
		"{\"id\":\"sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219\",\"size\":1,\"parameters\":{\"x\":\"y\"}}",
		"{\"id\":\"sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219\",\"size\":1,\"parameters\":{\"name\":1}}",
		"{\"id\":\"sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219\",\"size\":1,\"size\":2}",
	};

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct volume_record r = {};
		char *err = NULL;
		int rc = state_parse(bad[i], strlen(bad[i]), &r, &err);
		if (rc >= 0)
			fprintf(stderr, "  accepted: %s\n", bad[i]);
		CHECK(rc < 0);
		free(err);
	}
}

static int count_cb(struct volume_record *rec, void *ud)
{
	(*(int *)ud)++;
	volume_record_done(rec);
	return 0;
}

TEST(state_store_dir)
{
	char dir[] = "/tmp/pmem-csi-state-XXXXXX";
	struct volume_record r = {};
	char path[256];
	FILE *f;
	int n = 0;

	CHECK(mkdtemp(dir) != NULL);
	strcpy(r.id, "sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219");
	r.size = 8 << 20;
	volume_params_init(&r.params);
	/* A name JSON cannot hold is bad input (INVALID_ARGUMENT), not ENOMEM. */
	r.params.name = (char *)"bad\xff";
	CHECK_INT(state_write(dir, &r), -EINVAL);
	r.params.name = NULL;
	CHECK_INT(state_write(dir, &r), 0);
	/* junk that must be skipped, not fatal */
	snprintf(path, sizeof(path), "%s/broken.json", dir);
	f = fopen(path, "w");
	fputs("{not json", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/notes.txt", dir);
	f = fopen(path, "w");
	fputs("x", f);
	fclose(f);
	CHECK_INT(state_load_all(dir, count_cb, &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(state_remove(dir, r.id), 0);
	n = 0;
	CHECK_INT(state_load_all(dir, count_cb, &n), 0);
	CHECK_INT(n, 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s/broken.json", dir);
	unlink(path);
	CHECK_INT(rmdir(dir), 0);
}

struct scan_seen {
	char ids[4][VOLUME_ID_MAX];
	enum state_record rec[4];
	bool creating[4];
	int n;
};

static int scan_cb(const struct state_entry *e, void *ud)
{
	struct scan_seen *s = ud;

	if (s->n < 4) {
		snprintf(s->ids[s->n], VOLUME_ID_MAX, "%s", e->id);
		s->rec[s->n] = e->record;
		s->creating[s->n] = e->creating;
		CHECK((e->record == STATE_RECORD_OK) == (e->rec != NULL));
		CHECK(e->error != NULL);
	}
	s->n++;
	return 0;
}

static void put(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

TEST(state_scan_and_lost_dir)
{
	static const char a[] = "aaaaaa-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219",
			  b[] = "bbbbbb-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219",
			  c[] = "cccccc-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219";
	char dir[] = "/tmp/pmem-csi-scan-XXXXXX", name[128];
	struct volume_record r = {};
	struct scan_seen s = {};

	CHECK(mkdtemp(dir) != NULL);
	volume_params_init(&r.params);
	r.size = 8 << 20;
	snprintf(r.id, sizeof(r.id), "%s", a);
	CHECK_INT(state_write(dir, &r), 0);                       /* ok */
	CHECK_INT(state_intent_set(dir, a, "creating"), 0);       /* ok + marker */
	snprintf(name, sizeof(name), "%s.json", b);
	put(dir, name, "{\"id\": \"bbbbbb");                       /* unreadable */
	CHECK_INT(state_intent_set(dir, c, "creating"), 0);       /* marker only */
	put(dir, "README", "x");                                   /* not a volume ID: ignored */
	put(dir, "x.json", "{}");
	CHECK_INT(state_exists(dir, b), 1);
	CHECK_INT(state_exists(dir, c), 0);
	CHECK_INT(state_scan(dir, scan_cb, &s), 0);
	CHECK_INT(s.n, 3);
	CHECK_STR(s.ids[0], a);
	CHECK_INT(s.rec[0], STATE_RECORD_OK);
	CHECK(s.creating[0]);
	CHECK_STR(s.ids[1], b);
	CHECK_INT(s.rec[1], STATE_RECORD_UNREADABLE);
	CHECK(!s.creating[1]);
	CHECK_STR(s.ids[2], c);
	CHECK_INT(s.rec[2], STATE_RECORD_NONE);
	CHECK(s.creating[2]);

	/* The directory removed behind our back: removals succeed, writes recreate it. */
	{
		static const char *const files[] = { "README", "x.json" };
		const char *ids[] = { a, b, c };
		for (size_t i = 0; i < ELEMENTSOF(files); i++) {
			snprintf(name, sizeof(name), "%s/%s", dir, files[i]);
			unlink(name);
		}
		for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
			snprintf(name, sizeof(name), "%s/%s.json", dir, ids[i]);
			unlink(name);
			snprintf(name, sizeof(name), "%s/%s.creating", dir, ids[i]);
			unlink(name);
		}
		CHECK_INT(rmdir(dir), 0);
	}
	CHECK_INT(access(dir, F_OK), -1);
	CHECK_INT(state_remove(dir, a), 0);
	CHECK_INT(state_intent_clear(dir, a, "creating"), 0);
	CHECK_INT(state_write(dir, &r), 0);
	CHECK_INT(state_exists(dir, a), 1);
	CHECK_INT(state_remove(dir, a), 0);
	CHECK_INT(rmdir(dir), 0);
}

/*
 * A checker written from intel/pmem-csi 1.1's rules for a state file
 * (pkg/pmem-csi-driver/parameters Parse(NodeVolumeOrigin) and
 * controllerserver-node.go's nodeVolume): the only keys it accepts are
 * eraseafter, kataContainers, usage, name, persistencyModel, size and
 * deviceMode; booleans as strconv.ParseBool; usage AppDirect, FileIO or "";
 * persistencyModel normal, none or ephemeral; deviceMode lvm, direct, fake or
 * ndctl; kata with FileIO is an error. Returns whether 1.1 treats the volume
 * as ephemeral (deletes it on unpublish), or -1 if it rejects the file.
 */
static int v11_check_params(const char *const *keys, const char *const *values, size_t n)
{
	static const char *const allowed[] = { "eraseafter", "kataContainers", "usage", "name",
					       "persistencyModel", "size", "deviceMode" };
	bool ephemeral = false, kata = false, fileio = false, b;
	uint64_t size;

	for (size_t i = 0; i < n; i++) {
		const char *k = keys[i], *v = values[i];
		bool ok = false;

		for (size_t j = 0; j < ELEMENTSOF(allowed); j++)
			ok |= strcmp(k, allowed[j]) == 0;
		if (!ok)
			return -1;
		if (!strcmp(k, "eraseafter") && parse_bool(v, &b) < 0)
			return -1;
		if (!strcmp(k, "kataContainers") && (parse_bool(v, &kata) < 0))
			return -1;
		if (!strcmp(k, "usage")) {
			if (strcmp(v, "AppDirect") && strcmp(v, "FileIO") && strcmp(v, ""))
				return -1;
			fileio = !strcmp(v, "FileIO");
		}
		if (!strcmp(k, "persistencyModel")) {
			if (strcmp(v, "normal") && strcmp(v, "none") && strcmp(v, "ephemeral"))
				return -1;
			ephemeral = !strcmp(v, "ephemeral");
		}
		if (!strcmp(k, "size") && parse_quantity(v, &size) < 0)
			return -1;
		if (!strcmp(k, "deviceMode") && strcmp(v, "lvm") && strcmp(v, "direct") && strcmp(v, "fake") &&
		    strcmp(v, "ndctl"))
			return -1;
	}
	if (kata && fileio)
		return -1;
	return ephemeral;
}

static int v11_check_state(const struct volume_record *r)
{
	const char *keys[32], *values[32];
	char size_buf[VOLUME_PARAMS_SIZE_BUF];
	size_t n = volume_params_to_state_pairs(&r->params, keys, values, 32, size_buf);

	return v11_check_params(keys, values, n);
}

TEST(state_ephemeral_as_v11_writes_it)
{
	/* What 1.1 writes for an inline volume (createEphemeralDevice ->
	 * createVolumeInternal: ToContext of the volume attributes, plus
	 * name, persistencyModel=ephemeral, deviceMode; keys only when set). */
	static const char v11[] =
		"{\"id\":\"csi-4a-ff7a8bdb44d6d3b2bca6ba4fa7bc4f1c3b6fd1b3b7e2f4a0ad3e5d2a\",\"size\":117440512,"
		"\"parameters\":{\"deviceMode\":\"lvm\",\"name\":\"csi-4a5e1d\",\"persistencyModel\":\"ephemeral\","
		"\"size\":\"115343360\"}}\n";
	static const char v11_kata[] =
		"{\"id\":\"csi-4a-ff7a8bdb44d6d3b2bca6ba4fa7bc4f1c3b6fd1b3b7e2f4a0ad3e5d2a\",\"size\":117440512,"
		"\"parameters\":{\"deviceMode\":\"ndctl\",\"eraseafter\":\"F\",\"kataContainers\":\"1\","
		"\"name\":\"csi-4a5e1d\",\"persistencyModel\":\"ephemeral\",\"size\":\"115343360\",\"usage\":\"\"}}\n";
	struct volume_record r = {};
	char *err = NULL, *json;

	CHECK_INT(state_parse(v11, strlen(v11), &r, &err), 0);
	CHECK(r.params.ephemeral);
	CHECK(r.params.has_size && r.params.size == 115343360);
	CHECK_STR(r.params.name, "csi-4a5e1d");
	CHECK(r.size == 117440512);
	/* written back: what 1.1 reads as ephemeral, without our own key */
	json = state_format(&r);
	CHECK(json && strstr(json, "\"persistencyModel\":\"ephemeral\""));
	CHECK(json && strstr(json, "\"size\":\"115343360\""));
	CHECK(json && !strstr(json, "csi.storage.k8s.io"));
	CHECK_INT(v11_check_state(&r), 1);
	free(json);
	volume_record_done(&r);

	CHECK_INT(state_parse(v11_kata, strlen(v11_kata), &r, &err), 0);
	CHECK(r.params.ephemeral && r.params.kata && !r.params.erase_after);
	CHECK_STR(r.params.device_mode, "direct");
	CHECK_INT(r.params.usage, VOLUME_USAGE_APP_DIRECT);
	CHECK_INT(v11_check_state(&r), 1);
	volume_record_done(&r);
	free(err);
}

TEST(state_ours_read_by_v11)
{
	/* Every kind of volume this driver records, as its handlers fill the
	 * record: persistent (both modes, Kata, FileIO, no erase), inline
	 * ephemeral (parsed from the volume attributes kubelet sends). */
	static const char *const ephemeral_ctx[] = { "csi.storage.k8s.io/ephemeral", "true",
						     "csi.storage.k8s.io/pod.name", "p",
						     "size", "110Mi",
						     "kataContainers", "true",
						     "fsType", "xfs" };
	static const char *const create[][6] = {
		{ "eraseafter", "true", "usage", "AppDirect", "persistencyModel", "normal" },
		{ "eraseAfter", "false", "usage", "FileIO", "persistencyModel", "none" },
		{ "kataContainers", "t", "usage", "", "eraseafter", "0" },
	};
	const char *modes[] = { "lvm", "direct" };
	struct volume_record r = {}, back = {};
	char *err = NULL;

	for (size_t m = 0; m < 2; m++) {
		for (size_t i = 0; i < ELEMENTSOF(create); i++) {
			strcpy(r.id, "pvc-7d-718768fbab7c7a93e934fc007c064e07c26347ae914f396e989612ca");
			r.size = 1 << 30;
			CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, create[i], 3, &r.params, &err), 0);
			r.params.name = strdup("pvc-7d8e0c3a-1234-4bcd-9f00-0123456789ab");
			r.params.device_mode = strdup(modes[m]);
			CHECK_INT(v11_check_state(&r), 0);
			volume_record_done(&r);
		}
		CHECK_INT(parse(PARAMS_ORIGIN_EPHEMERAL, ephemeral_ctx, 5, &r.params, &err), 0);
		CHECK(r.params.ephemeral);
		r.params.name = strdup("csi-4a5e1d");
		r.params.device_mode = strdup(modes[m]);
		CHECK_INT(v11_check_state(&r), 1);
		{
			char *json = state_format(&r);
			CHECK(json != NULL);
			CHECK_INT(state_parse(json, strlen(json), &back, &err), 0);
			CHECK(back.params.ephemeral && back.params.kata && back.params.size == 110 << 20);
			free(json);
			volume_record_done(&back);
		}
		volume_record_done(&r);
	}
	/* state files an earlier version of this driver wrote stay readable */
	{
		static const char old[] =
			"{\"id\":\"csi-4a-ff7a8bdb44d6d3b2bca6ba4fa7bc4f1c3b6fd1b3b7e2f4a0ad3e5d2a\",\"size\":1,"
			"\"parameters\":{\"csi.storage.k8s.io/ephemeral\":\"true\",\"persistencyModel\":\"normal\"}}";
		CHECK_INT(state_parse(old, strlen(old), &r, &err), 0);
		CHECK(r.params.ephemeral);
		CHECK_INT(v11_check_state(&r), 1);
		volume_record_done(&r);
	}
	free(err);
}

TEST(params_v11_values)
{
	struct volume_params p;
	char *err = NULL;
	const char *usage_empty[] = { "usage", "" };
	const char *eph_ctx[] = { "persistencyModel", "ephemeral" };
	const char *bad_mode[] = { "deviceMode", "nvme" };
	const char *eph_false[] = { "persistencyModel", "ephemeral", "csi.storage.k8s.io/ephemeral", "false" };

	CHECK_INT(parse(PARAMS_ORIGIN_CREATE_VOLUME, usage_empty, 1, &p, &err), 0);
	CHECK_INT(p.usage, VOLUME_USAGE_APP_DIRECT);
	volume_params_done(&p);
	/* "ephemeral" is 1.1's internal value: only in state files */
	CHECK(parse(PARAMS_ORIGIN_CREATE_VOLUME, eph_ctx, 1, &p, &err) < 0);
	CHECK(err && strstr(err, "persistencyModel"));
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK(parse(PARAMS_ORIGIN_PUBLISH_CONTEXT, eph_ctx, 1, &p, &err) < 0);
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK(parse(PARAMS_ORIGIN_STATE, bad_mode, 1, &p, &err) < 0);
	CHECK(err && strstr(err, "deviceMode"));
	free(err);
	err = NULL;
	volume_params_done(&p);
	CHECK_INT(parse(PARAMS_ORIGIN_STATE, eph_false, 2, &p, &err), 0);
	CHECK(p.ephemeral);
	volume_params_done(&p);
}

TEST(snapshot_ids)
{
	char id[SNAPSHOT_ID_MAX], vid[VOLUME_ID_MAX];

	CHECK_INT(snapshot_id_from_name("snapshot-1", id), 0);
	CHECK(snapshot_id_is_valid(id));
	CHECK(!volume_id_is_valid(id));
	CHECK_INT((int)strlen(id), 61);
	CHECK(strncmp(id, "snap.", 5) == 0);
	/* A volume named like the prefix has a volume ID, never a snapshot ID. */
	CHECK_INT(volume_id_from_name("snap.", vid), 0);
	CHECK(!snapshot_id_is_valid(vid));
	CHECK_INT(volume_id_from_name("snap", vid), 0);
	CHECK(!snapshot_id_is_valid(vid));
	CHECK(volume_id_is_valid(vid));
	CHECK_INT(snapshot_id_from_name("", id), -EINVAL);
	CHECK(!snapshot_id_is_valid("snap."));
	CHECK(!snapshot_id_is_valid(NULL));
	CHECK(!snapshot_id_is_valid("snap.8283b673edaa1628eec828dc48732d93cf045ed37b1e1ecce7dadde"));
	CHECK(!snapshot_id_is_valid("snap.8283B673edaa1628eec828dc48732d93cf045ed37b1e1ecce7dadde5"));
	CHECK(!snapshot_id_is_valid("../../8283b673edaa1628eec828dc48732d93cf045ed37b1e1ecce7dadde5"));
}

TEST(snapshot_record_roundtrip)
{
	struct snapshot_record r = {}, back = {};
	char *json, *err = NULL;

	CHECK_INT(snapshot_id_from_name("snap-a", r.id), 0);
	CHECK_INT(volume_id_from_name("pvc-1", r.source), 0);
	r.name = (char *)"snap-a";
	r.device_mode = (char *)"direct";
	r.size = 64 << 20;
	r.content = 96 << 20;
	r.created_ns = 1795000000123456789LL;
	r.erase_after = false;
	r.usage = VOLUME_USAGE_FILE_IO;
	json = snapshot_format(&r);
	CHECK(json);
	CHECK_INT(snapshot_parse(json, strlen(json), &back, &err), 0);
	CHECK(strcmp(back.id, r.id) == 0 && strcmp(back.source, r.source) == 0);
	CHECK(strcmp(back.name, "snap-a") == 0 && strcmp(back.device_mode, "direct") == 0);
	CHECK(back.size == r.size && back.content == r.content && back.created_ns == r.created_ns);
	CHECK(!back.erase_after && back.usage == VOLUME_USAGE_FILE_IO);
	snapshot_record_done(&back);
	/* A volume record is not a snapshot record, and the reverse. */
	CHECK(state_parse(json, strlen(json), &(struct volume_record){}, &err) < 0);
	free(err);
	err = NULL;
	free(json);
	{
		const char *vol = "{\"id\":\"pvc-12-0123456789abcdef0123456789abcdef0123456789abcdef01234567\",\"size\":1}";
		CHECK(snapshot_parse(vol, strlen(vol), &back, &err) < 0);
		CHECK(err && strstr(err, "kind"));
		free(err);
	}
}
