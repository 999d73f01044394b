#!/usr/bin/env bash
# Installs what `make demo` and `make test` need and the machine lacks.
set -euo pipefail

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v ethtool >/dev/null || need+=(ethtool)
# The network tests read the NAT rules back with nft (switchd itself speaks netlink).
command -v nft >/dev/null || need+=(nftables)
# The CNI tests delegate IPAM to the reference host-local plugin.
[[ -x /usr/lib/cni/host-local ]] || need+=(containernetworking-plugins)
# The Docker and Podman tests run a real engine of each in a namespace of their own
# (tools/tests/common/docker.rs, podman.rs), with Debian's client at /usr/bin/docker (a
# CLI elsewhere on PATH may be another version), and build their image from a static
# busybox (a dynamic one would need its libraries in the image).
[[ -x /usr/sbin/dockerd && -x /usr/bin/docker ]] || need+=(docker.io)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
  need+=(busybox-static)
command -v podman >/dev/null || need+=(podman)
# switchd's etcd client (etcd-client, on tonic/prost) compiles etcd's .proto files when
# it builds: it needs protoc. The cluster tests run Debian's etcd (v3 API) themselves.
command -v protoc >/dev/null || need+=(protobuf-compiler)
[[ -x /usr/bin/etcd ]] || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v openssl >/dev/null || need+=(openssl)
# The install tests (tools/tests/install.rs) check the units with systemd-analyze (only
# the tool: nothing starts, and the machine needs no running systemd), render the man
# pages with man, and `make deb` finds the package's dependencies with dpkg-shlibdeps
# and strips the binaries with binutils' strip.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v man >/dev/null || need+=(man-db)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v strip >/dev/null || need+=(binutils)
# The `swctl show --format dot` test renders the graph with Graphviz's dot.
command -v dot >/dev/null || need+=(graphviz)
# The metrics test parses switchd's /metrics with the Prometheus client's own parser,
# in Debian's python3 (/usr/bin/python3: another python3 on PATH does not see it).
/usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null ||
  need+=(python3-prometheus-client)

if ((${#need[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "deps: missing ${need[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # docker.io's maintainer scripts start its services (dockerd, containerd) in the
  # machine's own namespace, where a dockerd would add bridges and firewall rules. The
  # tests start their own engines; a policy-rc.d that refuses every start keeps the
  # packages from starting anything (with no systemd, as on a container-like machine,
  # there is nothing to start anyway). One already in place is left as it is.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# switchyard scripts/deps.sh: no service starts while installing\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Tests elsewhere on the machine may run dockerds of their own, each in a namespace of
  # its own: only one in this shell's network namespace is the package's.
  if [[ " ${need[*]} " == *" docker.io "* ]]; then
    for pid in $(pgrep -x dockerd); do
      if [[ $(readlink "/proc/$pid/ns/net") == $(readlink /proc/self/ns/net) ]]; then
        echo "deps: installing docker.io started dockerd (pid $pid) in the machine's" \
          "namespace; stop it (systemctl disable --now docker.service docker.socket)" >&2
        exit 1
      fi
    done
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found; install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
if [[ ! -c /dev/net/tun ]]; then
  echo "deps: /dev/net/tun is missing; load the tun module (modprobe tun)" >&2
  exit 1
fi
