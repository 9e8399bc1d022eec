# Sourced (not run) by .ci/test and .ci/run: the system packages the build and the tests need, and a
# throw-away PostgreSQL cluster for the test suite and the benchmark.
#
#   install_missing_packages     apt-get installs whichever of $strongroom_packages is missing
#   start_throwaway_cluster      initdb + start a cluster in a fresh /tmp folder, on a free local port,
#                                as an unprivileged user; exports STRONGROOM_TEST_POSTGRES with its URL and
#                                sets an EXIT trap that stops it and removes the folder (on success, on
#                                failure and on Ctrl-C alike)
#   stop_throwaway_cluster       what that trap runs; safe to call twice
#
# The cluster trusts every local connection (-A trust) and skips fsync: it holds nothing but test data.

strongroom_packages=(libssl-dev libsqlite3-dev pkg-config libpq-dev postgresql)

# True when the Debian package $1 is installed (not merely known, or removed with its configuration left).
strongroom_package_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

install_missing_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "== not a Debian-like system (no dpkg): make sure ${strongroom_packages[*]} (or their equivalents) are installed" >&2
    return 0
  fi
  local package missing=()
  for package in "${strongroom_packages[@]}"; do
    strongroom_package_installed "$package" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "FAILED: ${missing[*]} must be installed, and this is neither root nor has sudo; install them as root" >&2
      return 1
    fi
  fi
  echo "== installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Runs a command as the cluster's owner, in the cluster's folder (its owner may not reach the caller's).
strongroom_pg_run() {
  if [ -n "$strongroom_pg_user" ]; then
    (cd "$strongroom_pg_dir" && runuser -u "$strongroom_pg_user" -- "$@")
  else
    (cd "$strongroom_pg_dir" && "$@")
  fi
}

# True when nothing accepts TCP connections on 127.0.0.1:$1.
strongroom_port_is_free() {
  ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

start_throwaway_cluster() {
  local initdb
  initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | grep -v '\*' | sort -V | tail -n 1 || true)
  [ -n "$initdb" ] || initdb=$(command -v initdb || true)
  if [ -z "$initdb" ] || [ ! -x "$initdb" ]; then
    echo "FAILED: no PostgreSQL server found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH)." >&2
    echo "        Install Debian's postgresql package, or point the tests at a server you run with" >&2
    echo "        STRONGROOM_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB (or set it to off to skip that half)." >&2
    return 1
  fi
  strongroom_pg_bin=$(dirname "$initdb")

  # The server refuses to run as root: as root, run it as the postgres system user (or a system user of
  # our own when the postgres package did not create one); otherwise as whoever runs this.
  strongroom_pg_user=""
  if [ "$(id -u)" -eq 0 ]; then
    if id -u postgres >/dev/null 2>&1; then
      strongroom_pg_user=postgres
    else
      strongroom_pg_user=strongroom-test
      id -u "$strongroom_pg_user" >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$strongroom_pg_user"
    fi
    command -v runuser >/dev/null 2>&1 || { echo "FAILED: runuser (util-linux) is needed to run PostgreSQL as $strongroom_pg_user" >&2; return 1; }
  fi

  # In /tmp rather than $TMPDIR: the unprivileged owner must reach it, and the socket path must stay short.
  strongroom_pg_dir=$(mktemp -d /tmp/strongroom-pg.XXXXXXXX)
  trap stop_throwaway_cluster EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  [ -z "$strongroom_pg_user" ] || chown "$strongroom_pg_user" "$strongroom_pg_dir"

  if ! strongroom_pg_run "$strongroom_pg_bin/initdb" -D "$strongroom_pg_dir/data" -A trust -U strongroom \
      --no-sync -E UTF8 --locale=C >"$strongroom_pg_dir/initdb.log" 2>&1; then
    echo "FAILED: initdb of the throw-away PostgreSQL cluster failed; its output:" >&2
    cat "$strongroom_pg_dir/initdb.log" >&2
    return 1
  fi

  # From 55432 upwards, the first port nothing listens on; if another process takes it between the check
  # and the bind, try the next one.
  local port attempts=0
  for port in $(seq 55432 55631); do
    strongroom_port_is_free "$port" || continue
    attempts=$((attempts + 1))
    if strongroom_pg_run "$strongroom_pg_bin/pg_ctl" -D "$strongroom_pg_dir/data" -l "$strongroom_pg_dir/log" -w -o \
        "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$strongroom_pg_dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=1000 -c shared_buffers=256MB" \
        start >/dev/null 2>&1; then
      export STRONGROOM_TEST_POSTGRES="postgresql://strongroom@127.0.0.1:$port/postgres"
      echo "== started a throw-away PostgreSQL $("$strongroom_pg_bin/postgres" --version | awk '{print $3}')" \
        "cluster on 127.0.0.1:$port as user ${strongroom_pg_user:-$(id -un)}, in $strongroom_pg_dir"
      return 0
    fi
    if [ "$attempts" -lt 5 ] && grep -Eqi 'could not bind|address already in use|could not create any TCP/IP sockets' "$strongroom_pg_dir/log" 2>/dev/null; then
      echo "== port $port was taken meanwhile; trying the next one"
      continue
    fi
    break
  done
  echo "FAILED: the throw-away PostgreSQL cluster did not start; its log:" >&2
  cat "$strongroom_pg_dir/log" >&2 2>/dev/null || echo "(no log: no free port in 55432-55631?)" >&2
  return 1
}

stop_throwaway_cluster() {
  [ -n "${strongroom_pg_dir:-}" ] || return 0
  if [ -f "$strongroom_pg_dir/data/postmaster.pid" ]; then
    strongroom_pg_run "$strongroom_pg_bin/pg_ctl" -D "$strongroom_pg_dir/data" -m fast -w stop >/dev/null 2>&1 ||
      strongroom_pg_run "$strongroom_pg_bin/pg_ctl" -D "$strongroom_pg_dir/data" -m immediate -w stop >/dev/null 2>&1 ||
      echo "WARNING: could not stop the throw-away PostgreSQL cluster in $strongroom_pg_dir" >&2
  fi
  rm -rf "$strongroom_pg_dir" || true
  echo "== stopped the throw-away PostgreSQL cluster and removed $strongroom_pg_dir"
  strongroom_pg_dir=""
}

# The URL with any password masked, for logs.
strongroom_redacted_url() {
  sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"
}
