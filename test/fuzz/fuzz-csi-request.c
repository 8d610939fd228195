/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSI requests: the input is unpacked as the request message of every method
 * in the driver's gRPC method table, as transport.c does, and each message
 * that unpacks goes to the real handler. The driver has a state directory but
 * no device manager (csi_driver_attach() is never called), so a handler stops
 * with UNAVAILABLE at csi_check_ready() once it has validated its arguments:
 * what is fuzzed is the argument validation (names, IDs, paths, capabilities,
 * capacity ranges, parameters, volume contexts), which runs before that check.
 * Nothing touches a device or the file system.
 *
 * Checked, per call: no crash or leak; a failed call says why (a status other
 * than OK, among the 17 gRPC codes, with a message); a successful one has a
 * response that packs and unpacks as transport.c would send it; and only the
 * methods that need no device (Identity, the capabilities, NodeGetInfo)
 * succeed while the driver is not ready.
 */
#include <errno.h>

#include "basic/arena.h"
#include "csi.pb-c.h"
#include "csi/driver.h"
#include "fuzz.h"

#define ARENA_LIMIT (16u * 1024 * 1024) /* RESPONSE_ARENA_LIMIT in transport.c */
/* Never created: only an attached driver uses its state directory. */
#define STATE_DIR "/tmp/pmem-csi-fuzz-state.never-created"

static struct csi_driver *driver;

static bool works_without_device(const char *method)
{
	static const char *const names[] = {
		"GetPluginInfo",	     "GetPluginCapabilities", "Probe",
		"ControllerGetCapabilities", "NodeGetCapabilities",   "NodeGetInfo",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(method, names[i]) == 0)
			return true;
	return false;
}

static void check_response(const ProtobufCMessage *resp, const ProtobufCMessageDescriptor *want)
{
	ProtobufCMessage *back;
	uint8_t *buf;
	size_t len;

	FUZZ_CHECK(resp->descriptor == want);
	len = protobuf_c_message_get_packed_size(resp);
	buf = malloc(len ? len : 1);
	if (!buf)
		return;
	FUZZ_CHECK(protobuf_c_message_pack(resp, buf) == len);
	back = protobuf_c_message_unpack(want, NULL, len, buf);
	FUZZ_CHECK(back);
	protobuf_c_message_free_unpacked(back, NULL);
	free(buf);
}

/* The response type of a request: "csi.v1.ProbeRequest" -> "csi.v1.ProbeResponse". */
static const ProtobufCMessageDescriptor *response_descriptor(const ProtobufCMessageDescriptor *req)
{
	static const ProtobufCMessageDescriptor *const all[] = {
		&csi__v1__get_plugin_info_response__descriptor,
		&csi__v1__get_plugin_capabilities_response__descriptor,
		&csi__v1__probe_response__descriptor,
		&csi__v1__controller_get_capabilities_response__descriptor,
		&csi__v1__node_get_capabilities_response__descriptor,
		&csi__v1__node_get_info_response__descriptor,
		&csi__v1__create_volume_response__descriptor,
		&csi__v1__delete_volume_response__descriptor,
		&csi__v1__validate_volume_capabilities_response__descriptor,
		&csi__v1__list_volumes_response__descriptor,
		&csi__v1__get_capacity_response__descriptor,
		&csi__v1__node_stage_volume_response__descriptor,
		&csi__v1__node_unstage_volume_response__descriptor,
		&csi__v1__node_publish_volume_response__descriptor,
		&csi__v1__node_unpublish_volume_response__descriptor,
	};
	size_t len = strlen(req->name);

	FUZZ_CHECK(len > 7 && strcmp(req->name + len - 7, "Request") == 0);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strncmp(all[i]->name, req->name, len - 7) == 0 &&
		    strcmp(all[i]->name + len - 7, "Response") == 0)
			return all[i];
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct csi_method *methods;
	size_t n_methods;

	if (size > 64 * 1024)
		return 0;
	if (!driver) {
		const struct csi_driver_config cfg = {
			.name = "pmem-csi.intel.com",
			.version = "fuzz",
			.node_id = "fuzz-node",
			.state_dir = STATE_DIR,
		};
		/* Kept for the whole process, as in the driver. */
		if (csi_driver_new(&cfg, &driver) < 0)
			return 0;
	}
	methods = csi_driver_methods(&n_methods);
	for (size_t i = 0; i < n_methods; i++) {
		const struct csi_method *m = &methods[i];
		const char *slash = strrchr(m->path, '/');
		ProtobufCMessage *req, *resp = NULL;
		struct csi_call c = {
			.method = slash ? slash + 1 : m->path,
		};
		int r;

		req = protobuf_c_message_unpack(m->input, NULL, size, data);
		if (!req)
			continue;
		c.arena = arena_new(ARENA_LIMIT);
		if (!c.arena) {
			protobuf_c_message_free_unpacked(req, NULL);
			return 0;
		}
		r = m->handler(&c, driver, req, &resp);
		FUZZ_CHECK((unsigned)c.code <= CSI_CODE_UNAUTHENTICATED);
		FUZZ_CHECK(memchr(c.message, 0, sizeof(c.message)));
		if (r < 0) {
			if (c.code == CSI_CODE_OK)
				fprintf(stderr, "%s failed without a status\n", c.method);
			FUZZ_CHECK(c.code != CSI_CODE_OK);
			FUZZ_CHECK(c.message[0]);
		} else {
			const ProtobufCMessageDescriptor *want = response_descriptor(m->input);
			if (!works_without_device(c.method))
				fprintf(stderr, "%s succeeded without a device manager\n", c.method);
			FUZZ_CHECK(works_without_device(c.method));
			FUZZ_CHECK(resp);
			FUZZ_CHECK(want);
			check_response(resp, want);
		}
		/* The response may borrow from the request: free it last, as transport.c. */
		arena_free(c.arena);
		protobuf_c_message_free_unpacked(req, NULL);
	}
	return 0;
}
