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

// Package members is what a switchboard server keeps about its member
// clusters while it runs: the informers of Clusters and of their
// credentials Secrets, the pooled transports to the members, the health
// controller that probes them, and the leader election that picks the one
// replica writing Cluster status. The server builds it once, in its
// Config's Complete, and starts it from one post-start hook; the proxy
// reads what it holds.
package members

import (
	"context"
	"errors"
	"net/http"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	componentbaseconfig "k8s.io/component-base/config"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	informers "github.com/switchboard-io/switchboard/pkg/generated/informers/externalversions"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/health"
	"github.com/switchboard-io/switchboard/pkg/reach"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// Config configures the members component.
type Config struct {
	// Loopback reads Clusters from this server.
	Loopback clientset.Interface
	// Hub reads credentials Secrets, records events and holds the leader
	// election's Lease; nil when the server runs without a hub.
	Hub kubernetes.Interface
	// Namespace holds the credentials Secrets that Clusters name.
	Namespace string
	// DialTimeout bounds connecting to a member.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds how long a member may take to begin its
	// answer; zero is no bound.
	ResponseHeaderTimeout time.Duration
	// KeepAlive is how agents' tunnels are found dead; zero is
	// tunnel.DefaultKeepAlive.
	KeepAlive tunnel.KeepAlive
	// OnFailure hears of the member answers the transports' guards
	// replace (see reach.Config).
	OnFailure func(cluster, reason string)
	// OnDelete, when set, is called with the name of each Cluster deleted,
	// after its transport is gone: for the series of its metrics.
	OnDelete func(cluster string)
	// Health tunes the health controller.
	Health health.Options
	// LeaderElection decides which replica writes Cluster status; off, or
	// without a hub, this replica does.
	LeaderElection componentbaseconfig.LeaderElectionConfiguration
}

// Members holds the caches, transports and controllers of the members.
type Members struct {
	// Clusters lists Clusters from the informer cache.
	Clusters listers.ClusterLister
	// Secrets lists credentials Secrets in Namespace; nil without a hub.
	Secrets   corev1listers.SecretNamespaceLister
	Namespace string
	// Transports holds one pooled transport per member.
	Transports *reach.TransportCache
	// Health probes the members; the proxy asks it which are down.
	Health *health.Controller
	// Tunnels holds the tunnels that agents of tunnelled members hold to
	// this replica; the transports dial those members through it.
	Tunnels *tunnel.Server

	clusterFactory informers.SharedInformerFactory
	secretFactory  kubeinformers.SharedInformerFactory
	synced         []cache.InformerSynced
	runElection    func(context.Context)
	startEvents    func(context.Context)
}

// New builds the members component. Nothing runs until Start.
func New(cfg Config) (*Members, error) {
	identity, err := replicaIdentity()
	if err != nil {
		return nil, err
	}
	m := &Members{
		Namespace:      cfg.Namespace,
		clusterFactory: informers.NewSharedInformerFactory(cfg.Loopback, 0),
	}
	m.Tunnels = tunnel.NewServer(tunnel.Config{
		ID:        identity,
		KeepAlive: cfg.KeepAlive,
		// An agent that comes or goes is probed again at once, so the
		// Cluster's status and the proxy's fast failure follow it.
		OnChange: func(cluster string) { m.Health.ProbeNow(cluster) },
	})
	m.Transports = reach.NewTransportCache(reach.Config{
		DialTimeout:           cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		Dialers:               tunnel.Dialers{Tunnels: m.Tunnels, Network: reach.Network{Timeout: cfg.DialTimeout}},
		OnFailure:             cfg.OnFailure,
	})
	clusterInformer := m.clusterFactory.Cluster().V1alpha1().Clusters()
	m.Clusters = clusterInformer.Lister()
	m.synced = []cache.InformerSynced{clusterInformer.Informer().HasSynced}
	// The metrics' cluster label holds only names of Clusters in the
	// cache; a deleted Cluster's transport and series go with it.
	clusterlabel.Use(m.Clusters)
	if _, err := clusterInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			before, ok1 := oldObj.(*v1alpha1.Cluster)
			after, ok2 := newObj.(*v1alpha1.Cluster)
			if ok1 && ok2 && before.Spec.Connection == v1alpha1.ConnectionTunnel && after.Spec.Connection != v1alpha1.ConnectionTunnel {
				// No longer reached through a tunnel: its agents go.
				m.Tunnels.Forget(after.Name)
			}
		},
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				m.Transports.Forget(key)
				m.Tunnels.Forget(key)
				if cfg.OnDelete != nil {
					cfg.OnDelete(key)
				}
			}
		},
	}); err != nil {
		return nil, err
	}

	var secretInformer cache.SharedIndexInformer
	if cfg.Hub != nil {
		m.secretFactory = kubeinformers.NewSharedInformerFactoryWithOptions(cfg.Hub, 0, kubeinformers.WithNamespace(cfg.Namespace))
		informer := m.secretFactory.Core().V1().Secrets()
		m.Secrets = informer.Lister().Secrets(cfg.Namespace)
		secretInformer = informer.Informer()
		m.synced = append(m.synced, secretInformer.HasSynced)
	}

	isLeader, runElection, err := leaderElection(cfg.LeaderElection, cfg.Hub, identity)
	if err != nil {
		return nil, err
	}
	m.runElection = runElection
	var recorder events.EventRecorder
	recorder, m.startEvents = eventRecorder(cfg.Hub)
	health.RegisterMetrics()
	m.Health = health.NewController(health.Config{
		Options:    cfg.Health,
		Clusters:   m.Clusters,
		Secrets:    m.Secrets,
		Transports: m.Transports,
		Agents:     m.Tunnels,
		Status:     cfg.Loopback.ClusterV1alpha1(),
		Recorder:   recorder,
		IsLeader:   isLeader,
	})
	if _, err := clusterInformer.Informer().AddEventHandler(m.Health.ClusterHandler()); err != nil {
		return nil, err
	}
	if secretInformer != nil {
		if _, err := secretInformer.AddEventHandler(m.Health.SecretHandler()); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Synced says whether the caches of Clusters and credentials Secrets hold
// a full view.
func (m *Members) Synced() bool {
	for _, s := range m.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Start is the post-start hook that runs the informers, the event
// recorder, the leader election and, once the caches are synced, the
// health controller, until the server stops.
func (m *Members) Start(hookCtx genericapiserver.PostStartHookContext) error {
	ctx := hookCtx.Context
	m.clusterFactory.Start(ctx.Done())
	if m.secretFactory != nil {
		m.secretFactory.Start(ctx.Done())
	}
	m.startEvents(ctx)
	go m.runElection(ctx)
	go func() {
		// Agents reconnect, to another replica if there is one.
		<-ctx.Done()
		m.Tunnels.Close()
	}()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), m.synced...) {
			m.Health.Run(ctx)
		}
	}()
	return nil
}

// ReadyzCheck fails until the caches are synced: until then the proxy
// answers 503.
func (m *Members) ReadyzCheck() healthz.HealthChecker {
	return healthz.NamedCheck("switchboard-proxy-caches", func(*http.Request) error {
		if !m.Synced() {
			return errors.New("the caches of Clusters and credentials Secrets are not synced yet")
		}
		return nil
	})
}
