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

package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	storagefactory "k8s.io/apiserver/pkg/storage/storagebackend/factory"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	cliflag "k8s.io/component-base/cli/flag"
	basecompatibility "k8s.io/component-base/compatibility"
	componentbaseconfig "k8s.io/component-base/config"
	componentbaseoptions "k8s.io/component-base/config/options"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/apiserver"
	generatedopenapi "github.com/switchboard-io/switchboard/pkg/generated/openapi"
	"github.com/switchboard-io/switchboard/pkg/health"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
	"github.com/switchboard-io/switchboard/pkg/version"
)

const (
	// defaultEtcdPathPrefix is where Cluster objects live in etcd.
	defaultEtcdPathPrefix = "/registry/cluster.switchboard.io"
	// defaultSecurePort is unprivileged, so the server runs as non-root without capabilities.
	defaultSecurePort = 6443
	// defaultDataDir holds the embedded etcd.
	defaultDataDir = "/var/lib/switchboard"
)

func init() {
	// Logging options such as --logging-format=json are guarded by feature gates.
	if err := logsapi.AddFeatureGates(utilfeature.DefaultMutableFeatureGate); err != nil {
		panic(fmt.Sprintf("registering logging feature gates: %v", err))
	}
}

// Options are everything switchboard-apiserver can be told on its command line.
type Options struct {
	ServerRun      *genericoptions.ServerRunOptions
	SecureServing  *genericoptions.SecureServingOptionsWithLoopback
	Etcd           *genericoptions.EtcdOptions
	EmbeddedEtcd   *EmbeddedEtcdOptions
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
	Hub            *genericoptions.CoreAPIOptions
	Admission      *genericoptions.AdmissionOptions
	Audit          *genericoptions.AuditOptions
	Features       *genericoptions.FeatureOptions
	Traces         *genericoptions.TracingOptions
	Logs           *logsapi.LoggingConfiguration

	Proxy          *ProxyOptions
	Health         *health.Options
	LeaderElection *componentbaseconfig.LeaderElectionConfiguration

	ComponentGlobalsRegistry basecompatibility.ComponentGlobalsRegistry
	Version                  version.Flag

	// diskSpace is the embedded etcd's check of its disk, once it runs.
	diskSpace func(context.Context) error
}

// ProxyOptions configure forwarding to members.
type ProxyOptions struct {
	// CredentialsNamespace is the hub namespace of the credentials Secrets.
	CredentialsNamespace string
	// MemberDialTimeout bounds connecting (and the TLS handshake) to a member.
	MemberDialTimeout time.Duration
	// TunnelKeepAlive is how this end of agents' tunnels finds a dead one.
	TunnelKeepAlive tunnel.KeepAlive
	// FleetMembersInFlight bounds how many members one fleet request asks at once.
	FleetMembersInFlight int
	// FleetMemberTimeout bounds each member's answer to a fleet read.
	FleetMemberTimeout time.Duration
}

// EmbeddedEtcdOptions configure the etcd that runs inside the server when no
// --etcd-servers are given.
type EmbeddedEtcdOptions struct {
	DataDir           string
	QuotaBackendBytes int64
	MinFreeDiskBytes  int64
}

// defaultMinFreeDiskBytes is two of etcd's 64 MiB log segments: room for
// the segment etcd opens next, and for what it writes on its own.
const defaultMinFreeDiskBytes = 128 << 20

