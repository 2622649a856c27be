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

// Package apiserver assembles the switchboard API server: the
// cluster.switchboard.io group on top of k8s.io/apiserver.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	componentbaseconfig "k8s.io/component-base/config"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/install"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/fleet"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/pkg/health"
	"github.com/switchboard-io/switchboard/pkg/members"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/pkg/proxy"
	clusterstorage "github.com/switchboard-io/switchboard/pkg/registry/cluster/storage"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

var (
	// Scheme holds every type the server encodes and decodes.
	Scheme = runtime.NewScheme()
	// Codecs encodes and decodes the types of Scheme.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)

	// The generic server decodes options such as ListOptions in the bare v1
	// version, and serves discovery and Status objects unversioned.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}

// ExtraConfig holds switchboard's own settings.
type ExtraConfig struct {
	// StorageHealth probes etcd; its handler gate must be in the chain.
	StorageHealth *StorageHealth
	// HubClient reads credentials Secrets from the hub; nil without a hub.
	HubClient kubernetes.Interface
	// CredentialsNamespace holds the credentials Secrets Clusters name.
	CredentialsNamespace string
	// MemberDialTimeout bounds connecting to a member.
	MemberDialTimeout time.Duration
	// TunnelKeepAlive is how agents' tunnels are found dead; zero is
	// tunnel.DefaultKeepAlive.
	TunnelKeepAlive tunnel.KeepAlive
	// Health tunes the member prober.
	Health health.Options
	// LeaderElection decides which replica writes Cluster status; off, or
	// without a hub, this replica does.
	LeaderElection componentbaseconfig.LeaderElectionConfiguration
	// FleetMembersInFlight bounds how many members one fleet request asks
	// at once.
	FleetMembersInFlight int
	// FleetMemberTimeout bounds each member's answer to a fleet get or list,
	// and the start of its watch.
	FleetMemberTimeout time.Duration
	// DiskSpace, when set, is asked before every create and update of a
	// Cluster; an error refuses the write with 507 (see
	// embeddedetcd.Server.DiskSpace).
	DiskSpace func(context.Context) error
}

// Config is the configuration of the server.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
	// Members is built from ExtraConfig and the loopback client.
	Members *members.Members
	// fleet serves the fleet endpoint inside the handler chain.
	fleet *lateFleet
	// fleetAuthorizer is the delegating authorizer itself: the fleet
	// answers a failed SubjectAccessReview with its own 503, where the
	// handler chain's authorizer refuses (FailClosed).
	fleetAuthorizer authorizer.Authorizer
}

// CompletedConfig is a Config on which Complete has run. Only this package
// can make one, so New never sees an incomplete configuration.
type CompletedConfig struct {
	*completedConfig
}

// Server is a running switchboard API server.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// Complete fills in defaults and builds the members component, which
// reads Clusters through the loopback client. It mutates the receiver.
func (cfg *Config) Complete() (CompletedConfig, error) {
	if cfg.GenericConfig.LoopbackClientConfig == nil {
		return CompletedConfig{}, errors.New("the server needs a secure port: the proxy reads Clusters through its loopback client")
	}
	loopback, err := clientset.NewForConfig(cfg.GenericConfig.LoopbackClientConfig)
	if err != nil {
		return CompletedConfig{}, fmt.Errorf("loopback client: %w", err)
	}
	proxy.RegisterMetrics()
	fleet.RegisterMetrics()
	m, err := members.New(members.Config{
		Loopback:    loopback,
		Hub:         cfg.ExtraConfig.HubClient,
		Namespace:   cfg.ExtraConfig.CredentialsNamespace,
		DialTimeout: cfg.ExtraConfig.MemberDialTimeout,
		// A member must begin its answer within the time an ordinary
		// request may take at all; watches and logs -f then run on.
		ResponseHeaderTimeout: cfg.GenericConfig.RequestTimeout,
		KeepAlive:             cfg.ExtraConfig.TunnelKeepAlive,
		OnFailure:             proxy.RecordUpstreamError,
		OnDelete:              func(name string) { proxy.ForgetClusterMetrics(name); fleet.ForgetClusterMetrics(name) },
		Health:                cfg.ExtraConfig.Health,
		LeaderElection:        cfg.ExtraConfig.LeaderElection,
	})
	if err != nil {
		return CompletedConfig{}, err
	}
	late := &lateFleet{}
	fleetAuthorizer := cfg.GenericConfig.Authorization.Authorizer
	if fleetAuthorizer != nil {
		cfg.GenericConfig.Authorization.Authorizer = FailClosed(fleetAuthorizer)
	}
	chain := cfg.GenericConfig.BuildHandlerChainFunc
	if chain == nil {
		chain = genericapiserver.DefaultBuildHandlerChain
	}
	cfg.GenericConfig.BuildHandlerChainFunc = func(handler http.Handler, gc *genericapiserver.Config) http.Handler {
		return chain(late.wrap(handler), gc)
	}
	return CompletedConfig{&completedConfig{
		GenericConfig:   cfg.GenericConfig.Complete(),
		ExtraConfig:     &cfg.ExtraConfig,
		Members:         m,
		fleet:           late,
		fleetAuthorizer: fleetAuthorizer,
	}}, nil
}

