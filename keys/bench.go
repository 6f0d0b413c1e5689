package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"
)

// BenchStats summarises one operation of a benchmark.
type BenchStats struct {
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Micros float64 `json:"p50_us"`
	P99Micros float64 `json:"p99_us"`
}

// BenchResult is what Bench measured, as `tencrypt keys bench --json`
// prints it.
type BenchResult struct {
	Backend     string     `json:"backend"`
	Tenant      string     `json:"tenant"`
	Ops         int        `json:"ops"`
	Concurrency int        `json:"concurrency"`
	Wrap        BenchStats `json:"wrap"`
	Unwrap      BenchStats `json:"unwrap"`
}

// BenchThrowaway runs Bench on a throw-away tenant bench-<random>, which it
// creates first and shreds after (admin credentials needed), so that an
// existing tenant's keys are never touched.
func BenchThrowaway(ctx context.Context, p KEKProvider, ops, concurrency int) (res BenchResult, err error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "bench-" + hex.EncodeToString(b[:])
	if err := p.CreateTenant(ctx, name); err != nil {
		return res, fmt.Errorf("keys bench: create a throw-away tenant: %w", err)
	}
	defer func() {
		if serr := p.Shred(context.WithoutCancel(ctx), name); serr != nil && err == nil {
			err = fmt.Errorf("keys bench: shred the throw-away tenant %s: %w", name, serr)
		}
	}()
	return Bench(ctx, p, name, ops, concurrency)
}

// Bench wraps ops random 32-byte DEKs for tenant on p from concurrency
// goroutines, then unwraps them all the same way, timing each call. It
// measures the backend alone (no audit, no blob encoding), after one
// untimed wrap and unwrap per goroutine. The tenant must exist.
func Bench(ctx context.Context, p KEKProvider, tenant string, ops, concurrency int) (BenchResult, error) {
	if ops < 1 || concurrency < 1 {
		return BenchResult{}, fmt.Errorf("bench: ops and concurrency must be at least 1")
	}
	res := BenchResult{Backend: p.Name(), Tenant: tenant, Ops: ops, Concurrency: concurrency}
	aad := bindingAD(p.Name(), tenant, "bench")
	// Warm up: the first calls open sessions, log in or fill caches, which
	// is set-up cost, not the steady state the numbers are meant to show.
	for range concurrency {
		var dek [DEKSize]byte
		v, ct, err := p.Wrap(ctx, tenant, dek[:], aad)
		if err == nil {
			var pt []byte
			pt, err = p.Unwrap(ctx, tenant, v, ct, aad)
			clear(pt)
		}
		if err != nil {
			return res, fmt.Errorf("bench warm-up: %w", err)
		}
	}
	versions := make([]uint32, ops)
	cts := make([][]byte, ops)
	var err error
	res.Wrap, err = runBench(ctx, ops, concurrency, func(i int) error {
		var dek [DEKSize]byte
		_, _ = rand.Read(dek[:])
		v, ct, err := p.Wrap(ctx, tenant, dek[:], aad)
		versions[i], cts[i] = v, ct
		return err
	})
	if err != nil {
		return res, fmt.Errorf("bench wrap: %w", err)
	}
	res.Unwrap, err = runBench(ctx, ops, concurrency, func(i int) error {
		pt, err := p.Unwrap(ctx, tenant, versions[i], cts[i], aad)
		clear(pt)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("bench unwrap: %w", err)
	}
	return res, nil
}

func runBench(ctx context.Context, ops, concurrency int, op func(i int) error) (BenchStats, error) {
	lat := make([]time.Duration, ops)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				err := op(i)
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range ops {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("%w: %w", ErrBackendUnavailable, ctx.Err())
	}
	if firstErr != nil {
		return BenchStats{}, firstErr
	}
	slices.Sort(lat)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	return BenchStats{OpsPerSec: float64(ops) / wall.Seconds(), P50Micros: q(0.50), P99Micros: q(0.99)}, nil
}
