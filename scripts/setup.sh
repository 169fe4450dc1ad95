#!/usr/bin/env bash
# Installs everything the tests, the lab and the demo need on a fresh Debian 12
# machine, as root: Debian packages for QEMU/OVMF/the lab, and a Python venv with the
# pinned tools from requirements.txt. Safe to run again: it only adds what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${CENTRA_VENV:-$here/.venv}

apt_packages=(
  python3 python3-venv python3-dev gcc git rsync curl openssh-client
  qemu-system-x86 qemu-utils ovmf ipxe-qemu debootstrap systemd-container
  qemu-system-arm qemu-efi-aarch64  # the lab's arm64 machines (boot --arch arm64: AAVMF)
  sbsigntool                       # sbverify/sbattach: the lab's Secure Boot test (an unsigned kernel copy)
  iproute2 nftables tftp-hpa busybox-static cpio xz-utils zstd
  shellcheck                       # ansible-test sanity's shellcheck test (skipped without it)
  kea-dhcp4-server isc-dhcp-server nginx-light
  kea-dhcp6-server                 # the DHCPv6 renderer's config check (kea-dhcp6 -t) in the unit tests
  isc-dhcp-relay                   # the lab's router namespace
  dnsmasq-base                     # the proxy backend's config check (dnsmasq --test) in the unit tests; no daemon starts
  fdisk dosfstools mtools syslinux syslinux-common syslinux-efi  # the lab's installer: its disk image
  kea-admin wrk atftp tftpd-hpa valgrind  # benchmarks/: perfdhcp, the HTTP load tool, a TFTP client with blksize, in.tftpd, callgrind
  postgresql                       # benchmarks/dhcp_perf.py --host-database: a PostgreSQL of its own (initdb, no service)
  prometheus chromium              # the status views' tests: promtool check metrics, a headless browser for /status
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  # The daemons are installed only for their config checkers (kea-dhcp4 -t,
  # dhcpd -t, nginx -t) in unit tests and for benchmarks/, and dhcrelay for the lab's
  # router namespace; the lab and the benchmarks start them themselves: keep all of them from starting on this machine.
  # A policy-rc.d that was there before (container images ship one) is left alone.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s "$here/requirements.txt" "$venv/.requirements.installed" 2>/dev/null; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.requirements.installed"
fi
# The one place the checkout becomes the collection centra.pxe: ansible.cfg's
# collections_path, molecule's config, the unit tests, the demo and the benchmarks
# all look in .ansible/collections.
link=$here/.ansible/collections/ansible_collections/centra/pxe
mkdir -p "$(dirname "$link")"
[ "$(readlink "$link" 2>/dev/null)" = "$here" ] || ln -sfn "$here" "$link"
echo "setup: ready ($venv; collection centra.pxe at $link)"
