package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/lab"
)

type labFlags struct {
	name     string
	stateDir string
	json     bool
}

func (f *labFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "lab", "name of the lab (a topology file's name: field sets it for up)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", lab.DefaultStateDir, "where lab state is kept")
}

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build a cluster of network namespaces on this machine to try tencrypt on",
		Long: `The lab stands in for a Kubernetes cluster on one machine. Each node is a
network namespace with a bridge (cni0) for its pods, a link to an underlay
switch, and VXLAN to the other nodes; each pod is a network namespace with one
veth (eth0) on its node's bridge and a default route through it, as the CNI
bridge plugin sets it up; each tenant's ClusterIP Service VIP is translated on
every node by nftables, as kube-proxy does.

Everything the lab creates is inside namespaces named tl-<lab>-<node or pod>
(see 'ip netns list'); the machine's own network is not changed. Commands that
change the lab need root.`,
		Example: `  sudo tencrypt lab up
  tencrypt lab status
  sudo tencrypt lab exec blue-1a -- ping -c1 10.96.0.10
  sudo tencrypt lab down`,
	}
	cmd.AddCommand(newLabUpCmd(), newLabDownCmd(), newLabStatusCmd(), newLabExecCmd(), newLabServeCmd(), newLabProbeCmd(), newLabVirtualPodsCmd())
	return cmd
}

func labLogger(cmd *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func newLabUpCmd() *cobra.Command {
	var f labFlags
	var topoFile string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab (does nothing if it is already up)",
		Long: `Build the lab from a topology file, or from the built-in topology: two nodes,
tenant blue with two pods per node, tenant red with one, and one Service per
tenant. Running up again on a lab that is up does nothing; after a crash
midway, up removes the leftovers and builds again. The topology format is in
docs/LAB.md.`,
		Example: `  sudo tencrypt lab up
  sudo tencrypt lab up --topology lab/testdata/three-nodes.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t := lab.DefaultTopology()
			if topoFile != "" {
				data, err := os.ReadFile(topoFile)
				if err != nil {
					return usageError{err}
				}
				if t, err = lab.ParseTopology(topoFile, data); err != nil {
					return usageError{err}
				}
			} else if cmd.Flags().Changed("name") {
				t.Name = f.name
			}
			if err := requireRoot("lab up"); err != nil {
				return err
			}
			plan, err := lab.New(f.stateDir, labLogger(cmd)).Up(cmd.Context(), t)
			if err != nil {
				return err
			}
			return printPlan(cmd.OutOrStdout(), plan, f.json)
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&topoFile, "topology", "t", "", "YAML topology file (default: the built-in two-node lab)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the lab as one JSON document on stdout")
	return cmd
}

func newLabDownCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab and everything it created",
		Long: `Remove every namespace of the lab, with all the interfaces, routes and
nftables rules inside them, and its state file. Works after a crash, and on a
lab whose state file is lost (it removes namespaces by the lab's name prefix).
Removing a lab that is not up is not an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireRoot("lab down"); err != nil {
				return err
			}
			removed, err := lab.New(f.stateDir, labLogger(cmd)).Down(cmd.Context(), f.name)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"lab": f.name, "removed_netns": orEmpty(removed)})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %d namespaces of lab %q\n", len(removed), f.name)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&f.json, "json", false, "print what was removed as JSON on stdout")
	return cmd
}

func newLabStatusCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes, pods, tenants and Services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, missing, err := lab.New(f.stateDir, labLogger(cmd)).Status(f.name)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{
					"phase": st.Phase, "started": st.Started, "missing_netns": orEmpty(missing), "lab": st.Plan,
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s: %s since %s\n\n", st.Plan.Name, st.Phase, st.Started.Format("2006-01-02 15:04:05Z"))
			if err := printPlan(cmd.OutOrStdout(), st.Plan, false); err != nil {
				return err
			}
			if len(missing) > 0 {
				return fmt.Errorf("lab is broken, missing namespaces: %s; run 'tencrypt lab down' then 'up'", strings.Join(missing, ", "))
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&f.json, "json", false, "print the status as one JSON document on stdout")
	return cmd
}

func newLabExecCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "exec POD|NODE -- COMMAND [ARG...]",
		Short: "Run a command inside a pod's or node's network namespace",
		Long: `Run a command inside the network namespace of a pod or node of the lab. The
command's exit code becomes tencrypt's.`,
		Example: `  sudo tencrypt lab exec blue-1a -- ip addr show eth0
  sudo tencrypt lab exec node1 -- nft list table ip tencrypt-lab`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot("lab exec"); err != nil {
				return err
			}
			argv := args[1:]
			if argv[0] == "--" { // flag parsing stopped at POD, so "--" is still here
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return usageError{errors.New("no command to run after POD")}
			}
			c, err := lab.New(f.stateDir, labLogger(cmd)).Command(cmd.Context(), f.name, args[0], argv...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			err = c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return exitError{code: ee.ExitCode()}
			}
			return err
		},
	}
	f.bind(cmd)
	// Everything after POD belongs to the command, "--" or not.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabServeCmd() *cobra.Command {
	var f labFlags
	var port uint16
	var all bool
	cmd := &cobra.Command{
		Use:   "serve [POD...]",
		Short: "Answer TCP and UDP on a port inside pods with each pod's name, until interrupted",
		Long: `Listen on a TCP and a UDP port inside each named pod and answer every
connection or datagram with the pod's name. With 'lab probe' it shows which
pod a Service VIP picked, without any tool installed in the pods.`,
		Example: `  sudo tencrypt lab serve blue-1a blue-1b blue-2a blue-2b --port 8080 &
  sudo tencrypt lab probe blue-1a 10.96.0.10:80 --count 8
  sudo tencrypt lab serve --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usageError{errors.New("name the pods to serve in, or give --all")}
			}
			if err := requireRoot("lab serve"); err != nil {
				return err
			}
			m := lab.New(f.stateDir, labLogger(cmd))
			if all {
				st, _, err := m.Status(f.name)
				if err != nil {
					return err
				}
				for _, p := range st.Plan.Pods {
					args = append(args, p.Name)
				}
			}
			for _, pod := range args {
				s, err := m.Serve(f.name, pod, port)
				if err != nil {
					return err
				}
				defer s.Close()
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "serving on port %d in %s; interrupt to stop\n", port, strings.Join(args, ", "))
			<-cmd.Context().Done()
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().Uint16Var(&port, "port", 8080, "TCP and UDP port to answer on")
	cmd.Flags().BoolVar(&all, "all", false, "serve in every pod of the lab")
	return cmd
}

func newLabProbeCmd() *cobra.Command {
	var f labFlags
	var count int
	var udp bool
	cmd := &cobra.Command{
		Use:   "probe POD IP:PORT",
		Short: "Connect from a pod to an address and print which pod answered",
		Long: `Connect from inside a pod to IP:PORT (a pod or a Service VIP) where 'lab serve'
answers, and print the name of the pod that answered, once per connection.
Exits non-zero if any connection fails.`,
		Example: `  sudo tencrypt lab probe blue-1a 10.244.2.2:8080
  sudo tencrypt lab probe blue-1a 10.96.0.10:80 --count 8 --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot("lab probe"); err != nil {
				return err
			}
			network := "tcp"
			if udp {
				network = "udp"
			}
			m := lab.New(f.stateDir, labLogger(cmd))
			var answers []string
			for range count {
				got, err := m.Probe(cmd.Context(), f.name, args[0], network, args[1])
				if err != nil {
					return err
				}
				answers = append(answers, got)
				if !f.json {
					fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s/%s: answered by %s\n", args[0], args[1], network, got)
				}
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"from": args[0], "to": args[1], "protocol": network, "answered_by": answers})
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().IntVar(&count, "count", 1, "number of connections to make")
	cmd.Flags().BoolVar(&udp, "udp", false, "send a UDP datagram instead of connecting over TCP")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the answers as one JSON document on stdout")
	return cmd
}

func printPlan(w io.Writer, p *lab.Plan, asJSON bool) error {
	if asJSON {
		return writeJSON(w, p)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNETNS\tUNDERLAY IP\tPOD CIDR")
	for _, n := range p.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, n.NetNS, n.UnderlayIP, n.PodCIDR)
	}
	fmt.Fprintln(tw, "\nPOD\tTENANT\tNODE\tIP\tNETNS")
	for _, pod := range p.Pods {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", pod.Name, pod.Tenant, pod.Node, pod.IP, pod.NetNS)
	}
	fmt.Fprintln(tw, "\nSERVICE\tTENANT\tVIP\tPORT\tBACKENDS")
	for _, s := range p.Services {
		for _, sp := range s.Ports {
			var be []string
			for _, a := range s.Backends {
				be = append(be, fmt.Sprintf("%s:%d", a, sp.TargetPort))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%s\t%s\n", s.Name, s.Tenant, s.VIP, sp.Port, sp.Protocol, strings.Join(be, " "))
		}
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
