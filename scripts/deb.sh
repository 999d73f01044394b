#!/usr/bin/env bash
# `make deb`: a Debian package of switchyard, built by dpkg-deb from the tree that
# `make install DESTDIR=... PREFIX=/usr` makes (cargo-deb would be one more tool to
# compile, and would need the layout said twice). The binaries come from BUILD_DIR
# (target/release; built when missing), the package goes to
# DEB_DIR/switchyard_VERSION_ARCH.deb. The version is the workspace's, the dependencies
# are what dpkg-shlibdeps finds the binaries linked against. No maintainer scripts: the
# package starts nothing (systemctl enable --now switchd does, docs/operations.md).
set -euo pipefail

build_dir=${BUILD_DIR:-target/release}
deb_dir=${DEB_DIR:-target/debian}
make=${MAKE:-make}
# xz as Debian's archive; DEB_COMPRESS=gzip or none for a quick local build.
compress=${DEB_COMPRESS:-xz}

cd "$(dirname "$0")/.."
for tool in dpkg-deb dpkg-shlibdeps strip; do
  command -v "$tool" >/dev/null || {
    echo "deb: $tool is missing; install dpkg-dev and binutils (scripts/deps.sh does)" >&2
    exit 1
  }
done

version=$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
  p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' Cargo.toml)
[[ -n $version ]] || { echo "deb: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
arch=$(dpkg --print-architecture)
name=switchyard_${version}_${arch}

mkdir -p "$deb_dir"
deb_dir=$(cd "$deb_dir" && pwd)
stage=$(mktemp -d "$deb_dir/$name.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root

"$make" --no-print-directory install DESTDIR="$root" PREFIX=/usr BUILD_DIR="$build_dir" >/dev/null
# As Debian's packages are: no debugging sections in the binaries (a release build keeps
# line tables for backtraces; they would double the package).
elves=("$root"/usr/bin/* "$root"/usr/sbin/* "$root"/opt/cni/bin/*)
strip --strip-unneeded --remove-section=.comment --remove-section=.note "${elves[@]}"

# dpkg-shlibdeps reads debian/control of a source tree; this one has only what it asks.
mkdir -p "$stage/src/debian"
printf 'Source: switchyard\n\nPackage: switchyard\nArchitecture: any\n' >"$stage/src/debian/control"
depends=$(cd "$stage/src" && dpkg-shlibdeps -O "${elves[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[[ -n $depends ]] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

mkdir -p "$root/DEBIAN" "$root/usr/share/doc/switchyard"
install -m 644 README.md "$root/usr/share/doc/switchyard/README.md"
printf 'switchyard, a userspace virtual switch for containers.\nLicense: Apache-2.0\n' \
  >"$root/usr/share/doc/switchyard/copyright"
cat >"$root/DEBIAN/control" <<EOF
Package: switchyard
Version: $version
Architecture: $arch
Maintainer: switchyard developers <switchyard@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: net
Priority: optional
Description: userspace virtual switch for containers
 switchd switches Ethernet frames between TAP devices in container network
 namespaces: MAC learning, 802.1Q VLANs, VXLAN overlays, networks with IPAM, a
 gateway, isolation and NAT, and names by DNS. swctl controls it, nsutil wires
 namespaces to it, switchyard-cni and switchyard-docker attach containers of
 CNI runtimes (Kubernetes, Podman) and Docker. systemd units: switchd.service,
 switchyard-docker.service.
EOF

dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$deb_dir/$name.deb" >/dev/null
echo "deb: $deb_dir/$name.deb"
