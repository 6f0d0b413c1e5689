package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/lab"
)

func newLabVirtualPodsCmd() *cobra.Command {
	var f labFlags
	var tenant string
	var count, perNode int
	cmd := &cobra.Command{
		Use:   "virtual-pods",
		Short: "Add pods on nodes that do not exist to a tenant in the lab's transit registry (scale benchmarks)",
		Long: `Replace a tenant's virtual pods with --count new ones, --per-node on each
made-up node, each with an address in the lab's pod range beyond the real
nodes' and a published WireGuard public key whose private half is thrown away.
The agents configure them as peers of the tenant's real pods, so one machine
can present a tenant of thousands of pods to its agents; nothing answers at
their addresses. --count 0 removes them; 'lab down' removes them with the lab.`,
		Example: `  tencrypt lab virtual-pods --name tbench --tenant blue --count 1990 --per-node 110`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := lab.New(f.stateDir, labLogger(cmd)).Registry(f.name)
			if err := r.SetVirtualPods(cmd.Context(), tenant, count, perNode); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "tenant %s has %d virtual pods in lab %q\n", tenant, count, f.name)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant (it must have a pod in the lab)")
	cmd.Flags().IntVar(&count, "count", 0, "how many virtual pods the tenant gets (0 removes them)")
	cmd.Flags().IntVar(&perNode, "per-node", 110, fmt.Sprintf("virtual pods per made-up node (at most %d)", lab.MaxVirtualPerNode))
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}
