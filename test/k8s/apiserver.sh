#!/bin/bash
# apiserver.sh - a throw-away Kubernetes API server for tests: Debian's etcd and a
# kube-apiserver binary (not packaged in Debian: ../shared/tools has one, which
# scripts/test.sh unpacks; see DEVELOPERS.md).
#
# usage: test/k8s/apiserver.sh start DIR     (prints nothing; DIR/kubeconfig when ready)
#        test/k8s/apiserver.sh stop DIR
# Environment: KUBE_APISERVER (required), ETCD (default: etcd on PATH)
#
# DIR gets a CA, a serving certificate valid for 127.0.0.1 and for 10.0.2.2 (the
# host as a QEMU user-network guest sees it, see test/vm/vm-run.sh --net), an admin
# client certificate, a service account key, etcd's data and both logs.
# DIR/kubeconfig talks to 127.0.0.1, DIR/kubeconfig-guest to 10.0.2.2.
set -euo pipefail
cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

stop() {
    for p in apiserver etcd; do
        [ -f "$DIR/$p.pid" ] || continue
        pid=$(cat "$DIR/$p.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$DIR/$p.pid"
    done
}
if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

APISERVER=${KUBE_APISERVER:?KUBE_APISERVER must point to a kube-apiserver binary}
ETCD=${ETCD:-$(command -v etcd || true)}
[ -x "$APISERVER" ] || { echo "apiserver.sh: $APISERVER is not executable" >&2; exit 1; }
[ -n "$ETCD" ] || { echo "apiserver.sh: no etcd (apt-get install etcd-server)" >&2; exit 1; }
mkdir -p "$DIR"; DIR=$(realpath "$DIR")
cd "$DIR"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EPORT=$(free_port); PPORT=$(free_port); APORT=${APISERVER_PORT:-$(free_port)}

# ---- certificates
umask 077
cert() { # cert NAME SUBJECT EXTENSIONS
    openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
if [ ! -f ca.crt ]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout ca.key -subj "/CN=pmem-csi-test-ca" -days 30 \
        -out ca.crt 2>/dev/null
    cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.2.2,IP:10.0.0.1"
    cert admin "/O=system:masters/CN=test-admin" "basicConstraints=CA:FALSE
extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi

kubeconfig() { # kubeconfig HOST
    cat <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://$1:$APORT
    certificate-authority-data: $(base64 -w0 < ca.crt)
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 < admin.crt)
    client-key-data: $(base64 -w0 < admin.key)
contexts:
- name: admin@test
  context: {cluster: test, user: admin}
current-context: admin@test
KC
}

# ---- etcd, then the API server
stop
rm -rf etcd-data
"$ETCD" --name test --data-dir "$DIR/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$EPORT" --advertise-client-urls "http://127.0.0.1:$EPORT" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "test=http://127.0.0.1:$PPORT" >"$DIR/etcd.log" 2>&1 &
echo $! > etcd.pid
# The guest reaches the host's loopback through QEMU's user network, so loopback is enough.
"$APISERVER" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APORT" \
    --etcd-servers="http://127.0.0.1:$EPORT" --allow-privileged=true --authorization-mode=Node,RBAC \
    --client-ca-file="$DIR/ca.crt" --tls-cert-file="$DIR/apiserver.crt" --tls-private-key-file="$DIR/apiserver.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$DIR/sa.pub" \
    --service-account-signing-key-file="$DIR/sa.key" --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none --profiling=false >"$DIR/apiserver.log" 2>&1 &
echo $! > apiserver.pid
kubeconfig 127.0.0.1 > kubeconfig
kubeconfig 10.0.2.2 > kubeconfig-guest
for _ in $(seq 240); do
    if curl -fsS --cacert ca.crt --cert admin.crt --key admin.key "https://127.0.0.1:$APORT/readyz" 2>/dev/null | grep -qx ok; then
        exit 0
    fi
    kill -0 "$(cat apiserver.pid)" 2>/dev/null || { tail -20 apiserver.log >&2; echo "apiserver.sh: kube-apiserver exited" >&2; exit 1; }
    sleep 0.5
done
echo "apiserver.sh: kube-apiserver not ready after 120 s (see $DIR/apiserver.log)" >&2
exit 1
