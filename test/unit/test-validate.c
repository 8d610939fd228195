/* SPDX-License-Identifier: Apache-2.0 */
/*
 * csi_validate_request() on hand-built wire bytes: the encoder below writes
 * protobuf by the book (tag varint, length varint, payload), so every input
 * says exactly which bytes the driver gets, NULs and broken UTF-8 included,
 * which the generated packers (C strings) cannot express.
 */
#include <errno.h>

#include "basic/macro.h"
#include "csi.pb-c.h"
#include "csi/validate.h"
#include "test.h"

struct wbuf {
	uint8_t *b;
	size_t n, cap;
};

static void put_raw(struct wbuf *w, const void *p, size_t len)
{
	if (w->n + len > w->cap) {
		w->cap = (w->n + len) * 2 + 64;
		w->b = realloc(w->b, w->cap);
		if (!w->b)
			abort();
	}
	if (len)
		memcpy(w->b + w->n, p, len);
	w->n += len;
}

static void put_varint(struct wbuf *w, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;

	do {
		b[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	put_raw(w, b, n);
}

/* A length-delimited field (string, bytes, message, map entry). */
static void put_bytes(struct wbuf *w, unsigned field, const void *p, size_t len)
{
	put_varint(w, (uint64_t)field << 3 | 2);
	put_varint(w, len);
	put_raw(w, p, len);
}

static void put_str(struct wbuf *w, unsigned field, const char *s)
{
	put_bytes(w, field, s, strlen(s));
}

static void put_sub(struct wbuf *w, unsigned field, struct wbuf *sub)
{
	put_bytes(w, field, sub->b, sub->n);
	free(sub->b);
	*sub = (struct wbuf){};
}

/* A map<string,string> entry with explicit lengths (for NULs). */
static void put_entry_n(struct wbuf *w, unsigned field, const char *k, size_t klen, const char *v, size_t vlen)
{
	struct wbuf e = {};

	put_bytes(&e, 1, k, klen);
	put_bytes(&e, 2, v, vlen);
	put_sub(w, field, &e);
}

static void put_entry(struct wbuf *w, unsigned field, const char *k, const char *v)
{
	put_entry_n(w, field, k, strlen(k), v, strlen(v));
}

/* VolumeCapability{mount{fs_type, mount_flags...}, access_mode{SINGLE_NODE_WRITER}} */
static void put_mount_cap(struct wbuf *w, unsigned field, const char *const *flags, size_t n_flags)
{
	struct wbuf cap = {}, mount = {}, mode = {};

	put_str(&mount, 1, "ext4");
	for (size_t i = 0; i < n_flags; i++)
		put_str(&mount, 2, flags[i]);
	put_sub(&cap, 2, &mount);
	put_varint(&mode, 1 << 3 | 0);
	put_varint(&mode, 1);
	put_sub(&cap, 3, &mode);
	put_sub(w, field, &cap);
}

static char err[CSI_VALIDATE_ERROR_MAX];

static int validate(const ProtobufCMessageDescriptor *d, const struct wbuf *w)
{
	strcpy(err, "untouched");
	return csi_validate_request(d, w->b, w->n, err, sizeof(err));
}

#define CREATE (&csi__v1__create_volume_request__descriptor)
#define STAGE (&csi__v1__node_stage_volume_request__descriptor)
#define PUBLISH (&csi__v1__node_publish_volume_request__descriptor)
#define UNPUBLISH (&csi__v1__node_unpublish_volume_request__descriptor)
#define DELETE (&csi__v1__delete_volume_request__descriptor)

/* A well-formed CreateVolumeRequest with @name (of @len bytes). */
static struct wbuf create_req(const char *name, size_t len)
{
	struct wbuf w = {};

	put_bytes(&w, 1, name, len);
	put_mount_cap(&w, 3, NULL, 0);
	put_entry(&w, 4, "eraseafter", "false");
	return w;
}

#define CHECK_PREFIX(s, prefix)                                                                  \
	do {                                                                                     \
		if (strncmp((s), (prefix), strlen(prefix)) != 0) {                               \
			fprintf(stderr, "  %s:%d: \"%s\" does not start with \"%s\"\n", __FILE__, \
				__LINE__, (s), (prefix));                                        \
			test_failures++;                                                         \
		}                                                                                \
	} while (0)

/* The name @len bytes @s in a CreateVolumeRequest gives @want (0 or -EINVAL) and an error starting with @prefix. */
static void check_name(const char *s, size_t len, int want, const char *prefix)
{
	struct wbuf w = create_req(s, len);

	CHECK_INT(validate(CREATE, &w), want);
	if (want == 0)
		CHECK_STR(err, "untouched");
	else
		CHECK_PREFIX(err, prefix);
	free(w.b);
}

TEST(validate_valid_create_unpacks)
{
	struct wbuf w = create_req("pvc-0123", 8);
	ProtobufCMessage *m;

	CHECK_INT(validate(CREATE, &w), 0);
	CHECK_STR(err, "untouched");
	m = protobuf_c_message_unpack(CREATE, NULL, w.n, w.b);
	CHECK(m);
	if (m)
		CHECK_STR(((Csi__V1__CreateVolumeRequest *)m)->name, "pvc-0123");
	protobuf_c_message_free_unpacked(m, NULL);
	free(w.b);
}

TEST(validate_name_nul)
{
	/* What protobuf-c alone makes of it: the name cut at the NUL. */
	struct wbuf w = create_req("a\0b", 3);
	Csi__V1__CreateVolumeRequest *m =
		(Csi__V1__CreateVolumeRequest *)protobuf_c_message_unpack(CREATE, NULL, w.n, w.b);

	CHECK(m && strcmp(m->name, "a") == 0);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(w.b);
	check_name("a\0b", 3, -EINVAL, "name: contains a NUL byte at byte 1");
	check_name("\0", 1, -EINVAL, "name: contains a NUL byte at byte 0");
	check_name("abc\0", 4, -EINVAL, "name: contains a NUL byte at byte 3");
}

TEST(validate_name_utf8)
{
	static const char *const bad[] = {
		"\xff",			/* never in UTF-8 */
		"ab\x80",		/* a lone continuation byte */
		"\xc0\xaf",		/* overlong '/' */
		"\xe0\x80\xaf",		/* overlong '/', 3 bytes */
		"\xed\xa0\x80",		/* surrogate U+D800 */
		"\xf4\x90\x80\x80",	/* U+110000 */
		"\xe6\x97",		/* cut */
		"x\xc3",		/* cut at the end */
		"\xf8\x88\x80\x80\x80", /* 5-byte form */
		"\xc3\x28",		/* bad continuation */
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		check_name(bad[i], strlen(bad[i]), -EINVAL, "name: is not valid UTF-8 at byte");
	check_name("ab\x80", 3, -EINVAL, "name: is not valid UTF-8 at byte 2");
	/* Valid: non-ASCII letters, U+00A0, the largest code point, a 4-byte emoji. */
	check_name("\xe6\x97\xa5\xe6\x9c\xac", 6, 0, NULL);
	check_name("a\xc2\xa0z", 4, 0, NULL);
	check_name("\xf4\x8f\xbf\xbf", 4, 0, NULL);
	check_name("\xf0\x9f\x98\x80", 4, 0, NULL);
}

TEST(validate_name_controls)
{
	check_name("a\nb", 3, -EINVAL, "name: contains the control character U+000A at byte 1");
	check_name("\tx", 2, -EINVAL, "name: contains the control character U+0009 at byte 0");
	check_name("x\x1b[31m", 6, -EINVAL, "name: contains the control character U+001B at byte 1");
	check_name("del\x7f", 4, -EINVAL, "name: contains the control character U+007F at byte 3");
	check_name("c1\xc2\x85", 4, -EINVAL, "name: contains the control character U+0085 at byte 2");
	check_name("c1\xc2\x9b", 4, -EINVAL, "name: contains the control character U+009B at byte 2");
	check_name("a b ~", 5, 0, NULL);
}

TEST(validate_name_length)
{
	char name[200];

	memset(name, 'n', sizeof(name));
	check_name(name, 128, 0, NULL);
	check_name(name, 129, -EINVAL, "name: 129 bytes, more than the limit of 128");
	check_name("", 0, 0, NULL); /* missing is the handler's to say */
}

TEST(validate_parameters)
{
	struct wbuf w = create_req("p", 1);

	put_entry_n(&w, 4, "usage", 5, "App\0Direct", 10);
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "parameters[\"usage\"] value: contains a NUL byte at byte 3");
	free(w.b);

	w = create_req("p", 1);
	put_entry_n(&w, 4, "us\0age", 6, "AppDirect", 9);
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "parameters key \"us\\x00age\": contains a NUL byte at byte 2");
	free(w.b);

	w = create_req("p", 1);
	put_entry(&w, 4, "x", "\xff\xfe");
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "parameters[\"x\"] value: is not valid UTF-8 at byte 0");
	free(w.b);

	w = create_req("p", 1);
	put_entry(&w, 8, "k\x01", "v");
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "mutable_parameters key \"k\\x01\": contains the control character U+0001 at byte 1");
	free(w.b);
}

