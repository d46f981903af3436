#!/usr/bin/env bash
# The containers of a KServe modelcar pod, reproduced without a container engine. Run by
# e2e/run.sh as root inside `unshare --mount` (a private mount namespace per container, as each
# container of a pod has), in the host's PID namespace (the pod's shareProcessNamespace: true).
#
#   pod.sh sidecar ROOTFS SHARED UID EXECDIR [MODEL_PATH]
#       KServe's `modelcar` sidecar: SHARED (the pod's emptyDir) is mounted at ROOTFS/mnt, then,
#       chrooted into ROOTFS as UID with group 0 and the image's environment (EXECDIR/env), it
#       runs the image's entrypoint (EXECDIR/entrypoint, empty for a good modelcar) followed by
#       KServe's args: sh -c "ln -sf /proc/$$/root/models /mnt/models && sleep infinity".
#       With MODEL_PATH (an LLMInferenceService's custom model path, e.g. /mnt/models/NAME),
#       SHARED is mounted at its parent and the args are KServe's for that case:
#       sh -c "mkdir -p PARENT && ln -sf /proc/$$/root/models MODEL_PATH && sleep infinity".
#
#   pod.sh run SHARED MOUNT UID WORKDIR HIDE [EXPOSE...] -- COMMAND...
#       A serving container that is not MLServer: SHARED is mounted at MOUNT (under /mnt: where
#       the pod's emptyDir is), HIDE covered and EXPOSE paths kept reachable as for `serve`, then COMMAND
#       runs as UID with group 0, without capabilities, in WORKDIR (also its HOME).
#
#   pod.sh serve sidecar SHARED UID VENV WORKDIR HIDE [EXPOSE...]
#   pod.sh serve native  MODELS UID VENV WORKDIR HIDE [EXPOSE...]
#       KServe's `kserve-container` running MLServer as UID with group 0 (the environment comes
#       from the caller: MLSERVER_*). `sidecar`: SHARED is mounted at /mnt, so /mnt/models is the
#       sidecar's symlink to /proc/<pid>/root/models (storageUri oci://). `native`: MODELS (an
#       image's /models) is mounted read-only at /mnt/models, as a Kubernetes image volume with
#       subPath models is (storageUri oci+native://). HIDE (the directory of the unpacked images)
#       is covered, so the sidecar's root is reachable only through /proc/<pid>/root, as in a
#       pod. EXPOSE paths (the venv, the Python it was made from) stay reachable for UID even
#       when they live in a home directory only root may enter.
set -euo pipefail

KSERVE_SIDECAR_ARGS='ln -sf /proc/$$/root/models /mnt/models && sleep infinity'

sidecar() {
  local rootfs=$1 shared=$2 uid=$3 execdir=$4 model_path=${5:-}
  local -a entrypoint=() env=()
  local mnt=/mnt args=$KSERVE_SIDECAR_ARGS
  if [ -n "$model_path" ]; then
    mnt=$(dirname "$model_path")
    args="mkdir -p $mnt && ln -sf /proc/\$\$/root/models $model_path && sleep infinity"
  fi
  readarray -d '' entrypoint < "$execdir/entrypoint"
  readarray -d '' env < "$execdir/env"
  # The runtime creates mount points for volumes.
  [ -d "$rootfs$mnt" ] || mkdir -p "$rootfs$mnt"
  mount --bind "$shared" "$rootfs$mnt"
  # chroot finds the command with the image's PATH, inside the image.
  local chroot
  chroot=$(command -v chroot)
  exec env -i "${env[@]}" "$chroot" --userspec="$uid:0" "$rootfs" \
    "${entrypoint[@]}" sh -c "$args"
}

run() {
  local shared=$1 mount=$2 uid=$3 workdir=$4 hide=$5
  shift 5
  local -a expose_paths=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do expose_paths+=("$1"); shift; done
  shift
  # MOUNT is under /mnt: a tmpfs there holds its mount point, leaving the host's /mnt as it is.
  [ -d /mnt ] || mkdir -p /mnt
  mount -t tmpfs -o mode=0755 tmpfs /mnt
  mkdir -p "$mount"
  mount --bind "$shared" "$mount"
  mount -t tmpfs -o mode=0755 tmpfs "$hide"
  expose "${expose_paths[@]}"
  cd "$workdir"
  exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$workdir" LANG=C.UTF-8 HF_HUB_OFFLINE=1 \
    setpriv --reuid="$uid" --regid=0 --clear-groups --inh-caps=-all --bounding-set=-all \
    --no-new-privs "$@"
}

serve() {
  local mode=$1 src=$2 uid=$3 venv=$4 workdir=$5 hide=$6
  shift 6
  [ -d /mnt ] || mkdir -p /mnt
  case $mode in
    sidecar)
      mount --bind "$src" /mnt
      ;;
    native)
      mount -t tmpfs -o mode=0755 tmpfs /mnt
      mkdir /mnt/models
      mount --bind "$src" /mnt/models
      mount -o remount,bind,ro /mnt/models
      ;;
    *) echo "pod.sh: unknown mode $mode" >&2; exit 2 ;;
  esac
  mount -t tmpfs -o mode=0755 tmpfs "$hide"
  expose "$@"
  cd "$workdir"
  export HOME=$workdir PATH=$venv/bin:$PATH
  # kserve-mlserver's securityContext: non-root, no privilege escalation, capabilities dropped.
  exec setpriv --reuid="$uid" --regid=0 --clear-groups --inh-caps=-all --bounding-set=-all \
    --no-new-privs "$venv/bin/mlserver" start /mnt/models
}

# Paths under $HOME stay reachable when $HOME is private (root's is 0700): cover $HOME with an
# empty tmpfs and bind the paths back at the same places.
expose() {
  local home=${HOME:-/} p rel hold
  [ "$home" != / ] && [ -d "$home" ] || return 0
  local -a under=()
  for p in "$@"; do
    case $p in "$home"/*) under+=("${p#"$home"/}") ;; esac
  done
  [ ${#under[@]} -gt 0 ] || return 0
  hold=$(mktemp -d "${TMPDIR:-/tmp}/modelcar-e2e-home.XXXXXX")
  mount --rbind "$home" "$hold"
  mount -t tmpfs -o mode=0755 tmpfs "$home"
  for rel in "${under[@]}"; do
    mkdir -p "$home/$rel"
    mount --rbind "$hold/$rel" "$home/$rel"
  done
  umount -l "$hold"
  rmdir "$hold"
}

cmd=${1:?usage: pod.sh sidecar|serve|run ...}
shift
case $cmd in
  sidecar) sidecar "$@" ;;
  serve) serve "$@" ;;
  run) run "$@" ;;
  *) echo "pod.sh: unknown command $cmd" >&2; exit 2 ;;
esac
