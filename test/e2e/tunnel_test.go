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
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

// edge is the isolated member: in a network namespace of its own, which
// neither the hub nor switchboard can reach; only its agent can.
const edge = "edge1"

func edgeCluster(t *testing.T) *topology.Cluster {
	t.Helper()
	c, err := f.State.IsolatedMember(edge)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTunnelledMemberIsUnreachableButServed proves the premise, and that
// the member is served anyway: from the machine's network namespace,
// where switchboard and the hub run, a dial to the member fails; through
// the hub, the member answers, and kubectl shows how.
func TestTunnelledMemberIsUnreachableButServed(t *testing.T) {
	c := edgeCluster(t)
	if err := f.State.CheckIsolated(context.Background(), c); err != nil {
		t.Fatalf("the isolated member is not isolated: %v", err)
	}
	cl := waitForReady(t, edge, metav1.ConditionTrue, v1alpha1.ReasonProbed)
	if cl.Spec.Connection != v1alpha1.ConnectionTunnel {
		t.Errorf("connection = %q, want Tunnel", cl.Spec.Connection)
	}
	agent := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ConditionAgentConnected)
	if agent == nil || agent.Status != metav1.ConditionTrue {
		t.Errorf("AgentConnected = %+v, want True", agent)
	}
	out := framework.MustKubectl(t, f.State.Hub.Kubeconfig, "get", "sbc", edge, "-o", "wide")
	if !lineHas(out, edge, "True", "Tunnel", "Connected") {
		t.Errorf("kubectl get sbc -o wide:\n%s", out)
	}
	code, body := rawThroughHub(t, proxyPrefix+edge+"/proxy/api/v1/namespaces/"+c.PodNamespace+"/pods")
	if code != http.StatusOK || !strings.Contains(body, c.Pods[0]) {
		t.Errorf("pods of %s through the hub: %d %s", edge, code, body)
	}
}

// TestTunnelledMemberEveryCommand: get, get -w, apply --dry-run=server,
// logs -f, exec and port-forward over WebSocket and SPDY, a long watch,
// and the member's audit log naming the caller, all through the tunnel.
func TestTunnelledMemberEveryCommand(t *testing.T) {
	testEveryCommand(t, edge)
}

// TestTunnelRefusesAnotherClustersAgent: an agent whose hub identity may
// open member1's tunnel cannot open edge1's. The hub refuses it, so it
// can never carry edge1's traffic.
func TestTunnelRefusesAnotherClustersAgent(t *testing.T) {
	ctx := context.Background()
	c := edgeCluster(t)
	user := topology.AgentUser("member1")
	if err := f.State.AllowAgent(ctx, "member1", user); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hub := f.Hub(t)
		_ = hub.RbacV1().ClusterRoleBindings().Delete(context.Background(), names.AgentRole("member1"), metav1.DeleteOptions{})
		_ = hub.RbacV1().ClusterRoles().Delete(context.Background(), names.AgentRole("member1"), metav1.DeleteOptions{})
	})
	kubeconfig := filepath.Join(t.TempDir(), "member1-agent.kubeconfig")
	if err := f.State.WriteAgentKubeconfig(c, user, kubeconfig); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		cluster string
		want    []string
	}{
		// Another Cluster's tunnel: the hub's RBAC says no.
		{edge, []string{`the hub refused the tunnel for cluster \"edge1\" with 403 Forbidden`, "may not create clusters/attach", user}},
		// Its own name, but member1 is reached directly: switchboard says no.
		{"member1", []string{`the hub refused the tunnel for cluster \"member1\" with 400 Bad Request`, "reached directly"}},
	} {
		t.Run(tc.cluster, func(t *testing.T) {
			out := runAgent(t, c, tc.cluster, kubeconfig, tc.want[0])
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("agent log does not say %q:\n%s", want, lastLines(out, 5))
				}
			}
		})
	}
	if connected := switchboardMetric(t, `switchboard_tunnel_agents_connected{cluster="edge1"}`); connected != 1 {
		t.Errorf("edge1 has %v tunnels, want only its own agent's", connected)
	}
}

