#!/usr/bin/env bash
# A single-node Kubernetes cluster built from the upstream sources, for the `k8s-local`
# environment and tests/integration/test_kubernetes_cluster.py. Everything on loopback.
#
#   scripts/k8s-cluster.sh up      build (cached), start etcd, the control plane, containerd + kubelet,
#                                  import the local images, install Traefik's CRDs and Traefik
#   scripts/k8s-cluster.sh down    stop all of it and remove what `up` created (not the build cache)
#   scripts/k8s-cluster.sh build   only build the binaries (cached)
#   scripts/k8s-cluster.sh env     print KUBECONFIG=... for the running cluster
#
# Run as root (containerd, runc, the kubelet and the CNI bridge need it), Linux, cgroups v1 or v2.
# Needs: go (the module proxy), docker (the images of scripts/docker-images.sh), Debian's
# containerd + runc + iptables (docker.io), openssl, python with this project installed (etcd).
#
# Where things go:
#   $RAGOPS_GO_CACHE (/var/cache/ragops-go)   GOPATH, GOMODCACHE, GOCACHE, bin/ (kube-*, CNI plugins)
#   $RAGOPS_K8S_DIR  (/var/lib/ragops-k8s)    certificates, kubeconfigs, etcd data, containerd, kubelet, logs
# Addresses (the port range 27000-27999): etcd 27379/27380, kube-apiserver 127.0.0.1:27443,
# controller-manager 27257, scheduler 27259, kubelet 27250 (healthz 27248), Traefik web 27080
# and its ping/API 27081 (Traefik runs in the cluster with hostNetwork). Pods live on the bridge
# ragk8s0 (10.244.0.0/24); the host is 10.244.0.1 for them: TCP from the pods to 10.244.0.1 is
# forwarded to the host's 127.0.0.1 (the apiserver, the PostgreSQL nodes of the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

K8S_VERSION="${RAGOPS_K8S_VERSION:-v1.34.4}"            # 1.35+ refuse cgroup v1 without failCgroupV1: false
CNI_VERSION="${RAGOPS_CNI_VERSION:-v1.10.0}"
TRAEFIK_CRD_VERSION="${RAGOPS_TRAEFIK_CRD_VERSION:-v3.7.13}"   # the CRDs of the newest release the proxy serves
GO_CACHE="${RAGOPS_GO_CACHE:-/var/cache/ragops-go}"
D="${RAGOPS_K8S_DIR:-/var/lib/ragops-k8s}"
BIN="$GO_CACHE/bin/kubernetes-$K8S_VERSION"
CNI_BIN="$GO_CACHE/bin/cni-$CNI_VERSION"
export GOPATH="$GO_CACHE/gopath" GOMODCACHE="$GO_CACHE/gopath/pkg/mod" GOCACHE="$GO_CACHE/gocache" GOFLAGS=-buildvcs=false
PY="${PYTHON:-$(command -v python3)}"
[ -x "$REPO/.venv/bin/python" ] && PY="$REPO/.venv/bin/python"

APISERVER_PORT=27443 ETCD_PORT=27379 ETCD_PEER_PORT=27380 KCM_PORT=27257 SCHED_PORT=27259
KUBELET_PORT=27250 KUBELET_HEALTHZ_PORT=27248 TRAEFIK_WEB_PORT=27080 TRAEFIK_API_PORT=27081
BRIDGE=ragk8s0 HOST_IP=10.244.0.1 POD_CIDR=10.244.0.0/24 SERVICE_CIDR=10.96.0.0/24 SERVICE_IP=10.96.0.1
NODE=127.0.0.1                    # the node's name and address (as hack/local-up-cluster.sh does)
SOCK="$D/run/containerd.sock"
KUBECONFIG_FILE="$D/kubeconfig"
PAUSE_IMAGE="docker.io/ragops/pause:3.10"
SERVICE_IMAGE="${RAGOPS_SERVICE_IMAGE:-ragops/rag-service:latest}"
TRAEFIK_IMAGE="${RAGOPS_TRAEFIK_IMAGE_REF:-ragops/traefik:local}"

log() { echo "k8s-cluster: $*" >&2; }
die() { log "$*"; exit 1; }
phase_start=0
phase() { phase_start=$(date +%s.%N); log "$1 ..."; }
phase_done() { log "$(printf '%-28s %6.1fs' "$1" "$(echo "$(date +%s.%N) - $phase_start" | bc)")"; }

