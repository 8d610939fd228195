/* SPDX-License-Identifier: Apache-2.0 */
/* volume/: parameters, volume IDs and the state store format. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "basic/macro.h"
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
	CHECK(volume_id_from_name("-abc", id) < 0);
	CHECK(volume_id_from_name("a/b", id) < 0);
	CHECK(volume_id_from_name("abc de", id) < 0);
	/* only the first 6 bytes have to be safe */
	CHECK_INT(volume_id_from_name("abcdef/ghi", id), 0);
}

TEST(volume_id_is_valid)
{
	CHECK(volume_id_is_valid("sanity-e91a02df2cf66302ffa8fe07f49212a960af415e734de81b09d09219"));
	CHECK(!volume_id_is_valid("invalid-token"));
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
