#!/usr/bin/env bash
# make demo: build and install lantern_async, start a throwaway cluster with
# it preloaded, build an index on a million rows in the background, and show
# the task going pending -> running -> succeeded. The cluster is stopped and
# removed at the end, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"

step() { printf '\n== %s\n' "$*"; }

step "checking prerequisites"
tests/scripts/install-prereqs.sh
BINDIR="$(pg_config --bindir)"

step "building and installing lantern_async"
make -s
if [ -w "$(pg_config --pkglibdir)" ]; then make -s install; else sudo make -s install; fi

# PostgreSQL refuses to run as root: run the cluster as the postgres user then.
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

DIR="$(mktemp -d /tmp/lantern_async_demo.XXXXXX)"
[ "$(id -u)" -eq 0 ] && chown postgres "$DIR"
PORT=$(( 20000 + RANDOM % 20000 ))
cleanup() {
	as_pg "$BINDIR/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$DIR"
}
trap cleanup EXIT

step "starting a throwaway cluster in $DIR (port $PORT)"
as_pg "$BINDIR/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'lantern_async'
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
CONF
as_pg "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
psql() { command psql -X -q -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }

step "CREATE EXTENSION lantern_async; a table of 1,000,000 rows"
psql -c "CREATE EXTENSION lantern_async" \
     -c "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000000) g"

step "submitting the index build (still inside the submitting transaction: pending)"
psql <<'SQL'
BEGIN;
SELECT lantern.async_task('CREATE INDEX items_v_idx ON items (v)', 'Create index on items') AS jobid \gset
SELECT jobid, job_name, status FROM lantern.tasks WHERE jobid = :jobid;
COMMIT;
SQL

step "the client could disconnect now; another session watches lantern.task_progress"
last=""
for _ in $(seq 1 1200); do
	row="$(psql -At -F ' | ' -c "SELECT t.status, p.phase, p.percent FROM lantern.tasks t
		LEFT JOIN lantern.task_progress p USING (jobid) ORDER BY t.jobid DESC LIMIT 1")"
	if [ "$row" != "$last" ]; then
		printf '%s  %s\n' "$(date +%T.%3N)" "$row"
		last="$row"
	fi
	case "$row" in succeeded*|failed*|canceled*) break ;; esac
	sleep 0.05
done

step "CALL lantern.wait_task(jobid, '1 min', NULL): the status once it has finished"
jobid="$(psql -At -c "SELECT max(jobid) FROM lantern.tasks")"
status="$(psql -At -c "CALL lantern.wait_task($jobid, '1 min', NULL)")"
echo "$status"

step "lantern.tasks"
psql -c "SELECT jobid, query, job_name, username, status, duration, error_message FROM lantern.tasks"
psql -c "\d items"
[ "$status" = succeeded ]
step "done: the cluster is stopped and removed"