TEST(validate_map_limits)
{
	struct wbuf w = create_req("p", 1);
	char key[16], big[5000];

	/* create_req has one entry: 63 more is the limit, one beyond is not. */
	for (int i = 1; i < 64; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		put_entry(&w, 4, key, "v");
	}
	CHECK_INT(validate(CREATE, &w), 0);
	put_entry(&w, 4, "k64", "v");
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "parameters: more than 64 entries");
	free(w.b);

	w = create_req("p", 1);
	put_entry(&w, 4, "eraseafter", "true");
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "parameters: key \"eraseafter\" given more than once");
	free(w.b);

	memset(big, 'v', sizeof(big));
	w = create_req("p", 1);
	put_entry_n(&w, 4, "k", 1, big, 4096);
	CHECK_INT(validate(CREATE, &w), 0);
	put_entry_n(&w, 4, "k2", 2, big, 4097);
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "parameters[\"k2\"] value: 4097 bytes, more than the limit of 4096");
	free(w.b);

	w = create_req("p", 1);
	put_entry_n(&w, 4, big, 513, "v", 1);
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_PREFIX(err, "parameters key \"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv...\": 513 bytes, more than the limit of 512");
	free(w.b);
}

TEST(validate_secrets)
{
	struct wbuf w = create_req("s", 1);

	/* Values are opaque: NUL, invalid UTF-8 and controls pass, and are never quoted. */
	put_entry_n(&w, 5, "password", 8, "pa\0ss\xff\n", 8);
	CHECK_INT(validate(CREATE, &w), 0);
	put_entry_n(&w, 5, "bad\0key", 7, "TOPSECRET", 9);
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "secrets key \"bad\\x00key\": contains a NUL byte at byte 3");
	free(w.b);

	w = create_req("s", 1);
	put_entry(&w, 5, "\xc3", "TOPSECRET");
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "secrets key \"\\xc3\": is not valid UTF-8 at byte 0");
	CHECK(!strstr(err, "TOPSECRET"));
	free(w.b);

	/* DeleteVolume and NodeStageVolume carry secrets too; length is bounded, bytes never shown. */
	{
		size_t n = (1 << 20) + 1;
		char *big = malloc(n);

		CHECK(big);
		if (!big)
			return;
		memset(big, 'S', n);
		w = (struct wbuf){};
		put_str(&w, 1, "vol");
		put_entry_n(&w, 2, "token", 5, big, n);
		CHECK_INT(validate(DELETE, &w), -EINVAL);
		CHECK_STR(err, "secrets[\"token\"] value: 1048577 bytes, more than the limit of 1048576");
		free(w.b);
		free(big);
	}
}