// runAgent runs switchboard-agent in c's namespace until its log says
// want, and returns the log. The log quotes as klog does: \" for ".
func runAgent(t *testing.T, c *topology.Cluster, cluster, kubeconfig, want string, extra ...string) string {
	t.Helper()
	cmd, out := startAgent(t, c, cluster, kubeconfig, extra...)
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	framework.WaitForOutput(t, out, want, time.Minute)
	return out.String()
}

// startAgent starts switchboard-agent in c's namespace; the test's end
// stops it.
func startAgent(t *testing.T, c *topology.Cluster, cluster, kubeconfig string, extra ...string) (*exec.Cmd, *framework.SyncBuffer) {
	t.Helper()
	binaries, err := topology.BinariesFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", c.NetNS},
		f.State.AgentArgs(binaries.Agent, c, cluster, kubeconfig, strings.TrimPrefix(c.URL, "https://"), extra...)...)
	cmd := exec.Command("ip", args...)
	out := &framework.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, out
}

// TestTunnelAcrossReplicas: with two switchboard replicas behind the hub,
// an agent started with --server-count=2 holds a tunnel to each, so a
// request that lands on either replica reaches the tunnelled member.
func TestTunnelAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	s := f.State
	c := edgeCluster(t)
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	edgeSpec, err := clusters.Get(ctx, edge, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	reps, err := s.StartReplicas(ctx, topology.ReplicasConfig{
		Name:       "switchboard-tunnel-ha",
		Addresses:  haAddresses[:2],
		EtcdPrefix: "/switchboard-tunnel-ha",
		LeaseName:  "switchboard-tunnel-ha-status",
	})
	if err != nil {
		t.Fatalf("starting the replicas: %v", err)
	}
	lb, err := topology.NewLoadBalancer(reps.Backends()...)
	if err != nil {
		_ = reps.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.RestoreAPIService(context.Background()); err != nil {
			t.Errorf("pointing the hub back at the topology's switchboard: %v", err)
		}
		_ = lb.Close()
		if err := reps.Stop(); err != nil {
			t.Errorf("stopping the replicas: %v", err)
		}
	})
	if err := s.PointAPIServiceAt(ctx, lb.Port()); err != nil {
		t.Fatalf("pointing the hub at %s: %v", lb, err)
	}

	// The replicas' own store: the same member, as ha-edge1.
	name := "ha-" + edge
	cl := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: edgeSpec.Spec}
	eventually(t, haWait, func() error {
		_, err := clusters.Create(ctx, cl, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	user := topology.AgentUser(name)
	if err := s.AllowAgent(ctx, name, user); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hub := f.Hub(t)
		_ = hub.RbacV1().ClusterRoleBindings().Delete(context.Background(), names.AgentRole(name), metav1.DeleteOptions{})
		_ = hub.RbacV1().ClusterRoles().Delete(context.Background(), names.AgentRole(name), metav1.DeleteOptions{})
	})
	kubeconfig := filepath.Join(t.TempDir(), name+"-agent.kubeconfig")
	if err := s.WriteAgentKubeconfig(c, user, kubeconfig); err != nil {
		t.Fatal(err)
	}
	_, out := startAgent(t, c, name, kubeconfig, "--server-count=2")

	client, err := s.FrontProxyClient()
	if err != nil {
		t.Fatal(err)
	}
	series := regexp.MustCompile(`(?m)^switchboard_tunnel_agents_connected\{cluster="` + name + `"\} 1$`)
	for _, r := range reps.Replicas {
		eventually(t, haWait, func() error {
			code, body, err := topology.FrontProxyGet(ctx, client, r.URL+"/metrics")
			if err != nil || code != http.StatusOK || !series.MatchString(body) {
				return fmt.Errorf("%s has no tunnel of %s (%d, %w); agent log:\n%s", r.Name, name, code, err, lastLines(out.String(), 5))
			}
			return nil
		})
		// A request that lands on this replica reaches the member.
		eventually(t, haWait, func() error {
			code, body, err := topology.FrontProxyGet(ctx, client, r.URL+proxyPrefix+name+"/proxy/api/v1/namespaces/"+c.PodNamespace+"/pods")
			if err != nil || code != http.StatusOK || !strings.Contains(body, c.Pods[0]) {
				return fmt.Errorf("pods of %s through %s: %d %w %s", name, r.Name, code, err, body)
			}
			return nil
		})
	}
	// And through the hub, as users go.
	eventually(t, haWait, func() error {
		code, body := rawThroughHub(t, proxyPrefix+name+"/proxy/api/v1/namespaces/"+c.PodNamespace+"/pods")
		if code != http.StatusOK {
			return fmt.Errorf("through the hub: %d %s", code, body)
		}
		return nil
	})
	waitForReady(t, name, metav1.ConditionTrue, v1alpha1.ReasonProbed)
	if err := clusters.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("deleting %s: %v", name, err)
	}
}

