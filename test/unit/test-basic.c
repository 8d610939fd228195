/* SPDX-License-Identifier: Apache-2.0 */
/* basic/: parsing, SHA-224, arena, keylock, strbuf, atomic files. */
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/arena.h"
#include "basic/base64.h"
#include "basic/fileio.h"
#include "basic/keylock.h"
#include "basic/macro.h"
#include "basic/sha224.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "test.h"

static const char *hex224(const char *s, size_t len, char out[57])
{
	uint8_t d[SHA224_DIGEST_SIZE];

	sha224(s, len, d);
	hexlify(d, sizeof(d), out);
	return out;
}

TEST(sha224_vectors)
{
	char h[57], buf[1000];

	/* FIPS 180-4 examples, and lengths around the padding boundaries (checked with Python's hashlib). */
	CHECK_STR(hex224("abc", 3, h), "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7");
	CHECK_STR(hex224("", 0, h), "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f");
	memset(buf, 'x', sizeof(buf));
	CHECK_STR(hex224(buf, 55, h), "2791c7d25712eb5be75c30b2d45f6fce96e5a50ee64cf373056704a3");
	CHECK_STR(hex224(buf, 56, h), "82199913c2712c46707ad08c8bfa2a69f68e9092dc5cdfaaaf07d77f");
	CHECK_STR(hex224(buf, 64, h), "08c3050e95fe11eacb9dc7824bf6a92bcf2d59c21701321fba0e62c5");
	memset(buf, 'a', sizeof(buf));
	CHECK_STR(hex224(buf, 1000, h), "4e8f0ce90b64661a2b5e84be6d93a7d9b76871062f1814433d04a03d");
}

TEST(parse_quantity)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ ".", 0 },
		{ "Gi", 0 }, /* no digits: zero, as apimachinery parses it */
		{ "1", 1 },
		{ "1Gi", 1ULL << 30 },
		{ "1e9", 1000000000ULL },
		{ "1E9", 1000000000ULL },
		{ "500M", 500000000ULL },
		{ "1.5Gi", 3ULL << 29 },
		{ "100Mi", 100ULL << 20 },
		{ "1k", 1000 },
		{ "2Ki", 2048 },
		{ "0.5", 1 }, /* rounded up */
		{ "1.001k", 1001 },
		{ "+3", 3 },
		{ "8Ei", 9223372036854775807ULL }, /* capped as apimachinery caps */
		{ "20Ei", 9223372036854775807ULL },
		{ "1m", 1 },
		{ ".", 0 },
		{ "Gi", 0 }, /* no digits: zero, as apimachinery parses it */
		{ "1E", 1000000000000000000ULL }, /* exa suffix, not an exponent */
	};
	static const char *const bad[] = { "", "-1", "1Gb", "abc", "1.2.3", "1 Gi", "1e", "1e999", "10E" };
	uint64_t v;

	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		v = 12345;
		CHECK_INT(parse_quantity(good[i].s, &v), 0);
		if (v != good[i].v)
			fprintf(stderr, "  quantity %s -> %" PRIu64 "\n", good[i].s, v);
		CHECK(v == good[i].v);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		v = 12345;
		if (parse_quantity(bad[i], &v) >= 0)
			fprintf(stderr, "  quantity \"%s\" accepted as %" PRIu64 "\n", bad[i], v);
		CHECK(v == 12345);
	}
}

TEST(parse_bool_and_ints)
{
	bool b = false;
	int i = 0;
	uint64_t u = 0;

	CHECK_INT(parse_bool("true", &b), 0);
	CHECK(b);
	CHECK_INT(parse_bool("False", &b), 0);
	CHECK(!b);
	CHECK(parse_bool("yes", &b) < 0); /* Go's strconv.ParseBool */
	CHECK(parse_bool("tRUE", &b) < 0);
	CHECK(parse_bool("maybe", &b) < 0);
	CHECK(parse_bool("", &b) < 0);
	CHECK_INT(safe_atoi("42", &i), 0);
	CHECK_INT(i, 42);
	CHECK(safe_atoi("42x", &i) < 0);
	CHECK(safe_atoi("99999999999", &i) < 0);
	CHECK_INT(i, 42);
	CHECK(safe_atou64("-1", &u) < 0);
	CHECK(safe_atou64("18446744073709551616", &u) < 0);
	CHECK_INT(safe_atou64("18446744073709551615", &u), 0);
	CHECK(u == UINT64_MAX);
}

