package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIntervalText(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"90s":      "90000000 microseconds",
		"1h30m":    "5400000000 microseconds",
		"2 hours":  "2 hours",
		"1 day 3h": "1 day 3h",
		" 250ms  ": "250000 microseconds",
	} {
		got, err := intervalText(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"0s", "-5s", "0"} {
		_, err := intervalText(bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "--timeout must be positive")
	}
}
