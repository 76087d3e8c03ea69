package auth

import (
	"context"
	"sync"
	"time"
)

// CachedCredentials keeps verified lookups of a CredentialStore for TTL, so a
// merchant's burst of requests costs one database read and one decryption
// instead of one per request. Only successful lookups are kept. Invalidate
// (called when an admin changes a merchant or its secrets in this process)
// drops everything at once; other api processes see a change within TTL.
type CachedCredentials struct {
	Store CredentialStore
	TTL   time.Duration
	Now   func() time.Time

	mu      sync.Mutex
	entries map[string]cachedEntry
}

type cachedEntry struct {
	creds   Credentials
	expires time.Time
}

func (c *CachedCredentials) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Credentials implements CredentialStore.
func (c *CachedCredentials) Credentials(ctx context.Context, clientID string) (Credentials, error) {
	if c.TTL <= 0 {
		return c.Store.Credentials(ctx, clientID)
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[clientID]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.creds, nil
	}
	creds, err := c.Store.Credentials(ctx, clientID)
	if err != nil {
		return creds, err
	}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) > 10000 {
		c.entries = map[string]cachedEntry{}
	}
	c.entries[clientID] = cachedEntry{creds: creds, expires: now.Add(c.TTL)}
	c.mu.Unlock()
	return creds, nil
}

// Invalidate forgets every cached lookup.
func (c *CachedCredentials) Invalidate() {
	c.mu.Lock()
	c.entries = nil
	c.mu.Unlock()
}
