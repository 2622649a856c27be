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
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/pkg/version"
)

// VersionOptions are the options of kubectl switchboard version.
type VersionOptions struct {
	// Output is empty for one line, or json or yaml for the whole build
	// information.
	Output string

	// info is what Run prints: this build's version, set by Complete.
	info apimachineryversion.Info

	genericiooptions.IOStreams
}

// NewVersionOptions returns the options of version, with their defaults.
func NewVersionOptions(streams genericiooptions.IOStreams) *VersionOptions {
	return &VersionOptions{IOStreams: streams}
}

// newVersionCommand is the version command, which fills o from its flags.
func newVersionCommand(o *VersionOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version [-o json|yaml]",
		Short: "Print the version of kubectl-switchboard",
		Long: `version prints the version of kubectl-switchboard. -o json and -o yaml
print the whole build information, as kubectl version -o does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", o.Output, "One of 'yaml' or 'json'.")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// Complete takes the version of this build.
func (o *VersionOptions) Complete(_ *cobra.Command, _ []string) error {
	o.info = version.Get()
	return nil
}

// Validate checks --output.
func (o *VersionOptions) Validate() error {
	switch o.Output {
	case "", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output must be 'yaml' or 'json', not %q", o.Output)
}

// Run prints the version.
func (o *VersionOptions) Run(_ context.Context) error {
	switch o.Output {
	case "":
		_, err := fmt.Fprintf(o.Out, "kubectl-switchboard %s (commit %s, %s)\n", o.info.GitVersion, o.info.GitCommit, o.info.GoVersion)
		return err
	case "json":
		data, err := json.MarshalIndent(o.info, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(o.Out, "%s\n", data)
		return err
	case "yaml":
		data, err := yaml.Marshal(o.info)
		if err != nil {
			return err
		}
		_, err = o.Out.Write(data)
		return err
	}
	// As kubectl version: a bug, reported rather than a panic.
	return fmt.Errorf("--output %q was not validated", o.Output)
}
