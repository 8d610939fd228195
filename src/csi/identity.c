/* SPDX-License-Identifier: Apache-2.0 */
/* Identity service: always answered inline, even while PMEM is being set up. */
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

int csi_identity_get_plugin_capabilities(struct csi_call *c, void *ud _unused_,
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
