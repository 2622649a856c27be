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

package topology

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// AgentProcess is the name of the process of c's switchboard-agent.
func AgentProcess(c *Cluster) string { return c.Name + "-" + names.Agent }

// AgentUser is the hub user the topology's agent for cluster is: a client
// certificate of the hub's CA.
func AgentUser(cluster string) string { return "system:" + names.Agent + ":" + cluster }

// joinIsolated joins an isolated member through a tunnel: the agent's hub
// identity, allowed to open this member's tunnel and nothing else; the
// agent, in the member's namespace, which reaches the hub only through the
// forwarder; then the member's impersonate-only identity and its Cluster,
// with connection Tunnel, which join checks through the hub and the tunnel.
func (u *upper) joinIsolated(ctx context.Context, c *Cluster) error {
	s := u.state
	if err := s.AllowAgent(ctx, c.Name, AgentUser(c.Name)); err != nil {
		return err
	}
	kubeconfig := filepath.Join(s.RunDir, "kubeconfig", c.Name+"-agent.kubeconfig")
	if err := s.WriteAgentKubeconfig(c, AgentUser(c.Name), kubeconfig); err != nil {
		return err
	}
	c.AgentKubeconfig = kubeconfig
	member, err := url.Parse(c.URL)
	if err != nil {
		return err
	}
	if _, err := u.startIn(c.NetNS, AgentProcess(c), s.AgentArgs(u.cfg.Binaries.Agent, c, c.Name, kubeconfig, member.Host)); err != nil {
		return err
	}
	memberConfig, err := c.RESTConfig()
	if err != nil {
		return err
	}
	hubConfig, err := s.Hub.RESTConfig()
	if err != nil {
		return err
	}
	if _, err := join.Join(ctx, join.Options{
		Name:          c.Name,
		Connection:    v1alpha1.ConnectionTunnel,
		MemberConfig:  memberConfig,
		HubConfig:     hubConfig,
		TokenTimeout:  readyTimeout,
		VerifyTimeout: readyTimeout,
	}); err != nil {
		return fmt.Errorf("joining %s through its tunnel (agent log: %s): %w", c.Name, s.process(AgentProcess(c)).Log, err)
	}
	return nil
}

// AgentArgs is the command line of a switchboard-agent in c's namespace
// that serves cluster, as user's kubeconfig, and dials member; extra flags
// go last.
func (s *State) AgentArgs(bin string, c *Cluster, cluster, kubeconfig, member string, extra ...string) []string {
	return append([]string{bin,
		"--kubeconfig=" + kubeconfig,
		"--cluster=" + cluster,
		"--member-address=" + member,
		// Several agents share the namespace; no probes are needed here.
		"--health-probe-bind-address=",
		"--keepalive-interval=" + tunnel.DefaultKeepAlive.Interval.String(),
		"-v=2",
	}, extra...)
}

// AllowAgent grants user exactly what an agent of cluster needs on the
// hub: create on clusters/attach for that one name.
func (s *State) AllowAgent(ctx context.Context, cluster, user string) error {
	client, err := s.Hub.Client()
	if err != nil {
		return err
	}
	name := names.AgentRole(cluster)
	opts := metav1.ApplyOptions{FieldManager: "switchboard-topology", Force: true}
	role := rbacac.ClusterRole(name).WithRules(rbacac.PolicyRule().
		WithAPIGroups(v1alpha1.GroupName).WithResources("clusters/" + tunnel.Subresource).
		WithVerbs("create").WithResourceNames(cluster))
	if _, err := client.RbacV1().ClusterRoles().Apply(ctx, role, opts); err != nil {
		return fmt.Errorf("the hub ClusterRole of %s's agent: %w", cluster, err)
	}
	binding := rbacac.ClusterRoleBinding(name).
		WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(name)).
		WithSubjects(rbacac.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.UserKind).WithName(user))
	if _, err := client.RbacV1().ClusterRoleBindings().Apply(ctx, binding, opts); err != nil {
		return fmt.Errorf("the hub ClusterRoleBinding of %s's agent: %w", cluster, err)
	}
	return nil
}

// WriteAgentKubeconfig writes a kubeconfig for the hub, as seen from c's
// namespace, that authenticates as user with a certificate of the hub's CA.
func (s *State) WriteAgentKubeconfig(c *Cluster, user, path string) error {
	cert, key, err := s.Hub.SignClient(user)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(s.Hub.PKI.CACert)
	if err != nil {
		return err
	}
	server, serverName := s.HubURLFrom(c)
	config := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"hub": {Server: server, TLSServerName: serverName, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: {ClientCertificateData: cert, ClientKeyData: key}},
		Contexts:       map[string]*clientcmdapi.Context{"hub": {Cluster: "hub", AuthInfo: user}},
		CurrentContext: "hub",
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(config, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}
