#!/bin/sh
# Entry point of the ready image (tests/docker/Dockerfile). It takes the
# official postgres image's variables:
#   POSTGRES_PASSWORD          the superuser's password (required unless trust)
#   POSTGRES_USER              the superuser's name (default postgres)
#   POSTGRES_DB                the default database (default: POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for TCP clients (default scram-sha-256)
#   POSTGRES_INITDB_ARGS       more initdb arguments
# On an empty PGDATA it runs initdb, preloads lantern_async, creates the
# extension (and pgvector's, where installed) in POSTGRES_DB, runs
# /docker-entrypoint-initdb.d/*.sql and *.sh, then starts the server.
set -eu

# `docker run IMAGE -c name=value` passes server options.
if [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
	exec "$@"
fi

# As root: own the directories, then run this script again as postgres.
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 0700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

fail() {
	echo "error: $*" >&2
	exit 1
}

init_cluster() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
		fail "the database is uninitialized and no superuser password is set
hint: set POSTGRES_PASSWORD (docker run -e POSTGRES_PASSWORD=...), or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password"
	fi
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
	initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
		-E UTF8 --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-} >/dev/null
	rm -f "$pwfile"
	cat >>"$PGDATA/postgresql.conf" <<-CONF

		# added by the lantern_async image
		listen_addresses = '*'
		shared_preload_libraries = 'lantern_async'
		# tasks (4) + launcher + parallel workers (8) + logical replication launcher
		max_worker_processes = 16
	CONF
	printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
}

# A server on the socket only while the databases are set up.
setup_databases() {
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
	sql() { psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" "$@"; }
	if [ "$POSTGRES_DB" != postgres ]; then
		# psql interpolates :"db" (a quoted identifier) on stdin, not in -c.
		echo 'CREATE DATABASE :"db"' | sql -d postgres -v db="$POSTGRES_DB"
	fi
	sql -d "$POSTGRES_DB" -c 'CREATE EXTENSION lantern_async'
	if [ -n "$(sql -d "$POSTGRES_DB" -At -c "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")" ]; then
		sql -d "$POSTGRES_DB" -c 'CREATE EXTENSION vector'
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case $f in
		*.sql) sql -d "$POSTGRES_DB" -f "$f" ;;
		*.sh) sh "$f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	echo "lantern_async: database \"$POSTGRES_DB\" is ready (extension lantern_async created)"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	init_cluster
	setup_databases
fi
exec "$@"
