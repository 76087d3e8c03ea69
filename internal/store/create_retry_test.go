package store_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// cuttingProxy forwards TCP to PostgreSQL; armed, it drops the next answer
// the server sends and closes that connection, as a load balancer or a
// pooler restarting between the commit and its reply would.
type cuttingProxy struct {
	ln    net.Listener
	armed atomic.Bool
	cuts  atomic.Int64
	dials atomic.Int64
}

func startCuttingProxy(t *testing.T, upstream string) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	p := &cuttingProxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			p.dials.Add(1)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(server, client); server.Close() }()
			go func() {
				defer wg.Done()
				defer client.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := server.Read(buf)
					if n > 0 && p.armed.CompareAndSwap(true, false) {
						p.cuts.Add(1)
						server.Close()
						return
					}
					if n > 0 {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

// A create whose answer is lost after PostgreSQL committed it: database/sql
// runs the one-statement create again on a new connection (lib/pq reports
// the lost connection as driver.ErrBadConn), which finds its own order by
// its id. The merchant gets the order, once, with one history row.
func TestCreateOrderSurvivesALostAnswer(t *testing.T) {
	t.Parallel()
	for _, cache := range []bool{true, false} {
		t.Run(map[bool]string{true: "statement cache", false: "unnamed statements"}[cache], func(t *testing.T) {
			t.Parallel()
			db := testenv.NewDatabase(t)
			ctx := context.Background()
			u, err := url.Parse(db.URL)
			testenv.Must(t, err)
			proxy := startCuttingProxy(t, u.Host)
			u.Host = proxy.ln.Addr().String()
			pool := openPool(t, u.String(), store.Pool{MaxConns: 1, StatementCache: cache})
			st := store.New(pool, testenv.Keyring(t), store.Options{})
			m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "lost answer", CallbackURL: "https://example.com/cb"})
			testenv.Must(t, err)
			order := func(ref string) store.NewOrder {
				return store.NewOrder{MerchantID: m.MerchantID, MerchantOrderID: &ref, Amount: 1000, Currency: "KRW", OrderName: "p",
					TokenHash: store.HashToken("t-" + ref), TTL: time.Hour}
			}
			_, err = st.CreateOrder(ctx, order("order-warm"), nil) // the connection is up, its statements prepared
			testenv.Must(t, err)
			dials := proxy.dials.Load()

			proxy.armed.Store(true)
			got, err := st.CreateOrder(ctx, order("order-cut"), nil)
			if proxy.cuts.Load() != 1 || proxy.dials.Load() <= dials {
				t.Fatalf("the proxy cut %d answers and dialled %d more times; the test did not lose an answer", proxy.cuts.Load(), proxy.dials.Load()-dials)
			}
			if err != nil {
				t.Fatalf("create after a lost answer: %v", err)
			}
			var orders, logged int
			testenv.Must(t, db.DB.GetContext(ctx, &orders, `SELECT count(*) FROM orders WHERE merchant_id = $1 AND merchant_order_id = 'order-cut'`, m.MerchantID))
			testenv.Must(t, db.DB.GetContext(ctx, &logged, `SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'order.created'`, got.OrderID))
			if orders != 1 || logged != 1 || got.MerchantOrderID == nil || *got.MerchantOrderID != "order-cut" {
				t.Errorf("%d orders, %d history rows, answer %+v; want the one order, logged once", orders, logged, got)
			}
		})
	}
}
