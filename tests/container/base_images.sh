#!/usr/bin/env bash
# Makes local stand-ins for the base images the Dockerfile names (pinned by digest, passed to the
# build as PYTHON_IMAGE / NODE_IMAGE), because Docker Hub is unreachable here:
#   python:3.11-slim  a Debian bookworm minbase with python3 + pip (debootstrap), this host's CA
#                     certificates trusted (pip in the build goes through this network's TLS proxy)
#   node:20-slim      that image plus this host's Node.js (/usr/bin/node and npm), told to trust
#                     the same certificates (npm in the build goes through the same proxy)
# Each is skipped when the daemon already has it; the debootstrap root is cached as a tarball in
# CACHE_DIR so a wiped daemon re-imports it in seconds.
#
#   DOCKER=/usr/bin/docker DOCKER_HOST=unix://... tests/container/base_images.sh CACHE_DIR
set -euo pipefail

cache_dir=${1:?usage: base_images.sh CACHE_DIR}
docker=${DOCKER:-/usr/bin/docker}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache_dir"
rootfs_tar="$cache_dir/python-3.11-slim-rootfs.tar"
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT

have() { "$docker" image inspect "$1" >/dev/null 2>&1; }

if ! have python:3.11-slim; then
  if [[ ! -s $rootfs_tar ]]; then
    root=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
    scratch+=("$root")
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$root" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 \
      || { tail -20 "$cache_dir/debootstrap.log" >&2; exit 1; }
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    fi
    chroot "$root" update-ca-certificates >/dev/null
    rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
    ln -sf python3 "$root/usr/bin/python"
    ln -sf pip3 "$root/usr/bin/pip"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
    tar --numeric-owner -C "$root" -cf "$rootfs_tar.part" .
    mv "$rootfs_tar.part" "$rootfs_tar"
  fi
  "$docker" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$rootfs_tar" python:3.11-slim >/dev/null
fi

node_trusts_ca() {
  "$docker" image inspect node:20-slim --format '{{.Config.Env}}' | grep -q NODE_EXTRA_CA_CERTS
}

if ! have node:20-slim || ! node_trusts_ca; then
  node_ctx=$(mktemp -d "$cache_dir/node.XXXXXX")
  scratch+=("$node_ctx")
  cp "$(command -v node)" "$node_ctx/node"
  cp -a /usr/lib/node_modules/npm "$node_ctx/npm"
  printf '%s\n' \
    'FROM python:3.11-slim' \
    'COPY node /usr/bin/node' \
    'COPY npm /usr/lib/node_modules/npm' \
    'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/bin/npm && node --version' \
    >"$node_ctx/Dockerfile"
  DOCKER_BUILDKIT=1 "$docker" build -q --network=host -t node:20-slim "$node_ctx" >/dev/null
fi
