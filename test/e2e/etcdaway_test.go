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

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

// etcdAway is how long the replica's etcd stays stopped.
const etcdAway = 30 * time.Second

// TestExternalEtcdAway runs a switchboard replica on an etcd of its own
// (the ha installation's external etcd), stops that etcd for 30 s and
// starts it again. Meanwhile the Cluster API answers 503 naming etcd, and
// proxying to a member goes on from the replica's caches: GETs, a LIST,
// and a watch opened before etcd went, which sees a change made while
// etcd is away. /readyz names etcd; the readinessProbe's path passes, so a
// Service would keep the replica. Once etcd is back, the Cluster API works
// again with no restart.
func TestExternalEtcdAway(t *testing.T) {
	ctx := context.Background()
	s := f.State
	etcd := startOwnEtcd(t, s)
	rs, err := s.StartReplicas(ctx, topology.ReplicasConfig{
		Name:       "etcd-away",
		Addresses:  []string{"127.0.0.6"},
		EtcdURL:    etcd.url,
		EtcdPrefix: "/switchboard-etcd-away",
		LeaseName:  "switchboard-etcd-away",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Stop() })
	r := rs.Replicas[0]
	pid := r.Process.PID

	config := straightAsHubAdmin(s, r.URL)
	sb, err := clientset.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	// member1 as the topology's switchboard has it: the same endpoint and
	// credentials Secret.
	orig, err := f.Switchboard(t).ClusterV1alpha1().Clusters().Get(ctx, "member1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.ClusterV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "member1"},
		Spec:       orig.Spec,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	memberConfig := rest.CopyConfig(config)
	memberConfig.Host = r.URL + proxyPrefix + "member1/proxy"
	member, err := kubernetes.NewForConfig(memberConfig)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		_, err := member.Discovery().ServerVersion()
		return err
	})
	m1, err := s.Member("member1")
	if err != nil {
		t.Fatal(err)
	}
	ns := m1.PodNamespace
	w, err := member.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "e2e=etcd-away"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	client, err := s.FrontProxyClient()
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	direct := func(path string) (int, string) {
		reqCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		code, body, err := topology.FrontProxyGet(reqCtx, client, r.URL+path)
		if err != nil {
			t.Fatalf("GET %s from the replica: %v", path, err)
		}
		return code, body
	}

	etcd.stop(t)
	stopped := time.Now()
	eventually(t, time.Minute, func() error {
		if code, body := direct("/apis/cluster.switchboard.io/v1alpha1/clusters"); code != http.StatusServiceUnavailable || !strings.Contains(body, "the storage of Cluster objects (etcd) is unavailable") {
			return fmt.Errorf("the Cluster list with etcd away: %d %.300s", code, body)
		}
		return nil
	})
	t.Logf("the Cluster API answered 503 naming etcd %.1f s after etcd stopped", time.Since(stopped).Seconds())
	if code, body := direct("/readyz"); code == http.StatusOK || !strings.Contains(body, "[-]etcd") {
		t.Errorf("/readyz with etcd away: %d %s", code, body)
	}
	probe := readinessProbePath(t)
	admin := f.Member(t, "member1")
	var proxied, changed int
	for time.Since(stopped) < etcdAway {
		if code, body := direct(probe); code != http.StatusOK {
			t.Errorf("the readinessProbe's %s with etcd away: %d %s", probe, code, body)
		}
		if _, err := member.Discovery().ServerVersion(); err != nil {
			t.Errorf("member1's /version through the replica with etcd away: %v", err)
		}
		if _, err := member.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("member1's pods through the replica with etcd away: %v", err)
		}
		proxied += 2
		name := fmt.Sprintf("etcd-away-%d", changed)
		if _, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"e2e": "etcd-away"}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.CoreV1().ConfigMaps(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
		select {
		case ev := <-w.ResultChan():
			if cm, ok := ev.Object.(*corev1.ConfigMap); ev.Type != watch.Added || !ok || cm.Name != name {
				t.Errorf("the watch opened through the replica before etcd went: %s %v, want ADDED %s", ev.Type, ev.Object, name)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the watch opened through the replica before etcd went did not see %s within 30 s", name)
		}
		changed++
		time.Sleep(2 * time.Second)
	}
	t.Logf("with etcd away for %.0f s: %d requests proxied to member1 and %d changes seen by a watch, all through the replica, none failed", time.Since(stopped).Seconds(), proxied, changed)

	etcd.start(t)
	back := time.Now()
	eventually(t, 2*time.Minute, func() error {
		if code, body := direct("/apis/cluster.switchboard.io/v1alpha1/clusters"); code != http.StatusOK {
			return fmt.Errorf("the Cluster list after etcd returned: %d %.300s", code, body)
		}
		return nil
	})
	t.Logf("the Cluster API answered 200 %.1f s after etcd was started again", time.Since(back).Seconds())
	if got, err := sb.ClusterV1alpha1().Clusters().Get(ctx, "member1", metav1.GetOptions{}); err != nil || got.Spec.Endpoint != orig.Spec.Endpoint {
		t.Errorf("member1 after etcd returned: %v %v", got, err)
	}
	if !r.Process.Alive() || r.Process.PID != pid {
		t.Errorf("the replica restarted or exited: pid %d, then %d (alive %v)", pid, r.Process.PID, r.Process.Alive())
	}
}

