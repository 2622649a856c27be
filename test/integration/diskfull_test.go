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
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/typed/cluster/v1alpha1"
)

// diskSize is the tmpfs the embedded etcd's data directory lives on. etcd
// takes 128 MiB of it at once: the log segment it writes and the next one,
// made ahead of time, 64 MiB each.
const diskSize = 512 << 20

// TestEmbeddedEtcdDiskFull puts the embedded etcd's data directory on a
// small tmpfs and fills it. With the default --embedded-etcd-min-free-disk-bytes,
// writes of Clusters are refused with a 507 that says why once the disk is
// nearly full, while the process stays up and ready, reads and deletes
// work, and nothing acknowledged is lost; once space is freed, writes work
// again with no restart. Without the minimum, etcd exits when a write finds
// the disk full, as etcd does, and the process exits saying so; restarted
// once there is space, it has every acknowledged write.
func TestEmbeddedEtcdDiskFull(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, fmt.Sprintf("size=%d", diskSize)); err != nil {
		t.Fatalf("mounting a %d MiB tmpfs for the data directory (the integration tests run as root): %v", diskSize>>20, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(disk, syscall.MNT_DETACH) })
	p := newPKI(t)
	dataDir := "--data-dir=" + filepath.Join(disk, "data")
	filler := filepath.Join(disk, "filler")
	ctx := context.Background()
	w := &fillWriter{acked: map[string]bool{}}

	// With the minimum (the default, 128 MiB): the disk is filled to just
	// above it by another file, then by Clusters.
	s := startProcess(t, p, dataDir)
	clusters := s.clientset().ClusterV1alpha1().Clusters()
	fill(t, filler, disk, 136<<20)
	var refusal error
	for i := 0; i < 500 && refusal == nil; i++ {
		refusal = w.create(ctx, clusters)
	}
	var status apierrors.APIStatus
	if !errors.As(refusal, &status) || status.Status().Code != http.StatusInsufficientStorage ||
		!strings.Contains(status.Status().Message, "switchboard's storage is almost full: the embedded etcd's data directory has") ||
		!strings.Contains(status.Status().Message, "--embedded-etcd-min-free-disk-bytes") {
		t.Fatalf("after %d Clusters with the disk filling: %v, want a 507 that says the disk is almost full", len(w.acked), refusal)
	}
	t.Logf("the write after %d Clusters (%d KiB each) with %s free: %v", len(w.acked), clusterPayload>>10, freeSpace(t, disk), refusal)
	if err := w.create(ctx, clusters); !errors.As(err, &status) || status.Status().Code != http.StatusInsufficientStorage {
		t.Errorf("the next write: %v, want the 507 again", err)
	}
	hc := s.httpClient(s.adminConfig())
	if code, body := get(ctx, hc, s.host+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the disk almost full: %d %s", code, body)
	}
	w.check(t, clusters, "with the disk almost full")
	deleted := w.deleteOne(t, clusters)
	if !strings.Contains(s.logTail(100), "Refusing Cluster writes: the embedded etcd's disk is almost full") {
		t.Errorf("switchboard's log does not say it refuses writes:\n%s", s.logTail(20))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := w.create(ctx, clusters); err != nil {
		t.Errorf("a write once space is freed: %v", err)
	}
	if !strings.Contains(s.logTail(100), "Accepting Cluster writes again") {
		t.Errorf("switchboard's log does not say it accepts writes again:\n%s", s.logTail(20))
	}
	if _, err := clusters.Get(ctx, deleted, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Cluster deleted with the disk almost full: %v, want NotFound", err)
	}
	select {
	case <-s.gone:
		t.Fatalf("switchboard-apiserver exited: %v", s.waitErr)
	default:
	}
	_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
	if code, ok := s.waitExit(time.Minute); !ok || code != 0 {
		t.Fatalf("stopping: exit code %d (exited: %v)", code, ok)
	}

	// Without the minimum, the disk filled to the last byte: etcd exits
	// on the first write it cannot store.
	s = startProcess(t, p, dataDir, "--embedded-etcd-min-free-disk-bytes=0")
	clusters = s.clientset().ClusterV1alpha1().Clusters()
	fill(t, filler, disk, 0)
	for i := 0; i < 500; i++ {
		if err := w.create(ctx, clusters); err != nil {
			break
		}
	}
	code, ok := s.waitExit(time.Minute)
	if !ok || code == 0 {
		t.Fatalf("with the disk full and no minimum, the process did not exit with an error (exit code %d, exited %v)", code, ok)
	}
	if log := s.logTail(30); !strings.Contains(log, "no space left on device") {
		t.Errorf("the log of the process that exited does not say the disk was full:\n%s", log)
	}
	t.Logf("with no minimum and the disk full, the process exited with code %d; its log says: %s", code, lineWith(s.logTail(30), "no space left on device"))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s = startProcess(t, p, dataDir)
	clusters = s.clientset().ClusterV1alpha1().Clusters()
	w.check(t, clusters, "after the restart")
	if err := w.create(ctx, clusters); err != nil {
		t.Errorf("a write after the restart: %v", err)
	}
	t.Logf("%d acknowledged Clusters, every one there after the restart", len(w.acked))
}

// clusterPayload is the annotation each Cluster of the test carries.
const clusterPayload = 200 << 10

// fillWriter creates Clusters and keeps those the server acknowledged.
type fillWriter struct {
	n     int
	acked map[string]bool
}

func (w *fillWriter) create(ctx context.Context, clusters v1alpha1.ClusterInterface) error {
	name := fmt.Sprintf("fill-%d", w.n)
	w.n++
	c := newCluster(name, "https://10.0.0.12:6443")
	c.Annotations = map[string]string{"payload": strings.Repeat("x", clusterPayload)}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := clusters.Create(ctx, c, metav1.CreateOptions{}); err != nil {
		return err
	}
	w.acked[name] = true
	return nil
}

// check fails the test unless every acknowledged Cluster is there, whole.
func (w *fillWriter) check(t *testing.T, clusters v1alpha1.ClusterInterface, when string) {
	t.Helper()
	for name := range w.acked {
		c, err := clusters.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: acknowledged Cluster %s: %v", when, name, err)
			continue
		}
		if len(c.Annotations["payload"]) != clusterPayload {
			t.Errorf("%s: Cluster %s has %d bytes of its payload, not %d", when, name, len(c.Annotations["payload"]), clusterPayload)
		}
	}
}

// deleteOne deletes an acknowledged Cluster and returns its name.
func (w *fillWriter) deleteOne(t *testing.T, clusters v1alpha1.ClusterInterface) string {
	t.Helper()
	for name := range w.acked {
		if err := clusters.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("a delete with the disk almost full: %v", err)
		}
		delete(w.acked, name)
		return name
	}
	t.Fatal("no Cluster to delete")
	return ""
}

// fill writes a file at path until the filesystem of dir has at most free
// bytes free (0: until it refuses a write).
func fill(t *testing.T, path, dir string, free uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	chunk := make([]byte, 1<<20)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		avail := st.Bavail * uint64(st.Bsize) //nolint:gosec // block counts fit
		if avail <= free {
			return
		}
		if free > 0 && avail-free < uint64(len(chunk)) {
			chunk = chunk[:avail-free]
		}
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) && free == 0 {
				return
			}
			t.Fatal(err)
		}
	}
}

func freeSpace(t *testing.T, dir string) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%.1f MiB", float64(st.Bavail*uint64(st.Bsize))/(1<<20)) //nolint:gosec // block counts fit
}

func lineWith(text, s string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
