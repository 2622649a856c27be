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
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/install"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

// shutdownPodGrace is the Deployment's terminationGracePeriodSeconds: after
// it, kubelet would SIGKILL the server. The server must be gone before.
const shutdownPodGrace = 60 * time.Second

// TestShutdownWithOpenStreams runs a switchboard-apiserver with the
// shutdown flags of the Deployment in artifacts/deploy, puts it behind the
// hub, and sends it SIGTERM while users hold a watch and an exec session
// open through it to a member with the real kubectl, and GETs keep coming
// through the hub. The server must fail /readyz at once while /livez
// passes, keep answering GETs with 200 until it stops listening (and never
// with a 5xx other than a 503), end the watch cleanly and the exec session
// with the process, and exit with code 0 before kubelet would kill it,
// leaving nothing running.
func TestShutdownWithOpenStreams(t *testing.T) {
	ctx := context.Background()
	s := f.State
	member, err := f.Switchboard(t).ClusterV1alpha1().Clusters().Get(ctx, "member1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Member("member1")
	if err != nil {
		t.Fatal(err)
	}
	flags := deploymentShutdownFlags(t)
	t.Logf("the Deployment's shutdown flags: %s", strings.Join(flags, " "))

	reps, err := s.StartReplicas(ctx, topology.ReplicasConfig{
		Name:       "switchboard-shutdown",
		Addresses:  []string{"127.0.0.1"}, // where the hub's Service (ExternalName localhost) points
		EtcdPrefix: "/switchboard-shutdown",
		LeaseName:  "switchboard-shutdown-status",
		ExtraArgs:  append(flags, "-v=1"), // -v=1 logs each graceful-termination step
	})
	if err != nil {
		t.Fatalf("starting the server: %v", err)
	}
	server := reps.Replicas[0]
	t.Cleanup(func() {
		if err := s.RestoreAPIService(ctx); err != nil {
			t.Errorf("pointing the hub back at the topology's switchboard: %v", err)
		}
		waitHubServesCluster(t, "member1", true)
		if err := reps.Stop(); err != nil {
			t.Error(err)
		}
		err := f.Hub(t).CoordinationV1().Leases("switchboard-system").Delete(ctx, "switchboard-shutdown-status", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("the server's log: %s", server.Process.Log)
		}
	})
	if err := s.PointAPIServiceAt(ctx, reps.Port); err != nil {
		t.Fatal(err)
	}
	// The server's own store lacks the topology's Clusters: once the hub
	// lists none, its requests reach the server and not the topology's
	// switchboard any more.
	waitHubServesCluster(t, "member1", false)

	// A Cluster for member1 in the server's own store, and a user allowed
	// everything there.
	name := "shutdown-member1"
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	eventually(t, time.Minute, func() error {
		_, err := clusters.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: member.Spec}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // left by an interrupted run, in the server's own prefix
		}
		return err
	})
	user := f.CertificateUser(t, fmt.Sprintf("shutdown-%d", time.Now().UnixNano()))
	f.Grant(t, user.Name, proxyRule(name))
	f.GrantInMember(t, "member1", user.Name, rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}})
	kc := user.MemberKubeconfig(t, name)
	eventually(t, time.Minute, func() error {
		if r := framework.Kubectl(t, kc, "get", "pods", "-n", m.PodNamespace); r.Err != nil {
			return &kubectlError{r}
		}
		return nil
	})

	// The streams: a watch, and an exec session that prints and then waits.
	watch, watchOut := framework.StartKubectl(t, kc, nil, "get", "pods", "-n", m.PodNamespace, "-w")
	framework.WaitForOutput(t, watchOut, m.Pods[0], time.Minute)
	session, sessionOut := framework.StartKubectl(t, kc, nil, "exec", "-n", m.PodNamespace, m.Pods[0], "--", "sh", "-c", "echo session-open; sleep 600")
	framework.WaitForOutput(t, sessionOut, "session-open", time.Minute)

	// GETs through the hub, one after another, until the test stops them.
	gets := startGets(f.HubConfig(t))
	defer gets.stop()
	eventually(t, time.Minute, func() error {
		if n := gets.count(); n < 10 {
			return fmt.Errorf("%d GETs answered", n)
		}
		return nil
	})

	frontProxy, err := s.FrontProxyClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(server.Process.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	terminated := time.Now()

	// /readyz fails during the shutdown delay, while /livez passes.
	eventually(t, 5*time.Second, func() error {
		code, body, err := topology.FrontProxyGet(ctx, frontProxy, server.URL+"/readyz")
		if err != nil {
			return err
		}
		if code == http.StatusOK {
			return fmt.Errorf("/readyz still answers 200 after SIGTERM: %s", body)
		}
		return nil
	})
	if code, body, err := topology.FrontProxyGet(ctx, frontProxy, server.URL+"/livez"); err != nil || code != http.StatusOK {
		t.Errorf("/livez during the shutdown delay: %d %s %v", code, body, err)
	}
	t.Logf("/readyz failed %s after SIGTERM", time.Since(terminated).Round(time.Millisecond))

	exitCode, exited := server.Process.WaitExit(shutdownPodGrace)
	if !exited {
		t.Fatalf("the server still runs %s after SIGTERM, when kubelet would kill it", shutdownPodGrace)
	}
	took := time.Since(terminated)
	gets.stop()
	t.Logf("the server exited with code %d %s after SIGTERM", exitCode, took.Round(time.Millisecond))
	if exitCode != 0 {
		t.Errorf("exit code %d, want 0", exitCode)
	}

	// Nothing is left: no process in its group (it runs in a session of
	// its own), and its port is closed.
	if err := syscall.Kill(-server.Process.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("processes of the server's group still run after it exited (kill -0: %v)", err)
	}
	if conn, err := net.DialTimeout("tcp", server.Backend, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("%s still accepts connections after the server exited", server.Backend)
	}

	// The streams end with the server, not later. The watch ends cleanly,
	// as a watch the member ended would: kubectl exits 0 and prints no
	// error. The exec session, a raw connection, is cut.
	for _, stream := range []struct {
		name  string
		cmd   *exec.Cmd
		out   *framework.SyncBuffer
		clean bool
	}{{"kubectl get -w", watch, watchOut, true}, {"kubectl exec", session, sessionOut, false}} {
		select {
		case <-framework.Exited(stream.cmd):
			state := stream.cmd.ProcessState
			t.Logf("%s ended (%v); its last output: %s", stream.name, state, lastLine(stream.out.String()))
			// kubectl get -w exits 0 however its watch ends; a broken one
			// prints an error first.
			if stream.clean && (!state.Success() || strings.Contains(strings.ToLower(stream.out.String()), "error")) {
				t.Errorf("%s did not end cleanly: %v; output:\n%s", stream.name, state, stream.out.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s still runs 30s after the server exited; output:\n%s", stream.name, stream.out.String())
		}
	}

	// Every GET got an answer. Those before SIGTERM and during the
	// shutdown delay got 200; after that only 200, 429 with Retry-After
	// from the draining server (--shutdown-send-retry-after), or 503 from
	// the hub once nothing listens.
	before, during, codes := gets.summary(terminated, flagDuration(t, flags, "--shutdown-delay-duration"))
	t.Logf("GETs through the hub: %d before SIGTERM, %d in the shutdown delay; after SIGTERM by code: %v", before, during, codes)
	for code, n := range codes {
		if code != http.StatusOK && code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable {
			t.Errorf("%d GETs after SIGTERM answered %d; want only 200, 429 or 503", n, code)
		}
	}
	if during == 0 {
		t.Error("no GET succeeded during the shutdown delay")
	}
	for _, e := range gets.errors() {
		t.Errorf("a GET through the hub got no answer: %s", e)
	}
}

// deploymentShutdownFlags are the --shutdown-* arguments of the Deployment
// the manifests install.
func deploymentShutdownFlags(t *testing.T) []string {
	t.Helper()
	rendered, err := install.Render("single")
	if err != nil {
		t.Fatal(err)
	}
	decoder := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(rendered)))
	for {
		doc, err := decoder.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil || d.Kind != "Deployment" {
			continue
		}
		var flags []string
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, arg := range c.Args {
				if strings.HasPrefix(arg, "--shutdown-") {
					flags = append(flags, arg)
				}
			}
		}
		if grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second != shutdownPodGrace {
			t.Fatalf("the Deployment's terminationGracePeriodSeconds is %v; this test assumes %s", grace, shutdownPodGrace)
		}
		if len(flags) == 0 {
			t.Fatal("the Deployment sets no --shutdown-* flag")
		}
		return flags
	}
	t.Fatal("no Deployment in the rendered manifests")
	return nil
}

