#!/usr/bin/env bash
# Real local services for tests, demos and benchmarks, all on loopback, all state under STATE_DIR.
#
#   scripts/sandbox-services.sh start  STATE_DIR [--registry-port PORT] [--only docker,registry,image]
#   scripts/sandbox-services.sh stop   STATE_DIR [--only ...]
#   scripts/sandbox-services.sh status STATE_DIR
#
# Components:
#   docker    a private dockerd (vfs storage, no bridge, no iptables) on its own unix socket;
#             not started when $DOCKER_HOST already points at a responsive engine (that one is used).
#   registry  an OCI distribution registry (docker-registry) on 127.0.0.1:PORT (default 5000).
#   image     the local base image mvp-sandbox/httpd:latest (busybox: sh + httpd serving
#             /usr/share/nginx/html on port 80), built only when missing. Needs docker.
#
# Files under STATE_DIR (the interface for other tools):
#   env                  shell lines: DOCKER_HOST=... DOCKER=... MVP_REGISTRY=... BASE_IMAGE=... (source it)
#   docker/host          the DOCKER_HOST value, e.g. unix:///STATE_DIR/docker/docker.sock (only while usable)
#   docker/client        path of the docker client to use (/usr/bin/docker when present: it has BuildKit)
#   docker/dockerd.pid   pid of the dockerd this script started (absent when using an external engine)
#   docker/dockerd.log   its log;  docker/data  its vfs data root (removed only by rm -rf, as root)
#   registry/address     127.0.0.1:PORT (only while running)
#   registry/registry.pid, registry/registry.log, registry/config.yml, registry/data/
#   base/                build context of the base image (rootfs/bin/busybox + applet symlinks, Dockerfile)
#
# start is idempotent (live processes are reused) and exits non-zero when a requested component could
# not be had; stop ends only the processes this script started (by pid file) and keeps all data;
# status prints one line per component and exits 0.
set -euo pipefail

BASE_IMAGE=mvp-sandbox/httpd:latest
DOCKERD_WAIT=${SANDBOX_DOCKERD_WAIT:-30}     # seconds
REGISTRY_WAIT=${SANDBOX_REGISTRY_WAIT:-15}   # seconds
STOP_WAIT=${SANDBOX_STOP_WAIT:-20}           # seconds
ALL_COMPONENTS=docker,registry,image
APPLETS="sh ash httpd ls cat echo env wget mkdir rm cp mv ln ps sleep test [ true false id \
hostname grep sed head tail wc find du df chmod touch printf pwd date uname kill"

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }
say() { printf '%s\n' "$*"; }
die() { printf 'sandbox-services: %s\n' "$*" >&2; exit 2; }

cmd=${1:-}
case "$cmd" in
  start|stop|status) ;;
  -h|--help|help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
[ $# -ge 2 ] || die "$cmd needs STATE_DIR (scripts/sandbox-services.sh $cmd STATE_DIR)"
state_arg=$2
shift 2
registry_port=""
only=$ALL_COMPONENTS
while [ $# -gt 0 ]; do
  case "$1" in
    --registry-port) [ $# -ge 2 ] || die "--registry-port needs a value"; registry_port=$2; shift 2 ;;
    --registry-port=*) registry_port=${1#*=}; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a value"; only=$2; shift 2 ;;
    --only=*) only=${1#*=}; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done
if [ -n "$registry_port" ]; then
  if ! [[ "$registry_port" =~ ^[0-9]{1,5}$ ]] || [ "$registry_port" -lt 1 ] || [ "$registry_port" -gt 65535 ]; then
    die "--registry-port must be a port number, got: $registry_port"
  fi
fi
for c in ${only//,/ }; do
  case "$c" in docker|registry|image) ;; *) die "--only: unknown component '$c' (allowed: $ALL_COMPONENTS)" ;; esac
done
wants() { case ",$only," in *",$1,"*) return 0 ;; esac; return 1; }

if [ "$cmd" != start ] && [ ! -d "$state_arg" ]; then
  [ "$cmd" = status ] && say "docker    stopped" && say "registry  stopped" && say "image     unknown  $BASE_IMAGE  (no docker engine)"
  [ "$cmd" = stop ] && say "sandbox-services: nothing to stop ($state_arg does not exist)"
  exit 0
