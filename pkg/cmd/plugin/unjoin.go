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
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/join"
)

// UnjoinOptions are the options of kubectl switchboard unjoin.
type UnjoinOptions struct {
	// Name is the Cluster's name: the command's argument.
	Name string
	// Member selects the member's kubeconfig; without it, unjoin leaves
	// the member alone.
	Member MemberFlags
	// HubNamespace holds the credentials Secrets on the hub.
	HubNamespace string
	// DryRun is --dry-run: client and server both delete nothing.
	DryRun dryRunStrategy

	// The clients, made by Complete; memberClient only with a member
	// kubeconfig.
	hubClient    kubernetes.Interface
	switchboard  clientset.Interface
	memberClient kubernetes.Interface

	genericiooptions.IOStreams
}

// NewUnjoinOptions returns the options of unjoin, with their defaults.
func NewUnjoinOptions(streams genericiooptions.IOStreams) *UnjoinOptions {
	return &UnjoinOptions{HubNamespace: join.DefaultHubNamespace, IOStreams: streams}
}

// newUnjoinCommand is the unjoin command, which fills o from its flags.
func newUnjoinCommand(hub hubFlags, o *UnjoinOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unjoin NAME [--member-kubeconfig FILE]",
		Short: "Remove a member: the Cluster and its Secret on the hub, and switchboard's objects in the member",
		Long: `unjoin removes what join created: the Cluster NAME and the Secret
NAME-credentials on the hub and, with --member-kubeconfig, the impersonator
objects in the member. For a member joined with --tunnel it also removes the
agent's hub identity (ServiceAccount switchboard-agent-NAME, its token
Secrets, ClusterRole and ClusterRoleBinding switchboard:agent:NAME) and, with
--member-kubeconfig, the agent's Deployment, Secret and ServiceAccount in the
member. It deletes only objects labelled
app.kubernetes.io/managed-by=switchboard, and is safe to run twice. The
member's objects stay while another Cluster on the hub uses their token
(the same member joined under two names), and the agent and its namespace
while the agent serves another Cluster: unjoin says which.`,
		Example: `  kubectl switchboard unjoin member1 --member-kubeconfig member1.kubeconfig
  kubectl switchboard unjoin member1 --dry-run=client`,
		Args: cobra.ExactArgs(1),
		RunE: runE(hub, o),
	}
	o.Member.addFlags(cmd, false)
	cmd.Flags().StringVar(&o.HubNamespace, "hub-namespace", o.HubNamespace, "hub namespace of the credentials Secrets")
	addDryRunFlag(cmd, &o.DryRun, `Must be "none", "server", or "client". client reads the hub and the member and prints what unjoin would delete; server also sends each delete with dryRun=All. Neither deletes anything.`)
	return cmd
}

// Complete takes NAME from args and makes the hub's clients and, with a
// member kubeconfig, the member's.
func (o *UnjoinOptions) Complete(hub hubFlags, _ *cobra.Command, args []string) error {
	name, err := nameFromArgs(args)
	if err != nil {
		return err
	}
	o.Name = name
	if _, o.hubClient, o.switchboard, err = hub.clients(); err != nil {
		return err
	}
	if o.Member.Kubeconfig == "" {
		return nil
	}
	config, err := o.Member.restConfig()
	if err != nil {
		return err
	}
	o.memberClient, err = join.MemberClient(config)
	return err
}

// Validate checks nothing: unjoin takes any NAME, and removes nothing
// when no Cluster has it.
func (o *UnjoinOptions) Validate() error {
	return nil
}

// Run removes the member, or with --dry-run says what it would remove.
func (o *UnjoinOptions) Run(ctx context.Context) error {
	changes, err := join.Unjoin(ctx, join.UnjoinOptions{
		Name:         o.Name,
		HubNamespace: o.HubNamespace,
		HubClient:    o.hubClient,
		Switchboard:  o.switchboard,
		MemberClient: o.memberClient,
		DryRun:       joinDryRun(o.DryRun),
	})
	printChanges(o.Out, changes)
	if err != nil {
		return err
	}
	switch {
	case len(changes) == 0:
		fmt.Fprintf(o.Out, "Cluster %q is not joined; nothing to remove.\n", o.Name)
	case o.DryRun != dryRunNone:
		fmt.Fprintf(o.Out, "Cluster %q would be unjoined; nothing changed.\n", o.Name)
	default:
		fmt.Fprintf(o.Out, "Cluster %q is unjoined.\n", o.Name)
	}
	return nil
}
