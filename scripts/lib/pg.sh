# A throwaway PostgreSQL cluster, for the test command and the benchmarks. Source this
# file, then call `start_pg`: it installs Debian's `postgresql` when missing (as root, or
# through sudo), starts a cluster with trust authentication on a free loopback port and a
# socket in its own directory (as the `postgres` user when this is root: initdb refuses
# root), exports YUANXIN_TEST_POSTGRES (a URL of its maintenance database, for a user that
# may create databases) and stops and removes it when the shell exits.
start_pg() {
  if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
    echo "== installing postgresql (Debian's package)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends postgresql
  fi
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/yuanxin-pg.XXXXXX")
  as_pg=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$pgdir"
    as_pg=(runuser -u postgres --)
  fi
  pgport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  trap stop_pg EXIT
  echo "== PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport (throwaway cluster in $pgdir)"
  "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U yuanxin --auth=trust --encoding=UTF8 --locale=C.UTF-8 > "$pgdir/initdb.log"
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200" start > /dev/null
  export YUANXIN_TEST_POSTGRES="postgres://yuanxin@127.0.0.1:$pgport/postgres"
}

stop_pg() {
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop > /dev/null 2>&1 || true
  rm -rf "$pgdir"
}
