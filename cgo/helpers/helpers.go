// Package helpers is the C that the Go library compiles and calls: each
// helper does one unit of work (claim a task, run it, record an outcome)
// inside PG_TRY, and returns PostgreSQL's errors as values (la_call.h has
// the contract). It has no Go API: package main in cgo/ imports it for its
// C objects only, which the c-shared link resolves the adapters' calls to.
//
// A package of its own, because Go compiles only the .c files of a
// package's own directory: so the folder shows which side of the boundary
// each file is on (the Go adapters in cgo/, the C they call here, the
// preloaded C library in cgo/loader/).
package helpers

/*
#cgo CFLAGS: -I${SRCDIR}/../loader
#cgo LDFLAGS: -Wl,--unresolved-symbols=ignore-all
*/
import "C"
