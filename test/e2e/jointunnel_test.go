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
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

// joinedEdge is the name TestJoinTunnel joins the isolated member under.
const joinedEdge = "edge1-joined"

// pluginIn runs kubectl switchboard, as a kubectl plugin, inside c's
// network namespace, with the hub kubeconfig for that namespace: where an
// admin of a member the hub cannot dial runs join, with a route to both.
func pluginIn(ctx context.Context, t *testing.T, c *topology.Cluster, args ...string) (string, error) {
	t.Helper()
	argv := append([]string{"netns", "exec", c.NetNS, framework.KubectlBinary(t), "switchboard", "--kubeconfig", c.HubKubeconfig}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestJoinTunnel: kubectl switchboard join --tunnel, run where the admin
// reaches both clusters but the hub cannot dial the member, sets up the
// agent's hub identity and its Deployment. kwok runs no containers, so
// the test runs the agent the Deployment describes, with the kubeconfig
// join put in the member, as its pod would. The join then checks itself
// through the hub and the tunnel; it is idempotent; the agent's hub
// identity may open this Cluster's tunnel only; unjoin removes it all.
func TestJoinTunnel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := edgeCluster(t)
	member, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	hub := f.Hub(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := pluginIn(context.Background(), t, c, "unjoin", joinedEdge, "--member-kubeconfig", c.Kubeconfig)
			t.Logf("unjoin after the failure:\n%s", out)
		}
	})

	type joined struct {
		out string
		err error
	}
	done := make(chan joined, 1)
	joinArgs := []string{"join", joinedEdge, "--member-kubeconfig", c.Kubeconfig, "--tunnel", "--verify-timeout=2m"}
	go func() {
		out, err := pluginIn(ctx, t, c, joinArgs...)
		done <- joined{out, err}
	}()

	// The Deployment's pod: the agent, once join has put its kubeconfig
	// in the member.
	var kubeconfig []byte
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := member.CoreV1().Secrets(names.MemberNamespace).Get(ctx, names.AgentHubCredential, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		kubeconfig = s.Data[names.AgentHubKubeconfigKey]
		return bytes.Contains(kubeconfig, []byte("token:")), nil
	})
	if err != nil {
		j := <-done
		t.Fatalf("join put no agent kubeconfig in the member: %v\njoin: %v\n%s", err, j.err, j.out)
	}
	path := filepath.Join(t.TempDir(), "agent-hub.kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	// join makes the Deployment right after the Secret.
	var d *appsv1.Deployment
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		d, err = member.AppsV1().Deployments(names.MemberNamespace).Get(ctx, names.Agent, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("the agent's Deployment: %v", err)
	}
	container := d.Spec.Template.Spec.Containers[0]
	if !slices.Contains(container.Args, "--cluster="+joinedEdge) || !slices.Contains(container.Args, "--kubeconfig=/var/run/switchboard-agent/hub/kubeconfig") {
		t.Errorf("the agent's Deployment runs %q", container.Args)
	}
	_, agentOut := startAgent(t, c, joinedEdge, path)

	j := <-done
	if j.err != nil {
		t.Fatalf("join --tunnel: %v\n%s\nagent:\n%s", j.err, j.out, lastLines(agentOut.String(), 10))
	}
	for _, want := range []string{
		"Through a tunnel: the member's switchboard-agent reaches the hub at " + c.HubURL,
		"created ServiceAccount switchboard-system/" + names.AgentHubIdentity(joinedEdge),
		"created ClusterRole " + names.AgentRole(joinedEdge),
		"created Deployment switchboard-system/switchboard-agent",
		`Cluster "` + joinedEdge + `" is joined.`,
		"Verified: GET /apis/cluster.switchboard.io/v1alpha1/clusters/" + joinedEdge + "/proxy/version through the hub answered",
	} {
		if !strings.Contains(j.out, want) {
			t.Errorf("join does not say %q:\n%s", want, j.out)
		}
	}
	cl := waitForReady(t, joinedEdge, metav1.ConditionTrue, v1alpha1.ReasonProbed)
	if cl.Spec.Connection != v1alpha1.ConnectionTunnel {
		t.Errorf("connection %q, want Tunnel", cl.Spec.Connection)
	}
	code, body := rawThroughHub(t, proxyPrefix+joinedEdge+"/proxy/api/v1/namespaces/"+c.PodNamespace+"/pods")
	if code != http.StatusOK || !strings.Contains(body, c.Pods[0]) {
		t.Errorf("pods of %s through the hub: %d %s", joinedEdge, code, body)
	}

	// The agent's hub identity, as the hub's RBAC sees it: this tunnel,
	// and nothing else.
	agentClient := clientFromKubeconfig(t, kubeconfig, c)
	for _, tc := range []struct {
		attrs authorizationv1.ResourceAttributes
		want  bool
	}{
		{authorizationv1.ResourceAttributes{Verb: "create", Group: v1alpha1.GroupName, Resource: "clusters", Subresource: "attach", Name: joinedEdge}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: v1alpha1.GroupName, Resource: "clusters", Subresource: "attach", Name: edge}, false},
		{authorizationv1.ResourceAttributes{Verb: "get", Group: v1alpha1.GroupName, Resource: "clusters", Subresource: "proxy", Name: joinedEdge}, false},
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: names.Namespace}, false},
	} {
		review, err := agentClient.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &tc.attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review as the agent: %v", err)
		}
		if review.Status.Allowed != tc.want {
			t.Errorf("the agent may %s %s/%s %s: %v, want %v", tc.attrs.Verb, tc.attrs.Resource, tc.attrs.Subresource, tc.attrs.Name, review.Status.Allowed, tc.want)
		}
	}

	out, err := pluginIn(ctx, t, c, joinArgs...)
	if err != nil || !strings.Contains(out, `Cluster "`+joinedEdge+`" is already authorized; nothing changed.`) {
		t.Errorf("join --tunnel again: %v\n%s", err, out)
	}

	out, err = pluginIn(ctx, t, c, "unjoin", joinedEdge, "--member-kubeconfig", c.Kubeconfig)
	if err != nil {
		t.Fatalf("unjoin: %v\n%s", err, out)
	}
	for _, gone := range []struct {
		what string
		err  error
	}{
		{"hub ServiceAccount", errOf(hub.CoreV1().ServiceAccounts(names.Namespace).Get(ctx, names.AgentHubIdentity(joinedEdge), metav1.GetOptions{}))},
		{"hub ClusterRole", errOf(hub.RbacV1().ClusterRoles().Get(ctx, names.AgentRole(joinedEdge), metav1.GetOptions{}))},
		{"hub ClusterRoleBinding", errOf(hub.RbacV1().ClusterRoleBindings().Get(ctx, names.AgentRole(joinedEdge), metav1.GetOptions{}))},
		{"member Deployment", errOf(member.AppsV1().Deployments(names.MemberNamespace).Get(ctx, names.Agent, metav1.GetOptions{}))},
		{"member Secret", errOf(member.CoreV1().Secrets(names.MemberNamespace).Get(ctx, names.AgentHubCredential, metav1.GetOptions{}))},
		{"member ServiceAccount", errOf(member.CoreV1().ServiceAccounts(names.MemberNamespace).Get(ctx, names.AgentServiceAccount, metav1.GetOptions{}))},
	} {
		if !apierrors.IsNotFound(gone.err) {
			t.Errorf("%s after unjoin: %v, want not found\nunjoin:\n%s", gone.what, gone.err, out)
		}
	}
	if !strings.Contains(out, "kept the member's switchboard objects") {
		t.Errorf("unjoin does not keep the impersonator that Cluster %s uses:\n%s", edge, out)
	}
	if code, body := rawThroughHub(t, proxyPrefix+edge+"/proxy/version"); code != http.StatusOK {
		t.Errorf("%s after the unjoin of %s: %d %s", edge, joinedEdge, code, body)
	}
}

func errOf[T any](_ T, err error) error { return err }

// clientFromKubeconfig is a hub client from a kubeconfig written for c's
// network namespace, dialing from there.
func clientFromKubeconfig(t *testing.T, kubeconfig []byte, c *topology.Cluster) kubernetes.Interface {
	t.Helper()
	config, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	config.Dial = c.DialContext
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	return client
}
