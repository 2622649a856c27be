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
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/identity"
	"github.com/switchboard-io/switchboard/pkg/install"
	"github.com/switchboard-io/switchboard/pkg/join"
)

// JoinOptions are the options of kubectl switchboard join.
type JoinOptions struct {
	// Name is the Cluster's name: the command's argument.
	Name string
	// Member selects the member's kubeconfig.
	Member MemberFlags
	// Endpoint is the member's API server URL as switchboard reaches it;
	// Complete defaults it to the member kubeconfig's server.
	Endpoint string
	// HubNamespace holds the credentials Secrets on the hub.
	HubNamespace string
	// Overwrite lets join re-point an existing Cluster at Endpoint.
	Overwrite bool
	// DryRun is --dry-run: client prints the objects and contacts no cluster.
	DryRun dryRunStrategy
	// TokenTimeout bounds the wait for the member to fill the token Secret.
	TokenTimeout time.Duration
	// VerifyTimeout bounds the wait for the request through the hub.
	VerifyTimeout time.Duration
	// Tunnel sets the member up to be reached through its switchboard-agent.
	Tunnel bool
	// Agent is the agent's image, its view of the hub and its server count.
	Agent join.Agent
	// agentFlagsGiven names the --agent-* flags given, which need --tunnel.
	agentFlagsGiven []string
	// Identity is the ready-made identity policy the flags choose.
	Identity identity.Preset
	// policy is Identity as a policy, set by Validate; nil keeps the
	// Cluster's.
	policy *identity.Policy

	// memberConfig is the member's client configuration, set by Complete.
	memberConfig *rest.Config
	// hub makes the hub's clients, in Run: a client dry run needs none.
	hub hubFlags

	genericiooptions.IOStreams
}

// NewJoinOptions returns the options of join, with their defaults.
func NewJoinOptions(streams genericiooptions.IOStreams) *JoinOptions {
	return &JoinOptions{
		HubNamespace:  join.DefaultHubNamespace,
		TokenTimeout:  time.Minute,
		VerifyTimeout: time.Minute,
		Agent:         join.Agent{Image: install.DefaultImage(), ServerCount: 1},
		IOStreams:     streams,
	}
}

