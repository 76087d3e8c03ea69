package payment

// PGStatus is a payment's status in the PG's own record (TossPayments v1
// Payment.status). pgclient's Status is this type, so the PG's words and
// the order's states meet in this one package.
type PGStatus string

// The PG's payment statuses.
const (
	PGReady             PGStatus = "READY"
	PGInProgress        PGStatus = "IN_PROGRESS"
	PGWaitingForDeposit PGStatus = "WAITING_FOR_DEPOSIT"
	PGDone              PGStatus = "DONE"
	PGCanceled          PGStatus = "CANCELED"
	PGPartialCanceled   PGStatus = "PARTIAL_CANCELED"
	PGAborted           PGStatus = "ABORTED"
	PGExpired           PGStatus = "EXPIRED"
)

// AllPGStatuses lists every PG status, in the order a payment goes through
// them.
var AllPGStatuses = []PGStatus{PGReady, PGInProgress, PGWaitingForDeposit, PGDone, PGPartialCanceled, PGCanceled, PGAborted, PGExpired}

// Known reports whether s is one of the PG's statuses.
func (s PGStatus) Known() bool {
	for _, k := range AllPGStatuses {
		if s == k {
			return true
		}
	}
	return false
}

// Decided reports whether the PG has settled the payment one way or the
// other, so a confirm's outcome can be read off it.
func (s PGStatus) Decided() bool { return s.Rank() > 0 }

// Charged reports whether the PG holds the buyer's money (all or part of
// it): what a refund of a late approval can give back.
func (s PGStatus) Charged() bool { return s == PGDone || s == PGPartialCanceled }

// Rank orders the statuses by how far a payment has gone, so an event that
// says less than the PG's record is merely stale: 0 undecided, 1 a virtual
// account issued and waiting for the transfer, 2 approved or failed, 3
// partly cancelled, 4 cancelled.
func (s PGStatus) Rank() int {
	switch s {
	case PGWaitingForDeposit:
		return 1
	case PGDone, PGAborted, PGExpired:
		return 2
	case PGPartialCanceled:
		return 3
	case PGCanceled:
		return 4
	}
	return 0
}

// Effect is what the PG's record of a payment does to an order.
type Effect int

// The effects, from the table in Reading.
const (
	// NoEffect: the order already shows it, or nothing may move the order
	// on it (only payrail's own confirm moves a CREATED order; once paid,
	// only a full cancel at the PG moves it).
	NoEffect Effect = iota
	// AskAgain: the PG has not decided the payment yet.
	AskAgain
	// Approve moves a CONFIRMING order to PAID.
	Approve
	// CancelAtPG moves the order to CANCELED: it was cancelled at the PG
	// (its console), not through payrail.
	CancelAtPG
	// FailAtPG moves a CONFIRMING order to FAILED (aborted or expired at
	// the PG).
	FailAtPG
	// Refund: the PG approved an order that can no longer be paid
	// (EXPIRED or FAILED here): the approval is refunded.
	Refund
	// AfterCancel: the PG shows the payment CANCELED while payrail's own
	// cancel of it is pending. That cancel settles the amounts itself
	// (looking the payment up if the PG refuses it), so nothing moves now,
	// but the news is kept and read again once it has settled: it may be a
	// cancel made in the PG's console that the pending one cannot explain.
	AfterCancel
	// AwaitDeposit moves a CONFIRMING order to AWAITING_DEPOSIT: the PG
	// issued a virtual account (the record carries it and its secret).
	AwaitDeposit
	// ExpireAtPG moves an AWAITING_DEPOSIT order to EXPIRED: the PG closed
	// the virtual account unpaid.
	ExpireAtPG
	// DepositReversed: the PG shows a paid virtual account waiting for its
	// deposit again (the bank reversed the transfer). Never applied: an
	// operator alert.
	DepositReversed
)

var effectNames = [...]string{"none", "ask_again", "approve", "cancel_at_pg", "fail_at_pg", "refund", "after_cancel", "await_deposit", "expire_at_pg", "deposit_reversed"}

func (e Effect) String() string {
	if int(e) < len(effectNames) {
		return effectNames[e]
	}
	return "Effect(?)"
}

// To is the status an effect moves the order to, if it moves it.
func (e Effect) To() (Status, bool) {
	switch e {
	case Approve:
		return Paid, true
	case CancelAtPG:
		return Canceled, true
	case FailAtPG:
		return Failed, true
	case AwaitDeposit:
		return AwaitingDeposit, true
	case ExpireAtPG:
		return Expired, true
	}
	return "", false
}

// Reading is the one place the PG's record of a payment is read against an
// order: pg is what the PG's own record says (never an unverified event),
// order the order's status, and cancelInFlight whether payrail's own cancel
// of the order is under way (it settles the amounts itself, so a CANCELED at
// the PG is its result, not news).
func Reading(pg PGStatus, order Status, cancelInFlight bool) Effect {
	switch order {
	case Expired, Failed:
		if pg.Charged() {
			return Refund
		}
		return NoEffect
	case Confirming:
		switch {
		case pg == PGDone || pg == PGPartialCanceled:
			return Approve
		case pg == PGCanceled && cancelInFlight:
			return NoEffect
		case pg == PGCanceled:
			return CancelAtPG
		case pg == PGAborted || pg == PGExpired:
			return FailAtPG
		case pg == PGWaitingForDeposit:
			return AwaitDeposit
		}
		return AskAgain
	case AwaitingDeposit:
		switch {
		case pg == PGDone || pg == PGPartialCanceled:
			return Approve
		case pg == PGCanceled && cancelInFlight:
			return NoEffect
		case pg == PGCanceled:
			return CancelAtPG
		case pg == PGAborted || pg == PGExpired:
			return ExpireAtPG
		}
		return NoEffect // still waiting: the due date decides, by lookup
	case Paid, PartiallyCanceled:
		switch {
		case pg == PGWaitingForDeposit:
			return DepositReversed
		case pg == PGCanceled && cancelInFlight:
			return AfterCancel
		case pg == PGCanceled:
			return CancelAtPG
		}
	}
	return NoEffect // CREATED, CANCELED, and PAID on anything but a cancel
}

// SettlesUnlocked reports whether an event saying pg about the order's own
// payment may be settled from a read of the order taken without its lock
// and without asking the PG: the order Reflects it, and what it says can
// only be overtaken, never undone, so a stale read errs towards "news".
// WAITING_FOR_DEPOSIT is the exception: a bank's reversal brings it back
// after a deposit, so it always goes to the locked path.
func SettlesUnlocked(order Status, pg PGStatus) bool {
	return pg != PGWaitingForDeposit && Reflects(order, pg)
}

// Reflects reports whether an order in status order already shows what a
// PG status says of the order's own payment, so applying it could change
// nothing and the PG need not be asked (most webhooks merely confirm what
// the confirm already applied).
func Reflects(order Status, pg PGStatus) bool {
	switch pg {
	case PGDone:
		return order == Paid || order == PartiallyCanceled || order == Canceled
	case PGPartialCanceled:
		return order == PartiallyCanceled || order == Canceled
	case PGCanceled:
		return order == Canceled
	case PGWaitingForDeposit:
		return order == AwaitingDeposit
	}
	return false
}
