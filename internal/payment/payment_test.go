package payment

import (
	"math/rand/v2"
	"testing"
)

// A model-based check of the transition table: random event sequences
// applied through CheckTransition never leave the documented graph, and a
// terminal state never moves.
func TestTransitionTableProperties(t *testing.T) {
	documented := map[[2]Status]bool{
		{Created, Confirming}: true, {Created, Expired}: true,
		{Confirming, Paid}: true, {Confirming, Failed}: true, {Confirming, Canceled}: true,
		{Paid, PartiallyCanceled}: true, {Paid, Canceled}: true,
		{PartiallyCanceled, PartiallyCanceled}: true, {PartiallyCanceled, Canceled}: true,
	}
	for _, from := range AllStatuses {
		for _, to := range AllStatuses {
			if got := CanTransition(from, to); got != documented[[2]Status{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for seq := 0; seq < 10000; seq++ {
		st := Created
		for step := 0; step < 12; step++ {
			to := AllStatuses[r.IntN(len(AllStatuses))]
			err := CheckTransition(st, to)
			if st.Terminal() && err == nil {
				t.Fatalf("terminal %s moved to %s", st, to)
			}
			if err == nil {
				if !documented[[2]Status{st, to}] {
					t.Fatalf("undocumented transition %s → %s allowed", st, to)
				}
				st = to
			} else if ErrorCode(err) != CodeIllegalTransition {
				t.Fatalf("refusal code %s", ErrorCode(err))
			}
		}
	}
	for _, to := range AllStatuses {
		for _, from := range Sources(to) {
			if !CanTransition(from, to) {
				t.Errorf("Sources(%s) lists %s", to, from)
			}
		}
	}
}

func TestIDsAndKeys(t *testing.T) {
	for _, ok := range []string{"abcdef", "A-b_c-123456", string(make([]byte, 0)) + "x23456"} {
		if !ValidID(ok) {
			t.Errorf("ValidID(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "abcde", "abc def", "한글123456", "a/bcdef", string(make([]byte, 65))} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
	if ConfirmIdempotencyKey("o1", "k1") == ConfirmIdempotencyKey("o1", "k2") || ConfirmIdempotencyKey("o1", "k1") != ConfirmIdempotencyKey("o1", "k1") {
		t.Error("confirm keys must be stable per (order, paymentKey) and differ across paymentKeys")
	}
	if len(ConfirmIdempotencyKey("o", "k")) > 300 {
		t.Error("Toss caps idempotency keys at 300 characters")
	}
}