# ---- build (cached: a second run only checks the binaries exist) -----------------------------------
build_kubernetes() {
    local wrap="$GO_CACHE/src/kubernetes-$K8S_VERSION" want=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
    local missing=0 c
    for c in "${want[@]}"; do [ -x "$BIN/$c" ] || missing=1; done
    [ "$missing" = 0 ] && return 0
    mkdir -p "$wrap" "$BIN"
    if [ ! -f "$wrap/go.sum" ]; then
        # k8s.io/kubernetes replaces its staging modules with local paths, so it cannot be built
        # as a dependency as is: a wrapper module pins each of them to the matching v0.x release
        local staging="v0${K8S_VERSION#v1}"
        (cd "$wrap" && printf 'module ragops.local/k8swrap\n\ngo 1.24.0\n' > go.mod \
            && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null)
        local upstream="$GOMODCACHE/k8s.io/kubernetes@$K8S_VERSION/go.mod"
        {
            printf 'module ragops.local/k8swrap\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
            sed -n "s#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 $staging#p" "$upstream"
            printf ')\n'
        } > "$wrap/go.mod"
        printf '//go:build tools\n\npackage k8swrap\n\nimport (\n' > "$wrap/tools.go"
        for c in "${want[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c" >> "$wrap/tools.go"; done
        printf ')\n' >> "$wrap/tools.go"
        (cd "$wrap" && nice -n 19 go mod tidy -e >/dev/null 2>&1)
    fi
    # the version the binaries report (a module build has no git tree to take it from)
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    local ldflags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
    ldflags="$ldflags -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    for c in "${want[@]}"; do
        [ -x "$BIN/$c" ] && continue
        log "building $c $K8S_VERSION (nice 19; the first build takes a while)"
        (cd "$wrap" && CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags="-s $ldflags" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c") \
            && mv "$BIN/$c.tmp" "$BIN/$c"
    done
}

build_cni() {
    local p missing=0
    for p in bridge host-local loopback portmap; do [ -x "$CNI_BIN/$p" ] || missing=1; done
    [ "$missing" = 0 ] && return 0
    mkdir -p "$CNI_BIN"
    for p in main/bridge ipam/host-local main/loopback meta/portmap; do
        log "building CNI plugin ${p#*/} $CNI_VERSION"
        CGO_ENABLED=0 GOBIN="$CNI_BIN" nice -n 19 go install -trimpath -ldflags=-s \
            "github.com/containernetworking/plugins/plugins/$p@$CNI_VERSION"
    done
}

build_pause() {
    # the sandbox image: a static Go program that waits for a signal, FROM scratch
    docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
    local ctx; ctx="$(mktemp -d)"
    cat > "$ctx/main.go" <<'EOF'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
EOF
    printf 'module pause\n\ngo 1.24\n' > "$ctx/go.mod"
    (cd "$ctx" && CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags=-s -o pause .)
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$ctx/Dockerfile"
    docker build -q -t "$PAUSE_IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
}

traefik_crds() {
    local dir="$GOMODCACHE/github.com/traefik/traefik/v3@$TRAEFIK_CRD_VERSION"
    [ -d "$dir" ] || go mod download "github.com/traefik/traefik/v3@$TRAEFIK_CRD_VERSION"
    echo "$dir/docs/content/reference/dynamic-configuration"
}

# ---- certificates and kubeconfigs (openssl) ----------------------------------------------------------
make_certs() {
    local pki="$D/pki"
    [ -f "$pki/ca.crt" ] && return 0
    mkdir -p "$pki" && chmod 700 "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 30 \
        -subj "/CN=ragops-k8s-ca" 2>/dev/null
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    # name CN O extension
    sign() {
        local name="$1" subj="$2" ext="$3"
        openssl req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj" 2>/dev/null
        printf '%s\n' "$ext" > "$pki/$name.ext"
        openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
            -out "$pki/$name.crt" -days 30 -extfile "$pki/$name.ext" 2>/dev/null
        rm -f "$pki/$name.csr" "$pki/$name.ext"
    }
    local client="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$HOST_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    sign admin "/O=system:masters/CN=ragops-admin" "$client"
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
    sign controller-manager "/CN=system:kube-controller-manager" "$client"
    sign scheduler "/CN=system:kube-scheduler" "$client"
    sign kubelet "/O=system:nodes/CN=system:node:$NODE" "$client"
    chmod 600 "$pki"/*.key
}

kubeconfig() {   # file user
    local file="$1" user="$2" pki="$D/pki"
    cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ragops-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: ragops-local
  context: {cluster: ragops-local, user: $user}
current-context: ragops-local
EOF
    chmod 600 "$file"
}

# ---- processes -----------------------------------------------------------------------------------
start() {   # name command...: in the background, log and pid under $D
    local name="$1"; shift
    if [ -f "$D/pids/$name" ] && kill -0 "$(cat "$D/pids/$name")" 2>/dev/null; then
        return 0
    fi
    mkdir -p "$D/pids" "$D/logs"
    setsid "$@" >"$D/logs/$name.log" 2>&1 < /dev/null &
    echo $! > "$D/pids/$name"
}

wait_for() {   # what seconds command...
    local what="$1" seconds="$2"; shift 2
    local deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "$what did not come up within ${seconds}s; the last lines of its log:"
            tail -n 20 "$D/logs/$what.log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.5
    done
}

stop() {   # name [signal wait-seconds]
    local name="$1" pidfile="$D/pids/$1"
    [ -f "$pidfile" ] || return 0
    local pid; pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

https_ok() { curl -sf --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key" "$1"; }

start_etcd() {
    local etcd; etcd="$("$PY" -c 'from ragops.ha.etcd import etcd_binary; print(etcd_binary())')"
    start etcd "$etcd" --name ragops-k8s --data-dir "$D/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "ragops-k8s=http://127.0.0.1:$ETCD_PEER_PORT" \
        --quota-backend-bytes 1073741824 --unsafe-no-fsync
    wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

start_control_plane() {
    local pki="$D/pki"
    start kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address "$HOST_IP" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types Hostname --kubelet-port "$KUBELET_PORT" \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
        --endpoint-reconciler-type lease --event-ttl 30m
    wait_for kube-apiserver 120 https_ok "https://127.0.0.1:$APISERVER_PORT/readyz"
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$D/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$D/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$D/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --use-service-account-credentials --cluster-signing-cert-file "$pki/ca.crt" \
        --cluster-signing-key-file "$pki/ca.key" --service-cluster-ip-range "$SERVICE_CIDR" \
        --horizontal-pod-autoscaler-sync-period 5s --profiling=false
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$D/scheduler.kubeconfig" \
        --authentication-kubeconfig "$D/scheduler.kubeconfig" --authorization-kubeconfig "$D/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false
    wait_for kube-controller-manager 60 curl -sfk "https://127.0.0.1:$KCM_PORT/healthz"
    wait_for kube-scheduler 60 curl -sfk "https://127.0.0.1:$SCHED_PORT/healthz"
}

setup_network() {
    # the pods' bridge, made here (not by the CNI plugin on the first pod) because the apiserver
    # advertises the host's address on it; TCP from the pods to that address goes to 127.0.0.1
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$HOST_IP/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    sysctl -qw "net.ipv4.conf.$BRIDGE.route_localnet=1"
    sysctl -qw net.ipv4.ip_forward=1
    iptables -t nat -C PREROUTING -i "$BRIDGE" -d "$HOST_IP" -p tcp -j DNAT --to-destination 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null \
        || iptables -t nat -I PREROUTING -i "$BRIDGE" -d "$HOST_IP" -p tcp -j DNAT --to-destination 127.0.0.1 -m comment --comment ragops-k8s
    # ... with the source rewritten to 127.0.0.1, so servers that trust loopback only (PostgreSQL's
    # pg_hba of initdb: 127.0.0.1/32) take the pods' connections
    iptables -t nat -C INPUT -s "$POD_CIDR" -d 127.0.0.1 -j SNAT --to-source 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null \
        || iptables -t nat -I INPUT -s "$POD_CIDR" -d 127.0.0.1 -j SNAT --to-source 127.0.0.1 -m comment --comment ragops-k8s
    # (the same for the host's own connections to 10.244.0.1, whose source NAT happens on the way out)
    iptables -t nat -C POSTROUTING -s "$POD_CIDR" -d 127.0.0.1 -j SNAT --to-source 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null \
        || iptables -t nat -I POSTROUTING -s "$POD_CIDR" -d 127.0.0.1 -j SNAT --to-source 127.0.0.1 -m comment --comment ragops-k8s
    # (ragops on the host uses the same address as the pods: 10.244.0.1 is the host's 127.0.0.1 too)
    iptables -t nat -C OUTPUT -d "$HOST_IP" -p tcp -j DNAT --to-destination 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null \
        || iptables -t nat -I OUTPUT -d "$HOST_IP" -p tcp -j DNAT --to-destination 127.0.0.1 -m comment --comment ragops-k8s
    # docker's FORWARD policy is DROP: let the pods' bridge forward
    iptables -C FORWARD -i "$BRIDGE" -j ACCEPT -m comment --comment ragops-k8s 2>/dev/null \
        || iptables -I FORWARD -i "$BRIDGE" -j ACCEPT -m comment --comment ragops-k8s
    iptables -C FORWARD -o "$BRIDGE" -j ACCEPT -m comment --comment ragops-k8s 2>/dev/null \
        || iptables -I FORWARD -o "$BRIDGE" -j ACCEPT -m comment --comment ragops-k8s
    mkdir -p "$D/cni/net.d"
    cat > "$D/cni/net.d/10-ragops.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ragops-k8s",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$HOST_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$D/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

start_containerd() {
    mkdir -p "$D/containerd" "$D/run"
    cat > "$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/run/containerd"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$D/run/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # these machines deny lowering oom_score_adj (no CAP_SYS_RESOURCE): runc's "failed to update
  # /proc/self/oom_score_adj: Permission denied" for the kubelet's -998 on every sandbox otherwise
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$D/cni/net.d"
EOF
    start containerd containerd --config "$D/containerd/config.toml"
    wait_for containerd 30 ctr --address "$SOCK" version
}

import_images() {
    # no registry: the images docker built are imported into the runtime's k8s.io namespace (and
    # unpacked there); a stamp per image ID skips what this runtime already has
    local images=("$PAUSE_IMAGE" "$SERVICE_IMAGE" "$TRAEFIK_IMAGE") want=() i id
    mkdir -p "$D/images"
    for i in "${images[@]}"; do
        id="$(docker image inspect -f '{{.Id}}' "$i")" || die "image $i missing (scripts/docker-images.sh builds it)"
        [ -f "$D/images/${id#sha256:}" ] || want+=("$i")
    done
    [ "${#want[@]}" = 0 ] && return 0
    docker save "${want[@]}" | ctr --address "$SOCK" -n k8s.io images import - >/dev/null
    for i in "${want[@]}"; do touch "$D/images/$(docker image inspect -f '{{.Id}}' "$i" | sed 's/^sha256://')"; done
}

start_kubelet() {
    mkdir -p "$D/kubelet" "$D/pod-logs" "$D/manifests"
    cat > "$D/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $D/pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
failSwapOn: false
podCIDR: $POD_CIDR
podLogsDir: $D/pod-logs
staticPodPath: $D/manifests
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
maxPods: 60
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 5s
localStorageCapacityIsolation: false
EOF
    start kubelet "$BIN/kubelet" --config "$D/kubelet/config.yaml" --kubeconfig "$D/kubelet.kubeconfig" \
        --root-dir "$D/kubelet/root" --hostname-override "$NODE" --node-ip "$HOST_IP" --v 1
    wait_for kubelet 90 "$PY" "$REPO/scripts/k8s_cluster_check.py" "$KUBECONFIG_FILE" node-ready "$NODE"
}

install_traefik() {
    local docs; docs="$(traefik_crds)"
    "$PY" "$REPO/scripts/k8s_cluster_check.py" "$KUBECONFIG_FILE" apply \
        "$docs/kubernetes-crd-definition-v1.yml" "$docs/kubernetes-crd-rbac.yml"
    "$PY" "$REPO/scripts/k8s_cluster_check.py" "$KUBECONFIG_FILE" traefik "$TRAEFIK_IMAGE" \
        "$TRAEFIK_WEB_PORT" "$TRAEFIK_API_PORT" "$APISERVER_PORT"
    wait_for traefik 120 curl -sf "http://127.0.0.1:$TRAEFIK_API_PORT/ping"
}

up() {
    [ "$(id -u)" = 0 ] || die "run as root (containerd, the kubelet and the pods' bridge need it)"
    local total; total=$(date +%s.%N)
    if [ -d "$D" ] && [ ! -f "$D/.ragops-k8s" ] && [ -n "$(ls -A "$D")" ]; then
        die "$D exists and was not made by this script: set RAGOPS_K8S_DIR to another directory"
    fi
    mkdir -p "$D" && touch "$D/.ragops-k8s"
    phase "build kubernetes $K8S_VERSION"; build_kubernetes; phase_done "build kubernetes"
    phase "build CNI plugins $CNI_VERSION"; build_cni; phase_done "build CNI plugins"
    phase "pause image"; build_pause; phase_done "pause image"
    phase "certificates"; make_certs
    kubeconfig "$KUBECONFIG_FILE" admin
    kubeconfig "$D/controller-manager.kubeconfig" controller-manager
    kubeconfig "$D/scheduler.kubeconfig" scheduler
    kubeconfig "$D/kubelet.kubeconfig" kubelet
    phase_done "certificates"
    phase "etcd"; start_etcd; phase_done "etcd"
    phase "network"; setup_network; phase_done "network"
    phase "control plane"; start_control_plane
    "$PY" "$REPO/scripts/k8s_cluster_check.py" "$KUBECONFIG_FILE" control-plane
    phase_done "control plane"
    phase "containerd"; start_containerd; phase_done "containerd"
    phase "image import"; import_images; phase_done "image import"
    phase "kubelet (node Ready)"; start_kubelet; phase_done "kubelet (node Ready)"
    phase "traefik (CRDs, pod)"; install_traefik; phase_done "traefik (CRDs, pod)"
    log "$(printf '%-28s %6.1fs' "total" "$(echo "$(date +%s.%N) - $total" | bc)")"
    log "cluster up: KUBECONFIG=$KUBECONFIG_FILE (Kubernetes $K8S_VERSION), Traefik at http://127.0.0.1:$TRAEFIK_WEB_PORT"
}

down() {
    [ -f "$D/.ragops-k8s" ] || { log "nothing to stop (no cluster made by this script in $D)"; return 0; }
    if [ -f "$D/pids/kubelet" ] && [ -f "$D/pids/kube-apiserver" ]; then
        # pods first, while the kubelet still runs, so their sandboxes and veths go away cleanly
        "$PY" "$REPO/scripts/k8s_cluster_check.py" "$KUBECONFIG_FILE" drain 2>/dev/null || true
    fi
    stop kubelet
    if [ -S "$SOCK" ]; then   # what the kubelet left: every container of this runtime, then its sandboxes
        local t
        for t in $(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
            ctr --address "$SOCK" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
        done
        sleep 1
        for t in $(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
            ctr --address "$SOCK" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
        done
        for t in $(ctr --address "$SOCK" -n k8s.io containers ls -q 2>/dev/null); do
            ctr --address "$SOCK" -n k8s.io containers delete "$t" >/dev/null 2>&1 || true
        done
    fi
    stop kube-scheduler; stop kube-controller-manager; stop kube-apiserver; stop containerd; stop etcd
    # mounts the kubelet and containerd left under $D (volumes, overlay rootfs, netns)
    grep -o " $D/[^ ]*" /proc/mounts | sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    while iptables -t nat -D PREROUTING -i "$BRIDGE" -d "$HOST_IP" -p tcp -j DNAT --to-destination 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null; do :; done
    while iptables -t nat -D INPUT -s "$POD_CIDR" -d 127.0.0.1 -j SNAT --to-source 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null; do :; done
    while iptables -t nat -D POSTROUTING -s "$POD_CIDR" -d 127.0.0.1 -j SNAT --to-source 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null; do :; done
    while iptables -t nat -D OUTPUT -d "$HOST_IP" -p tcp -j DNAT --to-destination 127.0.0.1 -m comment --comment ragops-k8s 2>/dev/null; do :; done
    while iptables -D FORWARD -i "$BRIDGE" -j ACCEPT -m comment --comment ragops-k8s 2>/dev/null; do :; done
    while iptables -D FORWARD -o "$BRIDGE" -j ACCEPT -m comment --comment ragops-k8s 2>/dev/null; do :; done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$D"
    log "cluster down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    build) build_kubernetes; build_cni; build_pause ;;
    env) echo "KUBECONFIG=$KUBECONFIG_FILE" ;;
    *) echo "usage: $0 up|down|build|env" >&2; exit 2 ;;
esac