// straightAsHubAdmin is a client configuration for a switchboard at url,
// as the hub's aggregator reaches it for the hub's administrator.
func straightAsHubAdmin(s *topology.State, url string) *rest.Config {
	return &rest.Config{
		Host: url,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:     s.Switchboard.CACert,
			CertFile:   s.FrontProxy.ClientCert,
			KeyFile:    s.FrontProxy.ClientKey,
			ServerName: topology.SwitchboardServerName,
		},
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return asHubAdmin{rt} },
		QPS:           -1,
		Burst:         -1,
	}
}

// readinessProbePath is the path of the readinessProbe in the install
// manifests' Deployment.
func readinessProbePath(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "artifacts", "deploy", "base", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "readinessProbe:")
	if i < 0 {
		t.Fatal("no readinessProbe in artifacts/deploy/base/deployment.yaml")
	}
	for _, line := range strings.Split(text[i:], "\n") {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "path: "); ok {
			return path
		}
	}
	t.Fatal("no path in the readinessProbe of artifacts/deploy/base/deployment.yaml")
	return ""
}

// ownEtcd is an etcd process the test starts, stops and starts again on
// the same data and port.
type ownEtcd struct {
	args []string
	url  string
	cmd  *exec.Cmd
	log  string
}

// startOwnEtcd starts an etcd from the topology's etcd binary.
func startOwnEtcd(t *testing.T, s *topology.State) *ownEtcd {
	t.Helper()
	var bin string
	for _, p := range s.Processes {
		if p.Name == "etcd" && len(p.Args) > 0 {
			bin = p.Args[0]
		}
	}
	if bin == "" {
		t.Fatal("the topology records no etcd process to take the binary from")
	}
	dir := t.TempDir()
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	e := &ownEtcd{
		url: client,
		log: filepath.Join(dir, "etcd.log"),
		args: []string{bin,
			"--name=own", "--data-dir=" + filepath.Join(dir, "data"),
			"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=own=" + peer, "--unsafe-no-fsync", "--log-level=warn",
		},
	}
	e.start(t)
	t.Cleanup(func() {
		if e.cmd != nil {
			_ = e.cmd.Process.Kill()
			_ = e.cmd.Wait()
		}
	})
	return e
}

func (e *ownEtcd) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(e.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()
	cmd := exec.Command(e.args[0], e.args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.cmd = cmd
	eventually(t, time.Minute, func() error {
		resp, err := http.Get(e.url + "/health")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd's /health: %d", resp.StatusCode)
		}
		return nil
	})
}

func (e *ownEtcd) stop(t *testing.T) {
	t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = e.cmd.Wait()
	e.cmd = nil
}
