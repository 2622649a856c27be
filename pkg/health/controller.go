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

package health

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	typedclient "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/typed/cluster/v1alpha1"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// Options tune the prober.
type Options struct {
	// Interval between probes of one member; each is jittered by up to 20%.
	Interval time.Duration
	// Timeout of one probe request.
	Timeout time.Duration
	// Workers bound how many members are probed at once.
	Workers int
	// Heartbeat is how often status is written when nothing changes, so
	// lastProbeTime and probeLatency stay current.
	Heartbeat time.Duration
}

// Controller probes every Cluster on an interval and whenever the Cluster
// or its Secret changes. Every replica probes, for its own fast-failure
// view; only the one for which isLeader is true writes status and events.
type Controller struct {
	opts       Options
	clusters   listers.ClusterLister
	secrets    corev1listers.SecretNamespaceLister
	transports *reach.TransportCache
	agents     Agents
	tracker    *Tracker
	status     typedclient.ClustersGetter
	recorder   events.EventRecorder
	isLeader   func() bool
	queue      workqueue.TypedRateLimitingInterface[string]
	now        func() time.Time

	// soon rate-limits ProbeSoon per member.
	soonMu sync.Mutex
	soon   map[string]time.Time
}

// Config is what a Controller probes with and writes to.
type Config struct {
	Options Options
	// Clusters lists the Clusters to probe.
	Clusters listers.ClusterLister
	// Secrets lists their credentials Secrets; nil without a hub.
	Secrets corev1listers.SecretNamespaceLister
	// Transports holds the pooled transports the probes share with the proxy.
	Transports *reach.TransportCache
	// Agents says which tunnelled members have an agent connected; nil
	// when none can.
	Agents Agents
	// Tracker keeps the latest probe of each member; nil is a new one.
	Tracker *Tracker
	// Status writes Cluster status.
	Status typedclient.ClustersGetter
	// Recorder records events; nil records none.
	Recorder events.EventRecorder
	// IsLeader says whether this replica writes status and events; nil is always.
	IsLeader func() bool
}

// Agents says whether a tunnelled member's agent holds a tunnel to this
// replica, and since when it has or has not (see tunnel.Server.Connected).
type Agents interface {
	Connected(cluster string) (connected bool, since time.Time, never bool)
}

// NewController returns a controller.
func NewController(cfg Config) *Controller {
	if cfg.IsLeader == nil {
		cfg.IsLeader = func() bool { return true }
	}
	if cfg.Tracker == nil {
		cfg.Tracker = NewTracker()
	}
	return &Controller{
		opts:       cfg.Options,
		clusters:   cfg.Clusters,
		secrets:    cfg.Secrets,
		transports: cfg.Transports,
		agents:     cfg.Agents,
		tracker:    cfg.Tracker,
		status:     cfg.Status,
		recorder:   cfg.Recorder,
		isLeader:   cfg.IsLeader,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "cluster-health"}),
		now:  time.Now,
		soon: map[string]time.Time{},
	}
}

// ClusterHandler queues a probe when a Cluster appears or its spec changes,
// and forgets it, with its probe metrics, when it goes.
func (c *Controller) ClusterHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueue(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			oldCluster, ok1 := oldObj.(*v1alpha1.Cluster)
			newCluster, ok2 := newObj.(*v1alpha1.Cluster)
			if ok1 && ok2 && apiequality.Semantic.DeepEqual(oldCluster.Spec, newCluster.Spec) {
				return // a status write: no new probe
			}
			c.enqueue(newObj)
		},
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.tracker.Forget(key)
				forgetProbes(key)
				c.soonMu.Lock()
				delete(c.soon, key)
				c.soonMu.Unlock()
			}
		},
	}
}

