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
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
)

// options is what each command's options do, in kubectl's order.
type options interface {
	Complete(hub hubFlags, cmd *cobra.Command, args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// runE is a command's RunE: o's Complete, Validate and Run in turn.
func runE(hub hubFlags, o options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(hub, cmd, args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		return o.Run(cmd.Context())
	}
}

// hubFlags are kubectl's flags, for the hub: what every command completes
// its options from, as kubectl's commands do from their Factory.
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

// MemberFlags select the member cluster's kubeconfig.
type MemberFlags struct {
	// Kubeconfig is the member's kubeconfig file.
	Kubeconfig string
	// Context is the context of Kubeconfig to use; empty, its current one.
	Context string
}

func (m *MemberFlags) addFlags(cmd *cobra.Command, required bool) {
	usage := "kubeconfig file of the member cluster, with rights to create namespaces, service accounts, cluster roles and bindings, and to impersonate"
	if !required {
		usage = "kubeconfig file of the member cluster; when given, switchboard's objects in the member are removed too"
	}
	cmd.Flags().StringVar(&m.Kubeconfig, "member-kubeconfig", m.Kubeconfig, usage)
	cmd.Flags().StringVar(&m.Context, "member-context", m.Context, "context of the member kubeconfig to use (default: its current context)")
	if required {
		_ = cmd.MarkFlagRequired("member-kubeconfig")
	}
}

func (m *MemberFlags) restConfig() (*rest.Config, error) {
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: m.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: m.Context})
	config, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the member kubeconfig %s: %w", m.Kubeconfig, err)
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
		newJoinCommand(hub, NewJoinOptions(streams)),
		newUnjoinCommand(hub, NewUnjoinOptions(streams)),
		newKubeconfigCommand(hub, NewKubeconfigOptions(streams)),
		newListCommand(hub, NewListOptions(streams)),
		newInstallCommand(hub, NewInstallOptions(streams)),
		newVersionCommand(NewVersionOptions(streams)),
	)
	addCompletionCommand(cmd)
	return cmd
}

// nameFromArgs is a command's NAME: its one argument, as kubectl's
// NameFromCommandArgs takes it. Cobra checks the count before; this is
// for options completed without it.
func nameFromArgs(args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("exactly one NAME is required, got %d", len(args))
	}
	return args[0], nil
}
