#!/bin/sh
# check-layers.sh - the loader's layers call one way only (cgo/loader/README.md)
#
#   cgo/check-layers.sh                  the #include check (the sources only)
#   cgo/check-layers.sh FILE.o ...       and the call check of those objects
#
# The loader's layers, top to bottom, each a folder of cgo/loader:
#
#   1 entry   2 functions, hooks   3 tables   4 state   5 base
#
# A file may include a header of its own folder or of a layer below; never
# one above, nor one of another folder at its own level (functions and
# hooks know nothing of each other).  Every include of ours names its
# folder ("state/la_state.h"), so the line itself shows the direction.  A
# header named *_internal.h is private to its folder (the Go library's
# helpers may not include it either).  The Go library's own files (cgo/,
# cgo/helpers/) sit above the whole loader and may include any layer's
# header.
#
# With objects, the same rule holds for what they reference (nm): every
# symbol one object uses and another defines is an edge, and it must go to
# its own folder or down.  And the functions the files call must form no
# circle, within a layer too (tsort finds one); data (the la_shmem pointer
# shmem.c creates, the GUC variables) is referenced from everywhere below
# its owner and is left out of that last check.
set -eu
caller=$(pwd)
cd "$(dirname "$0")/loader"
loader=$(pwd)

rank() {
	case $1 in
	entry) echo 1 ;;
	functions | hooks) echo 2 ;;
	tables) echo 3 ;;
	state) echo 4 ;;
	base) echo 5 ;;
	*) echo 0 ;;
	esac
}

# May a file in folder $1 use folder $2?
allowed() {
	[ "$1" = "$2" ] || [ "$(rank "$2")" -gt "$(rank "$1")" ]
}

fail=0
bad() {
	echo "check-layers: $*" >&2
	fail=1
}

for f in $(find . -name '*.c' -o -name '*.h' | sed 's|^\./||' | LC_ALL=C sort); do
	dir=${f%%/*}
	if [ "$dir" = "$f" ] || [ "$(rank "$dir")" = 0 ]; then
		bad "$f: not in a layer's folder (entry, functions, hooks, tables, state, base)"
		continue
	fi
	includes=$(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
		sed 's/^\([0-9]*\):.*"\(.*\)".*/\1 \2/') || true
	while read -r line inc; do
		[ -n "$line" ] || continue
		case $inc in
		*/*) to=${inc%%/*} ;;
		la_*) bad "$f:$line: #include \"$inc\" names no layer (write \"<folder>/$inc\")"; continue ;;
		*) continue ;; # PostgreSQL's own header
		esac
		[ "$(rank "$to")" = 0 ] && continue # PostgreSQL's, e.g. "common/int.h"
		case $inc in
		*_internal.h) [ "$to" = "$dir" ] || bad "$f:$line: \"$inc\" is private to $to/" ;;
		esac
		allowed "$dir" "$to" || bad "$f:$line: $dir/ includes \"$inc\": a call up, from layer $(rank "$dir") to $(rank "$to")"
	done <<EOF
$includes
EOF
done

# The Go library's files may include any layer, but no folder's private header.
for f in $(find .. -path ../loader -prune -o \( -name '*.c' -o -name '*.h' -o -name '*.go' \) -print); do
	if grep -n '#[[:space:]]*include[[:space:]]*"[a-z]*/la_[a-z_]*_internal\.h"' "$f" >/dev/null; then
		bad "$f includes a layer's private header"
	fi
done

if [ $# -gt 0 ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	: >"$tmp/defs"
	: >"$tmp/uses"
	for o in "$@"; do
		case $o in /*) path=$o ;; *) path=$caller/$o ;; esac
		rel=${path#"$loader"/}
		# "symbol file kind": kind T for a function, D, B, R or C for data
		nm -g --defined-only "$path" | awk -v f="$rel" 'NF == 3 { print $3, f, $2 }' >>"$tmp/defs"
		nm -g --undefined-only "$path" | awk -v f="$rel" '{ print $NF, f }' >>"$tmp/uses"
	done
	# "from to kind symbol" for every symbol an object uses that another defines
	awk 'NR == FNR { def[$1] = $2; kind[$1] = $3; next }
		($1 in def) && def[$1] != $2 { print $2, def[$1], kind[$1], $1 }' \
		"$tmp/defs" "$tmp/uses" >"$tmp/edges"
	while read -r from to kind sym; do
		allowed "${from%%/*}" "${to%%/*}" ||
			bad "${from%.o}.c uses $sym of ${to%.o}.c: a call up"
	done <"$tmp/edges"
	if ! awk '$3 == "T" { print $1, $2 }' "$tmp/edges" | sort -u | tsort >/dev/null 2>"$tmp/tsort"; then
		bad "the files' calls form a circle: $(grep -v 'input contains a loop' "$tmp/tsort" | sed 's/^tsort: //' | tr '\n' ' ')"
	fi
fi

[ $fail = 0 ] && echo "check-layers: every include${1:+ and every call} of the loader goes down"
exit $fail
