/*
Copyright The Switchboard Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package plugin

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// dryRunStrategy is what --dry-run asks for. The values and their parsing
// are kubectl's (kubectl's cmdutil.GetDryRunStrategy), so that
// kubectl switchboard takes --dry-run as every kubectl command does.
type dryRunStrategy int

const (
	// dryRunNone changes things: the default.
	dryRunNone dryRunStrategy = iota
	// dryRunClient prints what would be sent and sends nothing.
	dryRunClient
	// dryRunServer sends every change with dryRun=All: the API server
	// validates and admits it and persists nothing.
	dryRunServer
)

// dryRunBare is what a --dry-run without a value parses as (kubectl's
// NoOptDefVal for the flag).
const dryRunBare = "unchanged"

// dryRunUsage is kubectl's usage text for --dry-run.
const dryRunUsage = `Must be "none", "server", or "client". If client strategy, only print the object that would be sent, without sending it. If server strategy, submit server-side request without persisting the resource.`

// addDryRunFlag registers --dry-run=none|client|server on cmd, parsed into
// s when the flag is parsed. usage describes what the strategies do for
// this command; empty, kubectl's text is used. As in kubectl, a bare
// --dry-run means client and --dry-run=true|false mean client|none; each
// prints a warning to the command's standard error naming the value to use
// instead. Any other value fails flag parsing with an error naming the
// allowed values.
func addDryRunFlag(cmd *cobra.Command, s *dryRunStrategy, usage string) {
	if usage == "" {
		usage = dryRunUsage
	}
	*s = dryRunNone
	cmd.Flags().Var(&dryRunValue{strategy: s, cmd: cmd}, "dry-run", usage)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = dryRunBare
	_ = cmd.RegisterFlagCompletionFunc("dry-run", cobra.FixedCompletions(
		[]string{"none", "client", "server"}, cobra.ShellCompDirectiveNoFileComp))
}

// parseDryRun turns a --dry-run value into a strategy, and a warning to
// print when the value is one kubectl deprecates.
func parseDryRun(value string) (dryRunStrategy, string, error) {
	if b, err := strconv.ParseBool(value); err == nil {
		if b {
			return dryRunClient, fmt.Sprintf("--dry-run=%s is deprecated (boolean value) and can be replaced with --dry-run=client.", value), nil
		}
		return dryRunNone, fmt.Sprintf("--dry-run=%s is deprecated (boolean value) and can be replaced with --dry-run=none.", value), nil
	}
	switch value {
	case dryRunBare:
		return dryRunClient, "--dry-run is deprecated and can be replaced with --dry-run=client.", nil
	case "client":
		return dryRunClient, "", nil
	case "server":
		return dryRunServer, "", nil
	case "none":
		return dryRunNone, "", nil
	}
	return dryRunNone, "", fmt.Errorf(`must be "none", "server", or "client", not %q`, value)
}

// String is the flag value that selects s.
func (s dryRunStrategy) String() string {
	switch s {
	case dryRunClient:
		return "client"
	case dryRunServer:
		return "server"
	default:
		return "none"
	}
}

// apiDryRun is the dryRun field of Create/Update/Patch/DeleteOptions for
// s: [All] for server, nil otherwise.
func (s dryRunStrategy) apiDryRun() []string {
	if s == dryRunServer {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// suffix is what kubectl appends to the line it prints for each object:
// " (dry run)", " (server dry run)" or nothing.
func (s dryRunStrategy) suffix() string {
	switch s {
	case dryRunClient:
		return " (dry run)"
	case dryRunServer:
		return " (server dry run)"
	default:
		return ""
	}
}

// dryRunValue is the pflag.Value of --dry-run.
type dryRunValue struct {
	strategy *dryRunStrategy
	// raw is the value as given, for --help and String.
	raw string
	// cmd's standard error receives the deprecation warnings.
	cmd *cobra.Command
}

func (v *dryRunValue) Set(value string) error {
	s, warning, err := parseDryRun(value)
	if err != nil {
		return err
	}
	*v.strategy, v.raw = s, value
	if warning != "" {
		fmt.Fprintf(v.cmd.ErrOrStderr(), "Warning: %s\n", warning)
	}
	return nil
}

func (v *dryRunValue) String() string {
	if v.raw == "" {
		return v.strategy.String()
	}
	return v.raw
}

func (v *dryRunValue) Type() string { return "string" }
