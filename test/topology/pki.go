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
	"fmt"
	"net"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/test/testcerts"
)

// clusterPKI is every file one Kubernetes cluster of the topology needs.
type clusterPKI struct {
	Dir string `json:"dir"`
	// CACert and CAKey sign the cluster's serving and client certificates,
	// so tests can make more users.
	CACert string `json:"caCert"`
	CAKey  string `json:"caKey"`
	// Serving pair of the kube-apiserver.
	ServingCert string `json:"servingCert"`
	ServingKey  string `json:"servingKey"`
	// Admin client pair (system:masters).
	AdminCert string `json:"adminCert"`
	AdminKey  string `json:"adminKey"`
	// Service account token signing pair.
	SAKey string `json:"saKey"`
	SAPub string `json:"saPub"`
	// Client pair the kube-apiserver presents to kubelets (kwok).
	KubeletClientCert string `json:"kubeletClientCert"`
	KubeletClientKey  string `json:"kubeletClientKey"`
	// Serving pair of kwok, the members' kubelet.
	KubeletServingCert string `json:"kubeletServingCert"`
	KubeletServingKey  string `json:"kubeletServingKey"`
}

// frontProxyPKI is the aggregator's client identity towards extension servers.
type frontProxyPKI struct {
	CACert     string `json:"caCert"`
	ClientCert string `json:"clientCert"`
	ClientKey  string `json:"clientKey"`
}

// switchboardPKI is switchboard's serving pair and the CA that goes into the
// APIService caBundle, and its client identity towards the hub.
type switchboardPKI struct {
	CACert string `json:"caCert"`
	// CAKey lets tests sign new serving pairs, to rotate them.
	CAKey       string `json:"caKey"`
	ServingCert string `json:"servingCert"`
	ServingKey  string `json:"servingKey"`
	HubCert     string `json:"hubCert"`
	HubKey      string `json:"hubKey"`
}

const (
	// FrontProxyClientName is the aggregator's client certificate name, the
	// one --requestheader-allowed-names lists.
	FrontProxyClientName = "front-proxy-client"
	// switchboardHubUser is the user switchboard authenticates to the hub as.
	switchboardHubUser = "switchboard-apiserver"
	// serviceIP is the first address of --service-cluster-ip-range, the
	// kubernetes Service's cluster IP.
	serviceIP = "10.96.0.1"
)

// newClusterPKI writes a CA and every pair a cluster needs into dir.
func newClusterPKI(dir, name string) (*clusterPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := testcerts.NewCA(name + "-ca")
	if err != nil {
		return nil, err
	}
	p := &clusterPKI{Dir: dir}
	if p.CACert, err = ca.WriteCA(dir, "ca"); err != nil {
		return nil, err
	}
	if p.CAKey, err = ca.WriteKey(dir, "ca"); err != nil {
		return nil, err
	}
	serving, err := ca.ServingPair(
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)})
	if err != nil {
		return nil, err
	}
	if p.ServingCert, p.ServingKey, err = serving.Write(dir, "apiserver"); err != nil {
		return nil, err
	}
	admin, err := ca.ClientPair("admin", "system:masters")
	if err != nil {
		return nil, err
	}
	if p.AdminCert, p.AdminKey, err = admin.Write(dir, "admin"); err != nil {
		return nil, err
	}
	if p.SAKey, p.SAPub, err = testcerts.WriteSigningKeyPair(dir, "service-account"); err != nil {
		return nil, err
	}
	kubeletClient, err := ca.ClientPair("kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return nil, err
	}
	if p.KubeletClientCert, p.KubeletClientKey, err = kubeletClient.Write(dir, "kubelet-client"); err != nil {
		return nil, err
	}
	kubeletServing, err := ca.ServingPair([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		return nil, err
	}
	if p.KubeletServingCert, p.KubeletServingKey, err = kubeletServing.Write(dir, "kubelet-serving"); err != nil {
		return nil, err
	}
	return p, nil
}

// ca loads the cluster CA, to sign more client certificates.
func (p *clusterPKI) ca() (*testcerts.CA, error) {
	return testcerts.LoadCA(p.CACert, p.CAKey)
}

func newFrontProxyPKI(dir string) (*frontProxyPKI, error) {
	ca, err := testcerts.NewCA("front-proxy-ca")
	if err != nil {
		return nil, err
	}
	p := &frontProxyPKI{}
	if p.CACert, err = ca.WriteCA(dir, "front-proxy-ca"); err != nil {
		return nil, err
	}
	client, err := ca.ClientPair(FrontProxyClientName)
	if err != nil {
		return nil, err
	}
	if p.ClientCert, p.ClientKey, err = client.Write(dir, "front-proxy-client"); err != nil {
		return nil, err
	}
	return p, nil
}

// newSwitchboardPKI makes switchboard's serving CA and pair, and its client
// certificate for the hub, signed by the hub CA.
func newSwitchboardPKI(dir string, hub *clusterPKI) (*switchboardPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := testcerts.NewCA("switchboard-serving-ca")
	if err != nil {
		return nil, err
	}
	p := &switchboardPKI{}
	if p.CACert, err = ca.WriteCA(dir, "ca"); err != nil {
		return nil, err
	}
	if p.CAKey, err = ca.WriteKey(dir, "ca"); err != nil {
		return nil, err
	}
	serving, err := SwitchboardServingPair(ca)
	if err != nil {
		return nil, err
	}
	if p.ServingCert, p.ServingKey, err = serving.Write(dir, "serving"); err != nil {
		return nil, err
	}
	hubCA, err := hub.ca()
	if err != nil {
		return nil, err
	}
	client, err := hubCA.ClientPair(switchboardHubUser)
	if err != nil {
		return nil, err
	}
	if p.HubCert, p.HubKey, err = client.Write(dir, "hub-client"); err != nil {
		return nil, err
	}
	return p, nil
}

// writeKubeconfig writes a kubeconfig with one context, embedding the files.
func writeKubeconfig(path, name, server, caFile, certFile, keyFile string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	config := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{name: {Server: server, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{name: {ClientCertificateData: cert, ClientKeyData: key}},
		Contexts:       map[string]*clientcmdapi.Context{name: {Cluster: name, AuthInfo: name}},
		CurrentContext: name,
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(config, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// SwitchboardServingPair signs a serving pair for switchboard with ca: for
// the Service name the hub's aggregator verifies, and for the loopback
// addresses tests call it on.
func SwitchboardServingPair(ca *testcerts.CA) (*testcerts.Pair, error) {
	return ca.ServingPair(
		[]string{SwitchboardServerName, "localhost"},
		[]net.IP{net.ParseIP("127.0.0.1")})
}

// SwitchboardServerName is the name in switchboard's serving certificate
// that the hub's aggregator verifies: the Service's DNS name.
const SwitchboardServerName = names.ServiceDNSName