// New builds the server and installs the cluster.switchboard.io group.
func (c CompletedConfig) New() (*Server, error) {
	genericServer, err := c.GenericConfig.New(names.Server, genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}

	clusters, err := clusterstorage.NewStorage(Scheme, c.GenericConfig.RESTOptionsGetter, c.ExtraConfig.DiskSpace)
	if err != nil {
		return nil, err
	}
	if err := genericServer.AddPostStartHook("switchboard-members", c.Members.Start); err != nil {
		return nil, err
	}
	if err := genericServer.AddReadyzChecks(c.Members.ReadyzCheck()); err != nil {
		return nil, err
	}
	if hub := c.ExtraConfig.HubClient; hub != nil {
		if err := genericServer.AddReadyzChecks(HubReadyzCheck(hub.Discovery().RESTClient())); err != nil {
			return nil, err
		}
	}
	endWatches := notAcceptingNewRequests(c.GenericConfig.ShutdownInitiatedNotify(), genericServer)
	proxier := proxy.NewProxier(proxy.Config{
		Clusters:   c.Members.Clusters,
		Secrets:    c.Members.Secrets,
		Namespace:  c.Members.Namespace,
		Synced:     c.Members.Synced,
		Transports: c.Members.Transports,
		Health:     c.Members.Health,
		EndWatches: endWatches,
	})
	c.fleet.fleet.Store(fleet.New(fleet.Config{
		Clusters:        c.Members.Clusters,
		Members:         proxier,
		Authorizer:      c.fleetAuthorizer,
		Serializer:      Codecs,
		MembersInFlight: c.ExtraConfig.FleetMembersInFlight,
		MemberTimeout:   c.ExtraConfig.FleetMemberTimeout,
		Recheck:         c.ExtraConfig.Health.Interval,
		EndWatches:      endWatches,
	}))

	// The parameter codec must know ClusterProxyOptions, not only metav1's options.
	apiGroupInfo := genericapiserver.NewDefaultAPIGroupInfo(cluster.GroupName, Scheme, runtime.NewParameterCodec(Scheme), Codecs)
	apiGroupInfo.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"clusters":        clusters.Cluster,
		"clusters/status": clusters.Status,
		"clusters/proxy":  &clusterstorage.ProxyREST{Proxier: proxier},
		"clusters/" + tunnel.Subresource: &clusterstorage.AttachREST{
			Clusters: c.Members.Clusters, Synced: c.Members.Synced, Tunnels: c.Members.Tunnels,
		},
	}
	if err := genericServer.InstallAPIGroup(&apiGroupInfo); err != nil {
		return nil, err
	}

	if health := c.ExtraConfig.StorageHealth; health != nil {
		err := genericServer.AddPostStartHook("switchboard-storage-health", func(ctx genericapiserver.PostStartHookContext) error {
			go health.Run(ctx)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}

	return &Server{GenericAPIServer: genericServer}, nil
}
