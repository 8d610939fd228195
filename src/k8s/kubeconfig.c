/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubeconfig files (the libyaml adapter: the only file that includes yaml.h).
 * Reads the current context's cluster and user: server, CA, token or client
 * certificate, as files or inline base64 "-data". Credential plugins (exec,
 * auth-provider) are not supported: the driver runs in-cluster in production
 * and a kubeconfig is for development and tests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "basic/base64.h"
#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "k8s-internal.h"

#define KUBECONFIG_MAX (4 * 1024 * 1024)

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static const char *scalar(yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The entry named name in a list like "clusters:", and its inner object (key kind). */
static yaml_node_t *named(yaml_document_t *doc, yaml_node_t *root, const char *list, const char *kind,
			  const char *name)
{
	yaml_node_t *l = map_get(doc, root, list);

	if (!l || l->type != YAML_SEQUENCE_NODE || !name)
		return NULL;
	for (yaml_node_item_t *i = l->data.sequence.items.start; i < l->data.sequence.items.top; i++) {
		yaml_node_t *e = yaml_document_get_node(doc, *i);
		if (streq_ptr(scalar(map_get(doc, e, "name")), name))
			return map_get(doc, e, kind);
	}
	return NULL;
}

/* A path from the kubeconfig is relative to the file's directory. */
static char *resolve(const char *dir, const char *path)
{
	if (!path)
		return NULL;
	if (path[0] == '/' || !dir)
		return strdup(path);
	return xasprintf("%s/%s", dir, path);
}

static int data_field(yaml_node_t *n, char **ret, size_t *ret_len)
{
	const char *s = scalar(n);

	if (!s)
		return 0;
	return base64_decode(s, strlen(s), ret, ret_len);
}

void k8s_config_done(struct k8s_config *c)
{
	free(c->server);
	free(c->ca_file);
	free(c->ca_data);
	free(c->token);
	free(c->token_file);
	free(c->cert_file);
	free(c->cert_data);
	free(c->key_file);
	free(c->key_data);
	*c = (struct k8s_config){};
}

int k8s_config_from_kubeconfig(const char *path, struct k8s_config *ret, char **ret_err)
{
	_cleanup_free_ char *text = NULL, *dir = NULL;
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *cluster, *user;
	const char *ctx_name, *cluster_name, *user_name;
	struct k8s_config c = {};
	size_t len;
	int r;

	r = read_file_limited(path, KUBECONFIG_MAX, &text, &len);
	if (r < 0) {
		*ret_err = xasprintf("cannot read kubeconfig %s: %s", path, strerror(-r));
		return r;
	}
	dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	if (strrchr(dir, '/'))
		*strrchr(dir, '/') = 0;
	else {
		free(dir);
		dir = NULL;
	}
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		*ret_err = xasprintf("kubeconfig %s is not valid YAML: %s (line %zu)", path,
				     parser.problem ? parser.problem : "parse error", parser.problem_mark.line + 1);
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	yaml_parser_delete(&parser);
	root = yaml_document_get_root_node(&doc);
	r = -EINVAL;
	ctx_name = scalar(map_get(&doc, root, "current-context"));
	if (!ctx_name || !*ctx_name) {
		*ret_err = xasprintf("kubeconfig %s has no current-context", path);
		goto out;
	}
	{
		yaml_node_t *ctx = named(&doc, root, "contexts", "context", ctx_name);
		cluster_name = scalar(map_get(&doc, ctx, "cluster"));
		user_name = scalar(map_get(&doc, ctx, "user"));
		if (!ctx || !cluster_name) {
			*ret_err = xasprintf("kubeconfig %s: context \"%s\" is missing or names no cluster", path,
					     ctx_name);
			goto out;
		}
	}
	cluster = named(&doc, root, "clusters", "cluster", cluster_name);
	if (!cluster || !scalar(map_get(&doc, cluster, "server"))) {
		*ret_err = xasprintf("kubeconfig %s: cluster \"%s\" is missing or has no server", path, cluster_name);
		goto out;
	}
	user = user_name ? named(&doc, root, "users", "user", user_name) : NULL;
	if (map_get(&doc, user, "exec") || map_get(&doc, user, "auth-provider")) {
		*ret_err = xasprintf("kubeconfig %s: user \"%s\" uses a credential plugin (exec/auth-provider), which "
				     "is not supported: use a token or a client certificate",
				     path, user_name);
		goto out;
	}
	r = -ENOMEM;
	c.server = strdup(scalar(map_get(&doc, cluster, "server")));
	c.insecure = streq_ptr(scalar(map_get(&doc, cluster, "insecure-skip-tls-verify")), "true");
	c.ca_file = resolve(dir, scalar(map_get(&doc, cluster, "certificate-authority")));
	c.token = scalar(map_get(&doc, user, "token")) ? strdup(scalar(map_get(&doc, user, "token"))) : NULL;
	c.token_file = resolve(dir, scalar(map_get(&doc, user, "tokenFile")));
	c.cert_file = resolve(dir, scalar(map_get(&doc, user, "client-certificate")));
	c.key_file = resolve(dir, scalar(map_get(&doc, user, "client-key")));
	if (!c.server)
		goto out;
	if (data_field(map_get(&doc, cluster, "certificate-authority-data"), &c.ca_data, &c.ca_len) < 0 ||
	    data_field(map_get(&doc, user, "client-certificate-data"), &c.cert_data, &c.cert_len) < 0 ||
	    data_field(map_get(&doc, user, "client-key-data"), &c.key_data, &c.key_len) < 0) {
		*ret_err = xasprintf("kubeconfig %s: a *-data field is not valid base64", path);
		r = -EINVAL;
		goto out;
	}
	*ret = c;
	c = (struct k8s_config){};
	r = 0;
out:
	k8s_config_done(&c);
	yaml_document_delete(&doc);
	return r;
}
