/* SPDX-License-Identifier: Apache-2.0 */
/* Pure parts of k8s/: kubeconfig parsing, the rescheduler's decisions, path escaping. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json/json.h"
#include "k8s/k8s-internal.h"
#include "k8s/k8s.h"
#include "k8s/rescheduler.h"
#include "test.h"

static int streq_or_null(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/test-k8s.XXXXXX");
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	return path;
}

TEST(kubeconfig_current_context)
{
	char *p = write_tmp("apiVersion: v1\nkind: Config\n"
			    "clusters:\n- name: other\n  cluster: {server: https://wrong:1}\n"
			    "- name: c1\n  cluster:\n    server: https://10.0.0.1:6443\n"
			    "    certificate-authority-data: QUJD\n"
			    "users:\n- name: u1\n  user:\n    tokenFile: tok\n    client-key: keys/k.pem\n"
			    "contexts:\n- name: x\n  context: {cluster: c1, user: u1}\ncurrent-context: x\n");
	struct k8s_config c = {};
	char *err = NULL;

	CHECK_INT(k8s_config_from_kubeconfig(p, &c, &err), 0);
	CHECK(c.server && strcmp(c.server, "https://10.0.0.1:6443") == 0);
	CHECK(c.ca_data && c.ca_len == 3 && memcmp(c.ca_data, "ABC", 3) == 0);
	CHECK(c.token_file && strcmp(c.token_file, "/tmp/tok") == 0); /* relative to the file */
	CHECK(c.key_file && strcmp(c.key_file, "/tmp/keys/k.pem") == 0);
	CHECK(!c.token && !c.insecure);
	k8s_config_done(&c);
	free(err);
	unlink(p);
	free(p);
}

TEST(kubeconfig_errors)
{
	static const struct {
		const char *text, *word;
	} cases[] = {
		{ "clusters: []\n", "current-context" },
		{ "current-context: x\ncontexts: []\n", "context \"x\"" },
		{ "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n", "cluster \"c\"" },
		{ "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
		  "clusters:\n- name: c\n  cluster: {server: https://a}\nusers:\n- name: u\n  user:\n    exec: {command: x}\n",
		  "credential plugin" },
		{ "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n"
		  "clusters:\n- name: c\n  cluster: {server: https://a, certificate-authority-data: '!!'}\n",
		  "base64" },
		{ "a: [b\n", "not valid YAML" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = write_tmp(cases[i].text), *err = NULL;
		struct k8s_config c = {};
		CHECK(k8s_config_from_kubeconfig(p, &c, &err) < 0);
		CHECK(err && strstr(err, cases[i].word));
		if (!err || !strstr(err, cases[i].word))
			fprintf(stderr, "  case %zu: %s\n", i, err ? err : "(no message)");
		free(err);
		unlink(p);
		free(p);
	}
}

static struct jv *J(const char *s)
{
	struct jv *v = NULL;

	CHECK_INT(jv_parse(s, strlen(s), &v, NULL), 0);
	return v;
}

TEST(rescheduler_selected_node)
{
	struct jv *mine = J("{\"metadata\":{\"annotations\":{\"volume.kubernetes.io/storage-provisioner\":\"d\","
			    "\"volume.kubernetes.io/selected-node\":\"n1\"}},\"status\":{\"phase\":\"Pending\"}}");
	struct jv *beta = J("{\"metadata\":{\"annotations\":{\"volume.beta.kubernetes.io/storage-provisioner\":\"d\","
			    "\"volume.kubernetes.io/selected-node\":\"n2\"}},\"status\":{\"phase\":\"Pending\"}}");
	struct jv *bound = J("{\"metadata\":{\"annotations\":{\"volume.kubernetes.io/storage-provisioner\":\"d\","
			     "\"volume.kubernetes.io/selected-node\":\"n1\"}},\"status\":{\"phase\":\"Bound\"}}");
	struct jv *other = J("{\"metadata\":{\"annotations\":{\"volume.kubernetes.io/storage-provisioner\":\"x\","
			     "\"volume.kubernetes.io/selected-node\":\"n1\"}},\"status\":{\"phase\":\"Pending\"}}");

	CHECK(streq_or_null(k8s_pvc_selected_node(mine, "d"), "n1"));
	CHECK(streq_or_null(k8s_pvc_selected_node(beta, "d"), "n2"));
	CHECK(k8s_pvc_selected_node(bound, "d") == NULL);
	CHECK(k8s_pvc_selected_node(other, "d") == NULL);
	jv_unref(mine);
	jv_unref(beta);
	jv_unref(bound);
	jv_unref(other);
}

TEST(rescheduler_decide)
{
	const char *keys[] = { "storage" }, *values[] = { "pmem" };
	struct k8s_selector sel = { keys, values, 1 };
	struct jv *registered = J("{\"spec\":{\"drivers\":[{\"name\":\"a\"},{\"name\":\"d\"}]}}");
	struct jv *other_driver = J("{\"spec\":{\"drivers\":[{\"name\":\"a\"}]}}");
	struct jv *labelled = J("{\"metadata\":{\"labels\":{\"storage\":\"pmem\",\"x\":\"y\"}}}");
	struct jv *plain = J("{\"metadata\":{\"labels\":{\"storage\":\"ssd\"}}}");

	CHECK_INT(k8s_reschedule_decide("d", &sel, registered, plain), K8S_KEEP_RUNNING);
	CHECK_INT(k8s_reschedule_decide("d", &sel, other_driver, labelled), K8S_KEEP_EXPECTED);
	CHECK_INT(k8s_reschedule_decide("d", &sel, NULL, labelled), K8S_KEEP_EXPECTED);
	CHECK_INT(k8s_reschedule_decide("d", &sel, other_driver, plain), K8S_RESCHEDULE_NO_LABELS);
	CHECK_INT(k8s_reschedule_decide("d", &sel, NULL, NULL), K8S_RESCHEDULE_NO_NODE);
	jv_unref(registered);
	jv_unref(other_driver);
	jv_unref(labelled);
	jv_unref(plain);
}

TEST(path_escape)
{
	char *a = k8s_path_escape("node-1.example_x~"), *b = k8s_path_escape("a/b c?"), *c = k8s_path_escape("");

	CHECK(a && strcmp(a, "node-1.example_x~") == 0);
	CHECK(b && strcmp(b, "a%2Fb%20c%3F") == 0);
	CHECK(c && strcmp(c, "") == 0);
	free(a);
	free(b);
	free(c);
}
