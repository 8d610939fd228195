/* SPDX-License-Identifier: Apache-2.0 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"

extern char **environ;

#define EXEC_OUTPUT_LIMIT (8u * 1024 * 1024)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *exec_argv_to_string(const char *const *argv)
{
	struct strbuf b = STRBUF_INIT;

	for (size_t i = 0; argv[i]; i++) {
		if (i)
			strbuf_append_char(&b, ' ');
		strbuf_append_str(&b, argv[i]);
	}
	return strbuf_steal(&b);
}

void exec_result_done(struct exec_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

static void drain(int *fd, struct strbuf *b)
{
	char buf[16384];
	ssize_t n = read(*fd, buf, sizeof(buf));

	if (n > 0) {
		/* Keep reading past the limit so the child never blocks, but drop the excess. */
		if (strbuf_len(b) + (size_t)n <= EXEC_OUTPUT_LIMIT)
			strbuf_append(b, buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	close(*fd);
	*fd = -1;
}

int exec_run(const char *const *argv, int timeout_ms, struct exec_result *ret)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	struct strbuf out = STRBUF_INIT, err = STRBUF_INIT;
	pid_t pid;
	int r, status = 0;
	double start = now_s(), deadline;
	bool killed = false;

	if (timeout_ms <= 0)
		timeout_ms = 10 * 60 * 1000;
	deadline = start + timeout_ms / 1000.0;

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail_pipes;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, errp[1], STDERR_FILENO);
	posix_spawnattr_init(&attr);
	/* The daemon blocks SIGTERM/SIGINT in all threads; children must not inherit that. */
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	{
		sigset_t def;
		sigemptyset(&def);
		sigaddset(&def, SIGPIPE);
		sigaddset(&def, SIGTERM);
		sigaddset(&def, SIGINT);
		posix_spawnattr_setsigdefault(&attr, &def);
	}
	r = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(outp[1]);
	close(errp[1]);
	outp[1] = errp[1] = -1;
	if (r != 0) {
		r = -r;
		goto fail_pipes;
	}

	while (outp[0] >= 0 || errp[0] >= 0) {
		struct pollfd pfd[2] = { { outp[0], POLLIN, 0 }, { errp[0], POLLIN, 0 } };
		double left = deadline - now_s();
		int n;

		if (left <= 0 && !killed) {
			kill(pid, SIGKILL);
			killed = true;
		}
		n = poll(pfd, 2, killed ? 1000 : (int)(left * 1000) + 1);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (pfd[0].revents)
			drain(&outp[0], &out);
		if (pfd[1].revents)
			drain(&errp[0], &err);
	}
	closep(&outp[0]);
	closep(&errp[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = 255 << 8;
			break;
		}
	}
	memset(ret, 0, sizeof(*ret));
	ret->seconds = now_s() - start;
	ret->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (killed) {
		strbuf_appendf(&err, "\nkilled after timeout of %d ms", timeout_ms);
		ret->status = 124;
	}
	ret->out = strbuf_steal(&out);
	ret->err = strbuf_steal(&err);
	if (!ret->out || !ret->err) {
		exec_result_done(ret);
		return -ENOMEM;
	}
	return 0;

fail_pipes:
	for (int i = 0; i < 2; i++) {
		closep(&outp[i]);
		closep(&errp[i]);
	}
	return r;
}

static char *last_line(const char *s)
{
	const char *end = s + strlen(s), *start;

	while (end > s && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	start = end;
	while (start > s && start[-1] != '\n')
		start--;
	return strndup(start, (size_t)(end - start));
}

int exec_check(const char *const *argv, int timeout_ms, char **ret_out, char **ret_err)
{
	struct exec_result res = {};
	_cleanup_free_ char *cmd = exec_argv_to_string(argv);
	int r;

	r = exec_run(argv, timeout_ms, &res);
	if (r < 0)
		return log_debug_errno(r, "Failed to start '%s': %m", cmd ? cmd : argv[0]);
	log_v(6, "exec '%s': status %d in %.3fs", cmd ? cmd : argv[0], res.status, res.seconds);
	if (res.status != 0) {
		log_v(4, "'%s' failed with status %d: %s", cmd ? cmd : argv[0], res.status, res.err);
		if (ret_err)
			*ret_err = last_line(*res.err ? res.err : res.out);
		exec_result_done(&res);
		return -EIO;
	}
	if (ret_out)
		*ret_out = TAKE_PTR(res.out);
	exec_result_done(&res);
	return 0;
}
