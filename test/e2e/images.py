#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""images.py OUTDIR TOOLSDIR - the images the e2e cluster needs besides the driver's,
made here from files on this machine, without a registry or a container engine:

  pause      Debian's catatonit in pause mode (-P): the pod sandbox
  busybox    Debian's busybox-static with its applets: the test pods (sh, grep, dd)
  socat      Debian's socat and the libraries ldd shows: the -testing variants
  csi-provisioner, csi-node-driver-registrar   the static binaries of TOOLSDIR
  csi-resizer   likewise, when TOOLSDIR has it (not yet: e2e.py's expansion test is skipped)

Each one is a one-layer OCI archive OUTDIR/NAME.tar (the format of image/build.sh)
whose index names it for `ctr images import`. The names are those that deploy/
references (deploy/generated and the operator's defaults), so that no manifest needs
an image replaced: "local-images.txt" lists "archive name" pairs, and cluster.sh tags
each import with the extra names too. Prints the list.
"""
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

OUT, TOOLS = sys.argv[1], sys.argv[2]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCH = 0


def manifest_images():
    """Every image named in deploy/generated and deploy/operator."""
    names = set()
    for d in ("deploy/generated", "deploy/operator"):
        for f in os.listdir(os.path.join(REPO, d)):
            with open(os.path.join(REPO, d, f)) as fh:
                names.update(re.findall(r"^\s*image:\s*(\S+)", fh.read(), re.M))
    return names


def normalize(name):
    """The name containerd's CRI looks up: docker.io/[library/] for a name without a
    registry (as kubelet asks for alpine/socat:1.8.0.3 as docker.io/alpine/socat:1.8.0.3)."""
    first = name.split("/")[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return "docker.io/" + ("library/" if "/" not in name else "") + name


def ldd(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def _info(self, name, kind, mode):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = kind, mode, EPOCH, 0, 0
        return ti

    def mkdir(self, path):
        path = path.strip("/")
        if not path or path in self.dirs:
            return
        self.mkdir(os.path.dirname(path))
        self.dirs.add(path)
        self.tar.addfile(self._info(path, tarfile.DIRTYPE, 0o755))

    def file(self, path, src=None, data=None, mode=0o755):
        """A regular file at path, with the content of src (symlinks resolved) or data."""
        if data is None:
            with open(os.path.realpath(src), "rb") as f:
                data = f.read()
        self.mkdir(os.path.dirname(path))
        ti = self._info(path.strip("/"), tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))

    def symlink(self, path, target):
        self.mkdir(os.path.dirname(path))
        ti = self._info(path.strip("/"), tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def binary(self, path, src):
        """An executable and every shared library it needs, at the host's paths."""
        self.file(path, src)
        for lib in ldd(src):
            self.file(lib, lib)
        if ldd(src):
            self.file("/etc/passwd", data=b"root:x:0:0:root:/:/bin/sh\n", mode=0o644)

    def done(self):
        self.tar.close()
        return self.buf.getvalue()


def oci_archive(path, name, layer, entrypoint, cmd=None):
    blobs = {}

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return d, len(data)

    diff_id = hashlib.sha256(layer).hexdigest()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(layer)
    ldig, lsize = blob(gz.getvalue())
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": entrypoint, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]}}
    if cmd:
        config["config"]["Cmd"] = cmd
    cdig, csize = blob(json.dumps(config, sort_keys=True).encode())
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cdig, "size": csize},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + ldig,
                       "size": lsize}]}
    mdig, msize = blob(json.dumps(man, sort_keys=True).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + mdig,
                            "size": msize, "platform": {"architecture": "amd64", "os": "linux"},
                            "annotations": {"io.containerd.image.name": name,
                                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]}
    with tarfile.open(path + ".tmp", "w", format=tarfile.PAX_FORMAT) as t:
        def add(n, data):
            ti = tarfile.TarInfo(n)
            ti.size, ti.mtime, ti.mode = len(data), EPOCH, 0o644
            t.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for d in sorted(blobs):
            add("blobs/sha256/" + d, blobs[d])
    os.rename(path + ".tmp", path)


def pause():
    L = Layer()
    L.file("/pause", "/usr/bin/catatonit")
    return L.done(), ["/pause", "-P"]


def busybox():
    L = Layer()
    L.file("/bin/busybox", "/bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            L.symlink("/bin/" + a, "busybox")
    L.mkdir("/tmp")
    L.file("/etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
           mode=0o644)
    return L.done(), ["/bin/sh"]


def socat():
    L = Layer()
    L.binary("/usr/bin/socat", "/usr/bin/socat")
    L.mkdir("/tmp")
    return L.done(), ["/usr/bin/socat"]


def static(binary):
    def make():
        L = Layer()
        L.file("/" + os.path.basename(binary), binary)
        return L.done(), ["/" + os.path.basename(binary)]
    return make


def main():
    os.makedirs(OUT, exist_ok=True)
    refs = manifest_images()

    def names(pattern, default):
        got = sorted(n for n in refs if re.search(pattern, n))
        return got or [default]

    images = [
        ("pause", ["localhost/pause:e2e"], pause),
        ("busybox", ["localhost/busybox:e2e", "busybox:1.36"], busybox),
        ("socat", ["localhost/socat:e2e"] + names(r"/socat:", "alpine/socat:1.8.0.3"), socat),
        ("csi-provisioner", ["localhost/csi-provisioner:e2e"] + names(r"/csi-provisioner:", ""),
         static(os.path.join(TOOLS, "csi-provisioner"))),
        ("csi-node-driver-registrar", ["localhost/csi-node-driver-registrar:e2e"]
         + names(r"/csi-node-driver-registrar:", ""), static(os.path.join(TOOLS, "csi-node-driver-registrar"))),
    ]
    # The external-resizer of deploy/kustomize/components/resizer (e2e.py's expansion
    # test), when the test peers have its binary.
    resizer = os.path.join(TOOLS, "csi-resizer")
    if os.access(resizer, os.X_OK):
        with open(os.path.join(REPO, "deploy/kustomize/components/resizer/resizer.yaml")) as f:
            named = re.findall(r"^\s*image:\s*(\S+)", f.read(), re.M)
        images.append(("csi-resizer", ["localhost/csi-resizer:e2e"] + named, static(resizer)))
    lines = []
    for arch, tags, make in images:
        layer, entry = make()
        path = os.path.join(OUT, arch + ".tar")
        oci_archive(path, tags[0], layer, entry)
        for t in filter(None, tags):
            lines.append("%s %s" % (arch, normalize(t)))
    with open(os.path.join(OUT, "local-images.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


main()