// TestTunnelAgentGoesAndComes: with its agent gone, the member turns
// AgentDisconnected and requests fail at once with a 503 that says so;
// the agent back, service returns, with no switchboard restart.
func TestTunnelAgentGoesAndComes(t *testing.T) {
	c := edgeCluster(t)
	agent := topology.AgentProcess(c)
	pid := switchboardPID(t)
	if err := f.State.StopProcess(agent); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = f.State.RestartProcess(agent)
		}
	})

	cl := waitForReady(t, edge, metav1.ConditionFalse, v1alpha1.ReasonAgentDisconnected)
	ready := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ConditionReady)
	if !strings.Contains(ready.Message, `no switchboard-agent is connected for cluster "edge1"`) || !strings.Contains(ready.Message, "disconnected at") {
		t.Errorf("Ready message %q does not say that no agent is connected, and since when", ready.Message)
	}
	if agentCond := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ConditionAgentConnected); agentCond == nil || agentCond.Status != metav1.ConditionFalse {
		t.Errorf("AgentConnected = %+v, want False", agentCond)
	}
	out := framework.MustKubectl(t, f.State.Hub.Kubeconfig, "get", "sbc", edge, "-o", "wide")
	if !lineHas(out, edge, "False", "AgentDisconnected", "Tunnel", "Disconnected") {
		t.Errorf("kubectl get sbc -o wide:\n%s", out)
	}

	start := time.Now()
	code, body := rawThroughHub(t, proxyPrefix+edge+"/proxy/api/v1/namespaces")
	took := time.Since(start)
	t.Logf("a request to %s with no agent failed after %s", edge, took.Round(time.Millisecond))
	// "its last probe": the proxy failed it at once, from the probe's
	// finding, without trying to dial.
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no switchboard-agent is connected") || !strings.Contains(body, "its last probe") {
		t.Errorf("request with no agent: %d %s, want the fast 503 saying no agent is connected", code, body)
	}
	r := framework.Kubectl(t, f.State.Hub.Kubeconfig, "get", "--raw", proxyPrefix+edge+"/proxy/api")
	if r.Err == nil || !strings.Contains(r.Stderr, "no switchboard-agent is connected") {
		t.Errorf("kubectl with no agent: err=%v stderr=%s", r.Err, r.Stderr)
	}

	if err := f.State.RestartProcess(agent); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitForReady(t, edge, metav1.ConditionTrue, v1alpha1.ReasonProbed)
	eventually(t, time.Minute, func() error {
		code, body := rawThroughHub(t, proxyPrefix+edge+"/proxy/api/v1/namespaces/"+c.PodNamespace+"/pods")
		if code != http.StatusOK {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if after := switchboardPID(t); after != pid {
		t.Errorf("switchboard restarted (pid %d, then %d)", pid, after)
	}
}

// switchboardPID is the process id of the running switchboard-apiserver.
func switchboardPID(t *testing.T) int {
	t.Helper()
	s, err := loadState()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Processes {
		if p.Name == names.Server {
			return p.PID
		}
	}
	t.Fatalf("no %s in the topology", names.Server)
	return 0
}
