/* SPDX-License-Identifier: Apache-2.0 */
/* Identity service: always answered inline, even while PMEM is being set up. */
#include <string.h>

#include "caps.h"
#include "csi.pb-c.h"
#include "driver.h"

int csi_identity_get_plugin_info(struct csi_call *c, void *ud, const ProtobufCMessage *req _unused_,
				 ProtobufCMessage **ret)
{
	struct csi_driver *d = ud;
	Csi__V1__GetPluginInfoResponse *resp =
		CSI_NEW(c, Csi__V1__GetPluginInfoResponse, csi__v1__get_plugin_info_response__init);

	if (!resp)
		return csi_oom(c);
	resp->name = (char *)csi_driver_cfg(d)->name;
	resp->vendor_version = (char *)csi_driver_cfg(d)->version;
	*ret = &resp->base;
	return 0;
}

int csi_identity_get_plugin_capabilities(struct csi_call *c, void *ud,
					 const ProtobufCMessage *req _unused_, ProtobufCMessage **ret)
{
	static const Csi__V1__PluginCapability__Service__Type types[] = {
		CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE,
		CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__VOLUME_ACCESSIBILITY_CONSTRAINTS,
	};
	Csi__V1__GetPluginCapabilitiesResponse *resp =
		CSI_NEW(c, Csi__V1__GetPluginCapabilitiesResponse, csi__v1__get_plugin_capabilities_response__init);
	Csi__V1__PluginCapability **caps = CSI_NEW_ARRAY(c, Csi__V1__PluginCapability *, ELEMENTSOF(types));

	if (!resp || !caps)
		return csi_oom(c);
	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		Csi__V1__PluginCapability *cap =
			CSI_NEW(c, Csi__V1__PluginCapability, csi__v1__plugin_capability__init);
		Csi__V1__PluginCapability__Service *svc =
			CSI_NEW(c, Csi__V1__PluginCapability__Service, csi__v1__plugin_capability__service__init);
		if (!cap || !svc)
			return csi_oom(c);
		svc->type = types[i];
		cap->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE;
		cap->service = svc;
		caps[i] = cap;
	}
	resp->n_capabilities = ELEMENTSOF(types);
	resp->capabilities = caps;
	if (csi_expansion_supported(ud)) {
		/* Online: LVs and filesystems grow while mounted (controller.c, node_expand.c). */
		Csi__V1__PluginCapability **all = CSI_NEW_ARRAY(c, Csi__V1__PluginCapability *, ELEMENTSOF(types) + 1);
		Csi__V1__PluginCapability *cap = CSI_NEW(c, Csi__V1__PluginCapability, csi__v1__plugin_capability__init);
		Csi__V1__PluginCapability__VolumeExpansion *ve =
			CSI_NEW(c, Csi__V1__PluginCapability__VolumeExpansion,
				csi__v1__plugin_capability__volume_expansion__init);
		if (!all || !cap || !ve)
			return csi_oom(c);
		ve->type = CSI__V1__PLUGIN_CAPABILITY__VOLUME_EXPANSION__TYPE__ONLINE;
		cap->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_VOLUME_EXPANSION;
		cap->volume_expansion = ve;
		memcpy(all, caps, ELEMENTSOF(types) * sizeof(*all));
		all[ELEMENTSOF(types)] = cap;
		resp->capabilities = all;
		resp->n_capabilities = ELEMENTSOF(types) + 1;
	}
	*ret = &resp->base;
	return 0;
}

int csi_identity_probe(struct csi_call *c, void *ud, const ProtobufCMessage *req _unused_,
		       ProtobufCMessage **ret)
{
	struct csi_driver *d = ud;
	Csi__V1__ProbeResponse *resp = CSI_NEW(c, Csi__V1__ProbeResponse, csi__v1__probe_response__init);
	Google__Protobuf__BoolValue *ready =
		CSI_NEW(c, Google__Protobuf__BoolValue, google__protobuf__bool_value__init);

	if (!resp || !ready)
		return csi_oom(c);
	/* ready=false while device setup runs: the CO waits instead of failing calls. */
	ready->value = csi_driver_ready(d);
	resp->ready = ready;
	*ret = &resp->base;
	return 0;
}
