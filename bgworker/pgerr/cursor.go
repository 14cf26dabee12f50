package pgerr

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of libpq's reportErrorPosition, in screen columns.
const (
	displaySize = 60 // widest query excerpt shown
	minRightCut = 10 // keep at least this much text right of the cursor
)

// queryLine is the line of a query that holds the error position.
type queryLine struct {
	offs []int // byte offset of each character, up to and including end
	cols []int // starting screen column of each character, likewise
	num  int   // 1-based line number
	beg  int   // index of the line's first character
	end  int   // index one past the line's last character
}

// writeCursor writes the "LINE n: ..." excerpt and the caret line under it
// for the 1-based character position pos, as libpq does.
func writeCursor(b *strings.Builder, query string, pos int) {
	if i := strings.IndexByte(query, 0); i >= 0 {
		query = query[:i] // libpq sees a C string
	}
	loc := pos - 1
	l := scanLine(query, loc)
	if loc > l.end {
		return
	}
	begTrunc, endTrunc := l.truncate(loc)
	prefix := "LINE " + strconv.Itoa(l.num) + ": "
	if begTrunc {
		prefix += "..."
	}
	text := strings.ReplaceAll(query[l.offs[l.beg]:l.offs[l.end]], "\t", " ")
	if endTrunc {
		text += "..."
	}
	b.WriteString(prefix + text + "\n")
	indent := len(prefix) + l.cols[loc] - l.cols[l.beg]
	b.WriteString(strings.Repeat(" ", indent) + "^\n")
}

// scanLine finds the line holding character loc (0-based). Each \r or \n
// ends a line, except that \r\n counts once.
func scanLine(query string, loc int) queryLine {
	l := queryLine{num: 1}
	off, col := 0, 0
	var prev byte
	for cno := 0; off < len(query); cno++ {
		l.offs = append(l.offs, off)
		l.cols = append(l.cols, col)
		ch := query[off]
		if ch == '\r' || ch == '\n' {
			if cno >= loc {
				l.end = cno
				return l
			}
			if ch == '\r' || prev != '\r' {
				l.num++
			}
			l.beg = cno + 1
		}
		r, size := utf8.DecodeRuneInString(query[off:])
		prev = ch
		off += size
		col += runeWidth(r)
	}
	l.end = len(l.offs)
	l.offs = append(l.offs, off)
	l.cols = append(l.cols, col)
	return l
}

// truncate narrows [beg, end) to at most displaySize columns around loc,
// reporting whether the start and the end were cut.
func (l *queryLine) truncate(loc int) (begTrunc, endTrunc bool) {
	width := func() int { return l.cols[l.end] - l.cols[l.beg] }
	if width() <= displaySize {
		return false, false
	}
	if l.cols[l.beg]+displaySize >= l.cols[loc]+minRightCut {
		for width() > displaySize {
			l.end--
		}
		return false, true
	}
	for l.cols[loc]+minRightCut < l.cols[l.end] {
		l.end--
		endTrunc = true
	}
	for width() > displaySize {
		l.beg++
		begTrunc = true
	}
	return begTrunc, endTrunc
}

// wideRanges approximates Unicode East Asian Wide and Fullwidth characters.
var wideRanges = [][2]rune{
	{0x1100, 0x115F}, {0x231A, 0x231B}, {0x2329, 0x232A}, {0x23E9, 0x23EC},
	{0x2E80, 0x303E}, {0x3041, 0x33FF}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF},
	{0xA000, 0xA4CF}, {0xA960, 0xA97F}, {0xAC00, 0xD7A3}, {0xF900, 0xFAFF},
	{0xFE10, 0xFE19}, {0xFE30, 0xFE6F}, {0xFF00, 0xFF60}, {0xFFE0, 0xFFE6},
	{0x1F300, 0x1F64F}, {0x1F680, 0x1F6FF}, {0x1F900, 0x1F9FF},
	{0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
}

// runeWidth is the screen width libpq gives a character: 2 for wide East
// Asian ones, else 1 (libpq also counts zero-width and control chars as 1).
func runeWidth(r rune) int {
	if r < 0x1100 || unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf) {
		return 1
	}
	for _, rg := range wideRanges {
		if r >= rg[0] && r <= rg[1] {
			return 2
		}
	}
	return 1
}
