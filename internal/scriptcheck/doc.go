// Package scriptcheck holds tests of the repository's shell scripts and
// Makefile (scripts/*.sh): no fixed paths in shared directories such as /tmp,
// a services lock that a planted symlink cannot turn against root, and no
// password on a command line that ps would show.
package scriptcheck
