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

if ((${#need[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "deps: missing ${need[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found; install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
if [[ ! -c /dev/net/tun ]]; then
  echo "deps: /dev/net/tun is missing; load the tun module (modprobe tun)" >&2
  exit 1
fi
