package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/shlex"
	"github.com/spf13/cobra"
)

// allCommands lists every command of the tree under c, c first.
func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		out = append(out, allCommands(sub)...)
	}
	return out
}

// exampleInvocations returns the argument lists of the tencrypt
// invocations in an Example: continuation lines are joined, comment lines
// skipped, each line split into shell words, and split again at |, &&, ||,
// ; and &; redirections and their targets, leading VAR=value assignments
// and sudo are dropped. Words of other programs (tar, jq, vault ...) are
// not tencrypt's to check.
func exampleInvocations(t *testing.T, example string) [][]string {
	t.Helper()
	var out [][]string
	joined := strings.ReplaceAll(example, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words, err := shlex.Split(line)
		if err != nil {
			t.Errorf("example line %q does not split into shell words: %v", line, err)
			continue
		}
		var cmd []string
		flush := func() {
			for len(cmd) > 0 && (isAssignment(cmd[0]) || cmd[0] == "sudo") {
				cmd = cmd[1:]
			}
			if len(cmd) > 0 && cmd[0] == "tencrypt" {
				out = append(out, cmd[1:])
			}
			cmd = nil
		}
		for i := 0; i < len(words); i++ {
			w := words[i]
			switch {
			case w == "|" || w == "||" || w == "&&" || w == ";" || w == "&":
				flush()
			case w == ">" || w == ">>" || w == "<" || w == "2>":
				i++ // the redirection's target
			case strings.HasPrefix(w, ">") || strings.HasPrefix(w, "<") || strings.HasPrefix(w, "2>"):
			default:
				cmd = append(cmd, w)
			}
		}
		flush()
	}
	return out
}

var assignmentRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

func isAssignment(w string) bool { return assignmentRE.MatchString(w) }

// TestEveryExampleParses runs every tencrypt invocation in every command's
// Example through the command tree as the binary would, without running
// it: the command must exist, its flags must parse, its arguments and
// required flags must be accepted.
func TestEveryExampleParses(t *testing.T) {
	checked := 0
	for _, c := range allCommands(newRootCmd()) {
		if c.Example == "" {
			continue
		}
		for _, args := range exampleInvocations(t, c.Example) {
			checked++
			line := "tencrypt " + strings.Join(args, " ")
			// A fresh tree per invocation: parsing flags changes them.
			target, rest, err := newRootCmd().Find(args)
			if err != nil {
				t.Errorf("%s example %q: %v", c.CommandPath(), line, err)
				continue
			}
			if err := target.ParseFlags(rest); err != nil {
				t.Errorf("%s example %q: %v", c.CommandPath(), line, err)
				continue
			}
			pos := target.Flags().Args()
			if target.HasSubCommands() && len(pos) > 0 {
				t.Errorf("%s example %q: %q is not a subcommand of %s", c.CommandPath(), line, pos[0], target.CommandPath())
				continue
			}
			if err := target.ValidateArgs(pos); err != nil {
				t.Errorf("%s example %q: %v", c.CommandPath(), line, err)
			}
			if err := target.ValidateRequiredFlags(); err != nil {
				t.Errorf("%s example %q: %v", c.CommandPath(), line, err)
			}
		}
	}
	if checked < 40 {
		t.Fatalf("only %d example invocations found; the splitter misses them", checked)
	}
	t.Logf("%d example invocations parse", checked)
}

// TestExampleCheckerCatches makes sure the checks above can fail.
func TestExampleCheckerCatches(t *testing.T) {
	bad := []string{
		"tencrypt agent --node n1 --keyring /etc/k", // a flag that does not exist
		"tencrypt keys frobnicate",                  // a subcommand that does not exist
		"tencrypt file encrypt --tenant blue",       // no SOURCE
		"tencrypt agent",                            // --node is required
	}
	for _, ex := range bad {
		inv := exampleInvocations(t, "  "+ex)
		if len(inv) != 1 {
			t.Fatalf("%q: %d invocations found", ex, len(inv))
		}
		target, rest, err := newRootCmd().Find(inv[0])
		if err == nil {
			err = target.ParseFlags(rest)
		}
		if err == nil && target.HasSubCommands() && len(target.Flags().Args()) > 0 {
			continue
		}
		if err == nil {
			err = target.ValidateArgs(target.Flags().Args())
		}
		if err == nil {
			err = target.ValidateRequiredFlags()
		}
		if err == nil {
			t.Errorf("%q passed the checks", ex)
		}
	}
	got := exampleInvocations(t, `  # a comment
  VAR=1 sudo tencrypt lab up \
      --name x
  tar c d | tencrypt file encrypt --tenant blue - > d.tenc && tencrypt file inspect d.tenc # why`)
	want := [][]string{{"lab", "up", "--name", "x"}, {"file", "encrypt", "--tenant", "blue", "-"}, {"file", "inspect", "d.tenc"}}
	if len(got) != len(want) {
		t.Fatalf("invocations %q, want %q", got, want)
	}
	for i := range want {
		if strings.Join(got[i], " ") != strings.Join(want[i], " ") {
			t.Errorf("invocation %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// flagRE finds --flag names in help text.
// (not a pattern such as --vault-*).
var flagRE = regexp.MustCompile(`(?:^|[\s(',])--([a-z][a-z0-9-]*[a-z0-9])(?:[^a-z0-9*-]|$)`)

// TestHelpNamesOnlyFlagsThatExist checks every --flag a command's Short or
// Long mentions: some command must have it (the Long text of one command
// may name another's flag, as transit status names the agent's --listen).
// Examples are checked flag by flag by TestEveryExampleParses.
func TestHelpNamesOnlyFlagsThatExist(t *testing.T) {
	all := allCommands(newRootCmd())
	for _, c := range all {
		c.InitDefaultHelpFlag() // cobra adds --help only when a command runs
	}
	for _, c := range all {
		text := c.Short + "\n" + c.Long
		for _, m := range flagRE.FindAllStringSubmatch(text, -1) {
			name := m[1]
			found := false
			for _, sub := range all {
				if sub.Flags().Lookup(name) != nil || sub.InheritedFlags().Lookup(name) != nil {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("%s help mentions --%s, which no command there has", c.CommandPath(), name)
			}
		}
	}
}

// docRE finds the repository's files named in help text.
var docRE = regexp.MustCompile(`\b(?:docs/[A-Za-z0-9_-]+\.md|[a-z]+/testdata/[A-Za-z0-9_.-]+)`)

// TestHelpNamesOnlyFilesThatExist checks that every docs/*.md and testdata
// file a command's help names is in the repository.
func TestHelpNamesOnlyFilesThatExist(t *testing.T) {
	seen := 0
	for _, c := range allCommands(newRootCmd()) {
		for _, name := range docRE.FindAllString(c.Short+"\n"+c.Long+"\n"+c.Example, -1) {
			seen++
			if _, err := os.Stat(filepath.Join("..", "..", name)); err != nil {
				t.Errorf("%s help names %s: %v", c.CommandPath(), name, err)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no file named in any help text; the pattern is wrong")
	}
}
