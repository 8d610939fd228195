/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

/*
 * The objects of one PmemCSIDeployment: deploy/generated/pmem-csi-lvm.yaml (embedded at
 * build time as JSON) patched for the CR, as the 1.x operator patched its kustomize
 * output. Pure functions: no I/O, so the unit tests cover them.
 */

struct jv;

/* The embedded objects of deploy/generated/pmem-csi-lvm.yaml, as a JSON array. */
extern const char operator_manifest_json[];

/** struct operator_ctx - what the rendering needs besides the CR. */
struct operator_ctx {
	const char *namespace;     /* the operator's namespace: namespaced objects go there */
	const char *default_image; /* driver image when spec.image is empty; NULL keeps the manifest's */
	/* Sidecar images when spec.provisionerImage / spec.nodeRegistrarImage are empty
	 * (sidecars.h, by the cluster's version); NULL keeps the manifest's. */
	const char *provisioner_image;
	const char *registrar_image;
};

/**
 * operator_render() - the objects for cr (a PmemCSIDeployment as the API server returns
 * it, defaults applied by the CRD schema) as a new JSON array. The Namespace object of
 * the manifest is left out (the operator's namespace exists). Every object gets an
 * ownerReference to the CR when it has a uid. -EINVAL with ret_err naming the field
 * when the CR cannot be rendered.
 */
int operator_render(const struct jv *tmpl, const struct jv *cr, const struct operator_ctx *ctx,
		    struct jv **ret, char **ret_err);

/** operator_object_path() - the API path of obj ("/apis/apps/v1/namespaces/ns/daemonsets/x"); caller frees. */
char *operator_object_path(const struct jv *obj);
