#!/usr/bin/env bash
# `make demo`: start switchd, wire two containers (network namespaces) to it on VLAN 10,
# ping and run iperf3 between them, show what the switch learned; then networks: a second
# switchd inside a "host" namespace of its own (networks change routes, forwarding and
# nftables, which must never happen in this machine's namespace), two networks, IPAM,
# the gateway, isolation, the uplink and masquerade. Cleans everything up.
# Uses its own sockets and state directories, so it never touches a switchd already running.
# DEMO_PREFIX names its namespaces (default sy-demo-PID, so two demos never collide).
# Plain text when stdout is not a terminal (`make demo | less`), or with NO_COLOR set.
set -euo pipefail

bin=${BIN:-target/release}
for tool in switchd swctl nsutil; do
  [[ -x $bin/$tool ]] || { echo "demo: $bin/$tool not built; run 'make build'" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "demo: run as root (it creates namespaces and TAPs)" >&2; exit 1; }

prefix=${DEMO_PREFIX:-sy-demo-$$}
# Namespace names: letters, digits, '.', '_' and '-', and room for "-host" after them.
if [[ ! $prefix =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$ ]]; then
  echo "demo: DEMO_PREFIX=$prefix is not a name prefix: use up to 40 letters, digits, '.', '_' or '-'" >&2
  exit 2
fi
for ns in red blue host out web db oth; do
  if [[ -e /run/netns/$prefix-$ns ]]; then
    echo "demo: namespace $prefix-$ns exists already; choose another DEMO_PREFIX" >&2
    exit 1
  fi
done

work=$(mktemp -d "/tmp/switchyard-$prefix.XXXXXX")
export SWITCHYARD_SOCKET=$work/switchd.sock
red=$prefix-red
blue=$prefix-blue
host=$prefix-host
outside=$prefix-out
web=$prefix-web
db=$prefix-db
other=$prefix-oth
switchd_pid=
host_switchd_pid=

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
  for ns in "$web" "$db" "$other"; do
    SWITCHYARD_SOCKET=$work/host.sock "$bin/nsutil" delete "$ns" >/dev/null 2>&1
  done
  if [[ -n $host_switchd_pid ]]; then
    kill -TERM "$host_switchd_pid" 2>/dev/null
    wait "$host_switchd_pid" 2>/dev/null
  fi
  ip netns del "$host" 2>/dev/null
  ip netns del "$outside" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi
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

step "networks: switchd in a host namespace, joined by a veth to an outside one"
ip netns add "$host"
ip netns add "$outside"
ip link add out0 netns "$host" type veth peer name in0 netns "$outside"
ip -n "$host" addr add 192.168.201.1/24 dev out0
ip -n "$outside" addr add 192.168.201.2/24 dev in0
for ns in "$host" "$outside"; do
  ip -n "$ns" link set lo up
done
ip -n "$host" link set out0 up
ip -n "$outside" link set in0 up
export SWITCHYARD_SOCKET=$work/host.sock
ip netns exec "$host" "$bin/switchd" --socket "$SWITCHYARD_SOCKET" --state-dir "$work/host-state" --log warn &
host_switchd_pid=$!
for _ in $(seq 50); do
  "$bin/swctl" status >/dev/null 2>&1 && break
  sleep 0.1
done
show "$bin/swctl" network create blue --subnet 10.10.0.0/24 --masquerade
show "$bin/swctl" network create red
for ns in "$web" "$db" "$other"; do "$bin/nsutil" create "$ns" >/dev/null; done
show "$bin/nsutil" attach "$web" --network blue
show "$bin/nsutil" attach "$db" --network blue --ip 10.10.0.50
show "$bin/nsutil" attach "$other" --network red
show "$bin/swctl" network ls

ping_says() { # ns addr what
  if ip netns exec "$1" ping -c 1 -W 1 -q "$2" >/dev/null 2>&1; then
    printf '  %-44s reachable\n' "$3"
  else
    printf '  %-44s no answer\n' "$3"
  fi
}
step "who reaches whom"
ping_says "$web" 10.10.0.50 "web -> db (same network)"
ping_says "$web" 10.10.0.1 "web -> its gateway (switchd's router)"
ping_says "$other" 10.10.0.50 "red container -> db (isolated networks)"
ping_says "$host" 10.10.0.50 "host namespace -> db (through the uplink)"
ping_says "$web" 192.168.201.2 "web -> outside (blue masquerades)"
ping_says "$other" 192.168.201.2 "red container -> outside (red does not)"
show "$bin/swctl" router show

step "the whole switch in one view (also: swctl show --format dot | dot -Tsvg)"
show "$bin/swctl" show

step "clean up"
echo "removing namespaces, TAPs and both switchds"
