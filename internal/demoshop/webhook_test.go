package demoshop

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type webhookVector struct {
	Name      string `json:"name"`
	Secret    string `json:"secret"`
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Body      string `json:"body"`
	Signature string `json:"signature"`
}

func loadVectors(t *testing.T) []webhookVector {
	t.Helper()
	b, err := os.ReadFile("testdata/webhook_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []webhookVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	return vs
}

func TestSignWebhookVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		got, err := SignWebhook(v.Secret, v.ID, v.Timestamp, []byte(v.Body))
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if got != v.Signature {
			t.Errorf("%s: signature = %s, want %s", v.Name, got, v.Signature)
		}
	}
}

func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)[0]
	ts, _ := strconv.ParseInt(v.Timestamp, 10, 64)
	at := time.Unix(ts, 0)
	other := "whsec_" + "c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
	tests := []struct {
		name    string
		secrets []string
		id, ts  string
		sig     string
		body    string
		now     time.Time
		want    error
	}{
		{"valid", []string{v.Secret}, v.ID, v.Timestamp, v.Signature, v.Body, at, nil},
		{"valid among several signatures", []string{v.Secret}, v.ID, v.Timestamp, "v1,Zm9v " + v.Signature + " v2,abc", v.Body, at, nil},
		{"valid with the second of two secrets", []string{other, v.Secret}, v.ID, v.Timestamp, v.Signature, v.Body, at, nil},
		{"within tolerance", []string{v.Secret}, v.ID, v.Timestamp, v.Signature, v.Body, at.Add(4 * time.Minute), nil},
		{"stale", []string{v.Secret}, v.ID, v.Timestamp, v.Signature, v.Body, at.Add(6 * time.Minute), ErrWebhookStale},
		{"from the future", []string{v.Secret}, v.ID, v.Timestamp, v.Signature, v.Body, at.Add(-6 * time.Minute), ErrWebhookStale},
		{"timestamp not a number", []string{v.Secret}, v.ID, "yesterday", v.Signature, v.Body, at, ErrWebhookStale},
		{"body changed", []string{v.Secret}, v.ID, v.Timestamp, v.Signature, `{"test": 2432232315}`, at, ErrWebhookNoMatch},
		{"id changed", []string{v.Secret}, "msg_other", v.Timestamp, v.Signature, v.Body, at, ErrWebhookNoMatch},
		{"wrong secret", []string{other}, v.ID, v.Timestamp, v.Signature, v.Body, at, ErrWebhookNoMatch},
		{"wrong version", []string{v.Secret}, v.ID, v.Timestamp, "v2," + v.Signature[3:], v.Body, at, ErrWebhookNoMatch},
		{"not base64", []string{v.Secret}, v.ID, v.Timestamp, "v1,!!!", v.Body, at, ErrWebhookNoMatch},
		{"missing signature", []string{v.Secret}, v.ID, v.Timestamp, "", v.Body, at, ErrWebhookMissingHeaders},
		{"missing id", []string{v.Secret}, "", v.Timestamp, v.Signature, v.Body, at, ErrWebhookMissingHeaders},
		{"bad secret", []string{"whsec_***"}, v.ID, v.Timestamp, v.Signature, v.Body, at, ErrWebhookBadSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := VerifyWebhook(tt.secrets, tt.id, tt.ts, tt.sig, []byte(tt.body), tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzVerifyWebhook(f *testing.F) {
	f.Add("msg_1", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`))
	f.Add("", "", "v1, v1,, ,", []byte{})
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	now := time.Unix(1614265330, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		err := VerifyWebhook([]string{secret}, id, ts, sig, body, now)
		if err != nil {
			return
		}
		// Whatever verified must be what the secret signs.
		want, _ := SignWebhook(secret, id, ts, body)
		found := false
		for _, s := range strings.Fields(sig) {
			if s == want {
				found = true
			}
		}
		if !found {
			t.Fatalf("verified %q without the signature %s", sig, want)
		}
	})
}

func TestWon(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "₩0", 999: "₩999", 1000: "₩1,000", 15000: "₩15,000", 1234567: "₩1,234,567", -5000: "-₩5,000"} {
		if got := won(in); got != want {
			t.Errorf("won(%d) = %q, want %q", in, got, want)
		}
	}
}
