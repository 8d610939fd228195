/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The corpus runner: replays a fuzz target's saved corpus without libFuzzer,
 * so that the inputs fuzzing found (and the crashes it found, once fixed) run
 * as an ordinary test in every build, with gcc as well as clang, and under
 * ASan or valgrind when the build has them.
 *
 *     fuzz-state test/fuzz/corpus/state        every file in the directory
 *     fuzz-state crash-0123abcd                one input (a reproducer)
 *
 * Each input runs in a child process, so that one that crashes the target (a
 * failed FUZZ_CHECK() aborts, ASan and UBSan exit) or leaks (LeakSanitizer
 * checks at exit) is named in a FAIL line, and the other inputs still run.
 *
 * Each argument (a corpus directory, or one input) is ONE test in the summary
 * line "N passed, N failed" that scripts/test.sh adds up: a corpus is a test
 * of the target, not 228 tests, and a corpus that grows must not inflate the
 * suite's count. "fuzz-state: corpus/state: ran N inputs, N failed" says how
 * much each test covered.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

/* libFuzzer's default -max_len is 4 KiB; nothing in a corpus comes near this. */
#define INPUT_MAX (16u * 1024 * 1024)

static const char *prog;
/* Inputs run and failed within the current argument. */
static unsigned ran, failed;

static int read_input(const char *path, uint8_t **ret, size_t *ret_size)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_size < 0 || (unsigned long long)st.st_size > INPUT_MAX) {
		close(fd);
		return -EFBIG;
	}
	/* Exactly the input's size (at least one byte for malloc), so that ASan
	 * sees a read past the end as one. */
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;
			free(buf);
			close(fd);
			return r;
		}
		done += (size_t)n;
	}
	close(fd);
	*ret = buf;
	*ret_size = done;
	return 0;
}

/* The child: read and run one input, exit 0 unless that fails. */
static _Noreturn void run_input(const char *path)
{
	uint8_t *data = NULL;
	size_t size = 0;
	int r;

	r = read_input(path, &data, &size);
	if (r < 0) {
		fprintf(stderr, "%s: cannot read %s: %s\n", prog, path, strerror(-r));
		exit(EXIT_FAILURE);
	}
	LLVMFuzzerTestOneInput(data, size);
	free(data);
	exit(EXIT_SUCCESS); /* exit(), not _exit(): LeakSanitizer checks now */
}

static void run_file(const char *path)
{
	pid_t pid;
	int status;

	ran++;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "%s: fork: %s\n", prog, strerror(errno));
		failed++;
		return;
	}
	if (pid == 0)
		run_input(path);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			fprintf(stderr, "%s: waitpid: %s\n", prog, strerror(errno));
			failed++;
			return;
		}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	failed++;
	if (WIFSIGNALED(status))
		printf("FAIL - %s: input %s: killed by signal %d (%s)\n", prog, path, WTERMSIG(status),
		       strsignal(WTERMSIG(status)));
	else
		printf("FAIL - %s: input %s: exit status %d\n", prog, path, WEXITSTATUS(status));
}

static int skip_hidden(const struct dirent *de)
{
	return de->d_name[0] != '.';
}

static void run_path(const char *path)
{
	struct dirent **names;
	struct stat st;
	int n;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		failed++;
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		run_file(path);
		return;
	}
	/* Sorted, for the same output on every run. */
	n = scandir(path, &names, skip_hidden, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: cannot list %s: %s\n", prog, path, strerror(errno));
		failed++;
		return;
	}
	if (n == 0) {
		fprintf(stderr, "%s: %s is empty: a corpus has at least its seed inputs\n", prog, path);
		failed++;
	}
	for (int i = 0; i < n; i++) {
		char file[PATH_MAX];
		if ((size_t)snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name) < sizeof(file) &&
		    stat(file, &st) == 0 && S_ISREG(st.st_mode))
			run_file(file);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	const char *slash = strrchr(argv[0], '/');
	unsigned tests_passed = 0, tests_failed = 0;

	prog = slash ? slash + 1 : argv[0];
	if (argc < 2) {
		fprintf(stderr, "Usage: %s CORPUS_DIR|INPUT_FILE...\n", prog);
		printf("0 passed, 1 failed\n");
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		ran = failed = 0;
		run_path(argv[i]);
		printf("%s: %s: ran %u inputs, %u failed\n", prog, argv[i], ran, failed);
		if (failed)
			tests_failed++;
		else
			tests_passed++;
	}
	printf("%u passed, %u failed\n", tests_passed, tests_failed);
	return tests_failed ? 1 : 0;
}
