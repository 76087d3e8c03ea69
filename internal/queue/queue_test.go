package queue

import "testing"

func TestIsSweepGeneration(t *testing.T) {
	for id, want := range map[string]bool{
		"confirm:ord_1:3":          false,
		"confirm:ord_1:3:g1700000": true,
		"cancel:cnl_1:g42":         true,
		"callback:msg_1:4":         false,
		"webhook:toss:abc:g":       false,
		"webhook:toss:abc:gx1":     false,
	} {
		if got := IsSweepGeneration(id); got != want {
			t.Errorf("IsSweepGeneration(%q) = %v", id, got)
		}
	}
}
