package pgerr

import (
	"strconv"
	"strings"
)

// Psql renders the error exactly as psql 15 prints it (default VERBOSITY)
// for the given query string, without a trailing newline.
func (e *Error) Psql(query string) string {
	var b strings.Builder
	if e.Severity != "" {
		b.WriteString(e.Severity + ":  ")
	}
	b.WriteString(e.Message)
	cursorQuery, cursorPos := query, e.Position
	if e.Position <= 0 {
		cursorQuery, cursorPos = e.InternalQuery, e.InternalPosition
		if e.InternalPosition > 0 && e.InternalQuery == "" {
			// libpq has no text to point into, so it names the position.
			b.WriteString(" at character " + strconv.Itoa(e.InternalPosition))
			cursorPos = 0
		}
	}
	b.WriteByte('\n')
	if cursorPos > 0 {
		writeCursor(&b, cursorQuery, cursorPos)
	}
	writeField(&b, "DETAIL", e.Detail)
	writeField(&b, "HINT", e.Hint)
	writeField(&b, "QUERY", e.InternalQuery)
	if !isNotice(e.Severity) {
		writeField(&b, "CONTEXT", e.Context)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func writeField(b *strings.Builder, label, value string) {
	if value != "" {
		b.WriteString(label + ":  " + value + "\n")
	}
}

// isNotice reports whether psql treats the severity as a non-error, for
// which it hides CONTEXT by default (SHOW_CONTEXT errors).
func isNotice(severity string) bool {
	switch severity {
	case "WARNING", "NOTICE", "INFO", "LOG", "DEBUG":
		return true
	}
	return false
}
