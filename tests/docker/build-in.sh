#!/bin/sh
# Build the current tree inside lantern_async-dev:pgN (tests/docker/Dockerfile.pgdev)
# from a throw-away copy, so the host's build artifacts are neither used nor touched.
#
#   tests/docker/build-in.sh 17 [command...]     default command: make
set -eu
PG=${1:-17}
[ $# -eq 0 ] || shift
top=$(cd "$(dirname "$0")/../.." && pwd)
copy=$(mktemp -d /tmp/lantern_async_src_pg$PG.XXXXXX)
git -C "$top" ls-files -z --cached --others --exclude-standard | (cd "$top" && xargs -0 cp --parents -t "$copy")
echo "source copy: $copy" >&2
exec docker run --rm -v "$copy:/src" -w /src \
	-v /usr/local/go:/usr/local/go:ro \
	-v "${GOMODCACHE:-$HOME/go/pkg/mod}:/root/go/pkg/mod" \
	"lantern_async-dev:pg$PG" sh -c "${*:-make}"
