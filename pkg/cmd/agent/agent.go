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

// Package agent is the switchboard-agent command: its flags, their
// validation and the run loop.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/featuregate"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/term"
	"k8s.io/klog/v2"

	// JSON logging for --logging-format=json.
	_ "k8s.io/component-base/logs/json/register"

	"github.com/switchboard-io/switchboard/pkg/agent"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
	"github.com/switchboard-io/switchboard/pkg/version"
)

// Name is the command's name.
const Name = "switchboard-agent"

// Options are the agent's flags.
type Options struct {
	Kubeconfig    string
	Cluster       string
	MemberAddress string
	DialTimeout   time.Duration
	KeepAlive     tunnel.KeepAlive
	ServerCount   int
	// HealthProbeBindAddress serves /healthz and /readyz; empty turns it off.
	HealthProbeBindAddress string
	Logs                   *logsapi.LoggingConfiguration
	Version                version.Flag
	// features holds the logging features the logging flags may turn on.
	features featuregate.MutableVersionedFeatureGate
}

// NewOptions returns the defaults. The member's address defaults to the
// in-cluster kubernetes Service, as every pod sees it.
func NewOptions() *Options {
	o := &Options{
		DialTimeout:            10 * time.Second,
		KeepAlive:              tunnel.DefaultKeepAlive,
		ServerCount:            1,
		HealthProbeBindAddress: ":8081",
		Logs:                   logsapi.NewLoggingConfiguration(),
		features:               featuregate.NewFeatureGate(),
	}
	// Only logging's own features; they are known, so this cannot fail.
	utilruntime.Must(logsapi.AddFeatureGates(o.features))
	if host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"); host != "" && port != "" {
		o.MemberAddress = net.JoinHostPort(host, port)
	}
	return o
}

// Flags returns the agent's flags in named sets.
func (o *Options) Flags() cliflag.NamedFlagSets {
	var fss cliflag.NamedFlagSets
	hub := fss.FlagSet("hub")
	hub.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig,
		"The kubeconfig of the agent's identity on the hub. Empty: the in-cluster configuration, for an agent that runs in the hub itself.")
	hub.StringVar(&o.Cluster, "cluster", o.Cluster,
		"The name of this member's Cluster on the hub. The hub lets the agent connect only for the Cluster its identity may create clusters/attach for.")
	member := fss.FlagSet("member")
	member.StringVar(&o.MemberAddress, "member-address", o.MemberAddress,
		"host:port of the member's API server: the one address the agent dials. Default: the kubernetes Service, from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.")
	tun := fss.FlagSet("tunnel")
	tun.IntVar(&o.ServerCount, "server-count", o.ServerCount,
		"How many tunnels to hold, each to a different switchboard replica: the number of replicas behind the hub's Service, so that a request that lands on any of them finds a tunnel there.")
	tun.DurationVar(&o.DialTimeout, "dial-timeout", o.DialTimeout, "How long connecting to the hub, or to the member's API server, may take.")
	tun.DurationVar(&o.KeepAlive.Interval, "keepalive-interval", o.KeepAlive.Interval, "How often the agent pings switchboard through the tunnel.")
	tun.DurationVar(&o.KeepAlive.Timeout, "keepalive-timeout", o.KeepAlive.Timeout,
		"How long a ping may go unanswered before the agent takes the tunnel for dead and reconnects.")
	serving := fss.FlagSet("serving")
	serving.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress,
		"The address /healthz (the process runs) and /readyz (the tunnel is up) are served on, over plain HTTP. Empty turns them off.")
	logsapi.AddFlags(o.Logs, fss.FlagSet("logging"))
	version.AddFlag(fss.FlagSet("global"), &o.Version)
	return fss
}