// newJoinCommand is the join command, which fills o from its flags.
func newJoinCommand(hub hubFlags, o *JoinOptions) *cobra.Command {
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

With --tunnel, switchboard reaches the member through a tunnel that the
member's switchboard-agent opens to the hub, for members the hub cannot
dial. join then also sets up:

 - On the hub: the agent's identity, ServiceAccount
   switchboard-agent-NAME in switchboard-system, with its token Secret,
   and ClusterRole and ClusterRoleBinding switchboard:agent:NAME, which
   let it create clusters/attach for NAME and nothing else.
 - In the member: ServiceAccount switchboard-agent, the Secret
   switchboard-agent-hub with the agent's kubeconfig for the hub, and
   the Deployment switchboard-agent (artifacts/agent/member).

join itself needs to reach both clusters, but the hub never dials the
member: the request through the hub goes through the agent's tunnel, so
join waits for the agent's pods to start (--verify-timeout).

By default a hub caller reaches the member as the hub authenticated it:
a hub caller in system:masters is in system:masters in the member, and a
hub service account team-a/deployer is the member's team-a/deployer. The
identity policy flags write spec.identity into the Cluster instead:
--refuse-hub-admins refuses hub callers in system:masters; --hub-prefix
puts a prefix before every hub user name and group; --allow-hub-groups
keeps only the hub groups named. Without any of them, join keeps the
Cluster's policy as it is.

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
  kubectl switchboard join member1 --member-kubeconfig member1.kubeconfig --dry-run=server
  kubectl switchboard join edge1 --member-kubeconfig edge1.kubeconfig --tunnel --agent-hub-server https://hub.example.com:6443
  kubectl switchboard join member1 --member-kubeconfig member1.kubeconfig --refuse-hub-admins --hub-prefix hub:`,
		Args: cobra.ExactArgs(1),
		RunE: runE(hub, o),
	}
	o.Member.addFlags(cmd, true)
	cmd.Flags().StringVar(&o.Endpoint, "endpoint", o.Endpoint, "the member's API server URL as switchboard reaches it, when it differs from the member kubeconfig's server")
	cmd.Flags().StringVar(&o.HubNamespace, "hub-namespace", o.HubNamespace, "hub namespace of the credentials Secrets (switchboard's --cluster-credentials-namespace)")
	cmd.Flags().BoolVar(&o.Overwrite, "overwrite", o.Overwrite, "re-point an existing Cluster NAME at this member's endpoint; without it, join refuses to change where a Cluster points")
	addDryRunFlag(cmd, &o.DryRun, `Must be "none", "server", or "client". client prints the objects join would apply, as YAML, and contacts no cluster; server sends every change to the member and the hub with dryRun=All, so that they validate and admit it, and changes nothing.`)
	cmd.Flags().DurationVar(&o.TokenTimeout, "token-timeout", o.TokenTimeout, "how long to wait for the member to fill the token Secret")
	cmd.Flags().DurationVar(&o.VerifyTimeout, "verify-timeout", o.VerifyTimeout, "how long to wait for switchboard to see the new Cluster (and, with --tunnel, for its agent to connect), for the request through the hub")
	cmd.Flags().BoolVar(&o.Tunnel, "tunnel", o.Tunnel, "reach the member through a tunnel that its switchboard-agent opens to the hub, for a member the hub cannot dial; sets up the agent's hub identity and its Deployment in the member")
	cmd.Flags().StringVar(&o.Agent.Image, "agent-image", o.Agent.Image, "with --tunnel: the container image of the switchboard-agent Deployment")
	cmd.Flags().StringVar(&o.Agent.HubServer, "agent-hub-server", o.Agent.HubServer, "with --tunnel: the hub's API server URL as the agent reaches it from inside the member (default: the hub kubeconfig's server)")
	cmd.Flags().IntVar(&o.Agent.ServerCount, "agent-server-count", o.Agent.ServerCount, "with --tunnel: how many switchboard replicas run on the hub; the agent holds a tunnel to each (3 for the ha variant)")
	cmd.Flags().BoolVar(&o.Identity.RefuseHubAdmins, "refuse-hub-admins", o.Identity.RefuseHubAdmins, "identity policy: refuse hub callers in system:masters, so that hub administrators are not administrators of this member")
	cmd.Flags().StringVar(&o.Identity.Prefix, "hub-prefix", o.Identity.Prefix, `identity policy: put this before every hub user name and group the member sees ("hub:" makes alice hub:alice), so that no hub caller is one of the member's own users or groups`)
	cmd.Flags().StringSliceVar(&o.Identity.AllowGroups, "allow-hub-groups", o.Identity.AllowGroups, "identity policy: the only hub groups the member sees; the caller's other groups are left out")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) {
		o.agentFlagsGiven = nil
		for _, name := range []string{"agent-image", "agent-hub-server", "agent-server-count"} {
			if cmd.Flags().Changed(name) {
				o.agentFlagsGiven = append(o.agentFlagsGiven, "--"+name)
			}
		}
	}
	return cmd
}

// Complete takes NAME from args, loads the member kubeconfig and defaults
// Endpoint to its server.
func (o *JoinOptions) Complete(hub hubFlags, _ *cobra.Command, args []string) error {
	name, err := nameFromArgs(args)
	if err != nil {
		return err
	}
	o.Name, o.hub = name, hub
	config, err := o.Member.restConfig()
	if err != nil {
		return err
	}
	o.memberConfig = config
	if o.Endpoint == "" {
		o.Endpoint = config.Host
	}
	return nil
}

// Validate checks the cluster name and the endpoint, and reports every
// one that is wrong.
func (o *JoinOptions) Validate() error {
	var errs []error
	if err := validateClusterName(o.Name); err != nil {
		errs = append(errs, err)
	}
	if err := join.ValidateEndpoint(o.Endpoint); err != nil {
		errs = append(errs, err)
	}
	if policy, err := o.Identity.Policy(); err != nil {
		errs = append(errs, fmt.Errorf("the identity policy: %w", err))
	} else {
		o.policy = policy
	}
	if o.Tunnel {
		errs = append(errs, o.validateAgent()...)
	} else if len(o.agentFlagsGiven) > 0 {
		errs = append(errs, fmt.Errorf("%s set(s) up the agent of a tunnelled member: add --tunnel", strings.Join(o.agentFlagsGiven, ", ")))
	}
	return utilerrors.NewAggregate(errs)
}

