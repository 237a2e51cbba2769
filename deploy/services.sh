# Sourced by deploy/test.sh (after system_deps.sh): the real services the integration tests use,
# on 127.0.0.1 only. Idempotent: what already runs is reused, so sourcing it again is a no-op.
#
#   PostgreSQL  a private cluster (PostgreSQL 15 from Debian, see system_deps.sh) in
#               .services/pg/ (git-ignored; as root it runs as the `postgres` user, and in
#               /var/tmp/perturb_assets-pg-* when that user cannot enter the checkout), user
#               and password `perturb`, database `perturb_test`, on a free port kept in its
#               `port` file; TCP on 127.0.0.1 only, fsync off (a throwaway test cluster)
#   S3          moto's standalone server (.venv/bin/moto_server, the `moto[server]` test extra),
#               log and pid in .services/
#
# Exports PERTURB_ASSETS_TEST_PG_URL (postgresql+psycopg2://...) and
# PERTURB_ASSETS_TEST_S3_ENDPOINT (http://127.0.0.1:PORT). A variable already set to a service
# that answers is kept as it is (your own server). Not root and a service cannot start: one line
# says why, that variable is left unset and its tests skip. As root (CI) a failure is an error.
#
# `bash deploy/services.sh stop` stops both servers (the data stay in .services/).
# The calling scripts set -euo pipefail; this file leaves shell options alone.

_pa_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_pa_state="$_pa_repo/.services"
_pa_wait_s="${PERTURB_ASSETS_SERVICES_WAIT_S:-60}"
_pa_pg_user=perturb
_pa_pg_password=perturb
_pa_pg_db=perturb_test

_pa_log() { echo "[services] $*" >&2; }

_pa_python() {
  if [ -x "$_pa_repo/.venv/bin/python" ]; then "$_pa_repo/.venv/bin/python" "$@"; else python3 "$@"; fi
}

