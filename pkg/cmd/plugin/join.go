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
	var dryRun bool
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

It checks first that both kubeconfigs may do all this. Running it again
changes nothing when all is in place ("already authorized"), and repairs
what is not: a deleted or invalid token, an edited role or binding. These
objects belong to switchboard; do not edit them.`,
		Example: `  kubectl switchboard join member1 --member-kubeconfig member1.kubeconfig
  kubectl switchboard join member1 --member-kubeconfig admin.conf --endpoint https://10.0.0.12:6443
  kubectl switchboard join member1 --member-kubeconfig member1.kubeconfig --dry-run`,
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
			if dryRun {
				return join.WriteYAML(streams.Out, join.Plan(name, endpoint, hubNamespace, memberConfig.Insecure))
			}
			hubConfig, hubClient, sb, err := hub.clients()
			if err != nil {
				return err
			}
			fmt.Fprintf(streams.Out, "Joining cluster %q: member %s, hub %s\n", name, memberConfig.Host, hubConfig.Host)
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
			})
			if result != nil {
				printChanges(streams.Out, result.Changes)
			}
			if err != nil {
				return fmt.Errorf("%w\nNothing is left half-made: fix the cause and run join again", err)
			}
			if result.AlreadyAuthorized {
				fmt.Fprintf(streams.Out, "Cluster %q is already authorized; nothing changed.\n", name)
			} else {
				fmt.Fprintf(streams.Out, "Cluster %q is joined.\n", name)
			}
			fmt.Fprintf(streams.Out, "Verified: %s\n", result.Verified)
			return nil
		},
	}
	member.add(cmd, true)
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "the member's API server URL as switchboard reaches it, when it differs from the member kubeconfig's server")
	cmd.Flags().StringVar(&hubNamespace, "hub-namespace", join.DefaultHubNamespace, "hub namespace of the credentials Secrets (switchboard's --cluster-credentials-namespace)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the objects join would apply, as YAML, and change nothing")
	cmd.Flags().DurationVar(&tokenTimeout, "token-timeout", time.Minute, "how long to wait for the member to fill the token Secret")
	cmd.Flags().DurationVar(&verifyTimeout, "verify-timeout", time.Minute, "how long the request through the hub may take to succeed")
	return cmd
}

func newUnjoinCommand(hub hubFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var member memberFlags
	var hubNamespace string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "unjoin NAME [--member-kubeconfig FILE]",
		Short: "Remove a member: the Cluster and its Secret on the hub, and switchboard's objects in the member",
		Long: `unjoin removes what join created: the Cluster NAME and the Secret
NAME-credentials on the hub and, with --member-kubeconfig, the impersonator
objects in the member. It deletes only objects labelled
app.kubernetes.io/managed-by=switchboard, and is safe to run twice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if dryRun {
				return join.WriteYAML(streams.Out, join.UnjoinPlan(name, hubNamespace, member.kubeconfig != ""))
			}
			_, hubClient, sb, err := hub.clients()
			if err != nil {
				return err
			}
			opts := join.UnjoinOptions{Name: name, HubNamespace: hubNamespace, HubClient: hubClient, Switchboard: sb}
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
			if len(changes) == 0 {
				fmt.Fprintf(streams.Out, "Cluster %q is not joined; nothing to remove.\n", name)
			} else {
				fmt.Fprintf(streams.Out, "Cluster %q is unjoined.\n", name)
			}
			return nil
		},
	}
	member.add(cmd, false)
	cmd.Flags().StringVar(&hubNamespace, "hub-namespace", join.DefaultHubNamespace, "hub namespace of the credentials Secrets")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the objects unjoin would delete, as YAML, and change nothing")
	return cmd
}

func printChanges(w io.Writer, changes []join.Change) {
	for _, c := range changes {
		fmt.Fprintf(w, "  %s\n", c)
	}
}
