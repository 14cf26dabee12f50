// Package image tests the ready image (make image) started as a user would:
// each test starts the image named by LANTERN_ASYNC_TEST_IMAGE in its own
// container, so this package needs no cluster of its own; see
// tests/README.md.
package image