fi
mkdir -p "$state_arg"
STATE=$(cd "$state_arg" && pwd -P)
D=$STATE/docker
R=$STATE/registry
B=$STATE/base
mkdir -p "$D" "$R" "$B"

# one start/stop at a time per STATE_DIR (parallel test workers may race)
if command -v flock >/dev/null 2>&1 && [ "$cmd" != status ]; then
  exec 9>"$STATE/.lock"
  flock -w 120 9 || die "another sandbox-services.sh holds $STATE/.lock"
fi

# ---------------------------------------------------------------- helpers
running() {  # running PID: the process exists and is not a zombie (PID 1 may reap orphans slowly)
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
  [ "$st" != Z ] && [ "$st" != X ]
}

pid_alive() {  # pid_alive PIDFILE TEXT: the pid in PIDFILE runs and its command line contains TEXT
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9)
  [ -n "$pid" ] && running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}

http_ok() {  # http_ok HOST PORT PATH: a 200 answer
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "http://$1:$2$3" 2>/dev/null
  else
    local line
    exec 8<>"/dev/tcp/$1/$2" 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$3" "$1" "$2" >&8
    IFS= read -r -t 2 line <&8 || true
    exec 8<&- 8>&-
    case "$line" in "HTTP/1."?" 200"*) return 0 ;; esac
    return 1
  fi
}

port_open() {  # something accepts TCP connections on 127.0.0.1:PORT
  (exec 8<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

stop_pid() {  # stop_pid PID: TERM, wait, then KILL its process group (which we made with setsid)
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < STOP_WAIT * 10; i++)); do
    running "$pid" || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

children_of() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }

cleanup_mounts() {  # cleanup_mounts DIR...: unmount what a dead dockerd left mounted under DIRs
  [ "$(id -u)" -eq 0 ] && [ -r /proc/self/mountinfo ] || return 0
  local mp dir
  while IFS= read -r mp; do
    mp=$(printf '%b' "$mp")
    for dir in "$@"; do
      case "$mp/" in "$dir"/*) umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true ;; esac
    done
  done < <(awk '{print $5}' /proc/self/mountinfo | sort -r)
}

log_tail() { if [ -f "$1" ]; then tail -n "${2:-15}" "$1" | sed 's/^/    | /' >&2; fi; }

pick_client() {
  if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; return; fi
  command -v docker 2>/dev/null || true
}
CLIENT=$(pick_client)

engine_ok() {  # engine_ok DOCKER_HOST_VALUE
  [ -n "$CLIENT" ] && [ -n "$1" ] || return 1
  DOCKER_HOST=$1 timeout 10 "$CLIENT" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# The unix socket path limit is 108 bytes (sun_path). The deepest socket dockerd makes under its exec
# root is exec/containerd/containerd.sock.ttrpc; when that would not fit, the socket and the exec root
# go to a short directory named after a hash of STATE_DIR.
DEEPEST_SOCKET=/exec/containerd/containerd.sock.ttrpc
short_dir=/tmp/mvp-docker-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
if [ $((${#D} + ${#DEEPEST_SOCKET})) -lt 100 ]; then
  SOCK=$D/docker.sock
  EXEC_ROOT=$D/exec
else
  SOCK=$short_dir/docker.sock
  EXEC_ROOT=$short_dir/exec
fi
OUR_HOST=unix://$SOCK

write_env() {
  local host="" reg=""
  [ -s "$D/host" ] && host=$(cat "$D/host")
  [ -s "$R/address" ] && reg=$(cat "$R/address")
  {
    echo "# written by scripts/sandbox-services.sh; source it"
    [ -n "$host" ] && echo "DOCKER_HOST=$host"
    [ -n "$CLIENT" ] && echo "DOCKER=$CLIENT"
    [ -n "$reg" ] && echo "MVP_REGISTRY=$reg"
    echo "BASE_IMAGE=$BASE_IMAGE"
  } >"$STATE/env.tmp"
  mv -f "$STATE/env.tmp" "$STATE/env"
}

# ---------------------------------------------------------------- docker
docker_host_now() {  # the DOCKER_HOST value that works now, or nothing
  if pid_alive "$D/dockerd.pid" "--data-root $D/data" >/dev/null && engine_ok "$OUR_HOST"; then echo "$OUR_HOST"; return; fi
  if [ -s "$D/host" ] && [ "$(cat "$D/host")" != "$OUR_HOST" ] && engine_ok "$(cat "$D/host")"; then
    cat "$D/host"; return
  fi
}

start_docker() {
  [ -n "$CLIENT" ] && echo "$CLIENT" >"$D/client"
  local pid
  if pid=$(pid_alive "$D/dockerd.pid" "--data-root $D/data") && engine_ok "$OUR_HOST"; then
    echo "$OUR_HOST" >"$D/host"
    say "docker: running (reused, pid $pid) $OUR_HOST"
    return 0
  fi
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "$OUR_HOST" ] && engine_ok "$DOCKER_HOST"; then
    echo "$DOCKER_HOST" >"$D/host"
    say "docker: using the engine at DOCKER_HOST=$DOCKER_HOST (not started here)"
    return 0
  fi
  rm -f "$D/host"
  if [ -z "$CLIENT" ] || ! command -v dockerd >/dev/null 2>&1; then
    say "docker: unavailable: dockerd/docker not installed; fix: make provision (or: sudo apt-get install -y docker.io)"
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "docker: unavailable: dockerd needs root; fix: run as root, or export DOCKER_HOST=<a running engine>"
    return 1
  fi
  if [ -n "$pid" ]; then  # alive but not answering: it is ours, restart it
    say "docker: pid $pid does not answer on $OUR_HOST; restarting it"
    stop_dockerd "$pid"
  fi
  mkdir -p "$D/data" "$EXEC_ROOT" "$(dirname "$SOCK")"
  chmod 700 "$(dirname "$SOCK")" 2>/dev/null || true
  rm -f "$D/dockerd.pid" "$SOCK"   # stale ones would make dockerd refuse to start
  [ -s "$D/daemon.json" ] || echo '{}' >"$D/daemon.json"   # never read /etc/docker/daemon.json
  local t0=$SECONDS i
  setsid dockerd \
    --config-file "$D/daemon.json" \
    --storage-driver=vfs --iptables=false --ip6tables=false --ip-forward=false --bridge=none \
    --data-root "$D/data" --exec-root "$EXEC_ROOT" --pidfile "$D/dockerd.pid" \
    --host "$OUR_HOST" \
    </dev/null >>"$D/dockerd.log" 2>&1 9>&- &
  pid=$!   # dockerd writes $D/dockerd.pid itself (it refuses to start if the file exists)
  for ((i = 0; i < DOCKERD_WAIT * 5; i++)); do
    if ! running "$pid"; then
      say "docker: failed: dockerd exited during start-up (log: $D/dockerd.log)"
      log_tail "$D/dockerd.log"
      cleanup_mounts "$D/data" "$EXEC_ROOT"
      return 1
    fi
    if [ -S "$SOCK" ] && engine_ok "$OUR_HOST"; then
      [ "$(cat "$D/dockerd.pid" 2>/dev/null)" = "$pid" ] || echo "$pid" >"$D/dockerd.pid"
      echo "$OUR_HOST" >"$D/host"
      say "docker: started (pid $pid, $((SECONDS - t0)) s) $OUR_HOST"
      return 0
    fi
    sleep 0.2
  done
  say "docker: failed: no answer on $OUR_HOST after ${DOCKERD_WAIT} s (log: $D/dockerd.log); stopping it"
  log_tail "$D/dockerd.log"
  stop_dockerd "$pid"
  rm -f "$D/dockerd.pid"
  return 1
}

stop_dockerd() {  # stop_dockerd PID: dockerd, then its containerd (own process group) if it outlived it
  local kids k
  kids=$(children_of "$1")
  stop_pid "$1"
  for k in $kids; do
    running "$k" || continue
    grep -q containerd "/proc/$k/cmdline" 2>/dev/null || continue
    stop_pid "$k"
  done
  cleanup_mounts "$D/data" "$EXEC_ROOT"
}

stop_docker() {
  local pid
  if pid=$(pid_alive "$D/dockerd.pid" "--data-root $D/data"); then
    stop_dockerd "$pid"
    say "docker: stopped (pid $pid)"
  else
    cleanup_mounts "$D/data" "$EXEC_ROOT"
    if [ -s "$D/host" ] && [ "$(cat "$D/host")" != "$OUR_HOST" ]; then
      say "docker: not started here (the external engine at $(cat "$D/host") is left running)"
    else
      say "docker: not running (nothing started here)"
    fi
  fi
  rm -f "$D/dockerd.pid"
  if [ "$(cat "$D/host" 2>/dev/null)" = "$OUR_HOST" ]; then rm -f "$D/host"; fi
  rm -f "$SOCK"
  # the short runtime dir (long STATE_DIR case) holds only runtime state: remove it once dockerd is gone
  if [ "$EXEC_ROOT" = "$short_dir/exec" ] && [ -d "$short_dir" ] && ! pid_alive "$D/dockerd.pid" "--data-root $D/data" >/dev/null &&
     ! awk '{print $5}' /proc/self/mountinfo 2>/dev/null | grep -q "^$short_dir/"; then
    rm -rf "$short_dir"
  fi
}

status_docker() {
  local pid host
  if pid=$(pid_alive "$D/dockerd.pid" "--data-root $D/data"); then
    if engine_ok "$OUR_HOST"; then
      say "docker    running  $OUR_HOST  (pid $pid, client ${CLIENT:-none})"
    else
      say "docker    failing  $OUR_HOST  (pid $pid does not answer; log: $D/dockerd.log)"
    fi
  elif [ -s "$D/host" ] && host=$(cat "$D/host") && engine_ok "$host"; then
    say "docker    running  $host  (external engine, not managed here; client ${CLIENT:-none})"
  else
    say "docker    stopped  $OUR_HOST"
  fi
}

# ---------------------------------------------------------------- registry
configured_port() { sed -n 's/^ *addr: *127\.0\.0\.1:\([0-9]*\).*/\1/p' "$R/config.yml" 2>/dev/null | head -n1; }

write_registry_config() {
  cat >"$R/config.yml" <<EOF
# written by scripts/sandbox-services.sh
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $R/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$1
  secret: $2
EOF
}

start_registry() {
  local port=${registry_port:-$(configured_port)} pid t0=$SECONDS i
  port=${port:-5000}
  if pid=$(pid_alive "$R/registry.pid" "serve $R/config.yml"); then
    if [ "$(configured_port)" = "$port" ] && http_ok 127.0.0.1 "$port" /v2/; then
      echo "127.0.0.1:$port" >"$R/address"
      say "registry: running (reused, pid $pid) 127.0.0.1:$port"
      return 0
    fi
    say "registry: pid $pid is on port $(configured_port), $port requested: restarting it"
    stop_pid "$pid"
  fi
  rm -f "$R/registry.pid" "$R/address"
  if ! command -v docker-registry >/dev/null 2>&1; then
    say "registry: unavailable: docker-registry not installed; fix: make provision (or: sudo apt-get install -y docker-registry)"
    return 1
  fi
  if port_open "$port"; then
    say "registry: failed: 127.0.0.1:$port is already in use by another process; pick another --registry-port"
    return 1
  fi
  mkdir -p "$R/data"
  local secret
  secret=$(sed -n 's/^ *secret: *//p' "$R/config.yml" 2>/dev/null | head -n1)
  [ -n "$secret" ] || secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  write_registry_config "$port" "$secret"
  setsid docker-registry serve "$R/config.yml" </dev/null >>"$R/registry.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$R/registry.pid"
  for ((i = 0; i < REGISTRY_WAIT * 10; i++)); do
    if ! running "$pid"; then
      rm -f "$R/registry.pid"
      say "registry: failed: docker-registry exited during start-up (log: $R/registry.log)"
      log_tail "$R/registry.log"
      return 1
    fi
    if http_ok 127.0.0.1 "$port" /v2/; then
      echo "127.0.0.1:$port" >"$R/address"
      say "registry: started (pid $pid, $((SECONDS - t0)) s) 127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  say "registry: failed: no answer on http://127.0.0.1:$port/v2/ after ${REGISTRY_WAIT} s (log: $R/registry.log)"
  log_tail "$R/registry.log"
  stop_pid "$pid"
  rm -f "$R/registry.pid"
  return 1
}

stop_registry() {
  local pid
  if pid=$(pid_alive "$R/registry.pid" "serve $R/config.yml"); then
    stop_pid "$pid"
    say "registry: stopped (pid $pid)"
  else
    say "registry: not running (nothing started here)"
  fi
  rm -f "$R/registry.pid" "$R/address"
}

status_registry() {
  local pid port
  port=$(configured_port); port=${port:-${registry_port:-5000}}
  if pid=$(pid_alive "$R/registry.pid" "serve $R/config.yml"); then
    if http_ok 127.0.0.1 "$port" /v2/; then
      say "registry  running  127.0.0.1:$port  (pid $pid, data $R/data)"
    else
      say "registry  failing  127.0.0.1:$port  (pid $pid does not answer; log: $R/registry.log)"
    fi
  else
    say "registry  stopped  127.0.0.1:$port"
  fi
}

# ---------------------------------------------------------------- base image
find_busybox() {
  local b out
  for b in /bin/busybox /usr/bin/busybox; do
    [ -x "$b" ] || continue
    out=$(LC_ALL=C ldd "$b" 2>&1 || true)
    case "$out" in *"not a dynamic executable"*|*"statically linked"*) echo "$b"; return 0 ;; esac
  done
  return 1
}

