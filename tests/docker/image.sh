#!/bin/sh
# Build the ready image lantern_async:pgPG (tests/docker/Dockerfile) from the
# current tree, registry-free: the Debian base and the Go toolchain images are
# made here first when missing (base-image.sh, go-image.sh). With
# REGISTRY=docker.io/library/ they come from Docker Hub instead.
#
#   tests/docker/image.sh 17          # also 15 and 18
set -eu
PG=${1:-17}
case $PG in
15) SUITE=bookworm ;;
17) SUITE=trixie ;;
18) SUITE=sid ;;
*) echo "error: no Debian suite packages PostgreSQL $PG here (15: bookworm, 17: trixie, 18: sid)" >&2; exit 1 ;;
esac
REGISTRY=${REGISTRY-lantern_async/}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
if [ "$REGISTRY" = lantern_async/ ]; then
	"$here/base-image.sh" "$SUITE"
	GO_VERSION=$("$here/go-image.sh")
else
	GO_VERSION=${GO_VERSION:-$(go env GOVERSION | sed 's/^go//')}
fi

# The build context is a copy of git's files (tracked and new, not ignored):
# no build output of the host reaches the image.
context=$(mktemp -d /tmp/lantern_async_image.XXXXXX)
trap 'rm -rf "$context"' EXIT
git -C "$top" ls-files -z --cached --others --exclude-standard |
	(cd "$top" && xargs -0 cp --parents -t "$context" 2>/dev/null || true)

start=$(date +%s)
docker build -f "$context/tests/docker/Dockerfile" \
	--build-arg REGISTRY="$REGISTRY" --build-arg SUITE="$SUITE" \
	--build-arg PG="$PG" --build-arg GO_VERSION="$GO_VERSION" \
	-t "lantern_async:pg$PG" "$context"
echo "lantern_async:pg$PG built in $(( $(date +%s) - start )) s" >&2
