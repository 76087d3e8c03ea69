package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Latency summarises a set of durations in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50Ms"`
	P95 float64 `json:"p95Ms"`
	P99 float64 `json:"p99Ms"`
	Max float64 `json:"maxMs"`
}

// Summarise computes nearest-rank percentiles.
func Summarise(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	return Latency{N: len(s), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Progress prints a one-line progress bar (\r-rewritten) to W.
type Progress struct {
	W     io.Writer
	Label string
	Total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// StartProgress begins printing every 500 ms until Stop; W nil prints nothing.
func StartProgress(w io.Writer, label string, total int) *Progress {
	p := &Progress{W: w, Label: label, Total: int64(total), start: time.Now(), stop: make(chan struct{})}
	if w == nil {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.print(true)
				return
			case <-t.C:
				p.print(false)
			}
		}
	}()
	return p
}

// Add counts n more done.
func (p *Progress) Add(n int) { p.done.Add(int64(n)) }

// Stop prints the final line.
func (p *Progress) Stop() {
	close(p.stop)
	p.wg.Wait()
}

func (p *Progress) print(final bool) {
	d := p.done.Load()
	el := time.Since(p.start).Seconds()
	rate := float64(d) / max(el, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(p.Total-d)/rate) * time.Second).Round(time.Second).String()
	}
	width := 30
	filled := 0
	if p.Total > 0 {
		filled = int(int64(width) * min(d, p.Total) / p.Total)
	}
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
		if i < filled {
			bar[i] = '#'
		}
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.W, "\r%-26s [%s] %d/%d %7.1f/s ETA %-8s%s", p.Label, bar, d, p.Total, rate, eta, end)
}

// Result is one phase of end-to-end payments.
type Result struct {
	Name        string   `json:"name"`
	Mode        string   `json:"mode"` // closed or open
	Concurrency int      `json:"concurrency,omitempty"`
	OfferedRate float64  `json:"offeredRate,omitempty"`
	N           int      `json:"n"`
	OK          int      `json:"ok"`
	Errors      int      `json:"errors"`
	FirstErrors []string `json:"firstErrors,omitempty"`
	// Delivered is how many of the OK payments' payment.paid arrived (and
	// verified) within the callback timeout.
	Delivered int     `json:"delivered"`
	Seconds   float64 `json:"seconds"`
	// PaidPerSec counts payments until their confirm answered PAID (closed
	// loop, Prefer: wait) or ACCEPTED (open loop); PaymentsPerSec counts
	// until the last payment.paid was delivered: the headline figure.
	PaidPerSec     float64 `json:"paidPerSec"`
	PaymentsPerSec float64 `json:"paymentsPerSec"`
	// ConfirmIngress is POST confirm → 202 (open loop, without Prefer).
	ConfirmIngress Latency `json:"confirmIngress"`
	// AcceptedToPaid is POST confirm with Prefer: wait=10 → 200 SUCCESS on
	// a sample (it includes the ingress).
	AcceptedToPaid Latency `json:"acceptedToPaid"`
	// AcceptedToCallback is the 202 → the payment.paid arrival at the sink.
	AcceptedToCallback Latency `json:"acceptedToCallback"`
	// VirtualAccounts counts the OK payments that were 가상계좌 (their
	// figures are only in DepositToCallback and the totals):
	// DepositToCallback is the buyer's deposit at mockpg → payment.paid
	// (DEPOSIT_CALLBACK in, lookup, PAID, callback out).
	VirtualAccounts   int     `json:"virtualAccounts,omitempty"`
	DepositToCallback Latency `json:"depositToCallback,omitempty"`
	// PaidToCallback is the arrival − the payload's data.updatedAt (same
	// machine clock).
	PaidToCallback Latency `json:"paidToCallback"`
	// ConfirmToCallback is POST confirm sent → the payment.paid arrival,
	// for every payment (waited or not).
	ConfirmToCallback Latency `json:"confirmToCallback"`
	Cost              *Cost   `json:"cost,omitempty"`
	// OrderIDs are the orders created, for checks.
	OrderIDs []string `json:"-"`
}

// Options shape a phase.
type Options struct {
	Name string
	N    int
	// Concurrency > 0 is a closed loop with that many merchants in flight;
	// otherwise Rate is an open loop at that many payments/s.
	Concurrency int
	Rate        float64
	// WaitEvery sends every k-th open-loop confirm with Prefer: wait
	// (0 = never). The closed loop always waits.
	WaitEvery       int
	CallbackTimeout time.Duration
	Progress        io.Writer
	Amount          int64
	// VirtualAccountShare of the payments (0…1, spread evenly) are 가상계좌:
	// the confirm answers AWAITING_DEPOSIT and the buyer deposits after
	// DepositDelay (default 500 ms); PAID comes from the deposit.
	VirtualAccountShare float64
	DepositDelay        time.Duration
}

// virtualAccount reports whether payment i of a phase is a 가상계좌 one:
// share of them, spread evenly (i = 0, 1/share, 2/share, …).
func (o Options) virtualAccount(i int) bool {
	if o.VirtualAccountShare <= 0 {
		return false
	}
	return int(float64(i+1)*o.VirtualAccountShare) > int(float64(i)*o.VirtualAccountShare)
}

