#!/usr/bin/env bash
# The README's quick start: standalone mode, no Kubernetes.
#   hack/demo.sh up DIR    write the example image, compose the demo LayerSet, mount it at DIR/mnt
#   hack/demo.sh down DIR  unmount it, remove the volume and DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?usage: demo.sh up|down DIR}
dir=${2:?usage: demo.sh up|down DIR}
bin=bin/layerset-csi

if [[ $(id -u) != 0 ]]; then
  echo "The demo mounts overlayfs and needs root: run it as root (sudo make demo)." >&2
  exit 1
fi

case $cmd in
up)
  mkdir -p "$dir"
  go run ./hack/example-image --out "$dir/image"
  sed "s|@IMAGE@|$dir/image|g" examples/standalone/layerset.yaml.in >"$dir/layerset.yaml"
  "$bin" mount --root "$dir/root" --layerset "$dir/layerset.yaml" "$dir/mnt"
  echo
  echo "== The merged tree at $dir/mnt =="
  (cd "$dir/mnt" && find . -mindepth 1 | sort)
  echo
  echo "== A few files =="
  for f in opt/toolchain/VERSION srv/app/index.html etc/volume-info etc/motd; do
    printf '%-24s %s' "$f:" "$(cat "$dir/mnt/$f")"; echo
  done
  echo
  echo "== The layer store =="
  "$bin" layers ls --root "$dir/root"
  echo
  echo "Look around in $dir/mnt (writes go to the volume's own upper)."
  echo "Clean up with: make demo-clean"
  ;;
down)
  if [[ -d $dir/root ]] && mountpoint -q "$dir/mnt" 2>/dev/null; then
    "$bin" unmount --root "$dir/root" "$dir/mnt"
  fi
  rm -rf "$dir"
  echo "removed $dir"
  ;;
*)
  echo "usage: demo.sh up|down DIR" >&2
  exit 2
  ;;
esac
