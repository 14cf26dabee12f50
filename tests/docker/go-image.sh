#!/bin/sh
# Make the host's Go toolchain (/usr/local/go) an image without a registry,
# lantern_async/golang:VERSION, for the Dockerfile's build stage (which
# copies /usr/local/go out of it, as it would out of Docker Hub's golang).
# Reused when it exists. Prints the version.
set -eu
GOROOT=${GOROOT:-/usr/local/go}
version=$("$GOROOT/bin/go" env GOVERSION)
version=${version#go}
IMAGE=lantern_async/golang:$version
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	start=$(date +%s)
	tar -C "$GOROOT/.." --transform 's,^\./go,./usr/local/go,' -c ./go | docker import - "$IMAGE" >/dev/null
	echo "docker import $IMAGE: $(( $(date +%s) - start )) s" >&2
fi
echo "$version"