write_base_context() {
  local bb=$1 a
  rm -rf "$B/rootfs.new"
  mkdir -p "$B/rootfs.new/bin" "$B/rootfs.new/etc" "$B/rootfs.new/tmp" "$B/rootfs.new/usr/share/nginx/html"
  cp "$bb" "$B/rootfs.new/bin/busybox"
  chmod 755 "$B/rootfs.new/bin/busybox"
  for a in $APPLETS; do ln -s busybox "$B/rootfs.new/bin/$a"; done
  chmod 1777 "$B/rootfs.new/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$B/rootfs.new/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$B/rootfs.new/etc/group"
  cat >"$B/rootfs.new/usr/share/nginx/html/index.html" <<'EOF'
<!doctype html><html><head><meta charset="utf-8"><title>mvp-sandbox httpd</title></head>
<body><h1>mvp-sandbox/httpd</h1><p>busybox httpd serving /usr/share/nginx/html</p></body></html>
EOF
  rm -rf "$B/rootfs"
  mv "$B/rootfs.new" "$B/rootfs"
  cat >"$B/Dockerfile" <<'EOF'
# written by scripts/sandbox-services.sh: a stand-in for nginx:alpine that needs no internet
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 80
CMD ["/bin/httpd","-f","-p","80","-h","/usr/share/nginx/html"]
EOF
  printf 'Dockerfile\n' >"$B/.dockerignore"
}

