package control

import "time"

// Databases and keys used by the tests.
const (
	dbX uint32 = 1
	dbY uint32 = 2
)

var (
	keyA = Key{DB: dbX, Role: 10}
	keyB = Key{DB: dbX, Role: 20}
	keyC = Key{DB: dbY, Role: 30}
)

var epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
