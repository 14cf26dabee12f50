#!/usr/bin/env bash
# make demo PG=N (N other than 15): in a throw-away container of the ready
# image lantern_async:pgN (tests/docker/image.sh), fill a table with random
# pgvector vectors, build an HNSW index on it as a background task, and watch
# the task's phases in lantern.task_progress until it has finished. The
# container is removed at the end, whatever happens.
#
#   tests/demo/demo-hnsw.sh 17        # ROWS=50000 DIM=64 to make it smaller
set -euo pipefail
cd "$(dirname "$0")/../.."

PG=${1:-17}
ROWS=${ROWS:-100000}
DIM=${DIM:-128}
IMAGE="lantern_async:pg$PG"
NAME="lantern_async_demo_pg$PG"

step() { printf '\n== %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

step "checking prerequisites"
if ! docker info >/dev/null 2>&1; then
	fail "docker is not running (docker info failed): start dockerd (e.g. 'sudo dockerd &' or 'sudo systemctl start docker') and try again"
fi
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "image $IMAGE is missing: building it with tests/docker/image.sh $PG"
	tests/docker/image.sh "$PG"
fi
echo "image $IMAGE"

cleanup() { docker rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup # a container left over by an earlier run

step "starting a throw-away container $NAME"
# pgvector's parallel HNSW build keeps the graph in dynamic shared memory
# (up to maintenance_work_mem), more than docker's default 64 MB /dev/shm.
docker run -d --rm --name "$NAME" --shm-size=1g -e POSTGRES_PASSWORD=demo "$IMAGE" >/dev/null
psql() { docker exec -i "$NAME" psql -X -q -v ON_ERROR_STOP=1 -U postgres -h /var/run/postgresql -d postgres "$@"; }
# The entrypoint sets the database up on a temporary server first, stops it
# and then starts the real one: wait for its "ready" line before pg_isready.
deadline=$(( $(date +%s) + 120 ))
until docker logs "$NAME" 2>&1 | grep -q 'lantern_async: database "postgres" is ready' &&
	docker exec "$NAME" pg_isready -q -h /var/run/postgresql &&
	psql -At -c 'SELECT 1' >/dev/null 2>&1; do
	if ! docker inspect "$NAME" >/dev/null 2>&1; then
		fail "the container $NAME has exited"
	fi
	if [ "$(date +%s)" -ge "$deadline" ]; then
		docker logs "$NAME" 2>&1 | tail -20 >&2
		fail "the server in $NAME was not ready within 120 s"
	fi
	sleep 0.5
done
psql -At -c "SELECT version()"
psql -At -c "SELECT 'extensions: ' || string_agg(extname || ' ' || extversion, ', ' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'"

step "a table of $ROWS random vector($DIM)s"
start=$(date +%s%N)
# WHERE g > 0 ties the inner query to the row, so that each row gets its own vector.
psql <<SQL
CREATE TABLE items (id bigserial PRIMARY KEY, v vector($DIM));
INSERT INTO items (v)
SELECT (SELECT array_agg(random()) FROM generate_series(1, $DIM) WHERE g > 0)::vector($DIM)
FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE items;
SQL
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf 'filled in %d.%d s: %s rows, %s\n' $(( ms / 1000 )) $(( ms % 1000 / 100 )) \
	"$(psql -At -c 'SELECT count(*) FROM items')" \
	"$(psql -At -c "SELECT pg_size_pretty(pg_table_size('items'))")"

step "submitting the HNSW index build as a background task"
# The task runs in its own worker session: settings for it go on the database.
psql -c "ALTER DATABASE postgres SET maintenance_work_mem = '512MB'"
jobid=$(psql -At -c "SELECT lantern.async_task('CREATE INDEX items_v_hnsw ON items USING hnsw (v vector_l2_ops)', 'Create HNSW index on items')")
echo "jobid $jobid"

step "lantern.task_progress every 2 s until the task has finished"
start=$(date +%s)
deadline=$(( start + 15 * 60 ))
while :; do
	status=$(psql -At -c "SELECT status FROM lantern.tasks WHERE jobid = $jobid")
	case $status in pending | running) ;; *) break ;; esac
	row=$(psql -At -F ' | ' -c "SELECT phase, coalesce(percent::text || ' %', '-'), date_trunc('second', elapsed)
		FROM lantern.task_progress WHERE jobid = $jobid")
	printf '%s  %-8s %s\n' "$(date +%T)" "$status" "${row:--}"
	if [ "$(date +%s)" -ge "$deadline" ]; then
		fail "task $jobid still $status after 15 min"
	fi
	sleep 2
done
printf '%s  %s (the build took about %s s)\n' "$(date +%T)" "$status" "$(( $(date +%s) - start ))"

step "CALL lantern.wait_task($jobid, '1 min', NULL)"
status=$(psql -At -c "CALL lantern.wait_task($jobid, '1 min', NULL)")
echo "$status"

step "lantern.tasks"
psql -c "SELECT jobid, job_name, status, duration, error_message FROM lantern.tasks WHERE jobid = $jobid"
psql -c '\d items'

step "nearest neighbours of item 1, through the index"
# HNSW search is approximate: a wider candidate list (default 40) than on
# uniformly random data finds item 1 itself first.
psql <<'SQL'
SET hnsw.ef_search = 200;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = 1) LIMIT 5;
SELECT id, round((v <-> (SELECT v FROM items WHERE id = 1))::numeric, 4) AS distance
FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = 1) LIMIT 5;
SQL

[ "$status" = succeeded ] || fail "task $jobid: $status"
step "done: the container is removed"
