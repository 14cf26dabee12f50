#!/bin/sh
# Build a Debian base image without a container registry: debootstrap a
# minbase root of SUITE and `docker import` it as lantern_async/debian:SUITE.
# Reused when the image already exists (delete it to rebuild).
#
#   tests/docker/base-image.sh trixie      # PostgreSQL 17
#   tests/docker/base-image.sh bookworm    # PostgreSQL 15
#   tests/docker/base-image.sh sid         # PostgreSQL 18
#
# Needs root, debootstrap and a running Docker engine. The host's extra CA
# certificates go into the root so that containers reach the Go module
# proxy through this machine's egress proxy.
set -eu

SUITE=${1:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CACHE=${LANTERN_ASYNC_IMAGE_CACHE:-/var/cache/lantern_async}
IMAGE=lantern_async/debian:$SUITE

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "$IMAGE exists, reused" >&2
	exit 0
fi

root=$CACHE/rootfs-$SUITE
mkdir -p "$CACHE"
start=$(date +%s)
if [ ! -e "$root/.debootstrap-done" ]; then
	rm -rf "$root"
	debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$MIRROR"
	touch "$root/.debootstrap-done"
fi
echo "debootstrap $SUITE: $(( $(date +%s) - start )) s" >&2

if [ -d /usr/local/share/ca-certificates ]; then
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
	chroot "$root" update-ca-certificates >/dev/null
fi
# debootstrap sets up the suite alone: add its updates and security
# archives (sid has none), so that images get the current minor release.
case $SUITE in
sid | unstable) ;;
*) printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://security.debian.org/debian-security %s-security main\n' \
	"$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$root/etc/apt/sources.list" ;;
esac
# Keep images small and apt quiet inside them.
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/archives/"*.deb

start=$(date +%s)
tar -C "$root" --exclude=./.debootstrap-done --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -c . |
	docker import \
		-c 'ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8' \
		-c 'CMD ["/bin/bash"]' \
		- "$IMAGE"
echo "docker import $IMAGE: $(( $(date +%s) - start )) s" >&2
