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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig returns an admin (system:masters) client configuration for the
// cluster. For an isolated member, its Dial connects from inside the
// member's network namespace.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	config, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	config.QPS, config.Burst = 50, 100
	if c.NetNS != "" {
		config.Dial = NetNSDialer(c.NetNS)
	}
	return config, nil
}

// Client returns an admin clientset for the cluster.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	config, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(config)
}

func (c *Cluster) apiserverName() string { return c.Name + "-kube-apiserver" }

func (c *Cluster) controllerManagerName() string { return c.Name + "-kube-controller-manager" }

func (c *Cluster) port() string {
	u, _ := url.Parse(c.URL)
	return u.Port()
}

// process returns the recorded process with the given name.
func (s *State) process(name string) *Process {
	for _, p := range s.Processes {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (u *upper) startAPIServer(c *Cluster) error {
	s := u.state
	isHub := c == &s.Hub
	etcd := s.EtcdURL
	if c.EtcdURL != "" {
		etcd = c.EtcdURL
	}
	args := []string{
		u.cfg.Binaries.KubeAPIServer,
		"--etcd-servers=" + etcd,
		// Several clusters share one etcd, each under its own prefix.
		"--etcd-prefix=/" + c.Name,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + c.port(),
		"--tls-cert-file=" + c.PKI.ServingCert,
		"--tls-private-key-file=" + c.PKI.ServingKey,
		"--client-ca-file=" + c.PKI.CACert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + c.PKI.SAPub,
		"--service-account-signing-key-file=" + c.PKI.SAKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		// On loopback there is no address for the kubernetes Service endpoints.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	if isHub {
		args = append(args,
			"--requestheader-client-ca-file="+s.FrontProxy.CACert,
			"--requestheader-allowed-names="+FrontProxyClientName,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-uid-headers=X-Remote-Uid",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file="+s.FrontProxy.ClientCert,
			"--proxy-client-key-file="+s.FrontProxy.ClientKey,
		)
	}
	// Members keep an audit log of every request: who asked, and as
	// whom. The hub's holds AuditTrailUser's requests only.
	policy := auditPolicy
	if isHub {
		policy = trailAuditPolicy
	}
	auditArgs, err := u.auditArgs(c.Name, policy)
	if err != nil {
		return err
	}
	c.AuditLog = auditArgs.log
	args = append(args, auditArgs.args...)
	if !isHub {
		// kwok serves as every node's kubelet, on loopback, with a
		// certificate from the member's CA.
		args = append(args,
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-certificate-authority="+c.PKI.CACert,
			"--kubelet-client-certificate="+c.PKI.KubeletClientCert,
			"--kubelet-client-key="+c.PKI.KubeletClientKey,
		)
	}
	_, err = u.startIn(c.NetNS, c.apiserverName(), args)
	return err
}

type auditSettings struct {
	log  string
	args []string
}

// auditArgs are the flags of an audit log for process name, with policy,
// written to a file of its own: blocking, so that an event is in the log
// by the time its request has been answered.
func (u *upper) auditArgs(name, policy string) (auditSettings, error) {
	dir := filepath.Join(u.state.RunDir, "audit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return auditSettings{}, err
	}
	policyFile := filepath.Join(dir, name+"-policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		return auditSettings{}, err
	}
	log := filepath.Join(dir, name+".log")
	return auditSettings{log: log, args: []string{
		"--audit-policy-file=" + policyFile,
		"--audit-log-path=" + log,
		"--audit-log-mode=blocking",
	}}, nil
}

// auditPolicy records the metadata of every request but the noisy reads of
// controllers, enough to see the user and impersonated user of each.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-controller-manager", "system:apiserver"]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: Metadata
`

func (u *upper) waitAPIServer(ctx context.Context, c *Cluster) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	return waitFor(ctx, u.state.process(c.apiserverName()), c.apiserverName(), func(ctx context.Context) error {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

func (u *upper) startControllerManager(c *Cluster) error {
	_, err := u.startIn(c.NetNS, c.controllerManagerName(), []string{
		u.cfg.Binaries.KubeControllerManager,
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--service-account-private-key-file=" + c.PKI.SAKey,
		"--root-ca-file=" + c.PKI.CACert,
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
		// Keep it from creating /usr/libexec/kubernetes/... on the machine.
		"--flex-volume-plugin-dir=" + filepath.Join(u.state.RunDir, "flexvolume", c.Name),
	})
	return err
}

// waitControllerManager waits until the controller-manager has made the
// default ServiceAccount, the sign that its controllers run.
func (u *upper) waitControllerManager(ctx context.Context, c *Cluster) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	return waitFor(ctx, u.state.process(c.controllerManagerName()), c.controllerManagerName(), func(ctx context.Context) error {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no default ServiceAccount yet")
		}
		return err
	})
}

// SignClient makes a client certificate for user in groups, signed by the
// cluster's CA, and returns the PEM certificate and key.
func (c *Cluster) SignClient(user string, groups ...string) (cert, key []byte, err error) {
	ca, err := c.PKI.ca()
	if err != nil {
		return nil, nil, err
	}
	pair, err := ca.ClientPair(user, groups...)
	if err != nil {
		return nil, nil, err
	}
	return pair.CertPEM, pair.KeyPEM, nil
}
