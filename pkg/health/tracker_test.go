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
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

func resultWith(reason string, latency time.Duration) Result {
	r := Result{Time: time.Now(), Latency: latency, ReadyReason: reason, Message: "probe said " + reason}
	r.Ready = metav1.ConditionFalse
	if reason == v1alpha1.ReasonProbed {
		r.Ready = metav1.ConditionTrue
	}
	return r
}

func TestTrackerRecordReturnsBeforeAndAfter(t *testing.T) {
	tr := NewTracker()
	first := resultWith(v1alpha1.ReasonProbed, 10*time.Millisecond)
	before, after := tr.Record("m1", first)
	if before != nil {
		t.Errorf("before of the first probe = %+v, want nil", before)
	}
	if after.Probes != 1 || after.Last.ReadyReason != v1alpha1.ReasonProbed || after.Latency != 10*time.Millisecond {
		t.Errorf("after the first probe = %+v", after)
	}

	second := resultWith(v1alpha1.ReasonUnreachable, 20*time.Millisecond)
	before, after = tr.Record("m1", second)
	if before == nil {
		t.Fatal("before of the second probe is nil")
	}
	if before.Probes != 1 || before.Last.ReadyReason != v1alpha1.ReasonProbed || before.Latency != 10*time.Millisecond {
		t.Errorf("before the second probe = %+v, want the state after the first", before)
	}
	if after.Probes != 2 || after.Last.ReadyReason != v1alpha1.ReasonUnreachable {
		t.Errorf("after the second probe = %+v", after)
	}

	// What Record and Get return are copies.
	before.Probes, before.Last.ReadyReason = 99, "edited"
	after.Probes = 98
	got, ok := tr.Get("m1")
	if !ok || got.Probes != 2 || got.Last.ReadyReason != v1alpha1.ReasonUnreachable {
		t.Errorf("Get after editing returned states = %+v, %v", got, ok)
	}
	got.Probes = 97
	if again, _ := tr.Get("m1"); again.Probes != 2 {
		t.Errorf("Get returned the tracker's own state: Probes = %d", again.Probes)
	}

	// Members are independent.
	if before, after := tr.Record("m2", first); before != nil || after.Probes != 1 {
		t.Errorf("first probe of m2: before %+v, after %+v", before, after)
	}
	if _, ok := tr.Get("m3"); ok {
		t.Error("Get of a member never probed says ok")
	}
}

func TestTrackerSmoothedLatency(t *testing.T) {
	tr := NewTracker()
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	steps := []struct {
		latency time.Duration
		want    time.Duration
	}{
		{ms(100), ms(100)},   // the first probe is taken as it is
		{ms(200), ms(130)},   // 0.3*200 + 0.7*100
		{ms(50), ms(106)},    // 0.3*50 + 0.7*130
		{0, ms(106)},         // no latency (a Secret problem): unchanged
		{ms(400), ms(194.2)}, // 0.3*400 + 0.7*106
		{ms(194.2), ms(194.2)},
	}
	for i, step := range steps {
		_, after := tr.Record("m1", resultWith(v1alpha1.ReasonProbed, step.latency))
		// float64 arithmetic may be a nanosecond off.
		if diff := after.Latency - step.want; diff < -time.Nanosecond || diff > time.Nanosecond {
			t.Errorf("step %d (latency %v): smoothed latency = %v, want %v", i, step.latency, after.Latency, step.want)
		}
		if after.Probes != i+1 {
			t.Errorf("step %d: Probes = %d, want %d", i, after.Probes, i+1)
		}
	}

	// A constant latency converges to itself.
	tr.Forget("m2")
	tr.Record("m2", resultWith(v1alpha1.ReasonProbed, time.Second))
	var after State
	for range 60 {
		_, after = tr.Record("m2", resultWith(v1alpha1.ReasonProbed, 10*time.Millisecond))
	}
	if diff := after.Latency - 10*time.Millisecond; diff < -time.Microsecond || diff > time.Microsecond {
		t.Errorf("after 60 probes of 10ms, smoothed latency = %v", after.Latency)
	}
}

func TestTrackerDown(t *testing.T) {
	for reason, down := range map[string]bool{
		v1alpha1.ReasonProbed:             false,
		v1alpha1.ReasonNotReady:           false,
		v1alpha1.ReasonUnauthorized:       false,
		v1alpha1.ReasonCredentialsMissing: false,
		v1alpha1.ReasonUnreachable:        true,
		v1alpha1.ReasonTLSError:           true,
	} {
		t.Run(reason, func(t *testing.T) {
			tr := NewTracker()
			if _, ok := tr.Down("m1"); ok {
				t.Fatal("Down of a member never probed")
			}
			r := resultWith(reason, time.Millisecond)
			tr.Record("m1", r)
			got, ok := tr.Down("m1")
			if ok != down {
				t.Fatalf("Down after %s = %v, want %v", reason, ok, down)
			}
			if down && (got.Message != r.Message || !got.Time.Equal(r.Time)) {
				t.Errorf("Down returned %+v, want the latest result %+v", got, r)
			}
			if !down && (got != Result{}) {
				t.Errorf("Down returned %+v with false", got)
			}
			// The first successful probe clears it.
			tr.Record("m1", resultWith(v1alpha1.ReasonProbed, time.Millisecond))
			if _, ok := tr.Down("m1"); ok {
				t.Error("Down after a successful probe")
			}
		})
	}
}

func TestTrackerForget(t *testing.T) {
	tr := NewTracker()
	tr.Record("m1", resultWith(v1alpha1.ReasonUnreachable, time.Second))
	tr.Record("m2", resultWith(v1alpha1.ReasonUnreachable, time.Second))
	tr.Forget("m1")
	tr.Forget("never-seen") // no panic
	if _, ok := tr.Get("m1"); ok {
		t.Error("Get after Forget says ok")
	}
	if _, ok := tr.Down("m1"); ok {
		t.Error("Down after Forget")
	}
	if _, ok := tr.Down("m2"); !ok {
		t.Error("Forget of m1 cleared m2")
	}
	before, after := tr.Record("m1", resultWith(v1alpha1.ReasonProbed, time.Millisecond))
	if before != nil || after.Probes != 1 || after.Latency != time.Millisecond {
		t.Errorf("a forgotten member starts over: before %+v, after %+v", before, after)
	}
}

func TestTrackerIsSafeForConcurrentUse(t *testing.T) {
	tr := NewTracker()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("m%d", i%3)
			for j := range 200 {
				reason := v1alpha1.ReasonProbed
				if j%2 == 0 {
					reason = v1alpha1.ReasonUnreachable
				}
				tr.Record(name, resultWith(reason, time.Duration(j+1)*time.Microsecond))
				tr.Get(name)
				tr.Down(name)
				if j%50 == 0 {
					tr.Forget(name)
				}
			}
		}()
	}
	wg.Wait()
}