// NewOptions returns the defaults.
func NewOptions() *Options {
	registry := compatibility.DefaultComponentGlobalsRegistry
	if registry.EffectiveVersionFor(basecompatibility.DefaultKubeComponent) == nil {
		if err := registry.Register(basecompatibility.DefaultKubeComponent, compatibility.DefaultBuildEffectiveVersion(), utilfeature.DefaultMutableFeatureGate); err != nil {
			panic(fmt.Sprintf("registering the kube component: %v", err))
		}
	}

	o := &Options{
		ServerRun:      genericoptions.NewServerRunOptionsForComponent(basecompatibility.DefaultKubeComponent, registry),
		SecureServing:  genericoptions.NewSecureServingOptions().WithLoopback(),
		Etcd:           genericoptions.NewEtcdOptions(storageConfig()),
		EmbeddedEtcd:   &EmbeddedEtcdOptions{DataDir: defaultDataDir, MinFreeDiskBytes: defaultMinFreeDiskBytes},
		Authentication: genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:  genericoptions.NewDelegatingAuthorizationOptions(),
		Hub:            genericoptions.NewCoreAPIOptions(),
		Admission:      genericoptions.NewAdmissionOptions(),
		Audit:          genericoptions.NewAuditOptions(),
		Features:       genericoptions.NewFeatureOptions(),
		Traces:         genericoptions.NewTracingOptions(),
		Logs:           logsapi.NewLoggingConfiguration(),
		Proxy: &ProxyOptions{CredentialsNamespace: names.Namespace, MemberDialTimeout: 10 * time.Second, TunnelKeepAlive: tunnel.DefaultKeepAlive,
			FleetMembersInFlight: 32, FleetMemberTimeout: 20 * time.Second},
		Health: &health.Options{Interval: 10 * time.Second, Timeout: 5 * time.Second, Workers: 4, Heartbeat: time.Minute},
		LeaderElection: &componentbaseconfig.LeaderElectionConfiguration{
			LeaderElect:       true,
			LeaseDuration:     metav1.Duration{Duration: 15 * time.Second},
			RenewDeadline:     metav1.Duration{Duration: 10 * time.Second},
			RetryPeriod:       metav1.Duration{Duration: 2 * time.Second},
			ResourceLock:      resourcelock.LeasesResourceLock,
			ResourceName:      "switchboard-cluster-status",
			ResourceNamespace: names.Namespace,
		},

		ComponentGlobalsRegistry: registry,
	}

	// /readyz reports etcd through StorageHealth, and /livez leaves it out:
	// restarting this server does not bring etcd back.
	o.Etcd.SkipHealthEndpoints = true

	o.SecureServing.BindPort = defaultSecurePort
	// The hub's aggregator multiplexes every caller's requests, watches
	// included, over few HTTP/2 connections.
	o.SecureServing.HTTP2MaxStreamsPerConnection = 1000
	// No certificate files means an in-memory self-signed pair, never files
	// written next to the binary (the root filesystem is read-only).
	o.SecureServing.ServerCert.CertDirectory = ""

	// Without a hub connection (no kubeconfig and not in a pod) the server
	// still starts: only client certificates authenticate and only
	// system:masters is authorized. That is for development and tests; in
	// production the hub is always there.
	o.Authentication.RemoteKubeConfigFileOptional = true
	o.Authorization.RemoteKubeConfigFileOptional = true

	// Clusters are cluster-scoped; namespace lifecycle has nothing to guard.
	o.Admission.DefaultOffPlugins = sets.New(lifecycle.PluginName)
	return o
}

func storageConfig() *storagebackend.Config {
	codec := apiserver.Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion)
	c := storagebackend.NewDefaultConfig(defaultEtcdPathPrefix, codec)
	c.EncodeVersioner = runtime.NewMultiGroupVersioner(v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	return c
}

