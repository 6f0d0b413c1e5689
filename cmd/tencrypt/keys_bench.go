package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys"
)

func newKeysBenchCmd() *cobra.Command {
	var tenant string
	var ops, concurrency int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure wrap and unwrap operations per second and latency of the backend",
		Long: `bench wraps --ops random 32-byte DEKs from --concurrency goroutines, then
unwraps them, and reports operations per second and the p50 and p99 latency
of each. It measures the configured backend alone: no audit record, no blob.

Without --tenant it creates a throw-away tenant bench-<random> (admin
credentials needed) and shreds it afterwards; with --tenant it uses that
existing tenant and changes nothing.`,
		Example: `  tencrypt keys bench --ops 2000 --json
  tencrypt keys bench --backend vault --concurrency 8 --json
  tencrypt keys bench --tenant blue --local-tenant blue --local-tenant-key-file blue.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ops < 1 || concurrency < 1 {
				return usageError{fmt.Errorf("keys bench: --ops and --concurrency must be at least 1")}
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, _ keysConfig) error {
				var res keys.BenchResult
				var err error
				if tenant == "" {
					res, err = keys.BenchThrowaway(ctx, p, ops, concurrency)
				} else {
					res, err = keys.Bench(ctx, p, tenant, ops, concurrency)
				}
				if err != nil {
					return err
				}
				return report(cmd, res, func(w io.Writer) {
					fmt.Fprintf(w, "backend %s, %d ops, concurrency %d\n", res.Backend, res.Ops, res.Concurrency)
					for _, s := range []struct {
						name string
						st   keys.BenchStats
					}{{"wrap", res.Wrap}, {"unwrap", res.Unwrap}} {
						fmt.Fprintf(w, "%-7s %10.0f ops/s  p50 %8.1f µs  p99 %8.1f µs\n", s.name, s.st.OpsPerSec, s.st.P50Micros, s.st.P99Micros)
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "existing tenant to measure with (default: a throw-away tenant)")
	cmd.Flags().IntVar(&ops, "ops", 1000, "number of wraps, and of unwraps")
	cmd.Flags().IntVar(&concurrency, "concurrency", 1, "goroutines issuing operations at once")
	return cmd
}
