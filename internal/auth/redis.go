package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultNoncePrefix begins every nonce key RedisNonces writes.
const DefaultNoncePrefix = "payrail:nonce:"

// RedisNonces is a NonceStore on Redis: one key per used nonce, written with
// SET NX EX so that the check and the record are one atomic step even with
// many api replicas. The key is Prefix + clientID + ":" + nonce; it is
// unambiguous because a valid nonce holds no ":".
//
// Losing Redis loses only the memory of recent nonces; while Redis is
// unreachable Use returns an error and requests fail closed.
type RedisNonces struct {
	Client redis.UniversalClient
	// Prefix replaces DefaultNoncePrefix when set (tests use a random one).
	Prefix string
}

// Use records nonce for clientID for ttl (at least one second). It returns
// false, nil when the key already exists, and the Redis error when Redis does
// not answer.
func (n RedisNonces) Use(ctx context.Context, clientID, nonce string, ttl time.Duration) (bool, error) {
	prefix := n.Prefix
	if prefix == "" {
		prefix = DefaultNoncePrefix
	}
	if ttl < time.Second {
		ttl = time.Second
	}
	ok, err := n.Client.SetNX(ctx, prefix+clientID+":"+nonce, 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("record nonce: %w", err)
	}
	return ok, nil
}