TEST(round_up)
{
	CHECK(round_up_u64(0, 4 * MiB) == 0);
	CHECK(round_up_u64(1, 4 * MiB) == 4 * MiB);
	CHECK(round_up_u64(4 * MiB, 4 * MiB) == 4 * MiB);
	CHECK(round_up_u64(4 * MiB + 1, 4 * MiB) == 8 * MiB);
	CHECK(round_up_u64(UINT64_MAX - 5, 4 * MiB) == 0); /* overflow reported as 0 */
}

TEST(strbuf_json_escape_and_limit)
{
	struct strbuf b = STRBUF_INIT;
	struct strbuf small = { NULL, 0, 0, 8, false };

	strbuf_append_json_string(&b, "a\"b\\c\n\x01");
	CHECK_STR(strbuf_str(&b), "\"a\\\"b\\\\c\\n\\u0001\"");
	strbuf_free(&b);
	strbuf_append_str(&small, "12345");
	CHECK(!strbuf_failed(&small));
	strbuf_append_str(&small, "6789");
	CHECK(strbuf_failed(&small));
	CHECK(strbuf_steal(&small) == NULL);
}

TEST(arena_limits)
{
	struct arena *a = arena_new(8192);
	char *s;

	CHECK(a != NULL);
	s = arena_strdup(a, "hello");
	CHECK_STR(s, "hello");
	CHECK(arena_alloc(a, 100) != NULL);
	CHECK(arena_alloc(a, 100000) == NULL); /* over the limit */
	arena_free(a);
}

static struct keylock *kl;
static int counter, max_inside, inside;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;

static void *locker(void *arg)
{
	for (int i = 0; i < 200; i++) {
		keylock_lock(kl, (const char *)arg);
		pthread_mutex_lock(&cm);
		inside++;
		if (inside > max_inside)
			max_inside = inside;
		pthread_mutex_unlock(&cm);
		counter++;
		usleep(10);
		pthread_mutex_lock(&cm);
		inside--;
		pthread_mutex_unlock(&cm);
		keylock_unlock(kl, (const char *)arg);
	}
	return NULL;
}

TEST(keylock_serializes_one_key)
{
	pthread_t t[4];

	kl = keylock_new();
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, locker, (void *)"vol-a");
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(counter, 800);
	CHECK_INT(max_inside, 1);
	keylock_free(kl);
}

TEST(atomic_write_and_read)
{
	char dir[] = "/tmp/pmem-csi-test-XXXXXX";
	char *buf = NULL;
	size_t len = 0;
	char path[256];
	struct stat st;

	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT(write_file_atomic(dir, "a.json", "{\"x\":1}", 7), 0);
	snprintf(path, sizeof(path), "%s/a.json", dir);
	CHECK_INT(read_file_limited(path, 100, &buf, &len), 0);
	CHECK_STR(buf, "{\"x\":1}");
	CHECK_INT(len, 7);
	free(buf);
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(read_file_limited(path, 3, &buf, &len), -EFBIG);
	/* replace */
	CHECK_INT(write_file_atomic(dir, "a.json", "{}", 2), 0);
	CHECK_INT(read_file_limited(path, 100, &buf, &len), 0);
	CHECK_STR(buf, "{}");
	free(buf);
	snprintf(path, sizeof(path), "%s/a.json.tmp", dir);
	CHECK(access(path, F_OK) < 0); /* no temp file left */
	CHECK_INT(unlink_durable(dir, "a.json"), 0);
	CHECK_INT(unlink_durable(dir, "a.json"), 0); /* already gone: fine */
	CHECK_INT(rmdir(dir), 0);
}

TEST(base64_decode)
{
	static const struct {
		const char *in, *out;
	} ok[] = { { "", "" }, { "QQ==", "A" }, { "QUI=", "AB" }, { "QUJD", "ABC" }, { "QUJDRA==", "ABCD" },
		   { "QUJD\nRA", "ABCD" }, { "aGVsbG8gd29ybGQ=", "hello world" } };
	static const char *const bad[] = { "Q", "QQ=A", "Q===", "QU*D", "QUJDR" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *out = NULL;
		size_t len = 0;
		CHECK_INT(base64_decode(ok[i].in, strlen(ok[i].in), &out, &len), 0);
		CHECK(out && len == strlen(ok[i].out) && memcmp(out, ok[i].out, len) == 0);
		free(out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *out = NULL;
		size_t len = 0;
		CHECK_INT(base64_decode(bad[i], strlen(bad[i]), &out, &len), -EINVAL);
	}
}
