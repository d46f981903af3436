#!/usr/bin/env bash
# Make a minimal modelcar base image from Debian's static busybox, for machines that cannot reach
# registry.access.redhat.com: an OCI layout at OUT (default build/base) tagged `busybox`, with the
# sh, ln, sleep, ls and mkdir that KServe runs. Needs busybox-static and umoci.
set -euo pipefail
out=${1:-build/base}
for tool in umoci; do
  command -v "$tool" >/dev/null || { echo "offline-base: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "offline-base: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$(dirname "$out")"
umoci init --layout "$out"
umoci new --image "$out:busybox"
umoci config --image "$out:busybox" --os linux --architecture "$(dpkg --print-architecture 2>/dev/null || echo amd64)" --config.env PATH=/usr/bin:/bin
umoci unpack --rootless --image "$out:busybox" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/tmp"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for applet in sh ln sleep ls mkdir cat echo; do ln -s busybox "$work/bundle/rootfs/bin/$applet"; done
umoci repack --image "$out:busybox" "$work/bundle" >/dev/null
echo "oci:$out:busybox"
