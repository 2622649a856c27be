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

// Package clusterlabel keeps the cluster label of switchboard's metrics
// (the proxy's and the health prober's) to the names of Clusters that
// exist, so that requests for made-up names cannot grow the metrics, and
// so that the series of a deleted Cluster stay deleted.
//
// A read lock is held while a series is written under a Cluster's name,
// once the Cluster is found in the lister, and the write lock while a
// deleted Cluster's series are deleted. An informer removes a Cluster from
// its lister before it hands out the delete event, so a series written
// after the deletion finds the Cluster gone and is not written under its
// name: nothing brings the series of a deleted Cluster back, not even a
// request or a probe that was in flight when it went.
package clusterlabel

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
)

// Unknown is the cluster label of requests for names that no Cluster has,
// and of what a request records once its Cluster is deleted. It is no
// DNS-1123 subdomain, so no Cluster can be named so.
const Unknown = "<unknown>"

// Help is the sentence every metric with a cluster label adds to its help.
const Help = " The cluster label has one value per existing Cluster, and " + Unknown +
	" for requests to a name that no Cluster has (or no longer has, for requests that outlive their Cluster)."

var labels struct {
	mu sync.RWMutex
	// clusters is the lister asked; nil takes every name for a Cluster's.
	clusters listers.ClusterLister
}

// Use makes the Clusters in clusters the only names the cluster label
// holds: every other name records as Unknown. The server calls it once,
// with its Cluster informer's lister, and calls Forget from that
// informer's delete events. Until it is called, every name is taken for a
// Cluster's.
func Use(clusters listers.ClusterLister) {
	labels.mu.Lock()
	defer labels.mu.Unlock()
	labels.clusters = clusters
}

// lookup returns the UID of the Cluster named name, and whether it
// exists. Call it with labels.mu held.
func lookup(name string) (types.UID, bool) {
	if name == Unknown {
		return "", false
	}
	if labels.clusters == nil {
		return "", true
	}
	cl, err := labels.clusters.Get(name)
	if err != nil {
		return "", false
	}
	return cl.UID, true
}

// Record runs record with the cluster label for a series of the Cluster
// named name: name while it exists (and, when uid is set, has that UID),
// Unknown otherwise. record also gets the UID the Cluster has now, to
// pass back for a later series of the same request. The Cluster's series
// are not deleted while record runs.
func Record(name string, uid types.UID, record func(label string, current types.UID)) {
	labels.mu.RLock()
	defer labels.mu.RUnlock()
	current, ok := lookup(name)
	if !ok || (uid != "" && current != "" && current != uid) {
		record(Unknown, "")
		return
	}
	record(name, current)
}

// RecordIfCluster runs record, which writes series under the cluster label
// name, only if a Cluster of that name exists, and says whether it did.
// The Cluster's series are not deleted while record runs.
func RecordIfCluster(name string, record func()) bool {
	labels.mu.RLock()
	defer labels.mu.RUnlock()
	if _, ok := lookup(name); !ok {
		return false
	}
	record()
	return true
}

// Forget runs forget, which deletes the series of the deleted Cluster
// name, while no series is being written. It does nothing for Unknown,
// whose series stay.
func Forget(name string, forget func()) {
	if name == Unknown {
		return
	}
	labels.mu.Lock()
	defer labels.mu.Unlock()
	forget()
}
