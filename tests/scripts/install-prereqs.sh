#!/usr/bin/env bash
# Installs what building and testing lantern_async needs, when missing:
# a PostgreSQL server, its server development headers (same major), a C
# toolchain, and checks for Go. As root it uses apt-get; otherwise it prints
# the exact command to run and fails.
set -euo pipefail

missing=()
apt_install() { missing+=("$@"); }

# Go is at /usr/local/go on our machines; it is not an apt package here.
export PATH="$PATH:/usr/local/go/bin"

pg_major() {
	if command -v pg_config >/dev/null 2>&1; then
		pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'
	else
		ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1
	fi
}

major="$(pg_major)"
if [ -z "$major" ]; then
	apt_install postgresql
	major=15
fi
[ -x "/usr/lib/postgresql/$major/bin/postgres" ] || apt_install "postgresql-$major"
[ -f "/usr/include/postgresql/$major/server/postgres.h" ] || apt_install "postgresql-server-dev-$major"
command -v gcc >/dev/null 2>&1 || apt_install gcc
command -v make >/dev/null 2>&1 || apt_install make

if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "missing packages: ${missing[*]}" >&2
		echo "run: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
fi

if ! command -v go >/dev/null 2>&1; then
	echo "Go 1.26 or newer is required: install it from https://go.dev/dl/ into /usr/local/go" >&2
	exit 1
fi
