#!/usr/bin/env bash
# For CI: install Docker and debootstrap when missing and start dockerd when
# no engine answers. Prints "started" when it started one (the caller stops
# it), "running" otherwise.
set -euo pipefail
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if docker info >/dev/null 2>&1; then
	echo running
	exit 0
fi
# --bip: this machine has a /.dockerenv, so testcontainers-go looks for the
# engine at the bridge's gateway; a fixed bridge address makes that reachable.
nohup dockerd --bip=172.17.0.1/16 >/tmp/lantern_async_dockerd.log 2>&1 &
for _ in $(seq 60); do
	if docker info >/dev/null 2>&1; then
		echo started
		exit 0
	fi
	sleep 1
done
echo "dockerd did not answer within 60 s; its log:" >&2
tail -20 /tmp/lantern_async_dockerd.log >&2
exit 1
