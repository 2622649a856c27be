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
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	componentbaseconfig "k8s.io/component-base/config"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/install"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	informers "github.com/switchboard-io/switchboard/pkg/generated/informers/externalversions"
	"github.com/switchboard-io/switchboard/pkg/health"
	"github.com/switchboard-io/switchboard/pkg/proxy"
	"github.com/switchboard-io/switchboard/pkg/reach"
	clusterstorage "github.com/switchboard-io/switchboard/pkg/registry/cluster/storage"
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
	// Health tunes the member prober.
	Health health.Options
	// LeaderElection decides which replica writes Cluster status; off, or
	// without a hub, this replica does.
	LeaderElection componentbaseconfig.LeaderElectionConfiguration
}

// Config is the configuration of the server.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
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

// Complete fills in defaults. It mutates the receiver.
func (cfg *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{
		GenericConfig: cfg.GenericConfig.Complete(),
		ExtraConfig:   &cfg.ExtraConfig,
	}}
}

// New builds the server and installs the cluster.switchboard.io group.
func (c CompletedConfig) New() (*Server, error) {
	genericServer, err := c.GenericConfig.New("switchboard-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}

	clusters, err := clusterstorage.NewStorage(Scheme, c.GenericConfig.RESTOptionsGetter)
	if err != nil {
		return nil, err
	}
	proxier, err := c.newProxier(genericServer)
	if err != nil {
		return nil, err
	}

	// The parameter codec must know ClusterProxyOptions, not only metav1's options.
	apiGroupInfo := genericapiserver.NewDefaultAPIGroupInfo(cluster.GroupName, Scheme, runtime.NewParameterCodec(Scheme), Codecs)
	apiGroupInfo.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"clusters":        clusters.Cluster,
		"clusters/status": clusters.Status,
		"clusters/proxy":  &clusterstorage.ProxyREST{Proxier: proxier},
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

// newProxier builds the proxy's informers (Clusters through the loopback
// client, credentials Secrets from the hub, in one namespace) and starts
// them once the server serves.
func (c completedConfig) newProxier(s *genericapiserver.GenericAPIServer) (*proxy.Proxier, error) {
	loopback, err := clientset.NewForConfig(s.LoopbackClientConfig)
	if err != nil {
		return nil, err
	}
	clusterFactory := informers.NewSharedInformerFactory(loopback, 0)
	clusterInformer := clusterFactory.Cluster().V1alpha1().Clusters()
	transports := reach.NewTransportCache(reach.Config{DialTimeout: c.ExtraConfig.MemberDialTimeout, OnFailure: proxy.RecordUpstreamError})
	// The metrics' cluster label holds only names of Clusters in the cache;
	// a deleted Cluster's series go with it.
	clusterlabel.Use(clusterInformer.Lister())
	if _, err := clusterInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				transports.Forget(key)
				proxy.ForgetClusterMetrics(key)
			}
		},
	}); err != nil {
		return nil, err
	}
	synced := []cache.InformerSynced{clusterInformer.Informer().HasSynced}

	var secretFactory kubeinformers.SharedInformerFactory
	var secretInformer cache.SharedIndexInformer
	var secrets corev1listers.SecretNamespaceLister
	namespace := c.ExtraConfig.CredentialsNamespace
	if c.ExtraConfig.HubClient != nil {
		secretFactory = kubeinformers.NewSharedInformerFactoryWithOptions(c.ExtraConfig.HubClient, 0, kubeinformers.WithNamespace(namespace))
		informer := secretFactory.Core().V1().Secrets()
		secrets = informer.Lister().Secrets(namespace)
		secretInformer = informer.Informer()
		synced = append(synced, secretInformer.HasSynced)
	}
	allSynced := func() bool {
		for _, s := range synced {
			if !s() {
				return false
			}
		}
		return true
	}

	// The health prober shares the caches and transports.
	proxy.RegisterMetrics()
	health.RegisterMetrics()
	isLeader, runElection, err := c.leaderElection()
	if err != nil {
		return nil, err
	}
	recorder, startEvents := c.eventRecorder()
	prober := health.NewController(c.ExtraConfig.Health, clusterInformer.Lister(), secrets, transports,
		health.NewTracker(), loopback.ClusterV1alpha1(), recorder, isLeader)
	if _, err := clusterInformer.Informer().AddEventHandler(prober.ClusterHandler()); err != nil {
		return nil, err
	}
	if secretInformer != nil {
		if _, err := secretInformer.AddEventHandler(prober.SecretHandler()); err != nil {
			return nil, err
		}
	}

	err = s.AddPostStartHook("switchboard-members", func(ctx genericapiserver.PostStartHookContext) error {
		clusterFactory.Start(ctx.Done())
		if secretFactory != nil {
			secretFactory.Start(ctx.Done())
		}
		startEvents(ctx)
		go runElection(ctx)
		go func() {
			if cache.WaitForCacheSync(ctx.Done(), synced...) {
				prober.Run(ctx)
			}
		}()
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.AddReadyzChecks(healthz.NamedCheck("switchboard-proxy-caches", func(*http.Request) error {
		if !allSynced() {
			return fmt.Errorf("the caches of Clusters and credentials Secrets are not synced yet")
		}
		return nil
	}))
	if err != nil {
		return nil, err
	}
	proxier := proxy.NewProxier(clusterInformer.Lister(), secrets, namespace, allSynced, transports)
	proxier.SetHealth(prober)
	proxier.EndWatchesAt(c.notAcceptingNewRequests(s))
	return proxier, nil
}

// notAcceptingNewRequests is done when the server stops taking new
// requests: --shutdown-delay-duration after shutdown began, when the generic
// server ends its own watches (with a --shutdown-watch-termination-grace-
// period above 0) and answers new ones with 503. The generic server's own
// signal for that moment is not exported; without pre-shutdown hooks, which
// switchboard has none of, this one fires within milliseconds of it.
func (c completedConfig) notAcceptingNewRequests(s *genericapiserver.GenericAPIServer) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	initiated := c.GenericConfig.ShutdownInitiatedNotify()
	delay := s.ShutdownDelayDuration
	go func() {
		<-initiated
		time.Sleep(delay)
		cancel()
	}()
	return ctx
}
