#!/usr/bin/env bash
# `make demo-docker`: switchyard under a real Docker engine. Starts Debian's dockerd in
# namespaces of its own (a network namespace, a private mount namespace with the cgroup
# mounts it needs, a PID namespace), switchd and the switchyard-docker plugin beside it;
# then a Docker network on switchd, a web server with a published port, a container that
# finds it by name (Docker's embedded DNS), a plain nsutil namespace on the same network,
# both inspects, and the published port from a client namespace outside. Cleans it all up.
# Never touches the machine's own namespace, routes, firewall or a dockerd already running.
set -euo pipefail

bin=${BIN:-target/release}
for tool in switchd swctl nsutil switchyard-docker; do
  [[ -x $bin/$tool ]] || { echo "demo-docker: $bin/$tool not built; run 'make build'" >&2; exit 1; }
done
bin=$(realpath "$bin") # nsenter --mount starts programs at the root of dockerd's namespace
[[ $(id -u) == 0 ]] || { echo "demo-docker: run as root (it creates namespaces)" >&2; exit 1; }
# Debian's dockerd and client (a docker elsewhere on PATH may be another version), and a
# static busybox for the image (a dynamic one would need its libraries in it).
[[ -x /usr/sbin/dockerd && -x /usr/bin/docker ]] ||
  { echo "demo-docker: /usr/sbin/dockerd or /usr/bin/docker missing; run 'make deps'" >&2; exit 1; }
! ldd /bin/busybox >/dev/null 2>&1 ||
  { echo "demo-docker: /bin/busybox is not static; install busybox-static" >&2; exit 1; }

work=$(mktemp -d /tmp/sydemo-docker.XXXXXX)
ns=sydemo-docker-$$           # dockerd's, switchd's and the plugin's: "the host"
client=sydemo-client-$$       # a machine outside, for the published port
driver=switchyard-demo-$$     # the plugin's name: -d and --ipam-driver
cgroup_parent=sydemo-docker-$$
spec_dir=/etc/docker/plugins
spec=$spec_dir/$driver.spec
export SWITCHYARD_SOCKET=$work/switchd.sock
export DOCKER_CONFIG=$work/client
unset DOCKER_HOST DOCKER_CONTEXT
holder= holder_in= unshare_pid= dockerd_nsenter= switchd_nsenter= plugin_nsenter=
made_spec_dir= made_spec= made_legacy=

# Mounts a process started by `ip netns exec` lacks: that command mounts a fresh /sys,
# with nothing under /sys/fs/cgroup, and dockerd (cgroupfs driver) needs the v1
# hierarchies this machine uses, named the way runc looks for them. As in the tests'
# holder (tools/tests/common/engine.rs).
cgroup_mounts='
mount -t tmpfs cgroup /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
done
mkdir /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mkdir /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
'

# The holder: init of a PID namespace, in $ns and a mount namespace of its own (cgroup
# mounts; tmpfs over /run/containerd, where shims put their sockets whatever the exec
# root, and over /run/netns, so that `nsutil create` there leaves nothing on the
# machine's). dockerd and everything beside it run in its namespaces; killing it kills
# them all and drops every mount they made. It also exits when this script goes away,
# however that happens: it waits for the end of its stdin, a pipe only this shell holds.
holder_script="set -eu
$cgroup_mounts
for d in /run/containerd /run/netns; do mkdir -p \"\$d\" && mount -t tmpfs tmpfs \"\$d\"; done
echo ready
exec >/dev/null 3<&0
cat <&3 >/dev/null &
wait \$!
"

