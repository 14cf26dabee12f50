package pgerr

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type psqlCase struct {
	name  string
	query string
	err   *Error
	want  string
}

// psqlCases were produced against a PostgreSQL 15 server: err holds the
// fields the server sent, want is what `psql -X -c query` printed (psql 15.18).
var psqlCases = []psqlCase{
	{
		name:  "simple",
		query: "SELECT pg_sleep(haha);",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 17},
		want: `ERROR:  column "haha" does not exist
LINE 1: SELECT pg_sleep(haha);
                        ^`,
	},
	{
		name:  "line 3",
		query: "SELECT 1,\n  2,\n  haha\nFROM pg_class;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 18},
		want: `ERROR:  column "haha" does not exist
LINE 3:   haha
          ^`,
	},
	{
		name:  "tabs",
		query: "SELECT\t1,\n\t\t2,\thaha;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 16},
		want: `ERROR:  column "haha" does not exist
LINE 2:   2, haha;
             ^`,
	},
	{
		name:  "crlf",
		query: "SELECT 1,\r\n  2,\r\n  haha;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 20},
		want: `ERROR:  column "haha" does not exist
LINE 3:   haha;
          ^`,
	},
	{
		name:  "cr only",
		query: "SELECT 1,\r  2,\r  haha;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 18},
		want: `ERROR:  column "haha" does not exist
LINE 3:   haha;
          ^`,
	},
	{
		name:  "long line error near end",
		query: "SELECT 1 AS col_one, 2 AS col_two, 3 AS col_three, 4 AS col_four, 5 AS col_five, 6 AS col_six, 7 AS col_seven, haha AS x FROM pg_class;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 112},
		want: `ERROR:  column "haha" does not exist
LINE 1: ...our, 5 AS col_five, 6 AS col_six, 7 AS col_seven, haha AS x ...
                                                             ^`,
	},
	{
		name:  "long line error at end",
		query: "SELECT 1 AS col_one, 2 AS col_two, 3 AS col_three, 4 AS col_four, 5 AS col_five, 6 AS col_six, 7 AS col_seven, 8 AS col_eight, haha",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 128},
		want: `ERROR:  column "haha" does not exist
LINE 1: ...col_five, 6 AS col_six, 7 AS col_seven, 8 AS col_eight, haha
                                                                   ^`,
	},
	{
		name:  "long line error near start",
		query: "SELECT haha, 1 AS col_one, 2 AS col_two, 3 AS col_three, 4 AS col_four, 5 AS col_five, 6 AS col_six, 7 AS col_seven FROM pg_class;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 8},
		want: `ERROR:  column "haha" does not exist
LINE 1: SELECT haha, 1 AS col_one, 2 AS col_two, 3 AS col_three, 4 A...
               ^`,
	},
	{
		name:  "long line error in middle",
		query: "SELECT 1 AS col_one, 2 AS col_two, 3 AS col_three, 4 AS col_four, 5 AS col_five, 6 AS col_six, haha, 7 AS col_seven, 8 AS col_eight, 9 AS col_nine, 10 AS col_ten;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 96},
		want: `ERROR:  column "haha" does not exist
LINE 1: ...hree, 4 AS col_four, 5 AS col_five, 6 AS col_six, haha, 7 AS...
                                                             ^`,
	},
	{
		name:  "long line second line",
		query: "SELECT 1\nUNION ALL SELECT 1 AS col_one, 2 AS col_two, 3 AS col_three, 4 AS col_four, 5 AS col_five, 6 AS col_six, 7 AS col_seven, haha, 8 AS col_eight, 9 AS col_nine, 10 AS col_ten\nFROM pg_class;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 131},
		want: `ERROR:  column "haha" does not exist
LINE 2: ...our, 5 AS col_five, 6 AS col_six, 7 AS col_seven, haha, 8 AS...
                                                             ^`,
	},
	{
		name:  "utf8",
		query: "SELECT 'héllo wörld ñ', haha;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 25},
		want: `ERROR:  column "haha" does not exist
LINE 1: SELECT 'héllo wörld ñ', haha;
                                ^`,
	},
	{
		name:  "wide chars",
		query: "SELECT '日本語のテキスト', haha;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 20},
		want: `ERROR:  column "haha" does not exist
LINE 1: SELECT '日本語のテキスト', haha;
                                   ^`,
	},
	{
		name:  "long wide",
		query: "SELECT '日本語のテキスト日本語のテキスト日本語のテキスト日本語のテキスト', 'ΑΒΓΔ', haha, 1 AS col_one, 2 AS col_two;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 52},
		want: `ERROR:  column "haha" does not exist
LINE 1: ...キスト日本語のテキスト日本語のテキスト', 'ΑΒΓΔ', haha, 1 AS...
                                                            ^`,
	},
	{
		name:  "syntax error end of input",
		query: "SELECT 1 +",
		err:   &Error{Severity: "ERROR", Code: "42601", Message: "syntax error at end of input", Position: 11},
		want: `ERROR:  syntax error at end of input
LINE 1: SELECT 1 +
                  ^`,
	},
	{
		name:  "syntax error end after newline",
		query: "SELECT 1 +\n",
		err:   &Error{Severity: "ERROR", Code: "42601", Message: "syntax error at end of input", Position: 12},
		want:  "ERROR:  syntax error at end of input\nLINE 2: \n        ^",
	},
	{
		name:  "function hint",
		query: "SELECT nosuchfunc(1);",
		err:   &Error{Severity: "ERROR", Code: "42883", Message: "function nosuchfunc(integer) does not exist", Hint: "No function matches the given name and argument types. You might need to add explicit type casts.", Position: 8},
		want: `ERROR:  function nosuchfunc(integer) does not exist
LINE 1: SELECT nosuchfunc(1);
               ^
HINT:  No function matches the given name and argument types. You might need to add explicit type casts.`,
	},
	{
		name:  "detail hint context",
		query: "DO $$ BEGIN RAISE EXCEPTION 'boom' USING DETAIL = 'some detail', HINT = 'some hint'; END $$;",
		err:   &Error{Severity: "ERROR", Code: "P0001", Message: "boom", Detail: "some detail", Hint: "some hint", Context: "PL/pgSQL function inline_code_block line 1 at RAISE"},
		want: `ERROR:  boom
DETAIL:  some detail
HINT:  some hint
CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE`,
	},
	{
		name:  "internal query",
		query: "SELECT pgerr_f();",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Context: "PL/pgSQL function pgerr_f() line 3 at RETURN", InternalPosition: 9, InternalQuery: "(SELECT haha FROM pg_class LIMIT 1)"},
		want: `ERROR:  column "haha" does not exist
LINE 1: (SELECT haha FROM pg_class LIMIT 1)
                ^
QUERY:  (SELECT haha FROM pg_class LIMIT 1)
CONTEXT:  PL/pgSQL function pgerr_f() line 3 at RETURN`,
	},
	{
		name:  "internal query multiline",
		query: "SELECT pgerr_g();",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Context: "PL/pgSQL function pgerr_g() line 3 at PERFORM", InternalPosition: 22, InternalQuery: "SELECT 1,\n    2,\n    haha"},
		want: `ERROR:  column "haha" does not exist
LINE 3:     haha
            ^
QUERY:  SELECT 1,
    2,
    haha
CONTEXT:  PL/pgSQL function pgerr_g() line 3 at PERFORM`,
	},
	{
		name:  "hangul fullwidth emoji",
		query: "SELECT '한국어 ＡＢＣ 🎉', haha;",
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 21},
		want: `ERROR:  column "haha" does not exist
LINE 1: SELECT '한국어 ＡＢＣ 🎉', haha;
                                   ^`,
	},
	{
		name:  "combining",
		query: "SELECT 'e\u0301e\u0301', haha;", // combining accents
		err:   &Error{Severity: "ERROR", Code: "42703", Message: "column \"haha\" does not exist", Position: 16},
		want: `ERROR:  column "haha" does not exist
LINE 1: SELECT 'éé', haha;
                       ^`,
	},
	{
		name:  "execute syntax error",
		query: "SELECT pgerr_h();",
		err:   &Error{Severity: "ERROR", Code: "42601", Message: "syntax error at end of input", Context: "PL/pgSQL function pgerr_h() line 1 at EXECUTE", InternalPosition: 11, InternalQuery: "SELECT 1 +"},
		want: `ERROR:  syntax error at end of input
LINE 1: SELECT 1 +
                  ^
QUERY:  SELECT 1 +
CONTEXT:  PL/pgSQL function pgerr_h() line 1 at EXECUTE`,
	},
	{
		name:  "no position",
		query: "SELECT 1/0;",
		err:   &Error{Severity: "ERROR", Code: "22012", Message: "division by zero"},
		want:  `ERROR:  division by zero`,
	},
	{
		name:  "unique detail",
		query: "INSERT INTO pgerr_t VALUES (1);",
		err:   &Error{Severity: "ERROR", Code: "23505", Message: "duplicate key value violates unique constraint \"pgerr_t_pkey\"", Detail: "Key (id)=(1) already exists."},
		want: `ERROR:  duplicate key value violates unique constraint "pgerr_t_pkey"
DETAIL:  Key (id)=(1) already exists.`,
	},
}