// Run runs one phase and waits for every accepted payment's callback.
func Run(ctx context.Context, c *Client, sink *Sink, o Options) Result {
	if o.Amount == 0 {
		o.Amount = 15000
	}
	if o.CallbackTimeout == 0 {
		o.CallbackTimeout = 60 * time.Second
	}
	res := Result{Name: o.Name, N: o.N}
	timings := make([]Timing, o.N)
	errs := make([]error, o.N)
	prog := StartProgress(o.Progress, o.Name, o.N)
	start := time.Now()
	if o.DepositDelay == 0 {
		o.DepositDelay = 500 * time.Millisecond
	}
	var deposits sync.WaitGroup
	one := func(i int, wait bool) {
		if o.virtualAccount(i) {
			// The buyer's transfer comes later: it does not hold a
			// closed-loop slot while it waits.
			deposits.Go(func() {
				timings[i], errs[i] = c.PayVirtualAccount(ctx, o.Amount, wait, o.DepositDelay)
				prog.Add(1)
			})
			return
		}
		timings[i], errs[i] = c.Pay(ctx, o.Amount, wait)
		prog.Add(1)
	}
	if o.Concurrency > 0 {
		res.Mode, res.Concurrency = "closed", o.Concurrency
		var next atomic.Int64
		var wg sync.WaitGroup
		for range o.Concurrency {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= o.N || ctx.Err() != nil {
						return
					}
					one(i, true)
				}
			})
		}
		wg.Wait()
	} else {
		res.Mode, res.OfferedRate = "open", o.Rate
		interval := time.Duration(float64(time.Second) / o.Rate)
		var wg sync.WaitGroup
		for i := range o.N {
			// Scheduled send times, not sleeps: a late tick does not lower the rate.
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				break
			}
			wait := o.WaitEvery > 0 && i%o.WaitEvery == 0
			wg.Go(func() { one(i, wait) })
		}
		wg.Wait()
	}
	deposits.Wait()
	confirmsDone := time.Now()
	prog.Stop()

	// Every accepted payment's payment.paid must arrive.
	deadline := time.After(o.CallbackTimeout)
	last := confirmsDone
	var ingress, toPaid, toCB, paidToCB, sentToCB, depositToCB []time.Duration
	for i, t := range timings {
		if errs[i] != nil {
			res.Errors++
			if len(res.FirstErrors) < 5 {
				res.FirstErrors = append(res.FirstErrors, errs[i].Error())
			}
			continue
		}
		res.OK++
		res.OrderIDs = append(res.OrderIDs, t.OrderID)
		if t.VirtualAccount {
			res.VirtualAccounts++
		} else if t.Waited {
			toPaid = append(toPaid, t.ConfirmDone.Sub(t.ConfirmSent))
		} else {
			ingress = append(ingress, t.ConfirmDone.Sub(t.ConfirmSent))
		}
		select {
		case <-sink.Wait(t.OrderID):
		case <-deadline:
		case <-ctx.Done():
		}
		a, ok := sink.Arrived(t.OrderID)
		if !ok {
			continue
		}
		res.Delivered++
		if a.At.After(last) {
			last = a.At
		}
		if t.VirtualAccount {
			depositToCB = append(depositToCB, a.At.Sub(t.DepositSent))
			continue
		}
		if !t.Waited {
			toCB = append(toCB, a.At.Sub(t.ConfirmDone))
		}
		sentToCB = append(sentToCB, a.At.Sub(t.ConfirmSent))
		if !a.UpdatedAt.IsZero() {
			paidToCB = append(paidToCB, a.At.Sub(a.UpdatedAt))
		}
	}
	res.Seconds = last.Sub(start).Seconds()
	res.PaidPerSec = float64(res.OK) / confirmsDone.Sub(start).Seconds()
	res.PaymentsPerSec = float64(res.Delivered) / res.Seconds
	res.ConfirmIngress = Summarise(ingress)
	res.AcceptedToPaid = Summarise(toPaid)
	res.AcceptedToCallback = Summarise(toCB)
	res.PaidToCallback = Summarise(paidToCB)
	res.ConfirmToCallback = Summarise(sentToCB)
	res.DepositToCallback = Summarise(depositToCB)
	return res
}

// Check reports what makes a phase incorrect: errors, undelivered callbacks,
// bad signatures, duplicates.
func Check(r Result, s SinkStats) error {
	var errs []error
	if r.Errors > 0 {
		errs = append(errs, fmt.Errorf("%d of %d payments failed: %v", r.Errors, r.N, r.FirstErrors))
	}
	if r.Delivered != r.OK {
		errs = append(errs, fmt.Errorf("%d of %d paid orders got no payment.paid callback", r.OK-r.Delivered, r.OK))
	}
	if s.BadSignature > 0 {
		errs = append(errs, fmt.Errorf("%d callbacks with a bad signature", s.BadSignature))
	}
	if s.Duplicate > 0 || s.Redelivered > 0 {
		errs = append(errs, fmt.Errorf("payment.paid more than once: %d duplicates, %d redeliveries", s.Duplicate, s.Redelivered))
	}
	return errors.Join(errs...)
}