// Flags returns the flags, in named sections for --help.
func (o *Options) Flags() cliflag.NamedFlagSets {
	var fss cliflag.NamedFlagSets
	o.ServerRun.AddUniversalFlags(fss.FlagSet("generic"))
	o.SecureServing.AddFlags(fss.FlagSet("secure serving"))

	etcd := fss.FlagSet("etcd")
	o.Etcd.AddFlags(etcd)
	etcd.StringVar(&o.EmbeddedEtcd.DataDir, "data-dir", o.EmbeddedEtcd.DataDir,
		"Directory of the embedded etcd, used when --etcd-servers is empty. It must be private to this process and survive restarts (a persistent volume in a pod).")
	etcd.Int64Var(&o.EmbeddedEtcd.QuotaBackendBytes, "embedded-etcd-quota-backend-bytes", o.EmbeddedEtcd.QuotaBackendBytes,
		"Space quota of the embedded etcd in bytes; 0 keeps etcd's default of 2 GiB.")
	etcd.Int64Var(&o.EmbeddedEtcd.MinFreeDiskBytes, "embedded-etcd-min-free-disk-bytes", o.EmbeddedEtcd.MinFreeDiskBytes,
		"Free space to keep on the filesystem of --data-dir: below it, creates and updates of Clusters are refused with 507 Insufficient Storage, because etcd exits when it finds the disk full. Reads, deletes and proxying go on. 0 turns the check off.")

	proxyFlags := fss.FlagSet("proxy")
	proxyFlags.StringVar(&o.Proxy.CredentialsNamespace, "cluster-credentials-namespace", o.Proxy.CredentialsNamespace,
		"Hub namespace of the Secrets that Clusters name in spec.credentialsSecretRef. Switchboard watches Secrets in this namespace only.")
	proxyFlags.DurationVar(&o.Proxy.MemberDialTimeout, "member-dial-timeout", o.Proxy.MemberDialTimeout,
		"How long connecting to a member's API server (TCP and TLS) may take before the request fails with 503.")
	proxyFlags.DurationVar(&o.Proxy.TunnelKeepAlive.Interval, "tunnel-keepalive-interval", o.Proxy.TunnelKeepAlive.Interval,
		"How often switchboard pings the switchboard-agents whose tunnels it holds.")
	proxyFlags.DurationVar(&o.Proxy.TunnelKeepAlive.Timeout, "tunnel-keepalive-timeout", o.Proxy.TunnelKeepAlive.Timeout,
		"How long a ping, or any write, in an agent's tunnel may go unanswered before switchboard takes the tunnel for dead. It must also cover sending a few hundred KiB over the slowest agent's link.")

	fleetFlags := fss.FlagSet("fleet")
	fleetFlags.IntVar(&o.Proxy.FleetMembersInFlight, "fleet-members-in-flight", o.Proxy.FleetMembersInFlight,
		"How many members one request to the fleet endpoint (fleets/<selector>/proxy) asks at once, however many it reaches.")
	fleetFlags.DurationVar(&o.Proxy.FleetMemberTimeout, "fleet-member-timeout", o.Proxy.FleetMemberTimeout,
		"How long each member may take to answer a fleet get or list, or to start a fleet watch, and how long a streamed list waits for a member's next bytes. A member that takes longer to answer is named in a Warning and the others' answers come back; one that stalls in the middle of a streamed list breaks off the answer.")

	healthFlags := fss.FlagSet("member health")
	healthFlags.DurationVar(&o.Health.Interval, "cluster-probe-interval", o.Health.Interval,
		"How often each member is probed (/readyz and /version with switchboard's credential), jittered by up to 20%. A member is also probed whenever its Cluster or Secret changes.")
	healthFlags.DurationVar(&o.Health.Timeout, "cluster-probe-timeout", o.Health.Timeout, "How long one probe request may take.")
	healthFlags.IntVar(&o.Health.Workers, "cluster-probe-workers", o.Health.Workers, "How many members are probed at once, however many there are.")
	healthFlags.DurationVar(&o.Health.Heartbeat, "cluster-status-heartbeat", o.Health.Heartbeat,
		"How often Cluster status is written when nothing changed, to keep lastProbeTime and probeLatency current.")
	componentbaseoptions.BindLeaderElectionFlags(o.LeaderElection, fss.FlagSet("leader election"))

	o.Authentication.AddFlags(fss.FlagSet("authentication"))
	o.Authorization.AddFlags(fss.FlagSet("authorization"))
	hub := fss.FlagSet("hub")
	o.Hub.AddFlags(hub)
	hub.Lookup("kubeconfig").Usage = "kubeconfig file of the hub cluster, for admission (webhooks and admission policies on Clusters). " +
		"Empty means the service account of the pod the server runs in."
	o.Admission.AddFlags(fss.FlagSet("admission"))
	o.Audit.AddFlags(fss.FlagSet("auditing"))
	o.Features.AddFlags(fss.FlagSet("features"))
	o.Traces.AddFlags(fss.FlagSet("traces"))
	logsapi.AddFlags(o.Logs, fss.FlagSet("logs"))
	version.AddFlag(fss.FlagSet("global"), &o.Version)
	return fss
}

// usesEmbeddedEtcd says whether the server runs its own etcd.
func (o *Options) usesEmbeddedEtcd() bool {
	return len(o.Etcd.StorageConfig.Transport.ServerList) == 0
}

// Complete fills in what the flags leave open.
func (o *Options) Complete() error {
	return o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost",
		[]string{names.ServiceDNSName}, []net.IP{netutils.ParseIPSloppy("127.0.0.1")})
}

