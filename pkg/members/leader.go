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

package members

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	componentbaseconfig "k8s.io/component-base/config"
	"k8s.io/klog/v2"

	sbscheme "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/scheme"
	"github.com/switchboard-io/switchboard/pkg/names"
)

// leaderElection returns who writes Cluster status. With leader election on
// and a hub, replicas elect one through a Lease on the hub; otherwise this
// replica always writes.
func leaderElection(le componentbaseconfig.LeaderElectionConfiguration, hub kubernetes.Interface, identity string) (isLeader func() bool, run func(context.Context), err error) {
	if !le.LeaderElect || hub == nil {
		return func() bool { return true }, func(context.Context) {}, nil
	}
	lock, err := resourcelock.New(le.ResourceLock, le.ResourceNamespace, le.ResourceName,
		hub.CoreV1(), hub.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return nil, nil, fmt.Errorf("leader election lock: %w", err)
	}
	var leading atomic.Bool
	run = func(ctx context.Context) {
		logger := klog.FromContext(ctx)
		// Run again after losing the lease, until the server stops.
		for ctx.Err() == nil {
			leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
				Lock:            lock,
				LeaseDuration:   le.LeaseDuration.Duration,
				RenewDeadline:   le.RenewDeadline.Duration,
				RetryPeriod:     le.RetryPeriod.Duration,
				ReleaseOnCancel: true,
				Name:            le.ResourceName,
				Callbacks: leaderelection.LeaderCallbacks{
					OnStartedLeading: func(context.Context) {
						logger.Info("This replica writes Cluster status now", "identity", identity)
						leading.Store(true)
					},
					OnStoppedLeading: func() {
						logger.Info("This replica no longer writes Cluster status", "identity", identity)
						leading.Store(false)
					},
				},
			})
		}
	}
	return leading.Load, run, nil
}

// eventRecorder records Cluster events on the hub, or nowhere without one.
func eventRecorder(hub kubernetes.Interface) (events.EventRecorder, func(context.Context)) {
	if hub == nil {
		return nil, func(context.Context) {}
	}
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: hub.EventsV1()})
	recorder := broadcaster.NewRecorder(sbscheme.Scheme, names.Server)
	return recorder, func(ctx context.Context) {
		if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Cannot record events on the hub")
		}
	}
}

// replicaIdentity names this replica, in its leader election and to the
// agents that hold tunnels to it: the host name and a UUID, unique to the
// process.
func replicaIdentity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("reading the host name for this replica's identity: %w", err)
	}
	return host + "_" + string(uuid.NewUUID()), nil
}
