// Package pgerr holds the Go error type for errors raised by PostgreSQL
// inside the server, and renders them the way psql prints them.
package pgerr

// Error is an ERROR raised by PostgreSQL, copied out of its ErrorData.
type Error struct {
	Severity         string // "ERROR", "FATAL", ...
	Code             string // SQLSTATE, e.g. "42703"
	Message          string
	Detail           string
	Hint             string
	Context          string
	Position         int // 1-based character (not byte) position in the query, 0 = none
	InternalPosition int // 1-based position in InternalQuery, 0 = none
	InternalQuery    string
}

// New returns an Error with Severity ERROR, given code and message (for
// errors the extension itself makes).
func New(code, message string) *Error {
	return &Error{Severity: "ERROR", Code: code, Message: message}
}

// Error returns e.g. `ERROR: column "haha" does not exist (SQLSTATE 42703)`.
func (e *Error) Error() string {
	return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")"
}

// SQLState returns the SQLSTATE code.
func (e *Error) SQLState() string {
	return e.Code
}