TEST(validate_node_stage)
{
	static const char *const flags[] = { "noatime", "bad\nflag" };
	struct wbuf w = {};

	put_str(&w, 1, "vol-1");
	put_str(&w, 3, "/var/lib/kubelet/plugins/x/globalmount");
	put_mount_cap(&w, 4, flags, 1);
	put_entry(&w, 6, "size", "1Gi");
	CHECK_INT(validate(STAGE, &w), 0);
	free(w.b);

	w = (struct wbuf){};
	put_str(&w, 1, "vol-1");
	put_str(&w, 3, "/staging");
	put_mount_cap(&w, 4, flags, 2);
	CHECK_INT(validate(STAGE, &w), -EINVAL);
	CHECK_STR(err, "volume_capability.mount.mount_flags[1]: contains the control character U+000A at byte 3");
	free(w.b);

	w = (struct wbuf){};
	put_str(&w, 1, "vol-1");
	put_bytes(&w, 3, "/stag\0ing", 9);
	CHECK_INT(validate(STAGE, &w), -EINVAL);
	CHECK_STR(err, "staging_target_path: contains a NUL byte at byte 5");
	free(w.b);

	w = (struct wbuf){};
	put_bytes(&w, 1, "v\xc3\x28", 3);
	CHECK_INT(validate(STAGE, &w), -EINVAL);
	CHECK_STR(err, "volume_id: is not valid UTF-8 at byte 1");
	free(w.b);

	w = (struct wbuf){};
	put_str(&w, 1, "vol-1");
	put_entry(&w, 6, "csi.storage.k8s.io/pod.name\x7f", "p");
	CHECK_INT(validate(STAGE, &w), -EINVAL);
	CHECK_STR(err, "volume_context key \"csi.storage.k8s.io/pod.name\\x7f\": contains the control character U+007F at byte 27");
	free(w.b);

	w = (struct wbuf){};
	put_str(&w, 1, "vol-1");
	put_entry(&w, 2, "k", "v\x1b");
	CHECK_INT(validate(STAGE, &w), -EINVAL);
	CHECK_STR(err, "publish_context[\"k\"] value: contains the control character U+001B at byte 1");
	free(w.b);
}