// Validate checks every option and reports every problem at once.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.ServerRun.Validate()...)
	errs = append(errs, o.SecureServing.Validate()...)
	if o.usesEmbeddedEtcd() {
		errs = append(errs, o.validateEmbeddedEtcd()...)
	} else {
		errs = append(errs, o.Etcd.Validate()...)
	}
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	errs = append(errs, o.Hub.Validate()...)
	errs = append(errs, o.Admission.Validate()...)
	errs = append(errs, o.Audit.Validate()...)
	errs = append(errs, o.Features.Validate()...)
	errs = append(errs, o.Traces.Validate()...)
	for _, msg := range apimachineryvalidation.ValidateNamespaceName(o.Proxy.CredentialsNamespace, false) {
		errs = append(errs, fmt.Errorf("--cluster-credentials-namespace %q: %s", o.Proxy.CredentialsNamespace, msg))
	}
	if o.Proxy.FleetMembersInFlight <= 0 {
		errs = append(errs, errors.New("--fleet-members-in-flight must be positive"))
	}
	if o.Proxy.FleetMemberTimeout <= 0 {
		errs = append(errs, errors.New("--fleet-member-timeout must be positive"))
	}
	if o.Proxy.MemberDialTimeout <= 0 {
		errs = append(errs, errors.New("--member-dial-timeout must be positive"))
	}
	if o.Proxy.TunnelKeepAlive.Interval <= 0 || o.Proxy.TunnelKeepAlive.Timeout <= 0 {
		errs = append(errs, errors.New("--tunnel-keepalive-interval and --tunnel-keepalive-timeout must be positive"))
	}
	if o.Health.Interval <= 0 || o.Health.Timeout <= 0 || o.Health.Heartbeat <= 0 {
		errs = append(errs, errors.New("--cluster-probe-interval, --cluster-probe-timeout and --cluster-status-heartbeat must be positive"))
	}
	if o.Health.Workers < 1 {
		errs = append(errs, errors.New("--cluster-probe-workers must be at least 1"))
	}
	errs = append(errs, o.validateLeaderElection()...)
	return utilerrors.NewAggregate(errs)
}

// validateLeaderElection refuses, with the flags' names, every setting
// client-go's leader elector would refuse (it panics then, after the server
// has started).
func (o *Options) validateLeaderElection() []error {
	le := o.LeaderElection
	if !le.LeaderElect {
		return nil
	}
	var errs []error
	lease, renew, retry := le.LeaseDuration.Duration, le.RenewDeadline.Duration, le.RetryPeriod.Duration
	if lease <= 0 || renew <= 0 || retry <= 0 {
		errs = append(errs, errors.New("--leader-elect-lease-duration, --leader-elect-renew-deadline and --leader-elect-retry-period must be positive"))
	}
	if renew >= lease {
		errs = append(errs, errors.New("--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"))
	}
	if float64(renew) <= leaderelection.JitterFactor*float64(retry) {
		errs = append(errs, fmt.Errorf("--leader-elect-renew-deadline must be more than %.1f times --leader-elect-retry-period", leaderelection.JitterFactor))
	}
	if le.ResourceName == "" || le.ResourceNamespace == "" {
		errs = append(errs, errors.New("--leader-elect-resource-name and --leader-elect-resource-namespace must not be empty"))
	}
	if le.ResourceLock != resourcelock.LeasesResourceLock {
		errs = append(errs, fmt.Errorf("--leader-elect-resource-lock must be %s", resourcelock.LeasesResourceLock))
	}
	return errs
}

func (o *Options) validateEmbeddedEtcd() []error {
	var errs []error
	if o.EmbeddedEtcd.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must be set when --etcd-servers is empty: it holds the embedded etcd"))
	}
	if o.EmbeddedEtcd.MinFreeDiskBytes < 0 {
		errs = append(errs, errors.New("--embedded-etcd-min-free-disk-bytes must not be negative"))
	}
	if o.EmbeddedEtcd.QuotaBackendBytes < 0 {
		errs = append(errs, errors.New("--embedded-etcd-quota-backend-bytes must not be negative"))
	}
	transport := o.Etcd.StorageConfig.Transport
	for flag, value := range map[string]string{
		"--etcd-cafile":   transport.TrustedCAFile,
		"--etcd-certfile": transport.CertFile,
		"--etcd-keyfile":  transport.KeyFile,
	} {
		if value != "" {
			errs = append(errs, fmt.Errorf("%s only applies with --etcd-servers; the embedded etcd is reached over a private unix socket", flag))
		}
	}
	return errs
}