start_image() {
  local host bb t0=$SECONDS out
  host=$(docker_host_now)
  if [ -z "$host" ]; then
    say "image: unavailable: $BASE_IMAGE needs a running docker engine; fix: make provision, then start docker (as root)"
    return 1
  fi
  if DOCKER_HOST=$host "$CLIENT" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "image: present $BASE_IMAGE"
    return 0
  fi
  if ! bb=$(find_busybox); then
    say "image: unavailable: no static busybox; fix: make provision (or: sudo apt-get install -y busybox-static)"
    return 1
  fi
  write_base_context "$bb"
  # legacy builder: works with every client (the 28.x client has no buildx) and this build has no RUN
  if ! out=$(DOCKER_HOST=$host DOCKER_BUILDKIT=0 "$CLIENT" build -q --network=none \
      -t "$BASE_IMAGE" "$B" 2>&1); then
    say "image: failed: docker build of $BASE_IMAGE"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/    | /' >&2
    return 1
  fi
  say "image: built $BASE_IMAGE ($((SECONDS - t0)) s)"
}

status_image() {
  local host
  host=$(docker_host_now)
  if [ -z "$host" ]; then
    say "image     unknown  $BASE_IMAGE  (no docker engine)"
  elif DOCKER_HOST=$host "$CLIENT" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "image     present  $BASE_IMAGE"
  else
    say "image     missing  $BASE_IMAGE  (start builds it)"
  fi
}

# ---------------------------------------------------------------- main
case "$cmd" in
  start)
    failed=()
    if wants docker || wants image; then start_docker || failed+=(docker); fi
    if wants registry; then start_registry || failed+=(registry); fi
    if wants image; then start_image || failed+=(image); fi
    write_env
    if [ "${#failed[@]}" -gt 0 ]; then
      say "sandbox-services: not available: ${failed[*]}"
      exit 1
    fi
    ;;
  stop)
    if wants registry; then stop_registry; fi
    if wants docker; then stop_docker; fi
    write_env
    ;;
  status)
    status_docker
    status_registry
    status_image
    ;;
esac
exit 0