TEST(validate_repeated_limits)
{
	const char *flags[65];
	struct wbuf w = {};

	for (size_t i = 0; i < ELEMENTSOF(flags); i++)
		flags[i] = "ro";
	put_str(&w, 1, "vol-1");
	put_mount_cap(&w, 5, flags, 64);
	CHECK_INT(validate(PUBLISH, &w), 0);
	free(w.b);
	w = (struct wbuf){};
	put_mount_cap(&w, 5, flags, 65);
	CHECK_INT(validate(PUBLISH, &w), -EINVAL);
	CHECK_STR(err, "volume_capability.mount.mount_flags: more than 64 entries");
	free(w.b);

	w = create_req("c", 1);
	for (int i = 0; i < 16; i++)
		put_mount_cap(&w, 3, NULL, 0);
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "volume_capabilities: more than 16 entries");
	free(w.b);

	w = create_req("c", 1);
	put_mount_cap(&w, 3, flags, 1);
	{
		static const char *const bad[] = { "ok", "ok", "x\xe2\x82" };
		put_mount_cap(&w, 3, bad, 3);
	}
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "volume_capabilities[2].mount.mount_flags[2]: is not valid UTF-8 at byte 1");
	free(w.b);
}

TEST(validate_paths)
{
	char path[5000];
	struct wbuf w = {};

	memset(path, 'p', sizeof(path));
	path[0] = '/';
	put_str(&w, 1, "vol-1");
	put_bytes(&w, 2, path, 4095);
	CHECK_INT(validate(UNPUBLISH, &w), 0);
	free(w.b);
	w = (struct wbuf){};
	put_str(&w, 1, "vol-1");
	put_bytes(&w, 2, path, 4096);
	CHECK_INT(validate(UNPUBLISH, &w), -EINVAL);
	CHECK_STR(err, "target_path: 4096 bytes, more than the limit of 4095");
	free(w.b);

	w = (struct wbuf){};
	put_bytes(&w, 1, path, 129);
	CHECK_INT(validate(UNPUBLISH, &w), -EINVAL);
	CHECK_STR(err, "volume_id: 129 bytes, more than the limit of 128");
	free(w.b);
}

TEST(validate_nested_topology)
{
	struct wbuf w = create_req("t", 1), req = {}, topo = {};

	put_entry(&topo, 1, "pmem-csi.intel.com/node", "node-1");
	put_sub(&req, 1, &topo);
	put_entry(&topo, 1, "pmem-csi.intel.com/node", "node\xc0\x80");
	put_sub(&req, 1, &topo);
	put_sub(&w, 7, &req);
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "accessibility_requirements.requisite[1].segments[\"pmem-csi.intel.com/node\"] value: is not valid UTF-8 at byte 4");
	free(w.b);

	/* VolumeContentSource, a oneof of messages. */
	w = create_req("t", 1);
	{
		struct wbuf src = {}, vol = {};
		put_bytes(&vol, 1, "id\0", 3);
		put_sub(&src, 2, &vol);
		put_sub(&w, 6, &src);
	}
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "volume_content_source.volume.volume_id: contains a NUL byte at byte 2");
	free(w.b);
}

