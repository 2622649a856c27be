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
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/switchboard-io/switchboard/pkg/join"
)

func newJoinCommand(hub hubFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var member memberFlags
	var endpoint, hubNamespace string
	var dryRun dryRunStrategy
	var overwrite bool
	var tokenTimeout, verifyTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "join NAME --member-kubeconfig FILE",
		Short: "Give switchboard an impersonate-only identity in a member and register it on the hub",
		Long: `join sets up member cluster NAME for switchboard:

 1. In the member: namespace switchboard-system, ServiceAccount
    switchboard-impersonator, ClusterRole and ClusterRoleBinding
    switchboard:impersonator (impersonate users, groups, service accounts,
    UIDs and user extras; nothing else), and a service account token Secret
    named switchboard-impersonator-token-*.
 2. On the hub: the Secret NAME-credentials in switchboard-system with the
    token and the member's CA, and the Cluster NAME.
 3. A request through the hub to the member as you, to show that it works.

It checks first that both kubeconfigs may do all this, and that it owns
what it would change: a Cluster or Secret made by hand stops it, and so
does a Cluster NAME that points at another endpoint, unless --overwrite
is given. If a later step fails, the request through the hub included,
it puts back what it changed. Running it again changes nothing when all
is in place ("already authorized"), and repairs what is not: a deleted
or invalid token, an edited role or binding. These objects belong to
switchboard; do not edit them.

kubectl's flags (--kubeconfig, --context, ...) select the hub. kubectl
takes them after the plugin's name only: put them after "join", or set
KUBECONFIG.`,
		Example: `  kubectl switchboard join member1 --member-kubeconfig member1.kubeconfig
  kubectl switchboard join member1 --member-kubeconfig admin.conf --endpoint https://10.0.0.12:6443
  kubectl switchboard join member1 --member-kubeconfig member1.kubeconfig --kubeconfig hub.kubeconfig
  kubectl switchboard join member1 --member-kubeconfig member1.kubeconfig --dry-run=server`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
				return fmt.Errorf("%q is not a valid cluster name: %s", name, strings.Join(msgs, "; "))
			}
			memberConfig, err := member.restConfig()
			if err != nil {
				return err
			}
			if endpoint == "" {
				endpoint = memberConfig.Host
			}
			if err := join.ValidateEndpoint(endpoint); err != nil {
				return err
			}
			if dryRun == dryRunClient {
				return join.WriteYAML(streams.Out, join.Plan(name, endpoint, hubNamespace, memberConfig.Insecure))
			}
			hubConfig, hubClient, sb, err := hub.clients()
			if err != nil {
				return err
			}
			via := ""
			if endpoint != memberConfig.Host {
				via = " (set up through " + memberConfig.Host + ")"
			}
			fmt.Fprintf(streams.Out, "Joining cluster %q: member %s%s, hub %s%s\n", name, endpoint, via, hubConfig.Host, dryRun.suffix())
			result, err := join.Join(cmd.Context(), join.Options{
				Name:          name,
				Endpoint:      endpoint,
				MemberConfig:  memberConfig,
				HubConfig:     hubConfig,
				HubClient:     hubClient,
				Switchboard:   sb,
				HubNamespace:  hubNamespace,
				TokenTimeout:  tokenTimeout,
				VerifyTimeout: verifyTimeout,
				Overwrite:     overwrite,
				DryRun:        joinDryRun(dryRun),
			})
			if result != nil {
				for _, warning := range result.Warnings {
					fmt.Fprintf(streams.ErrOut, "Warning: %s\n", warning)
				}
				printChanges(streams.Out, result.Changes)
			}
			if err != nil {
				if cmd.Context().Err() != nil {
					fmt.Fprintln(streams.ErrOut, "Interrupted: join stopped and put back what it had changed.")
				}
				return explainFailedJoin(streams.Out, err)
			}
			switch {
			case dryRun == dryRunServer:
				fmt.Fprintf(streams.Out, "Cluster %q: the hub and the member accepted every change sent in a server dry run; nothing changed.\n", name)
				return nil
			case result.AlreadyAuthorized:
				fmt.Fprintf(streams.Out, "Cluster %q is already authorized; nothing changed.\n", name)
			default:
				fmt.Fprintf(streams.Out, "Cluster %q is joined.\n", name)
			}
			fmt.Fprintf(streams.Out, "Verified: %s\n", result.Verified)
			return nil
		},
	}
	member.add(cmd, true)
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "the member's API server URL as switchboard reaches it, when it differs from the member kubeconfig's server")
	cmd.Flags().StringVar(&hubNamespace, "hub-namespace", join.DefaultHubNamespace, "hub namespace of the credentials Secrets (switchboard's --cluster-credentials-namespace)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "re-point an existing Cluster NAME at this member's endpoint; without it, join refuses to change where a Cluster points")
	addDryRunFlag(cmd, &dryRun, `Must be "none", "server", or "client". client prints the objects join would apply, as YAML, and contacts no cluster; server sends every change to the member and the hub with dryRun=All, so that they validate and admit it, and changes nothing.`)
	cmd.Flags().DurationVar(&tokenTimeout, "token-timeout", time.Minute, "how long to wait for the member to fill the token Secret")
	cmd.Flags().DurationVar(&verifyTimeout, "verify-timeout", time.Minute, "how long to wait for switchboard to see the new Cluster, for the request through the hub")
	return cmd
}

