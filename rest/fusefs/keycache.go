package fusefs

import (
	"container/list"
	"sync"

	"github.com/tencrypt/tencrypt/keys"
)

// keyCache keeps the unwrapped DEKs of recently opened files, so opening a
// file again does not call the key backend (and write an audit record)
// every time. It is keyed by the whole wrapped key, not the file ID: a
// header edited to carry another file's ID with a different wrapped key
// misses the cache and is unwrapped (and fails) on its own. Bounded: the
// least recently used key is evicted and zeroed. Safe for concurrent use.
type keyCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheEntry, most recent first
	byKey map[string]*list.Element
}

type cacheEntry struct {
	id  string
	dek keys.DEK
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// cacheID is the identity of a wrapped key.
func cacheID(wk keys.WrappedKey) string {
	b, err := wk.MarshalBinary()
	if err != nil {
		return ""
	}
	return string(b)
}

// get copies the cached DEK of wk into dek.
func (c *keyCache) get(wk keys.WrappedKey, dek *keys.DEK) bool {
	id := cacheID(wk)
	if id == "" || c.max <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[id]
	if !ok {
		return false
	}
	c.order.MoveToFront(e)
	*dek = e.Value.(*cacheEntry).dek
	return true
}

// put stores a copy of dek for wk.
func (c *keyCache) put(wk keys.WrappedKey, dek *keys.DEK) {
	id := cacheID(wk)
	if id == "" || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[id]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.byKey[id] = c.order.PushFront(&cacheEntry{id: id, dek: *dek})
	for c.order.Len() > c.max {
		e := c.order.Back()
		ent := e.Value.(*cacheEntry)
		ent.dek.Zero()
		delete(c.byKey, ent.id)
		c.order.Remove(e)
	}
}

// len is the number of cached keys.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// clear zeroes and drops every key (at unmount).
func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.order.Front(); e != nil; e = e.Next() {
		e.Value.(*cacheEntry).dek.Zero()
	}
	c.order.Init()
	clear(c.byKey)
}