_pa_free_port() {
  _pa_python -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Whether something accepts TCP connections on 127.0.0.1:$1 (or host $2).
_pa_listening() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# host and port of a URL, space-separated ("" when it has no port).
_pa_host_port() {
  _pa_python -c 'import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(u.hostname or "", u.port or {"http": 80, "https": 443}.get(u.scheme, 5432))' "$1" 2>/dev/null
}

_pa_reachable_url() {
  local hp host port
  hp="$(_pa_host_port "$1")" || return 1
  host="${hp% *}"
  port="${hp#* }"
  [ -n "$host" ] && [ -n "$port" ] && _pa_listening "$port" "$host"
}

_pa_is_root() { [ "$(id -u)" = 0 ]; }

# --- PostgreSQL ----------------------------------------------------------------------------

_pa_pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  dir="$(pg_config --bindir 2>/dev/null || true)"
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  dir="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
  [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  return 1
}

# Run a server command as the cluster's owner: `postgres` when root (the server refuses root),
# from / (the checkout may be closed to that user).
_pa_as_pg() {
  if _pa_is_root; then
    if command -v runuser >/dev/null 2>&1; then
      (cd / && runuser -u postgres -- "$@")
    else
      (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
    fi
  else
    "$@"
  fi
}

# The cluster's folder: .services/pg, or (root, when `postgres` cannot reach into the checkout,
# e.g. one under /root) a folder under /var/tmp named after the checkout.
_pa_pg_home() {
  local dir="$_pa_state/pg"
  mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ] || return 1
  if _pa_is_root; then
    chown postgres: "$dir" 2>/dev/null || return 1
    if ! _pa_as_pg test -w "$dir"; then
      dir="/var/tmp/perturb_assets-pg-$(echo "$_pa_repo" | sha256sum | cut -c1-12)"
      mkdir -p "$dir" && chown postgres: "$dir" || return 1
      echo "$dir" > "$_pa_state/pg.location"
    fi
  fi
  echo "$dir"
}

_pa_psql() {
  PGPASSWORD="$_pa_pg_password" PGCONNECT_TIMEOUT=5 "$_pa_pg_bin/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$_pa_pg_port" -U "$_pa_pg_user" "$@"
}

_pa_start_postgres() {
  local home data port tries waited=0
  if ! _pa_pg_bin="$(_pa_pg_bindir)"; then
    echo "PostgreSQL server binaries not found (bash deploy/system_deps.sh installs postgresql-15 as root)"
    return 1
  fi
  if _pa_is_root && ! id postgres >/dev/null 2>&1; then
    echo "no 'postgres' user to run the server as"
    return 1
  fi
  home="$(_pa_pg_home)" || { echo "cannot write the cluster folder $_pa_state/pg"; return 1; }
  data="$home/data"
  if [ ! -f "$data/PG_VERSION" ]; then
    _pa_log "initialising a PostgreSQL cluster in $data"
    (umask 077 && echo "$_pa_pg_password" >"$home/pwfile") 2>/dev/null || {
      echo "cannot write $home"
      return 1
    }
    _pa_is_root && chown postgres: "$home/pwfile"
    if ! _pa_as_pg "$_pa_pg_bin/initdb" -D "$data" -U "$_pa_pg_user" --pwfile="$home/pwfile" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
      >"$home/initdb.log" 2>&1; then
      rm -f "$home/pwfile"
      echo "initdb failed; see $home/initdb.log"
      return 1
    fi
    rm -f "$home/pwfile"
    # TCP on 127.0.0.1 only; no Unix socket (its path length and folder are not ours to pick).
    printf "%s\n" "listen_addresses = '127.0.0.1'" "unix_socket_directories = ''" \
      "fsync = off" "full_page_writes = off" "synchronous_commit = off" \
      | _pa_as_pg tee -a "$data/postgresql.conf" >/dev/null
  fi
  port="$(cat "$home/port" 2>/dev/null || true)"
  if ! { [ -n "$port" ] && _pa_as_pg "$_pa_pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1 &&
    _pa_listening "$port"; }; then
    # Not running (or another server took its port): start on the kept port when free.
    if [ -z "$port" ] || _pa_listening "$port"; then
      port="$(_pa_free_port)" || return 1
    fi
    _pa_log "starting PostgreSQL on 127.0.0.1:$port (log $home/postgres.log)"
    tries=0
    until _pa_as_pg "$_pa_pg_bin/pg_ctl" -D "$data" -l "$home/postgres.log" -o "-p $port" \
      -w -t "$_pa_wait_s" start >/dev/null 2>&1; do
      tries=$((tries + 1))
      if [ "$tries" -ge 5 ]; then
        echo "PostgreSQL did not start ($(grep -E 'FATAL|PANIC' "$home/postgres.log" 2>/dev/null |
          tail -n 1)); see $home/postgres.log"
        return 1
      fi
      sleep 2 # e.g. the processes of a killed server still hold its memory for a moment
    done
    echo "$port" > "$home/port"
  fi
  _pa_pg_port="$port"
  until _pa_psql -d postgres -tAc "select 1" >/dev/null 2>&1; do
    if [ "$waited" -ge "$_pa_wait_s" ]; then
      echo "PostgreSQL on 127.0.0.1:$port refuses connections after ${_pa_wait_s}s; see $home/postgres.log"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  if [ -z "$(_pa_psql -d postgres -tAc "select 1 from pg_database where datname = '$_pa_pg_db'")" ]; then
    _pa_psql -d postgres -c "create database $_pa_pg_db" >/dev/null || {
      echo "cannot create database $_pa_pg_db"
      return 1
    }
  fi
  export PERTURB_ASSETS_TEST_PG_URL="postgresql+psycopg2://$_pa_pg_user:$_pa_pg_password@127.0.0.1:$port/$_pa_pg_db"
}

# --- S3 (moto) -----------------------------------------------------------------------------