// explainFailedJoin prints what a failed join put back and says whether
// anything is left to mend.
func explainFailedJoin(out io.Writer, err error) error {
	var joinErr *join.Error
	if !errors.As(err, &joinErr) {
		return fmt.Errorf("%w\nNothing was changed: fix the cause and run join again", err)
	}
	for _, c := range joinErr.RolledBack {
		fmt.Fprintf(out, "  rolled back: %s\n", c)
	}
	if joinErr.RollbackErr != nil {
		return fmt.Errorf("%w\nPutting back what join changed failed too: %v\nRun join again to complete the join, or unjoin to remove it", joinErr.Err, joinErr.RollbackErr)
	}
	if len(joinErr.Repaired) > 0 {
		return fmt.Errorf("%w\nEverything else join changed is put back as it was; what it repaired stays repaired: fix the cause and run join again", joinErr.Err)
	}
	return fmt.Errorf("%w\nEverything join changed is put back as it was: fix the cause and run join again", joinErr.Err)
}

func joinDryRun(s dryRunStrategy) join.DryRun {
	switch s {
	case dryRunClient:
		return join.DryRunClient
	case dryRunServer:
		return join.DryRunServer
	}
	return join.DryRunNone
}

func newUnjoinCommand(hub hubFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var member memberFlags
	var hubNamespace string
	var dryRun dryRunStrategy
	cmd := &cobra.Command{
		Use:   "unjoin NAME [--member-kubeconfig FILE]",
		Short: "Remove a member: the Cluster and its Secret on the hub, and switchboard's objects in the member",
		Long: `unjoin removes what join created: the Cluster NAME and the Secret
NAME-credentials on the hub and, with --member-kubeconfig, the impersonator
objects in the member. It deletes only objects labelled
app.kubernetes.io/managed-by=switchboard, and is safe to run twice. The
member's objects stay while another Cluster on the hub uses their token
(the same member joined under two names): unjoin says which.`,
		Example: `  kubectl switchboard unjoin member1 --member-kubeconfig member1.kubeconfig
  kubectl switchboard unjoin member1 --dry-run=client`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			_, hubClient, sb, err := hub.clients()
			if err != nil {
				return err
			}
			opts := join.UnjoinOptions{Name: name, HubNamespace: hubNamespace, HubClient: hubClient, Switchboard: sb, DryRun: joinDryRun(dryRun)}
			if member.kubeconfig != "" {
				config, err := member.restConfig()
				if err != nil {
					return err
				}
				if opts.MemberClient, err = kubernetes.NewForConfig(config); err != nil {
					return err
				}
			}
			changes, err := join.Unjoin(cmd.Context(), opts)
			printChanges(streams.Out, changes)
			if err != nil {
				return err
			}
			switch {
			case len(changes) == 0:
				fmt.Fprintf(streams.Out, "Cluster %q is not joined; nothing to remove.\n", name)
			case dryRun != dryRunNone:
				fmt.Fprintf(streams.Out, "Cluster %q would be unjoined; nothing changed.\n", name)
			default:
				fmt.Fprintf(streams.Out, "Cluster %q is unjoined.\n", name)
			}
			return nil
		},
	}
	member.add(cmd, false)
	cmd.Flags().StringVar(&hubNamespace, "hub-namespace", join.DefaultHubNamespace, "hub namespace of the credentials Secrets")
	addDryRunFlag(cmd, &dryRun, `Must be "none", "server", or "client". client reads the hub and the member and prints what unjoin would delete; server also sends each delete with dryRun=All. Neither deletes anything.`)
	return cmd
}

func printChanges(w io.Writer, changes []join.Change) {
	for _, c := range changes {
		fmt.Fprintf(w, "  %s\n", c)
	}
}
