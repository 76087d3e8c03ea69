package payment

import "testing"

// Every (PG status, order status, cancel in flight) cell of the Reading
// table, including a status the PG might add tomorrow, must keep the
// invariants the money depends on.
func TestReadingInvariants(t *testing.T) {
	pgs := append(append([]PGStatus{}, AllPGStatuses...), "SOMETHING_NEW", "")
	for _, pg := range pgs {
		for _, order := range AllStatuses {
			for _, inFlight := range []bool{false, true} {
				e := Reading(pg, order, inFlight)
				where := func() string {
					return string(pg) + " × " + string(order) + " × inFlight=" + map[bool]string{true: "yes", false: "no"}[inFlight]
				}
				if to, moves := e.To(); moves && !CanTransition(order, to) {
					t.Errorf("%s: %s moves %s → %s, which the transition table forbids", where(), e, order, to)
				}
				if _, moves := e.To(); moves && order.Terminal() {
					t.Errorf("%s: a terminal order moves (%s)", where(), e)
				}
				if e == Refund && !(pg.Charged() && (order == Expired || order == Failed)) {
					t.Errorf("%s: refund of something not charged or an order that can still be paid", where())
				}
				if e == AskAgain && (order != Confirming || pg.Decided()) {
					t.Errorf("%s: asks again about a decided payment or a settled order", where())
				}
				if Reflects(order, pg) && e != NoEffect {
					t.Errorf("%s: the order already reflects the PG, yet the effect is %s", where(), e)
				}
				if order == Created && e != NoEffect {
					t.Errorf("%s: only payrail's own confirm may move a CREATED order, got %s", where(), e)
				}
				if !pg.Known() && e != NoEffect && e != AskAgain {
					t.Errorf("%s: an unknown PG status moved money (%s)", where(), e)
				}
				if e == AfterCancel && !(inFlight && pg == PGCanceled && (order == Paid || order == PartiallyCanceled)) {
					t.Errorf("%s: deferred to a cancel that is not in flight, or news that is not a cancel", where())
				}
				if e == DepositReversed && !(pg == PGWaitingForDeposit && (order == Paid || order == PartiallyCanceled)) {
					t.Errorf("%s: a deposit reversal alert for something that is not a paid order waiting again", where())
				}
				if (e == AwaitDeposit) != (pg == PGWaitingForDeposit && order == Confirming) {
					t.Errorf("%s: a virtual account is issued exactly when a confirming payment waits for its deposit, got %s", where(), e)
				}
				if e.String() == "Effect(?)" {
					t.Errorf("%s: unnamed effect %d", where(), e)
				}
			}
		}
	}
}

func TestReadingGolden(t *testing.T) {
	cases := []struct {
		pg       PGStatus
		order    Status
		inFlight bool
		want     Effect
	}{
		{PGDone, Confirming, false, Approve},
		{PGPartialCanceled, Confirming, false, Approve},
		{PGInProgress, Confirming, false, AskAgain},
		{PGReady, Confirming, false, AskAgain},
		{PGAborted, Confirming, false, FailAtPG},
		{PGExpired, Confirming, false, FailAtPG},
		{PGCanceled, Confirming, false, CancelAtPG},
		{PGCanceled, Confirming, true, NoEffect},
		{PGCanceled, Paid, false, CancelAtPG},
		{PGCanceled, Paid, true, AfterCancel},
		{PGCanceled, PartiallyCanceled, true, AfterCancel},
		{PGCanceled, PartiallyCanceled, false, CancelAtPG},
		{PGDone, Paid, false, NoEffect},
		{PGDone, Expired, false, Refund},
		{PGPartialCanceled, Failed, false, Refund},
		{PGCanceled, Expired, false, NoEffect},
		{PGDone, Created, false, NoEffect},
		{PGDone, Canceled, false, NoEffect},
		{PGWaitingForDeposit, Confirming, false, AwaitDeposit},
		{PGWaitingForDeposit, AwaitingDeposit, false, NoEffect},
		{PGDone, AwaitingDeposit, false, Approve},
		{PGDone, AwaitingDeposit, true, Approve},
		{PGCanceled, AwaitingDeposit, false, CancelAtPG},
		{PGCanceled, AwaitingDeposit, true, NoEffect},
		{PGExpired, AwaitingDeposit, false, ExpireAtPG},
		{PGWaitingForDeposit, Paid, false, DepositReversed},
		{PGWaitingForDeposit, PartiallyCanceled, false, DepositReversed},
		{PGWaitingForDeposit, Expired, false, NoEffect},
		{PGDone, Expired, false, Refund},
	}
	for _, c := range cases {
		if got := Reading(c.pg, c.order, c.inFlight); got != c.want {
			t.Errorf("Reading(%s, %s, %v) = %s, want %s", c.pg, c.order, c.inFlight, got, c.want)
		}
	}
}

func TestPGStatusRankAndKnown(t *testing.T) {
	for _, s := range AllPGStatuses {
		if !s.Known() {
			t.Errorf("%s not known", s)
		}
		if s.Charged() && !s.Decided() {
			t.Errorf("%s charged but undecided", s)
		}
	}
	if PGStatus("DONE ").Known() || PGStatus("done").Known() {
		t.Error("near-miss statuses must not be known")
	}
	if !(PGReady.Rank() < PGWaitingForDeposit.Rank() && PGWaitingForDeposit.Rank() < PGDone.Rank() && PGDone.Rank() < PGPartialCanceled.Rank() && PGPartialCanceled.Rank() < PGCanceled.Rank()) {
		t.Error("rank must follow how far a payment has gone")
	}
}

// What the ingress and the worker may settle from a lock-free read is what
// Reflects says, less WAITING_FOR_DEPOSIT (a reversed deposit brings it
// back), over every pair.
func TestSettlesUnlocked(t *testing.T) {
	for _, o := range AllStatuses {
		for _, pg := range AllPGStatuses {
			got, want := SettlesUnlocked(o, pg), Reflects(o, pg) && pg != PGWaitingForDeposit
			if got != want {
				t.Errorf("SettlesUnlocked(%s, %s) = %v, want %v", o, pg, got, want)
			}
		}
	}
	if !SettlesUnlocked(Paid, PGDone) || SettlesUnlocked(AwaitingDeposit, PGWaitingForDeposit) {
		t.Fatal("DONE on PAID must settle unlocked; WAITING_FOR_DEPOSIT on AWAITING_DEPOSIT must not")
	}
}
