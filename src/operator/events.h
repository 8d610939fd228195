/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * core/v1 Events about a PmemCSIDeployment, as the 1.x operator's event recorder
 * wrote them: source component pmem-csi-operator, in namespace "default" (the CR is
 * cluster-scoped; client-go's recorder puts events of cluster-scoped objects there),
 * so `kubectl describe pmemcsideployment` and `kubectl get events` show them.
 */

struct jv;
struct k8s_client;

#define OPERATOR_EVENT_NEW "NewDeployment" /* Normal: first reconcile of a CR */
#define OPERATOR_EVENT_RUNNING "Running"    /* Normal: everything applied */
#define OPERATOR_EVENT_FAILED "Failed"      /* Warning: the message is the status reason */
#define OPERATOR_EVENT_SIDECARS "SidecarImages" /* Normal: sidecar images chosen, and why */

/**
 * operator_event() - record one event about cr (a PmemCSIDeployment as read from the
 * API server: name and uid are used). type is "Normal" or "Warning". Logs and returns
 * -errno when the API server refused it; an event lost is not a reconcile failure.
 */
int operator_event(struct k8s_client *c, const struct jv *cr, const char *type, const char *reason,
		   const char *message);
