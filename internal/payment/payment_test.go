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
		{Confirming, Paid}: true, {Confirming, Failed}: true, {Confirming, Canceled}: true, {Confirming, AwaitingDeposit}: true,
		{AwaitingDeposit, Paid}: true, {AwaitingDeposit, Expired}: true, {AwaitingDeposit, Canceled}: true,
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

func TestRefundAccountValidationAndMasking(t *testing.T) {
	good := RefundAccount{Bank: "88", AccountNumber: "110123456789", HolderName: "홍길동"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid account refused: %v", err)
	}
	for name, a := range map[string]RefundAccount{
		"unknown bank":   {Bank: "99", AccountNumber: "110123456789", HolderName: "홍길동"},
		"bank by name":   {Bank: "신한", AccountNumber: "110123456789", HolderName: "홍길동"},
		"dashes":         {Bank: "88", AccountNumber: "110-123-456789", HolderName: "홍길동"},
		"too short":      {Bank: "88", AccountNumber: "12345", HolderName: "홍길동"},
		"too long":       {Bank: "88", AccountNumber: "123456789012345678901", HolderName: "홍길동"},
		"no holder":      {Bank: "88", AccountNumber: "110123456789", HolderName: "  "},
		"holder newline": {Bank: "88", AccountNumber: "110123456789", HolderName: "홍\n길동"},
	} {
		err := a.Validate()
		if ErrorCode(err) != CodeInvalidRequest {
			t.Errorf("%s: got %v, want INVALID_REQUEST", name, err)
			continue
		}
		if a.AccountNumber != "" && len(a.AccountNumber) > 4 && contains(err.Error(), a.AccountNumber) {
			t.Errorf("%s: the error echoes the account number", name)
		}
	}
	m := good.Masked()
	if m["accountNumber"] != "********6789" || m["holderName"] != "홍**" || m["bank"] != "88" {
		t.Errorf("masked = %v", m)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