TEST(validate_duplicates)
{
	struct wbuf w = create_req("first", 5);

	/* protobuf-c keeps the last one: the check must not see one name and the handler another. */
	put_str(&w, 1, "second");
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "name: given more than once");
	free(w.b);

	w = (struct wbuf){};
	put_str(&w, 1, "v");
	put_mount_cap(&w, 4, NULL, 0);
	put_mount_cap(&w, 4, NULL, 0);
	CHECK_INT(validate(STAGE, &w), -EINVAL);
	CHECK_STR(err, "volume_capability: given more than once");
	free(w.b);

	/* A map entry with two keys. */
	w = create_req("d", 1);
	{
		struct wbuf e = {};
		put_str(&e, 1, "a");
		put_str(&e, 1, "b");
		put_str(&e, 2, "v");
		put_sub(&w, 4, &e);
	}
	CHECK_INT(validate(CREATE, &w), -EINVAL);
	CHECK_STR(err, "parameters: the entry with key \"b\" has its key more than once");
	free(w.b);
}

TEST(validate_unknown_fields_and_numbers)
{
	struct wbuf w = create_req("u", 1);
	ProtobufCMessage *m;

	/* Unknown fields of every wire type are skipped, whatever they hold. */
	put_bytes(&w, 99, "x\0\xff", 3);
	put_varint(&w, 100 << 3 | 0);
	put_varint(&w, UINT64_MAX);
	put_varint(&w, 101 << 3 | 1);
	put_raw(&w, "12345678", 8);
	put_varint(&w, 102 << 3 | 5);
	put_raw(&w, "1234", 4);
	/* capacity_range with numbers */
	{
		struct wbuf cr = {};
		put_varint(&cr, 1 << 3 | 0);
		put_varint(&cr, 1 << 30);
		put_sub(&w, 2, &cr);
	}
	CHECK_INT(validate(CREATE, &w), 0);
	m = protobuf_c_message_unpack(CREATE, NULL, w.n, w.b);
	CHECK(m);
	protobuf_c_message_free_unpacked(m, NULL);
	free(w.b);
}

TEST(validate_malformed)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
		{ "\x0a\x05" "abc", 5 },		  /* length beyond the end */
		{ "\x0a", 1 },				  /* length missing */
		{ "\x00\x01", 2 },			  /* field number 0 */
		{ "\x0b\x0c", 2 },			  /* start group */
		{ "\x0e\x00", 2 },			  /* wire type 6 */
		{ "\x08\x01", 2 },			  /* name as a varint */
		{ "\x0a\x80\x80\x80\x80\x80\x01", 7 },	  /* 6-byte length */
		{ "\xf8\xff\xff\xff\xff\x01", 6 },	  /* 6-byte tag */
		{ "\x1a\x03\x12\x05\x0a", 5 },		  /* capability: mount's length beyond its parent */
		{ "\x22\x04\x0a\x05\x61\x62", 6 },	  /* map entry: key beyond the entry */
		{ "\x22\x02\x08\x01", 4 },		  /* map entry: key as a varint */
		{ "\x29\x01\x02\x03", 4 },		  /* fixed64 cut */
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int r = csi_validate_request(CREATE, (const uint8_t *)bad[i].bytes, bad[i].len, err, sizeof(err));
		if (r != -EBADMSG)
			fprintf(stderr, "  malformed input %zu: %d (%s)\n", i, r, err);
		CHECK_INT(r, -EBADMSG);
	}
	/* Empty is a valid message (all fields default). */
	CHECK_INT(csi_validate_request(CREATE, NULL, 0, err, sizeof(err)), 0);
}

TEST(validate_error_is_cut_safely)
{
	struct wbuf w = create_req("a\0b", 3);
	char small[8];

	memset(small, 'x', sizeof(small));
	CHECK_INT(csi_validate_request(CREATE, w.b, w.n, small, sizeof(small)), -EINVAL);
	CHECK_STR(small, "name: c");
	CHECK_INT(csi_validate_request(CREATE, w.b, w.n, NULL, 0), -EINVAL);
	free(w.b);
}

TEST(validate_text)
{
	size_t off = 99;
	const char *what = NULL;

	CHECK_INT(csi_validate_text((const uint8_t *)"ok", 2, &off, &what), 0);
	CHECK_INT(off, 99);
	CHECK_INT(csi_validate_text((const uint8_t *)"o\0k", 3, &off, &what), -EINVAL);
	CHECK_INT(off, 1);
	CHECK_STR(what, "contains a NUL byte");
	CHECK_INT(csi_validate_text((const uint8_t *)"\xef\xbf\xbf", 3, &off, &what), 0); /* U+FFFF */
	CHECK_INT(csi_validate_text((const uint8_t *)"\xc2\xa0\xc2\x9f", 4, &off, &what), -EINVAL);
	CHECK_INT(off, 2);
	CHECK_STR(what, "contains a control character");
}
