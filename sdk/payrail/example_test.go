package payrail_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/payrail/payrail/sdk/payrail"
	"github.com/payrail/payrail/sdk/payrail/webhook"
)

// A checkout: create the order server-side, send the buyer to the PG's
// window, then confirm with what the PG's success redirect carried.
func Example() {
	c := payrail.New("http://127.0.0.1:8080", "ck_…", "cs_…")
	ctx := context.Background()
	o, err := c.CreateOrder(ctx, payrail.CreateOrderParams{Amount: 15000, OrderName: "Jeju tea"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("send the buyer to", o.CheckoutURL)
	// … the PG redirects back with paymentKey (and an amount you must not trust).
	res, err := c.Confirm(ctx, o.OrderID, payrail.ConfirmParams{
		PaymentKey: "tmock_…", Amount: o.Amount, PaymentToken: o.PaymentToken, Wait: 10 * time.Second})
	switch {
	case payrail.ErrorCode(err) == "AMOUNT_MISMATCH":
		fmt.Println("tampered amount: nothing was charged")
	case err != nil:
		log.Fatal(err)
	case res.Result == payrail.ResultSuccess, res.Result == payrail.ResultDuplicate:
		fmt.Println("paid:", res.Order.Status)
	case res.Result == payrail.ResultAwaitingDeposit:
		fmt.Println("transfer to", res.Order.VirtualAccount.AccountNumber)
	default:
		fmt.Println("result", res.Result)
	}
}

// Iterating over orders reads pages as it goes.
func ExampleClient_ListOrders() {
	c := payrail.New("http://127.0.0.1:8080", "ck_…", "cs_…")
	for o, err := range c.ListOrders(context.Background(), payrail.ListParams{Status: payrail.StatusPaid}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(o.OrderID, o.Amount)
	}
}

// A callback receiver: verify first, deduplicate on webhook-id, answer 2xx.
func ExampleEvent() {
	secrets := []string{"whsec_…"} // both during a rotation
	http.HandleFunc("/payrail/callbacks", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := webhook.Verify(secrets, r.Header, body); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// json.Unmarshal(body, &payrail.Event{}) and act on ev.Type once per webhook-id.
		w.WriteHeader(http.StatusNoContent)
	})
}
