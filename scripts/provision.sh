#!/usr/bin/env bash
# Install the real components the tests and the sandbox use (Debian/Ubuntu, apt):
#   docker.io docker-registry git-lfs openssh-server busybox-static skopeo chromium
# Idempotent and quick: nothing is fetched when everything is present (no apt-get update).
# Without root or apt-get it prints ONE line naming what is missing and how to get it, and exits 0
# (tests that need a missing part then skip, or fail under CI=true).
#
# Usage: scripts/provision.sh [--check]
#   --check   only report what is missing (one line), install nothing; exit 0.
set -euo pipefail

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "provision: unknown argument: $1 (usage: scripts/provision.sh [--check])" >&2; exit 2 ;;
esac

PACKAGES=(docker.io docker-registry git-lfs openssh-server busybox-static skopeo chromium)

dpkg_installed() {
  command -v dpkg-query >/dev/null 2>&1 &&
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

is_static() {  # a statically linked executable (busybox must run in a FROM scratch image)
  local out
  [ -x "$1" ] || return 1
  out=$(LC_ALL=C ldd "$1" 2>&1 || true)
  case "$out" in *"not a dynamic executable"*|*"statically linked"*) return 0 ;; esac
  return 1
}

# present PACKAGE: the package is installed (dpkg) and its program is on this machine
present() {
  local have=1
  case "$1" in
    docker.io)       command -v dockerd >/dev/null 2>&1 && { [ -x /usr/bin/docker ] || command -v docker >/dev/null 2>&1; } || have=0 ;;
    docker-registry) command -v docker-registry >/dev/null 2>&1 || have=0 ;;
    git-lfs)         command -v git-lfs >/dev/null 2>&1 || have=0 ;;
    openssh-server)  { [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; } || have=0 ;;
    busybox-static)  { is_static /bin/busybox || is_static /usr/bin/busybox; } || have=0 ;;
    skopeo)          command -v skopeo >/dev/null 2>&1 || have=0 ;;
    chromium)        command -v chromium >/dev/null 2>&1 || have=0 ;;  # renders the status page in tests
  esac
  # docker.io: a preinstalled non-Debian docker (e.g. /usr/local/bin/docker 28.x without buildx)
  # is not enough; the Debian client /usr/bin/docker with BuildKit is wanted.
  if [ "$1" = docker.io ] && command -v dpkg-query >/dev/null 2>&1 && ! dpkg_installed docker.io; then
    have=0
  fi
  [ "$have" = 1 ]
}

installable() {  # apt knows a candidate version for the package
  local cand
  cand=$(LC_ALL=C apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
  [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
  present "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "provision: ok, all present (${PACKAGES[*]})"
  exit 0
fi

if [ "$check_only" = 1 ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  why="run: sudo make provision"
  command -v apt-get >/dev/null 2>&1 || why="no apt-get here: install them with your package manager"
  [ "$check_only" = 1 ] && why="run: make provision (as root)"
  echo "provision: missing ${missing[*]}; ${why} (or: sudo apt-get install -y ${missing[*]}); tests needing them will skip (fail under CI=true)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1   # apt's needrestart hook: do not scan or restart services

# skopeo is optional: leave it out when apt has no candidate (checked before any apt-get update,
# so a machine without skopeo in its sources does not run apt-get update on every call).
want=()
skipped_skopeo=0
for p in "${missing[@]}"; do
  if [ "$p" = skopeo ] && ! installable skopeo; then skipped_skopeo=1; continue; fi
  want+=("$p")
done

if [ "${#want[@]}" -eq 0 ]; then
  echo "provision: ok (skopeo is not installable from the configured apt sources: left out)"
  exit 0
fi

echo "provision: installing ${want[*]}"
start=$SECONDS
log=$(mktemp "${TMPDIR:-/tmp}/provision.XXXXXX.log")
if ! apt-get update -qq >"$log" 2>&1; then
  tail -n 20 "$log" >&2; echo "provision: apt-get update failed (full log: $log)" >&2; exit 1
fi
# the package lists are fresh now: skopeo may have become installable
if [ "$skipped_skopeo" = 1 ] && installable skopeo; then want+=(skopeo); skipped_skopeo=0; fi
if ! apt-get install -y -q "${want[@]}" >>"$log" 2>&1; then
  tail -n 20 "$log" >&2; echo "provision: apt-get install ${want[*]} failed (full log: $log)" >&2; exit 1
fi
rm -f "$log"
[ "$skipped_skopeo" = 1 ] && echo "provision: skopeo is not installable from the configured apt sources: left out"

still=()
for p in "${want[@]}"; do present "$p" || still+=("$p"); done
if [ "${#still[@]}" -gt 0 ]; then
  echo "provision: installed but still not usable: ${still[*]}" >&2
  exit 1
fi
echo "provision: installed ${want[*]} in $((SECONDS - start)) s"
