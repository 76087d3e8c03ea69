package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// fakeWebhookStore serves one stored event and answers OrderRowForEvent
// with lookupErr.
type fakeWebhookStore struct {
	fakeConfirmStore
	event     store.PGEvent
	lookupErr error
	marked    []payment.PGEventState
}

func (f *fakeWebhookStore) PGEventByKey(context.Context, string, string) (store.PGEvent, error) {
	return f.event, nil
}

func (f *fakeWebhookStore) OrderRowForEvent(context.Context, string, string) (store.OrderRow, error) {
	return store.OrderRow{}, f.lookupErr
}

func (f *fakeWebhookStore) MarkPGEvent(_ context.Context, _ store.PGEvent, state payment.PGEventState, _, _ string) error {
	f.marked = append(f.marked, state)
	return nil
}

// Only a real not-found settles an event as IGNORED; a database error
// while finding its order leaves it RECEIVED and the task retries, so a
// transient outage never loses a real PG webhook (review item 4).
func TestWebhookOrderLookupErrorRetriesNotIgnores(t *testing.T) {
	body := []byte(`{"eventType":"PAYMENT_STATUS_CHANGED","data":{"paymentKey":"tmock_1","orderId":"ord_1","status":"DONE"}}`)
	for _, tc := range []struct {
		name       string
		lookupErr  error
		wantErr    bool
		wantMarked []payment.PGEventState
	}{
		{"database down", errors.New("pq: the database system is shutting down"), true, nil},
		{"connection reset", context.DeadlineExceeded, true, nil},
		{"no such order", payment.Errorf(payment.CodeOrderNotFound, "no order for that payment"), false, []payment.PGEventState{payment.EventIgnored}},
	} {
		st := &fakeWebhookStore{event: store.PGEvent{Provider: "toss", EventKey: "k", Body: body, State: payment.EventReceived}, lookupErr: tc.lookupErr}
		c := newConfirmer(&st.fakeConfirmStore, &fakePG{}, &fakeQueue{})
		w := &Webhooks{Confirmer: c, Store: st}
		err := w.handleWebhook(context.Background(), "toss", "k")
		if (err != nil) != tc.wantErr || len(st.marked) != len(tc.wantMarked) || (len(tc.wantMarked) == 1 && st.marked[0] != tc.wantMarked[0]) {
			t.Errorf("%s: err = %v, marked %v; want error %v, marked %v", tc.name, err, st.marked, tc.wantErr, tc.wantMarked)
		}
	}
}

func (s *fakeWebhookStore) VASecret(store.OrderRow) (string, bool, error) { return "", false, nil }
