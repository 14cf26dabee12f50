#!/bin/sh
# Inside a lantern_async-dev:pgN container, from the source in the current
# directory: build, install, start a throw-away cluster with the extension
# preloaded, run one task and print its row and the server log.
#
#   tests/docker/build-in.sh 17 tests/docker/smoke.sh
set -eu
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
bindir=$("$PG_CONFIG" --bindir)
data=/tmp/smoke-data
rm -rf "$data"; mkdir -p "$data"; chown postgres "$data"
as_pg() { runuser -u postgres -- "$@"; }
as_pg "$bindir/initdb" -D "$data" -A trust >/dev/null
cat >>"$data/postgresql.conf" <<CONF
shared_preload_libraries = 'lantern_async'
listen_addresses = ''
unix_socket_directories = '/tmp'
CONF
as_pg "$bindir/pg_ctl" -D "$data" -l "$data/log" -w start >/dev/null
psql() { as_pg "$bindir/psql" -h /tmp -X -v ON_ERROR_STOP=1 -d postgres "$@"; }
rc=0
psql -c 'SELECT version()' -c 'CREATE EXTENSION lantern_async' \
	-c "SELECT lantern.async_task('SELECT 1', 'smoke') AS jobid" || rc=1
psql -c "CALL lantern.wait_task(1, '30s', NULL)" || rc=1
psql -c 'SELECT jobid, query, status, duration, error_message FROM lantern.tasks' || rc=1
status=$(psql -At -c 'SELECT status FROM lantern.tasks WHERE jobid = 1' || true)
as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null || rc=1
echo '--- server log'; cat "$data/log"
[ "$status" = succeeded ] || rc=1
echo "smoke: task status ${status:-none}, rc=$rc"
exit $rc
