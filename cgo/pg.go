package main

/*
#include <stdlib.h>
#include "la_call.h"
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/lanterndata/lantern_async/bgworker/pgerr"
)

// pg owns the C-side error record that every helper call fills, allocated
// once so that no call makes a Go value escape to the heap.
type pg struct {
	err *C.LaError
}

func newPG() *pg {
	return &pg{err: (*C.LaError)(C.calloc(1, C.sizeof_LaError))}
}

// lastError converts the error the previous helper call recorded.
func (p *pg) lastError() *pgerr.Error {
	e := p.err
	return &pgerr.Error{
		Severity:         severity(int(e.elevel)),
		Code:             C.GoString(&e.sqlstate[0]),
		Message:          goString(e.message),
		Detail:           goString(e.detail),
		Hint:             goString(e.hint),
		Context:          goString(e.context),
		Position:         int(e.cursorpos),
		InternalPosition: int(e.internalpos),
		InternalQuery:    goString(e.internalquery),
	}
}

func goString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}

func severity(elevel int) string {
	switch {
	case elevel >= C.PANIC:
		return "PANIC"
	case elevel >= C.FATAL:
		return "FATAL"
	default:
		return "ERROR"
	}
}

// Logf writes a LOG message to the server log.
func (p *pg) Logf(format string, args ...any) {
	msg := C.CString(fmt.Sprintf(format, args...))
	defer C.free(unsafe.Pointer(msg))
	C.la_log(C.LOG, msg)
}

// Debugf writes a DEBUG1 message, formatted only if it goes anywhere.
func (p *pg) Debugf(format string, args ...any) {
	if !C.la_log_enabled(C.DEBUG1) {
		return
	}
	msg := C.CString(fmt.Sprintf(format, args...))
	defer C.free(unsafe.Pointer(msg))
	C.la_log(C.DEBUG1, msg)
}

// wait sleeps on the latch for at most d; true means the process must stop.
func (p *pg) wait(d time.Duration) bool {
	return C.la_wait(C.long(max(d, time.Millisecond).Milliseconds())) != 0
}

// stopRequested absorbs pending signals without sleeping.
func (p *pg) stopRequested() bool {
	return C.la_wait(0) != 0
}