_pa_start_moto() {
  local port pid waited=0 server="$_pa_repo/.venv/bin/moto_server"
  [ -x "$server" ] || { echo "$server not found (the moto[server] test extra)"; return 1; }
  mkdir -p "$_pa_state" 2>/dev/null && [ -w "$_pa_state" ] || { echo "cannot write $_pa_state"; return 1; }
  port="$(cat "$_pa_state/moto.port" 2>/dev/null || true)"
  pid="$(cat "$_pa_state/moto.pid" 2>/dev/null || true)"
  if ! { [ -n "$pid" ] && [ -n "$port" ] && kill -0 "$pid" 2>/dev/null && _pa_listening "$port"; }; then
    if [ -z "$port" ] || _pa_listening "$port"; then
      port="$(_pa_free_port)" || return 1
    fi
    _pa_log "starting moto's S3 server on 127.0.0.1:$port (log $_pa_state/moto.log)"
    # In the background, holding none of the caller's descriptors: it outlives the tests and
    # the next sourcing reuses it.
    nohup "$server" -H 127.0.0.1 -p "$port" >"$_pa_state/moto.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$_pa_state/moto.pid"
    echo "$port" > "$_pa_state/moto.port"
    until _pa_listening "$port"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "moto_server exited; see $_pa_state/moto.log"
        return 1
      fi
      if [ "$waited" -ge "$((_pa_wait_s * 2))" ]; then
        echo "moto_server not listening on 127.0.0.1:$port after ${_pa_wait_s}s; see $_pa_state/moto.log"
        return 1
      fi
      sleep 0.5
      waited=$((waited + 1))
    done
  fi
  export PERTURB_ASSETS_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
}

_pa_stop() {
  local home pid bin i
  pid="$(cat "$_pa_state/moto.pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null && sleep 0.5; done
    _pa_log "stopped moto_server (pid $pid)"
  fi
  rm -f "$_pa_state/moto.pid"
  home="$(cat "$_pa_state/pg.location" 2>/dev/null || echo "$_pa_state/pg")"
  if [ -f "$home/data/postmaster.pid" ] && bin="$(_pa_pg_bindir)"; then
    _pa_as_pg "$bin/pg_ctl" -D "$home/data" -m fast -w stop >/dev/null 2>&1 &&
      _pa_log "stopped PostgreSQL ($home/data)"
  fi
  return 0
}

_pa_main() {
  local failed=0 why name var fn
  for name in postgres:PERTURB_ASSETS_TEST_PG_URL:_pa_start_postgres \
    s3:PERTURB_ASSETS_TEST_S3_ENDPOINT:_pa_start_moto; do
    var="${name#*:}"
    fn="${var#*:}"
    var="${var%%:*}"
    name="${name%%:*}"
    if [ -n "${!var:-}" ] && _pa_reachable_url "${!var}"; then
      continue # already running (ours from an earlier sourcing, or your own)
    fi
    unset "$var"
    why="$(mktemp)"
    if "$fn" >"$why"; then
      rm -f "$why"
      continue
    fi
    unset "$var"
    if _pa_is_root; then
      _pa_log "ERROR: $name: $(cat "$why")"
      failed=1
    else
      _pa_log "$name not started ($(cat "$why")): its tests skip"
    fi
    rm -f "$why"
  done
  if [ -n "${PERTURB_ASSETS_TEST_PG_URL:-}${PERTURB_ASSETS_TEST_S3_ENDPOINT:-}" ]; then
    _pa_log "PERTURB_ASSETS_TEST_PG_URL=${PERTURB_ASSETS_TEST_PG_URL:-(unset)}"
    _pa_log "PERTURB_ASSETS_TEST_S3_ENDPOINT=${PERTURB_ASSETS_TEST_S3_ENDPOINT:-(unset)}"
  fi
  return "$failed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = stop ]; then
  _pa_stop
else
  _pa_main
fi
_pa_status=$?
unset -f _pa_log _pa_python _pa_free_port _pa_listening _pa_host_port _pa_reachable_url \
  _pa_is_root _pa_pg_bindir _pa_as_pg _pa_pg_home _pa_psql _pa_start_postgres _pa_start_moto \
  _pa_stop _pa_main
unset _pa_repo _pa_state _pa_wait_s _pa_pg_user _pa_pg_password _pa_pg_db _pa_pg_bin _pa_pg_port
if [ "$_pa_status" = 0 ]; then
  unset _pa_status
  true
else
  unset _pa_status
  [ "${BASH_SOURCE[0]}" = "$0" ] && exit 1
  false # sourced: a failing `source` stops a set -e caller
fi