func TestPsqlMatchesRealPsql(t *testing.T) {
	for _, tc := range psqlCases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.err.Psql(tc.query))
		})
	}
}

func TestPsqlSynthetic(t *testing.T) {
	cases := []psqlCase{
		{
			// Verified: psql hides CONTEXT for a WARNING raised in a DO block.
			name: "warning hides context",
			err: &Error{Severity: "WARNING", Code: "01000", Message: "w", Detail: "d",
				Context: "PL/pgSQL function inline_code_block line 1 at RAISE"},
			want: "WARNING:  w\nDETAIL:  d",
		},
		{
			name:  "position wins over internal position",
			query: "SELECT haha;",
			err: &Error{Severity: "ERROR", Code: "42703", Message: "m", Position: 8,
				InternalPosition: 1, InternalQuery: "SELECT 1"},
			want: "ERROR:  m\nLINE 1: SELECT haha;\n               ^\nQUERY:  SELECT 1",
		},
		{
			name: "internal position without internal query",
			err:  &Error{Severity: "ERROR", Code: "42601", Message: "m", InternalPosition: 7},
			want: "ERROR:  m at character 7",
		},
		{
			name:  "position past end of query",
			query: "SELECT 1",
			err:   &Error{Severity: "ERROR", Code: "42601", Message: "m", Position: 10},
			want:  "ERROR:  m",
		},
		{
			name:  "position on a newline",
			query: "SELECT 1,\nhaha",
			err:   &Error{Severity: "ERROR", Code: "42601", Message: "m", Position: 10},
			want:  "ERROR:  m\nLINE 1: SELECT 1,\n                 ^",
		},
		{
			name: "made by New",
			err:  New("XX000", "task failed"),
			want: "ERROR:  task failed",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.err.Psql(tc.query))
		})
	}
}

func TestErrorAndSQLState(t *testing.T) {
	e := &Error{Severity: "ERROR", Code: "42703", Message: `column "haha" does not exist`, Position: 17}
	assert.Equal(t, `ERROR: column "haha" does not exist (SQLSTATE 42703)`, e.Error())
	assert.Equal(t, "42703", e.SQLState())

	var target *Error
	require.True(t, errors.As(fmt.Errorf("task: %w", e), &target))
	assert.Same(t, e, target)
}

func TestNew(t *testing.T) {
	e := New("57014", "canceling statement due to user request")
	assert.Equal(t, &Error{Severity: "ERROR", Code: "57014", Message: "canceling statement due to user request"}, e)
	assert.Equal(t, "ERROR: canceling statement due to user request (SQLSTATE 57014)", e.Error())
}
