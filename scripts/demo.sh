#!/usr/bin/env bash
# `make demo`: start switchd, wire two containers (network namespaces) to it on VLAN 10,
# ping and run iperf3 between them, show what the switch learned, and clean everything up.
# Uses its own socket and state directory, so it never touches a switchd already running.
set -euo pipefail

bin=${BIN:-target/release}
for tool in switchd swctl nsutil; do
  [[ -x $bin/$tool ]] || { echo "demo: $bin/$tool not built; run 'make build'" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "demo: run as root (it creates namespaces and TAPs)" >&2; exit 1; }

work=$(mktemp -d /tmp/switchyard-demo.XXXXXX)
export SWITCHYARD_SOCKET=$work/switchd.sock
red=sy-demo-red-$$
blue=sy-demo-blue-$$
switchd_pid=

cleanup() {
  set +e
  "$bin/nsutil" detach "$red" >/dev/null 2>&1
  "$bin/nsutil" detach "$blue" >/dev/null 2>&1
  "$bin/nsutil" delete "$red" >/dev/null 2>&1
  "$bin/nsutil" delete "$blue" >/dev/null 2>&1
  if [[ -n $switchd_pid ]]; then
    kill -TERM "$switchd_pid" 2>/dev/null
    wait "$switchd_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "start switchd"
"$bin/switchd" --socket "$SWITCHYARD_SOCKET" --state-dir "$work/state" --log warn &
switchd_pid=$!
for _ in $(seq 50); do
  "$bin/swctl" status >/dev/null 2>&1 && break
  sleep 0.1
done
show "$bin/swctl" status

step "two containers on VLAN 10"
show "$bin/nsutil" create "$red"
show "$bin/nsutil" create "$blue"
show "$bin/nsutil" attach "$red" --ip 10.0.0.1/24 --vlan 10
show "$bin/nsutil" attach "$blue" --ip 10.0.0.2/24 --vlan 10
show "$bin/swctl" port ls

step "ping"
show ip netns exec "$red" ping -c 3 -i 0.2 10.0.0.2

step "iperf3, one TCP stream, 5 seconds"
ip netns exec "$blue" iperf3 -s -1 -D
sleep 0.5
ip netns exec "$red" iperf3 -c 10.0.0.2 -t 5 --format g >"$work/iperf.txt"
awk '/receiver/ { printf "throughput red -> blue: %s %s\n", $7, $8 }' "$work/iperf.txt"

step "what the switch learned"
show "$bin/swctl" fdb show
show "$bin/swctl" stats

step "clean up"
echo "removing namespaces, TAPs and switchd"
