package ops

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// SessionTTL is how long an operator session lasts from login at most
// (PAYRAIL_OPS_SESSION_MAX); SessionIdle how long it lasts unused
// (PAYRAIL_OPS_SESSION_IDLE).
const (
	SessionTTL  = 12 * time.Hour
	SessionIdle = 30 * time.Minute
)

// Session is a logged-in operator.
type Session struct {
	OperatorID string    `json:"operatorId"`
	Operator   string    `json:"operator"`
	CSRF       string    `json:"csrf"`
	CreatedAt  time.Time `json:"createdAt"`
	// Addr is where the login came from; LastSeen the last request (kept
	// to the minute, so a busy page does not write on every request).
	Addr     string    `json:"addr"`
	LastSeen time.Time `json:"lastSeen"`
}

// Sessions keeps operator sessions in Redis under the SHA-256 of their id,
// so a read of Redis does not hand out live cookies. A session ends TTL
// after login whatever its use, or Idle after its last request.
type Sessions struct {
	Redis redis.UniversalClient
	TTL   time.Duration
	Idle  time.Duration
}

func (s *Sessions) idle() time.Duration {
	if s.Idle > 0 {
		return s.Idle
	}
	return SessionIdle
}

func (s *Sessions) key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "payrail:ops:session:" + hex.EncodeToString(sum[:])
}

func (s *Sessions) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return SessionTTL
}

// randomToken returns 256 random bits, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics on a broken source)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Create starts a session and returns its id (the cookie value).
func (s *Sessions) Create(ctx context.Context, operatorID, operator, addr string, now time.Time) (string, Session, error) {
	id := randomToken()
	sess := Session{OperatorID: operatorID, Operator: operator, CSRF: randomToken(), CreatedAt: now.UTC(), Addr: addr, LastSeen: now.UTC()}
	b, _ := json.Marshal(sess)
	if err := s.Redis.Set(ctx, s.key(id), b, s.ttl()).Err(); err != nil {
		return "", Session{}, fmt.Errorf("store session: %w", err)
	}
	return id, sess, nil
}

// errNoSession means the id names no live session.
var errNoSession = errors.New("no such session")

// Get returns a live session at now and notes the request; errNoSession
// when it expired (idle or past its lifetime) or never was.
func (s *Sessions) Get(ctx context.Context, id string, now time.Time) (Session, error) {
	var sess Session
	if err := s.read(ctx, id, s.key, &sess); err != nil {
		return sess, err
	}
	if now.Sub(sess.CreatedAt) >= s.ttl() || now.Sub(sess.LastSeen) >= s.idle() {
		_ = s.Delete(ctx, id)
		return sess, errNoSession
	}
	if now.Sub(sess.LastSeen) >= time.Minute {
		sess.LastSeen = now.UTC()
		b, _ := json.Marshal(sess)
		if err := s.Redis.SetArgs(ctx, s.key(id), b, redis.SetArgs{KeepTTL: true, Mode: "XX"}).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return sess, fmt.Errorf("touch session: %w", err)
		}
	}
	return sess, nil
}

// read loads the JSON stored under keyOf(id) into v; errNoSession for an
// id of the wrong shape, a missing key or a value that does not decode.
func (s *Sessions) read(ctx context.Context, id string, keyOf func(string) string, v any) error {
	if len(id) != 43 { // 32 bytes, base64url without padding
		return errNoSession
	}
	b, err := s.Redis.Get(ctx, keyOf(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return errNoSession
	}
	if err != nil {
		return fmt.Errorf("read session: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errNoSession
	}
	return nil
}

// Delete ends a session.
func (s *Sessions) Delete(ctx context.Context, id string) error {
	return s.Redis.Del(ctx, s.key(id)).Err()
}
