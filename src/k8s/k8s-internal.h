/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Where and how to reach the API server (from a kubeconfig or the pod's service account). */
struct k8s_config {
	char *server;          /* https://host:port */
	char *ca_file;         /* PEM file, or */
	char *ca_data;         /* PEM in memory */
	size_t ca_len;
	bool insecure;         /* insecure-skip-tls-verify */
	char *token;           /* bearer token, or */
	char *token_file;      /* re-read when it changes (rotation) */
	char *cert_file, *key_file;
	char *cert_data, *key_data;
	size_t cert_len, key_len;
};

void k8s_config_done(struct k8s_config *c);
int k8s_config_from_kubeconfig(const char *path, struct k8s_config *ret, char **ret_err);
