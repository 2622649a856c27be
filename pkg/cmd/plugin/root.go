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

// Package plugin is kubectl-switchboard, the kubectl plugin that joins
// member clusters to a hub and hands out kubeconfigs for them. The standard
// kubectl flags (--kubeconfig, --context, ...) select the hub.
package plugin

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/version"
)

// hubFlags are kubectl's flags, for the hub.
type hubFlags struct {
	*genericclioptions.ConfigFlags
}

func (h hubFlags) restConfig() (*rest.Config, error) {
	config, err := h.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the hub kubeconfig: %w", err)
	}
	return config, nil
}

func (h hubFlags) clients() (*rest.Config, kubernetes.Interface, clientset.Interface, error) {
	config, err := h.restConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, nil, nil, err
	}
	sb, err := clientset.NewForConfig(config)
	if err != nil {
		return nil, nil, nil, err
	}
	return config, kube, sb, nil
}

// memberFlags select the member cluster's kubeconfig.
type memberFlags struct {
	kubeconfig string
	context    string
}

func (m *memberFlags) add(cmd *cobra.Command, required bool) {
	usage := "kubeconfig file of the member cluster, with rights to create namespaces, service accounts, cluster roles and bindings, and to impersonate"
	if !required {
		usage = "kubeconfig file of the member cluster; when given, switchboard's objects in the member are removed too"
	}
	cmd.Flags().StringVar(&m.kubeconfig, "member-kubeconfig", "", usage)
	cmd.Flags().StringVar(&m.context, "member-context", "", "context of the member kubeconfig to use (default: its current context)")
	if required {
		_ = cmd.MarkFlagRequired("member-kubeconfig")
	}
}

func (m *memberFlags) restConfig() (*rest.Config, error) {
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: m.kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: m.context})
	config, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the member kubeconfig %s: %w", m.kubeconfig, err)
	}
	config.Timeout = 30 * time.Second
	return config, nil
}

// NewCommand returns the kubectl-switchboard command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	hub := hubFlags{genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		// The executable's name, as cobra's plugin convention has it: shell
		// completion scripts (completion bash|zsh|fish) are for it, and help
		// shows the display name, the way kubectl runs the plugin.
		Use:         "kubectl-switchboard",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl switchboard"},
		Short:       "Join member clusters to a switchboard hub and reach them through it",
		Long: `kubectl switchboard manages the member clusters of a switchboard hub.

The usual kubectl flags (--kubeconfig, --context, ...) select the hub; the
member is given with --member-kubeconfig. kubectl takes no flags before a
plugin's name: put them after the subcommand, as in
kubectl switchboard list --context hub.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	hub.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newJoinCommand(hub, streams),
		newUnjoinCommand(hub, streams),
		newKubeconfigCommand(hub, streams),
		newListCommand(hub, streams),
		newInstallCommand(hub, streams),
		newVersionCommand(streams),
	)
	addCompletionCommand(cmd)
	return cmd
}

func newVersionCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version [-o json|yaml]",
		Short: "Print the version of kubectl-switchboard",
		Long: `version prints the version of kubectl-switchboard. -o json and -o yaml
print the whole build information, as kubectl version -o does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version.Get()
			switch output {
			case "":
				_, err := fmt.Fprintf(streams.Out, "kubectl-switchboard %s (commit %s, %s)\n", v.GitVersion, v.GitCommit, v.GoVersion)
				return err
			case "json":
				data, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(streams.Out, "%s\n", data)
				return err
			case "yaml":
				data, err := yaml.Marshal(v)
				if err != nil {
					return err
				}
				_, err = streams.Out.Write(data)
				return err
			}
			return fmt.Errorf("--output must be 'yaml' or 'json', not %q", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "One of 'yaml' or 'json'.")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
