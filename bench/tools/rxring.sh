#!/usr/bin/env bash
# Reading a host port: recv(2) against a TPACKET_V3 receive ring (docs/host-ports.md).
# Builds bench/tools/rxring.c and runs, on a veth pair between two namespaces made for
# the run (and removed however it ends): a flood of 60-byte frames, then a trickle of
# one frame every 2 ms, against each way of reading. Needs root and a C compiler.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-2}
bin=$(mktemp -d)/rxring
cc -O2 -Wall -o "$bin" "$here/rxring.c"
ns=syrx$$
cleanup() { ip netns del "${ns}a" 2>/dev/null || true; ip netns del "${ns}b" 2>/dev/null || true; rm -rf "$(dirname "$bin")"; }
trap cleanup EXIT
ip netns add "${ns}a"
ip netns add "${ns}b"
ip link add va netns "${ns}a" type veth peer name vb netns "${ns}b"
ip -n "${ns}a" link set va up
ip -n "${ns}b" link set vb up
for round in $(seq "$rounds"); do
  echo "round $round: flood"
  for mode in recv ring ringcopy; do
    ip netns exec "${ns}a" "$bin" send va 6 >/dev/null &
    sleep 0.5
    ip netns exec "${ns}b" "$bin" "$mode" vb 5
    wait
  done
  echo "round $round: trickle"
  for mode in recv ring; do
    ip netns exec "${ns}a" "$bin" trickle va 4 >/dev/null &
    sleep 0.3
    ip netns exec "${ns}b" "$bin" "$mode" vb 3
    wait
  done
done