// Validate checks every flag and returns all that are wrong.
func (o *Options) Validate() error {
	var errs []error
	if o.Cluster == "" {
		errs = append(errs, errors.New("--cluster is required: the name of this member's Cluster on the hub"))
	} else if msgs := validation.IsDNS1123Subdomain(o.Cluster); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--cluster %q is not a Cluster name: %s", o.Cluster, msgs[0]))
	}
	if o.MemberAddress == "" {
		errs = append(errs, errors.New("--member-address is required outside a pod: host:port of the member's API server"))
	} else if _, port, err := net.SplitHostPort(o.MemberAddress); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("--member-address %q must be host:port", o.MemberAddress))
	}
	if o.ServerCount < 1 {
		errs = append(errs, fmt.Errorf("--server-count must be at least 1, not %d", o.ServerCount))
	}
	for name, d := range map[string]time.Duration{
		"--dial-timeout": o.DialTimeout, "--keepalive-interval": o.KeepAlive.Interval, "--keepalive-timeout": o.KeepAlive.Timeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, not %s", name, d))
		}
	}
	if o.HealthProbeBindAddress != "" {
		if _, _, err := net.SplitHostPort(o.HealthProbeBindAddress); err != nil {
			errs = append(errs, fmt.Errorf("--health-probe-bind-address %q must be host:port or :port", o.HealthProbeBindAddress))
		}
	}
	return utilerrors.NewAggregate(errs)
}

// hubConfig loads the hub configuration: the kubeconfig, or in-cluster.
func (o *Options) hubConfig() (*rest.Config, error) {
	if o.Kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig, and not in a pod: %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", o.Kubeconfig, err)
	}
	return c, nil
}

// NewCommand returns the switchboard-agent command; it runs until ctx ends.
func NewCommand(ctx context.Context) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   Name,
		Short: "Holds a member's tunnel to switchboard, through the hub's API",
		Long: Name + ` runs next to a member cluster that the hub cannot dial. It
connects out to the hub's kube-apiserver, to clusters/<name>/attach, which the
hub authorizes for the agent's identity and forwards to switchboard, and it
relays each connection switchboard opens through that tunnel to one address:
the member's API server. The connections are switchboard's TLS connections to
the member; the agent cannot read them.`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Version.Requested() {
				return o.Version.Print(cmd.OutOrStdout(), Name)
			}
			if err := logsapi.ValidateAndApply(o.Logs, o.features); err != nil {
				return err
			}
			cliflag.PrintFlags(cmd.Flags())
			if err := o.Validate(); err != nil {
				return err
			}
			return Run(cmd.Context(), o)
		},
		Args: cobra.NoArgs,
	}
	cmd.SetContext(ctx)
	fss := o.Flags()
	globalflag.AddGlobalFlags(fss.FlagSet("global"), cmd.Name(), logs.SkipLoggingConfigurationFlags())
	for _, fs := range fss.FlagSets {
		cmd.Flags().AddFlagSet(fs)
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, fss, cols)
	return cmd
}

// Run holds the tunnel until ctx ends.
func Run(ctx context.Context, o *Options) error {
	hub, err := o.hubConfig()
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		Hub:           hub,
		Cluster:       o.Cluster,
		MemberAddress: o.MemberAddress,
		DialTimeout:   o.DialTimeout,
		KeepAlive:     o.KeepAlive,
		ServerCount:   o.ServerCount,
	})
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	if o.HealthProbeBindAddress != "" {
		listener, err := net.Listen("tcp", o.HealthProbeBindAddress)
		if err != nil {
			return fmt.Errorf("--health-probe-bind-address: %w", err)
		}
		server := &http.Server{Handler: healthHandler(a), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = server.Serve(listener) }()
		defer func() { _ = server.Close() }()
		logger.Info("Serving health probes", "address", listener.Addr().String())
	}
	logger.Info("Starting", "version", version.Get().GitVersion, "cluster", o.Cluster, "hub", hub.Host, "member", o.MemberAddress, "serverCount", o.ServerCount)
	a.Run(ctx)
	logger.Info("Stopped")
	return nil
}

// healthHandler serves /healthz, ok while the process runs, and /readyz,
// ok while the tunnel is up.
func healthHandler(a *agent.Agent) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Connected() {
			http.Error(w, "the tunnel to switchboard is down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}
