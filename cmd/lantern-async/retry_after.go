package main

import (
	"strconv"
	"strings"
)

// maxRetries is the most retries lantern.async_task takes; the client
// refuses more itself, so a mistyped count queues nothing.
const maxRetries = 100

// checkRetries says whether --retries is a count the server takes.
func checkRetries(n int) error {
	if n < 0 || n > maxRetries {
		return usagef("--retries must be between 0 and %d, not %d (the attempts that may follow a transient failure)",
			maxRetries, n)
	}
	return nil
}

// afterJobIDs reads --after: jobids, from repeated flags or separated by
// commas, each a positive integer; the first of repeats is kept.
func afterJobIDs(values []string) ([]int64, error) {
	var ids []int64
	seen := map[int64]bool{}
	for _, v := range values {
		v = strings.TrimSpace(v)
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return nil, usagef("--after %q is not a jobid: give the jobid of a task, a positive integer", v)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}
