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

package integration

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clusterv1alpha1 "github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/typed/cluster/v1alpha1"
)

// generationLabel is the label each update of a Cluster in the crash test
// sets to the number of the update.
const generationLabel = "crash-test/generation"

// crashWriter creates Clusters and updates them, one at a time, and keeps
// what the server acknowledged and what was asked of it.
type crashWriter struct {
	prefix string

	mu sync.Mutex
	// acked is, for each Cluster, the last generation the server
	// acknowledged (0: the create).
	acked map[string]int
	// tried is, for each Cluster, the last generation asked for, answered
	// or not.
	tried  map[string]int
	writes int
}

// run writes until a write fails (the server is gone) or ctx ends.
func (w *crashWriter) run(ctx context.Context, clusters v1alpha1.ClusterInterface) {
	for i := 0; ctx.Err() == nil; i++ {
		// Every third write creates a Cluster; the others update one.
		name := fmt.Sprintf("%s-%d", w.prefix, i/3)
		gen := i % 3
		w.mu.Lock()
		w.tried[name] = gen
		w.mu.Unlock()
		var err error
		if gen == 0 {
			c := newCluster(name, "https://10.0.0.12:6443")
			c.Labels = map[string]string{generationLabel: "0"}
			_, err = clusters.Create(ctx, c, metav1.CreateOptions{})
		} else {
			var c *clusterv1alpha1.Cluster
			if c, err = clusters.Get(ctx, name, metav1.GetOptions{}); err == nil {
				c.Labels[generationLabel] = strconv.Itoa(gen)
				_, err = clusters.Update(ctx, c, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return
		}
		w.mu.Lock()
		w.acked[name] = gen
		w.writes++
		w.mu.Unlock()
	}
}

// TestAckedWritesSurviveKill9 runs the real binary on its embedded etcd,
// kills it with SIGKILL in the middle of a stream of Cluster creates and
// updates, restarts it on the same data directory, and checks that every
// write the server acknowledged is there: 20 times over. A write that was
// asked for and not answered may or may not be there; nothing that was
// never asked for is.
func TestAckedWritesSurviveKill9(t *testing.T) {
	const rounds, writers = 20, 4
	p := newPKI(t)
	dataDir := dataDirArg(t.TempDir())
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	s := startProcess(t, p, dataDir)
	var all []*crashWriter
	total := 0
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		clusters := s.clientset().ClusterV1alpha1().Clusters()
		var wg sync.WaitGroup
		for i := 0; i < writers; i++ {
			w := &crashWriter{prefix: fmt.Sprintf("r%d-w%d", round, i), acked: map[string]int{}, tried: map[string]int{}}
			all = append(all, w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.run(ctx, clusters)
			}()
		}
		// Kill it some time into the stream, while writes are in flight.
		time.Sleep(time.Duration(300+rnd.Intn(1200)) * time.Millisecond)
		if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-s.gone
		wg.Wait()
		cancel()

		for _, w := range all[len(all)-writers:] {
			total += w.writes
		}
		s = startProcess(t, p, dataDir)
		checkAcked(t, s, all, round)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d rounds of SIGKILL: %d acknowledged writes, every one there after each restart", rounds, total)
}

// checkAcked reads every Cluster the writers wrote, on the restarted server,
// and compares it with what they were told and what they asked.
func checkAcked(t *testing.T, s *serverProcess, writers []*crashWriter, round int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := s.clientset().ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("round %d: listing after the restart: %v", round, err)
	}
	stored := map[string]int{}
	for _, c := range list.Items {
		gen, err := strconv.Atoi(c.Labels[generationLabel])
		if err != nil {
			t.Errorf("round %d: %s has generation %q", round, c.Name, c.Labels[generationLabel])
		}
		stored[c.Name] = gen
	}
	tried := map[string]int{}
	for _, w := range writers {
		w.mu.Lock()
		for name, gen := range w.acked {
			got, ok := stored[name]
			switch {
			case !ok:
				t.Errorf("round %d: %s was created (acknowledged) and is gone after SIGKILL", round, name)
			case got < gen:
				t.Errorf("round %d: %s has generation %d after SIGKILL; generation %d was acknowledged", round, name, got, gen)
			}
		}
		for name, gen := range w.tried {
			tried[name] = gen
		}
		w.mu.Unlock()
	}
	for name, got := range stored {
		if want, ok := tried[name]; !ok || got > want {
			t.Errorf("round %d: %s has generation %d, which was never asked for (last asked: %d, %v)", round, name, got, want, ok)
		}
	}
}