func (o *JoinOptions) validateAgent() []error {
	var errs []error
	if err := install.CheckImage(o.Agent.Image); err != nil {
		errs = append(errs, fmt.Errorf("--agent-image: %w", err))
	}
	if o.Agent.HubServer != "" {
		if u, err := url.Parse(o.Agent.HubServer); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--agent-hub-server %q is not an https:// URL of the hub's API server", o.Agent.HubServer))
		}
	}
	if o.Agent.ServerCount < 1 {
		errs = append(errs, fmt.Errorf("--agent-server-count %d: the agent needs a tunnel to at least 1 switchboard replica", o.Agent.ServerCount))
	}
	if validateClusterName(o.Name) == nil {
		if err := join.ValidateAgentName(o.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// agent is what join sets up for the agent: nil without --tunnel.
func (o *JoinOptions) agent() *join.Agent {
	if !o.Tunnel {
		return nil
	}
	agent := o.Agent
	return &agent
}

// Run joins the member, or with --dry-run=client prints what join would
// apply.
func (o *JoinOptions) Run(ctx context.Context) error {
	if o.DryRun == dryRunClient {
		return join.WriteYAML(o.Out, join.Plan(o.Name, o.Endpoint, o.HubNamespace, o.memberConfig.Insecure, o.agent(), o.policy))
	}
	hubConfig, hubClient, sb, err := o.hub.clients()
	if err != nil {
		return err
	}
	via := ""
	if o.Endpoint != o.memberConfig.Host {
		via = " (set up through " + o.memberConfig.Host + ")"
	}
	fmt.Fprintf(o.Out, "Joining cluster %q: member %s%s, hub %s%s\n", o.Name, o.Endpoint, via, hubConfig.Host, o.DryRun.suffix())
	if agent := o.agent(); agent != nil {
		if agent.HubServer == "" {
			agent.HubServer = hubConfig.Host
		}
		fmt.Fprintf(o.Out, "Through a tunnel: the member's switchboard-agent reaches the hub at %s\n", agent.HubServer)
	}
	result, err := join.Join(ctx, join.Options{
		Name:          o.Name,
		Endpoint:      o.Endpoint,
		MemberConfig:  o.memberConfig,
		HubConfig:     hubConfig,
		HubClient:     hubClient,
		Switchboard:   sb,
		HubNamespace:  o.HubNamespace,
		TokenTimeout:  o.TokenTimeout,
		VerifyTimeout: o.VerifyTimeout,
		Overwrite:     o.Overwrite,
		DryRun:        joinDryRun(o.DryRun),
		Agent:         o.agent(),
		Identity:      o.policy,
	})
	if result != nil {
		for _, warning := range result.Warnings {
			fmt.Fprintf(o.ErrOut, "Warning: %s\n", warning)
		}
		printChanges(o.Out, result.Changes)
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(o.ErrOut, "Interrupted: join stopped and put back what it had changed.")
		}
		return explainFailedJoin(o.Out, err)
	}
	switch {
	case o.DryRun == dryRunServer:
		fmt.Fprintf(o.Out, "Cluster %q: the hub and the member accepted every change sent in a server dry run; nothing changed.\n", o.Name)
		return nil
	case result.AlreadyAuthorized:
		fmt.Fprintf(o.Out, "Cluster %q is already authorized; nothing changed.\n", o.Name)
	default:
		fmt.Fprintf(o.Out, "Cluster %q is joined.\n", o.Name)
	}
	fmt.Fprintf(o.Out, "Verified: %s\n", result.Verified)
	return nil
}

// validateClusterName says why name cannot name a Cluster, if it cannot.
func validateClusterName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%q is not a valid cluster name: %s", name, strings.Join(msgs, "; "))
	}
	return nil
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
		return fmt.Errorf("%w\nPutting back what join changed failed too: %w\nRun join again to complete the join, or unjoin to remove it", joinErr.Err, joinErr.RollbackErr)
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

func printChanges(w io.Writer, changes []join.Change) {
	for _, c := range changes {
		fmt.Fprintf(w, "  %s\n", c)
	}
}
