#!/usr/bin/env bash
# Build the csc base image without any image registry (DESIGN.md §6):
# debootstrap a minimal Debian (minbase + python3 + venv) from the Debian
# mirror this machine's apt already uses, trim it, and `docker import` it.
#
# Usage: images/base/build.sh [--browser] [TAG]   (default TAG: csc-base:latest)
#   --browser  also chromium + chromedriver + a font (the viewer's screenshots), e.g.
#              images/base/build.sh --browser csc-base-browser:latest
#              (starts from csc-base:latest's files when that image exists: no second debootstrap)
# Env:   SUITE (default: this machine's release codename, else bookworm)
#        MIRROR (default: read from apt's configuration at build time)
#        KEEP_ROOTFS=1 keeps the unpacked tree under images/base/rootfs
#
# Elsewhere, Dockerfiles use BASE_IMAGE=python:3.11-slim and this script is not needed.
set -euo pipefail

BROWSER=0
if [[ "${1:-}" == --browser ]]; then BROWSER=1; shift; fi
TAG="${1:-csc-base:latest}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOTFS="${HERE}/rootfs/$(printf %s "$TAG" | tr -c "A-Za-z0-9_.-" _)"

log() { printf 'base: %s\n' "$*" >&2; }
die() { printf 'base: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "debootstrap needs root (run as root or via sudo)"
command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install -y debootstrap)"
command -v docker >/dev/null || die "docker CLI not installed"
docker info >/dev/null 2>&1 || die "docker daemon not reachable (start dockerd)"

if [[ -z "${SUITE:-}" ]]; then
  SUITE="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
  SUITE="${SUITE:-bookworm}"
fi

# The mirror: whatever apt on this machine uses for the main suite. Never hard-coded.
if [[ -z "${MIRROR:-}" ]]; then
  MIRROR="$(apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 'Identifier: Packages' 2>/dev/null \
            | awk -v s="$SUITE" '$1 == s { print $2; exit }')"
fi
[[ -n "${MIRROR:-}" ]] || die "no apt source for suite '${SUITE}' found (apt-get indextargets); set MIRROR=URL"
MIRROR="${MIRROR%/}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
KEYOPT=()
[[ -f "$KEYRING" ]] && KEYOPT=(--keyring="$KEYRING")

LOGFILE="${TMPDIR:-/tmp}/csc-base-debootstrap.$(printf %s "$TAG" | tr -c "A-Za-z0-9_.-" _).log"
: > "$LOGFILE"
PACKAGES=python3,python3-venv,ca-certificates
EXTRA=()   # installed with apt inside the new tree: debootstrap's resolver cannot pick virtual packages
[[ $BROWSER == 1 ]] && EXTRA=(chromium chromium-driver fonts-dejavu-core)
# Nothing of the host may stay mounted in the tree (debootstrap mounts /proc while configuring):
# unmount before importing it and before removing it.
unmount_tree() {
  local m
  for m in $(awk -v r="$ROOTFS" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
unmount_tree; rm -rf "$ROOTFS"; mkdir -p "$ROOTFS"
trap unmount_tree EXIT
t0=$(date +%s)
FROM="${FROM_IMAGE:-csc-base:latest}"
if [[ ${#EXTRA[@]} -gt 0 && "$FROM" != "$TAG" ]] && docker image inspect "$FROM" >/dev/null 2>&1; then
  log "starting from the files of ${FROM}"
  cid="$(docker create "$FROM" true)"
  docker export "$cid" | tar -C "$ROOTFS" -x; docker rm "$cid" >/dev/null
  cp /etc/resolv.conf "$ROOTFS"/etc/resolv.conf 2>/dev/null || true
else
  log "debootstrap ${SUITE} (minbase + ${PACKAGES}) from ${MIRROR}"
  debootstrap --variant=minbase --include="$PACKAGES" "${KEYOPT[@]}" "$SUITE" "$ROOTFS" "$MIRROR" \
    >> "$LOGFILE" 2>&1 || { tail -20 "$LOGFILE" >&2; die "debootstrap failed (log: $LOGFILE)"; }
fi

printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$ROOTFS"/etc/apt/sources.list
if [[ ${#EXTRA[@]} -gt 0 ]]; then
  log "apt-get install ${EXTRA[*]} in the new tree"
  printf '#!/bin/sh\nexit 101\n' > "$ROOTFS"/usr/sbin/policy-rc.d; chmod +x "$ROOTFS"/usr/sbin/policy-rc.d
  { chroot "$ROOTFS" apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive chroot "$ROOTFS" apt-get install -y -qq --no-install-recommends "${EXTRA[@]}"; } \
    >> "$LOGFILE" 2>&1 || { tail -20 "$LOGFILE" >&2; die "apt-get install ${EXTRA[*]} failed (log: $LOGFILE)"; }
  chroot "$ROOTFS" apt-get clean; rm -f "$ROOTFS"/usr/sbin/policy-rc.d
fi

# Trim what a runtime image never needs: apt lists and caches, docs, man pages, locales.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true

PYVER="$(chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
log "python ${PYVER}; importing as ${TAG}"
unmount_tree
tar --numeric-owner --one-file-system -C "$ROOTFS" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --change "LABEL org.opencontainers.image.title=csc-base org.opencontainers.image.description=\"Debian ${SUITE} minbase + python ${PYVER} (debootstrap, docker import)\" org.opencontainers.image.version=${PYVER}" \
  - "$TAG" >/dev/null
[[ "${KEEP_ROOTFS:-0}" == 1 ]] || { unmount_tree; rm -rf "$ROOTFS"; }
log "built ${TAG} in $(( $(date +%s) - t0 ))s: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