// Config builds the server configuration. The etcd endpoint must be known:
// either from --etcd-servers or from the embedded etcd, already started.
func (o *Options) Config(ctx context.Context) (*apiserver.Config, error) {
	logger := klog.FromContext(ctx)
	c := genericapiserver.NewRecommendedConfig(apiserver.Codecs)

	namer := openapi.NewDefinitionNamer(apiserver.Scheme)
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIConfig.Info.Title = "Switchboard"
	c.OpenAPIConfig.Info.Version = version.Get().GitVersion
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIV3Config.Info.Title = "Switchboard"
	c.OpenAPIV3Config.Info.Version = version.Get().GitVersion

	if err := o.ServerRun.ApplyTo(&c.Config); err != nil {
		return nil, err
	}
	c.EffectiveVersion = switchboardVersion{c.EffectiveVersion}
	if err := o.Etcd.ApplyTo(&c.Config); err != nil {
		return nil, err
	}
	storageCheck, err := storagefactory.CreateReadyCheck(o.Etcd.StorageConfig, c.DrainedNotify())
	if err != nil {
		return nil, err
	}
	storageHealth := apiserver.NewStorageHealth(storageCheck)
	c.AddReadyzChecks(storageHealth.ReadyzCheck())
	c.BuildHandlerChainFunc = apiserver.HandlerChain(storageHealth)
	c.LongRunningFunc = apiserver.IsLongRunning
	extra := apiserver.ExtraConfig{
		StorageHealth:        storageHealth,
		CredentialsNamespace: o.Proxy.CredentialsNamespace,
		MemberDialTimeout:    o.Proxy.MemberDialTimeout,
		TunnelKeepAlive:      o.Proxy.TunnelKeepAlive,
		FleetMembersInFlight: o.Proxy.FleetMembersInFlight,
		FleetMemberTimeout:   o.Proxy.FleetMemberTimeout,
		Health:               *o.Health,
		LeaderElection:       *o.LeaderElection,
		DiskSpace:            o.diskSpace,
	}
	if err := o.SecureServing.ApplyTo(&c.SecureServing, &c.LoopbackClientConfig); err != nil {
		return nil, err
	}
	if err := o.Authentication.ApplyTo(&c.Authentication, c.SecureServing, c.OpenAPIConfig); err != nil {
		return nil, err
	}
	apiserver.CacheFrontProxyVerification(&c.Authentication)
	if err := o.Authorization.ApplyTo(&c.Authorization); err != nil {
		return nil, err
	}
	if err := o.Audit.ApplyTo(&c.Config); err != nil {
		return nil, err
	}
	if err := o.Traces.ApplyTo(nil, &c.Config); err != nil {
		return nil, err
	}

	hub, err := o.hubAvailable()
	if err != nil {
		return nil, err
	}
	if !hub {
		logger.Info("WARNING: no hub connection: neither --kubeconfig is set nor is the server in a pod. " +
			"Only client certificates authenticate, only system:masters is authorized, and admission plugins are off. " +
			"Use this for development only.")
		// Priority and fairness reads its configuration from the hub; without
		// one, --max-requests-inflight limits load instead.
		features := *o.Features
		features.EnablePriorityAndFairness = false
		if err := features.ApplyTo(&c.Config, nil, nil); err != nil {
			return nil, err
		}
		return &apiserver.Config{GenericConfig: c, ExtraConfig: extra}, nil
	}

	if err := o.Hub.ApplyTo(c); err != nil {
		return nil, fmt.Errorf("connecting to the hub: %w", err)
	}
	kubeClient, dynamicClient, err := hubClients(c.ClientConfig)
	if err != nil {
		return nil, err
	}
	extra.HubClient = kubeClient
	if err := o.Features.ApplyTo(&c.Config, kubeClient, c.SharedInformerFactory); err != nil {
		return nil, err
	}
	if err := o.Admission.ApplyTo(&c.Config, c.SharedInformerFactory, kubeClient, dynamicClient, c.FeatureGate, c.EffectiveVersion); err != nil {
		return nil, err
	}
	return &apiserver.Config{GenericConfig: c, ExtraConfig: extra}, nil
}

// hubAvailable says whether the hub can be reached: through --kubeconfig, or
// through the service account of the pod the server runs in.
func (o *Options) hubAvailable() (bool, error) {
	if o.Hub.CoreAPIKubeconfigPath != "" {
		return true, nil
	}
	if _, err := rest.InClusterConfig(); err != nil {
		if errors.Is(err, rest.ErrNotInCluster) {
			return false, nil
		}
		return false, fmt.Errorf("reading the in-cluster hub configuration: %w", err)
	}
	return true, nil
}

// switchboardVersion reports switchboard's own build on /version, while
// feature gates and API lifecycles keep following the Kubernetes version of
// the libraries the server is built on.
type switchboardVersion struct {
	basecompatibility.EffectiveVersion
}

func (v switchboardVersion) Info() *apimachineryversion.Info {
	info := version.Get()
	return &info
}

// hubClients returns typed and dynamic clients for the hub.
func hubClients(config *rest.Config) (kubernetes.Interface, dynamic.Interface, error) {
	kubeClient, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, nil, fmt.Errorf("building a hub client: %w", err)
	}
	dynamicClient, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, nil, fmt.Errorf("building a dynamic hub client: %w", err)
	}
	return kubeClient, dynamicClient, nil
}