func flagDuration(t *testing.T, flags []string, name string) time.Duration {
	t.Helper()
	for _, f := range flags {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("the Deployment does not set %s", name)
	return 0
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// getStream lists Clusters through the hub in a loop.
type getStream struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	answers []getAnswer
	failed  []string
	once    sync.Once
}

type getAnswer struct {
	start time.Time
	code  int
}

func startGets(config *rest.Config) *getStream {
	g := &getStream{done: make(chan struct{})}
	g.wg.Go(func() {
		for {
			select {
			case <-g.done:
				return
			default:
			}
			start := time.Now()
			code, body, err := rawRequest(config, http.MethodGet, "/apis/cluster.switchboard.io/v1alpha1/clusters", nil)
			g.mu.Lock()
			if err != nil {
				g.failed = append(g.failed, start.UTC().Format("15:04:05.000")+" "+describe(code, body, err))
			} else {
				g.answers = append(g.answers, getAnswer{start: start, code: code})
			}
			g.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	})
	return g
}

func (g *getStream) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.answers)
}

func (g *getStream) stop() {
	g.once.Do(func() { close(g.done) })
	g.wg.Wait()
}

// summary counts the GETs made before SIGTERM, the 200s of those started
// during the shutdown delay, and the codes of every GET started after it.
func (g *getStream) summary(terminated time.Time, delay time.Duration) (before, during int, codes map[int]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	codes = map[int]int{}
	for _, a := range g.answers {
		switch {
		case a.start.Before(terminated):
			before++
		default:
			codes[a.code]++
			if a.code == http.StatusOK && a.start.Before(terminated.Add(delay)) {
				during++
			}
		}
	}
	return before, during, codes
}

func (g *getStream) errors() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.failed...)
}

// waitHubServesCluster waits until a LIST of Clusters through the hub does
// (present) or does not (!present) hold name: it tells which store, and so
// which switchboard, the hub's requests reach.
func waitHubServesCluster(t *testing.T, name string, present bool) {
	t.Helper()
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	eventually(t, time.Minute, func() error {
		list, err := clusters.List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		found := slices.ContainsFunc(list.Items, func(c v1alpha1.Cluster) bool { return c.Name == name })
		if found != present {
			return fmt.Errorf("the hub lists Cluster %s: %v, want %v", name, found, present)
		}
		return nil
	})
}