// SecretHandler queues a probe of every Cluster that names a changed Secret.
func (c *Controller) SecretHandler() cache.ResourceEventHandler {
	byName := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		secret, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		clusters, err := c.clusters.List(labels.Everything())
		if err != nil {
			return
		}
		for _, cl := range clusters {
			if cl.Spec.CredentialsSecretRef.Name == secret.Name {
				c.queue.Add(cl.Name)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    byName,
		UpdateFunc: func(_, newObj any) { byName(newObj) },
		DeleteFunc: byName,
	}
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// Unreachable implements proxy.MemberHealth.
func (c *Controller) Unreachable(cluster string) (string, time.Time, bool) {
	r, down := c.tracker.Down(cluster)
	return r.Message, r.Time, down
}

// ProbeSoon implements proxy.MemberHealth: a probe right away, at most once
// a second per member however many requests ask.
func (c *Controller) ProbeSoon(cluster string) {
	c.soonMu.Lock()
	defer c.soonMu.Unlock()
	now := c.now()
	if last, ok := c.soon[cluster]; ok && now.Sub(last) < time.Second {
		return
	}
	c.soon[cluster] = now
	c.queue.Add(cluster)
}

// ProbeNow asks for a probe right away, with no rate limit: for events
// that are rare and change what a probe finds, such as an agent's tunnel
// coming or going.
func (c *Controller) ProbeNow(cluster string) {
	c.queue.Add(cluster)
}

// Run probes until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrashWithContext(ctx)
	defer c.queue.ShutDown()
	logger := klog.FromContext(ctx).WithName("cluster-health")
	logger.Info("Starting the member health prober", "interval", c.opts.Interval, "workers", c.opts.Workers)
	var wg sync.WaitGroup
	for i := 0; i < c.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(klog.NewContext(ctx, logger)) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.sync(ctx, key)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Writing member status failed; retrying", "cluster", klog.KRef("", key), "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// sync probes one member, records the result and, on the leader, writes it.
// It schedules the member's next probe.
func (c *Controller) sync(ctx context.Context, name string) error {
	cl, err := c.clusters.Get(name)
	if apierrors.IsNotFound(err) {
		c.tracker.Forget(name)
		return nil
	}
	if err != nil {
		return err
	}
	result := c.probe(ctx, cl)
	_, state := c.tracker.Record(name, result)
	recordProbe(name, &result)
	c.queue.AddAfter(name, wait.Jitter(c.opts.Interval, 0.2))
	if !c.isLeader() {
		return nil
	}
	return c.writeStatus(ctx, cl, state)
}

func (c *Controller) probe(ctx context.Context, cl *v1alpha1.Cluster) Result {
	if cl.Spec.Connection != v1alpha1.ConnectionTunnel {
		return c.probeMember(ctx, cl)
	}
	if c.agents == nil {
		return agentDisconnected(c.now(), &reach.NoAgentError{Cluster: cl.Name, Since: c.now(), Never: true})
	}
	connected, since, never := c.agents.Connected(cl.Name)
	if !connected {
		return agentDisconnected(c.now(), &reach.NoAgentError{Cluster: cl.Name, Since: since, Never: never})
	}
	r := c.probeMember(ctx, cl)
	if r.ReadyReason == v1alpha1.ReasonAgentDisconnected {
		// The agent went away while the probe ran.
		r.Agent, r.AgentMessage = metav1.ConditionFalse, r.Message
		return r
	}
	r.Agent = metav1.ConditionTrue
	r.AgentMessage = "a switchboard-agent has held a tunnel to this replica since " + since.UTC().Format(time.RFC3339)
	return r
}

// probeMember probes the member through its transport.
func (c *Controller) probeMember(ctx context.Context, cl *v1alpha1.Cluster) Result {
	if c.secrets == nil {
		return credentialsMissing(c.now(), "switchboard runs without a hub connection, so it cannot read credentials Secrets")
	}
	secret, err := c.secrets.Get(cl.Spec.CredentialsSecretRef.Name)
	if apierrors.IsNotFound(err) {
		return credentialsMissing(c.now(), fmt.Sprintf("the credentials Secret %q does not exist", cl.Spec.CredentialsSecretRef.Name))
	}
	if err != nil {
		return credentialsMissing(c.now(), err.Error())
	}
	client, endpoint, err := c.transports.ProbeClient(cl, secret)
	if err != nil {
		if problem, ok := reach.CredentialsProblem(err); ok {
			return credentialsMissing(c.now(), problem)
		}
		return credentialsMissing(c.now(), err.Error())
	}
	return probe(ctx, client, endpoint, c.opts.Timeout)
}

// writeStatus writes the member's state into the Cluster's status when it
// differs from what is there, or when the heartbeat is due, and records an
// event when readiness changes.
func (c *Controller) writeStatus(ctx context.Context, cl *v1alpha1.Cluster, state State) error {
	r := state.Last
	desired := cl.Status.DeepCopy()
	meta.SetStatusCondition(&desired.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: r.Ready, Reason: r.ReadyReason, Message: r.Message, ObservedGeneration: cl.Generation,
	})
	meta.SetStatusCondition(&desired.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionCredentialsValid, Status: r.CredentialsValid, Reason: r.CredentialsReason, Message: r.Message, ObservedGeneration: cl.Generation,
	})
	if r.Agent != "" && cl.Spec.Connection == v1alpha1.ConnectionTunnel {
		reason := v1alpha1.ReasonAgentConnected
		if r.Agent != metav1.ConditionTrue {
			reason = v1alpha1.ReasonAgentDisconnected
		}
		meta.SetStatusCondition(&desired.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionAgentConnected, Status: r.Agent, Reason: reason, Message: r.AgentMessage, ObservedGeneration: cl.Generation,
		})
	} else {
		meta.RemoveStatusCondition(&desired.Conditions, v1alpha1.ConditionAgentConnected)
	}
	if r.Version != "" {
		desired.KubernetesVersion = r.Version
	}
	changed := !apiequality.Semantic.DeepEqual(desired.Conditions, cl.Status.Conditions) || desired.KubernetesVersion != cl.Status.KubernetesVersion
	heartbeatDue := cl.Status.LastProbeTime == nil || c.now().Sub(cl.Status.LastProbeTime.Time) >= c.opts.Heartbeat
	if !changed && !heartbeatDue {
		return nil
	}
	probed := metav1.NewTime(r.Time)
	desired.LastProbeTime = &probed
	if state.Latency > 0 {
		desired.ProbeLatency = &metav1.Duration{Duration: state.Latency.Round(10 * time.Microsecond)}
	}
	updated := cl.DeepCopy()
	updated.Status = *desired
	if _, err := c.status.Clusters().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of cluster %q: %w", cl.Name, err)
	}
	c.recordTransition(ctx, cl, r)
	return nil
}

// recordTransition emits an event when the Ready condition changes.
func (c *Controller) recordTransition(ctx context.Context, cl *v1alpha1.Cluster, r Result) {
	before := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ConditionReady)
	if before != nil && before.Status == r.Ready && before.Reason == r.ReadyReason {
		return
	}
	klog.FromContext(ctx).Info("Member readiness changed", "cluster", klog.KObj(cl), "ready", r.Ready, "reason", r.ReadyReason, "message", r.Message)
	if c.recorder == nil {
		return
	}
	eventType := corev1.EventTypeNormal
	if r.Ready != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	ref := cl.DeepCopy()
	ref.APIVersion, ref.Kind = v1alpha1.SchemeGroupVersion.String(), "Cluster"
	c.recorder.Eventf(ref, nil, eventType, r.ReadyReason, "Probe", "Ready=%s: %s", r.Ready, r.Message)
}
