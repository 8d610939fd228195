/* SPDX-License-Identifier: Apache-2.0 */
#include "test.h"

int test_failures;

extern const struct test_case __start_test_cases[], __stop_test_cases[];

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;

	for (const struct test_case *t = __start_test_cases; t < __stop_test_cases; t++) {
		int before = test_failures;
		if (argc > 1 && !strstr(t->name, argv[1]))
			continue;
		t->fn();
		if (test_failures == before) {
			printf("ok - %s\n", t->name);
			passed++;
		} else {
			printf("FAIL - %s\n", t->name);
			failed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