children() { # PID: its children's PIDs, one line
  local pids
  pids=$(cat /proc/"$1"/task/*/children 2>/dev/null) || true
  echo $pids
}
alive() { # PID: running (a zombie is not)
  local stat
  stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}
wait_gone() { # PID SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  return 1
}
# Stops a program started under `nsenter` (PID is nsenter's, which does not pass signals
# on): SIGTERM to the program, SIGKILL to both after SECONDS.
stop() { # WHAT PID SECONDS
  local pids
  pids=$(children "$2")
  kill -TERM ${pids:-$2} 2>/dev/null
  if ! wait_gone "$2" "$3"; then
    echo "demo-docker: $1 did not exit on SIGTERM within $3 s; killing it" >&2
    kill -KILL $pids "$2" 2>/dev/null
    wait_gone "$2" 5
  fi
  wait "$2" 2>/dev/null
}

# Runs a program in dockerd's namespaces (network, mount, PID): where a user of a machine
# running dockerd, switchd and the plugin would type it.
enter=() # nsenter into the holder's namespaces, once it runs
inside() { "${enter[@]}" "$@"; }
client_cmd=(/usr/bin/docker -H "unix://$work/docker.sock")
docker() { "${client_cmd[@]}" "$@"; }
swctl() { inside "$bin/swctl" "$@"; }
nsutil() { inside "$bin/nsutil" "$@"; }

cleanup() {
  local rc=$?
  set +e
  trap '' INT TERM # a second Ctrl-C must not stop the cleanup half-way
  if ((rc == 130 || rc == 143)); then
    printf '\ndemo-docker: interrupted; cleaning up\n' >&2
  elif ((rc != 0)); then
    echo >&2
    echo "demo-docker: FAILED (exit $rc); the end of the logs:" >&2
    for log in dockerd switchd plugin holder; do
      [[ -s $work/$log.log ]] && { echo "--- $log.log" >&2; tail -n 15 "$work/$log.log" >&2; }
    done
  fi
  [[ -n $made_legacy ]] && timeout 30 "${enter[@]}" "$bin/nsutil" delete legacy >/dev/null
  if [[ -n $dockerd_nsenter ]] && alive "$dockerd_nsenter"; then
    # Containers and networks go while the plugin and switchd still run, so that they
    # hear of it (dockerd retries each call to a plugin that is gone).
    local ids
    ids=$(timeout 30 "${client_cmd[@]}" ps -aq)
    [[ -n $ids ]] && timeout 60 "${client_cmd[@]}" rm -f $ids >/dev/null
    ids=$(timeout 30 "${client_cmd[@]}" network ls -q --filter "driver=$driver")
    [[ -n $ids ]] && timeout 60 "${client_cmd[@]}" network rm $ids >/dev/null
    stop dockerd "$dockerd_nsenter" 30
  fi
  [[ -n $plugin_nsenter ]] && stop switchyard-docker "$plugin_nsenter" 10
  [[ -n $switchd_nsenter ]] && stop switchd "$switchd_nsenter" 10
  # Whatever is left (containerd, shims, containers) dies with the holder, and so do the
  # mounts made in its mount namespace. unshare, its parent, exits once they are all gone.
  if [[ -n $unshare_pid ]]; then
    [[ -n $holder_in ]] && exec {holder_in}>&-
    [[ -n $holder ]] && kill -KILL "$holder" 2>/dev/null
    wait_gone "$unshare_pid" 30 || echo "demo-docker: dockerd's namespace did not empty in 30 s" >&2
    wait "$unshare_pid" 2>/dev/null
  fi
  # The containers' cgroups, under dockerd's cgroup parent, in every hierarchy; from a
  # process with the holder's cgroup mounts, which this one may lack.
  if ip netns pids "$ns" >/dev/null 2>&1; then
    ip netns exec "$ns" sh -c "$cgroup_mounts
      for h in /sys/fs/cgroup/*/; do
        [ -d \"\${h}$cgroup_parent\" ] && find \"\${h}$cgroup_parent\" -depth -type d -exec rmdir {} +
      done
      true"
  fi
  ip netns del "$client" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  [[ -n $made_spec ]] && rm -f "$spec"
  [[ -n $made_spec_dir ]] && rmdir "$spec_dir" 2>/dev/null
  # Nothing should be mounted under the directory here (dockerd mounts in its own
  # namespace); removing through a mount would empty what is mounted.
  awk -v dir="$work/" 'index($5 "/", dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r point; do umount -l "$point"; done
  if awk -v dir="$work/" 'index($5 "/", dir) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "demo-docker: not removing $work: something is still mounted under it" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap 'echo "demo-docker: failed: $BASH_COMMAND" >&2' ERR
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# A command as a user types it: words quoted only where the shell needs it.
quote() {
  local out= word
  for word in "$@"; do
    if [[ $word =~ ^[][A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=" $word"
    else
      out+=" '${word//\'/\'\\\'\'}'"
    fi
  done
  printf '%s' "${out# }"
}
say() { printf '$ %s\n' "$(quote "$@")"; }
show() { say "$@"; "$@"; }
wait_for() { # WHAT NSENTER-PID COMMAND...: until COMMAND succeeds, 60 s at most
  local what=$1 pid=$2 i
  shift 2
  for ((i = 0; i < 600; i++)); do
    # In a subshell: a trap that runs in a function run with redirections runs with
    # them (the cleanup's messages would go to /dev/null).
    ("$@") >/dev/null 2>&1 && return 0
    alive "$pid" || { echo "demo-docker: $what exited" >&2; return 1; }
    sleep 0.1
  done
  echo "demo-docker: $what did not come up in 60 s" >&2
  return 1
}

step "dockerd in namespaces of its own ($ns), state in $work"
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "$work/client" "$work/plugins"
cat >"$work/daemon.json" <<EOF
{
  "deprecated-key-path": "$work/key.json",
  "cgroup-parent": "/$cgroup_parent"
}
EOF
coproc setsid ip netns exec "$ns" unshare --pid --fork --mount-proc --kill-child \
  sh -c "$holder_script" 2>"$work/holder.log"
unshare_pid=$COPROC_PID
holder_in=${COPROC[1]} # bash's own copies of the coproc's pipes are not inherited
read -r -t 30 ready <&"${COPROC[0]}" || ready=
[[ $ready == ready ]] || { echo "demo-docker: the namespaces' holder did not start" >&2; exit 1; }
holder=$(children "$unshare_pid")
enter=(nsenter --target="$holder" --mount --net --pid --)
# No docker0, no firewall rules, no sysctl changes, no proxy processes: nothing in the
# namespace but what the plugin and switchd make.
setsid "${enter[@]}" /usr/sbin/dockerd \
  --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
  --config-file "$work/daemon.json" --host "unix://$work/docker.sock" \
  --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
  --userland-proxy=false </dev/null >"$work/dockerd.log" 2>&1 &
dockerd_nsenter=$!
wait_for dockerd "$dockerd_nsenter" docker info
docker version --format 'dockerd {{.Server.Version}}, in network namespace '"$ns"
# No registry: the image is the machine's static busybox and its applets.
mkdir -p "$work/rootfs"/{bin,dev,etc,proc,sys,tmp}
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh cat echo hostname httpd ip ls mkdir nc nslookup ping ps sleep; do
  ln -s busybox "$work/rootfs/bin/$applet"
done
tar -C "$work/rootfs" -cf "$work/bb.tar" .
show docker import "$work/bb.tar" local/bb

step "switchd and the plugin beside dockerd (its network, mount and PID namespaces)"
setsid "${enter[@]}" "$bin/switchd" \
  --socket "$work/switchd.sock" --state-dir "$work/state" \
  </dev/null >/dev/null 2>"$work/switchd.log" &
switchd_nsenter=$!
wait_for switchd "$switchd_nsenter" swctl status
# dockerd finds the plugin by its spec file (for every dockerd on the machine: the name
# is this demo's own, rather than `switchyard`).
[[ -d $spec_dir ]] || { mkdir -p "$spec_dir" && made_spec_dir=1; }
(set -o noclobber && echo "unix://$work/plugins/$driver.sock" >"$spec") ||
  { echo "demo-docker: $spec exists already" >&2; exit 1; }
made_spec=1
setsid "${enter[@]}" "$bin/switchyard-docker" \
  --name "$driver" --plugin-dir "$work/plugins" --socket "$work/switchd.sock" \
  --docker-host "unix://$work/docker.sock" </dev/null >/dev/null 2>"$work/plugin.log" &
plugin_nsenter=$!
wait_for switchyard-docker "$plugin_nsenter" test -S "$work/plugins/$driver.sock"
show swctl status
echo "plugin: $driver (spec file $spec)"

step "a Docker network on switchd"
show docker network create -d "$driver" --ipam-driver "$driver" \
  --subnet 10.30.0.0/24 -o masquerade=true blue
show docker network ls --filter "driver=$driver"

step "a web server with a published port, and a container that finds it by name"
show docker run -d --name web --network blue -p 8080:80 local/bb \
  sh -c 'mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www'
web=$(docker inspect --format '{{(index .NetworkSettings.Networks "blue").IPAddress}}' web)
echo "web is $web"
show docker run --rm --network blue local/bb ping -c1 web # Docker's embedded DNS

step "a plain namespace on the same network (nsutil, next to dockerd)"
show nsutil create legacy
made_legacy=1
show nsutil attach legacy --network blue
say ip netns exec legacy ping -c1 "$web"
inside ip netns exec legacy ping -c1 "$web"

step "one network, two views"
show docker network inspect blue --format \
  '{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}} {{json .Options}}
{{range .Containers}}  {{.Name}} {{.IPv4Address}}
{{end}}'
show swctl network inspect blue

step "the published port from outside: a client namespace with a link to dockerd's"
ip netns add "$client"
ip -n "$client" link set lo up
ip -n "$ns" link add to-client type veth peer name eth0 netns "$client"
ip -n "$ns" addr add 192.168.90.1/24 dev to-client
ip -n "$client" addr add 192.168.90.2/24 dev eth0
ip -n "$ns" link set to-client up
ip -n "$client" link set eth0 up
echo "dockerd's namespace: 192.168.90.1/24, the client's: 192.168.90.2/24"
get='(printf "GET / HTTP/1.0\r\n\r\n"; sleep 1) | busybox nc -w 3 192.168.90.1 8080'
printf 'client$ %s\n' "$get"
answer=
for _ in $(seq 20); do # httpd may still be starting
  answer=$(ip netns exec "$client" sh -c "$get" 2>&1) && [[ $answer == *"hello from web"* ]] && break
  sleep 0.5
done
printf '%s\n' "$answer" | tr -d '\r'
[[ $answer == *"hello from web"* ]] ||
  { echo "demo-docker: no answer on the published port" >&2; exit 1; }

step "clean up"
echo "removing the containers, the network, dockerd, the plugin, switchd and the namespaces"
