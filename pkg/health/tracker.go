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
	"sync"
	"time"
)

// latencyWeight is the weight of a new probe in the smoothed latency.
const latencyWeight = 0.3

// State is a replica's view of one member.
type State struct {
	// Last is the latest probe result.
	Last Result
	// Latency is the exponentially smoothed probe latency.
	Latency time.Duration
	// Probes counts the probes since the member was first seen.
	Probes int
}

// Tracker holds every replica's own view of the members, from its own
// probes. It is safe for concurrent use.
type Tracker struct {
	mu      sync.RWMutex
	members map[string]*State
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker {
	return &Tracker{members: map[string]*State{}}
}

// Record stores a probe result. It returns the state before, if any, so
// callers can tell transitions.
func (t *Tracker) Record(cluster string, r Result) (before *State, after State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.members[cluster]
	if s != nil {
		copied := *s
		before = &copied
	} else {
		s = &State{}
		t.members[cluster] = s
	}
	s.Last = r
	s.Probes++
	if r.Latency > 0 {
		if s.Latency == 0 {
			s.Latency = r.Latency
		} else {
			s.Latency = time.Duration(latencyWeight*float64(r.Latency) + (1-latencyWeight)*float64(s.Latency))
		}
	}
	return before, *s
}

// Get returns the view of a member.
func (t *Tracker) Get(cluster string) (State, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s, ok := t.members[cluster]
	if !ok {
		return State{}, false
	}
	return *s, true
}

// Down says whether the latest probe could not reach the member, and
// returns that result. The first successful probe clears it.
func (t *Tracker) Down(cluster string) (Result, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s, ok := t.members[cluster]
	if !ok || !s.Last.Down() {
		return Result{}, false
	}
	return s.Last, true
}

// Forget drops a deleted member.
func (t *Tracker) Forget(cluster string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.members, cluster)
}
