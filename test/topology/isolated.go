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
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Isolated members are member clusters that switchboard cannot dial, as
// behind a firewall that lets connections out only. Each runs its own
// etcd, kube-apiserver, kube-controller-manager and kwok in a network
// namespace of its own, all on the namespace's 127.0.0.1. The one way out
// is the veth pair to the machine's namespace, where a forwarder on the
// machine's end passes connections on to the hub's kube-apiserver.

const (
	// hubServerName is a name in the hub's serving certificate (see
	// newClusterPKI), to verify it against when the hub is reached at an
	// address the certificate does not name.
	hubServerName = "localhost"
	// isolationDialTimeout bounds each dial of CheckIsolated. A dial that
	// takes longer did not connect, which is what it checks.
	isolationDialTimeout = 3 * time.Second
)

func isolatedName(i int) string { return "edge" + strconv.Itoa(i+1) }

func hubForwarderName(c *Cluster) string { return c.Name + "-hub-forwarder" }

// isolate makes each isolated member's network namespace and veth pair,
// starts its etcd in it, and decides where its hub forwarder listens.
func (u *upper) isolate(ctx context.Context, next func() int) error {
	s := u.state
	for i, c := range isolatedPointers(s) {
		subnet, err := freeVethSubnet(s.RunDir, i)
		if err != nil {
			return fmt.Errorf("isolating %s: %w", c.Name, err)
		}
		hostVeth, nsVeth := vethNames(s.RunDir, i)
		link := netnsLink{netns: netnsName(s.RunDir, c.Name), hostVeth: hostVeth, nsVeth: nsVeth, subnet: subnet}
		hostIP, nsIP := vethAddrs(subnet)
		c.NetNS, c.HostVeth, c.HostIP, c.NetNSIP = link.netns, link.hostVeth, hostIP.String(), nsIP.String()
		// Down deletes namespaces by their names' prefix; recorded too,
		// for a person reading the state file.
		if err := s.save(); err != nil {
			return err
		}
		if err := createNetNS(link); err != nil {
			return fmt.Errorf("isolating %s: %w", c.Name, err)
		}
		u.step("%s: network namespace %s, veth %s %s to %s", c.Name, c.NetNS, c.HostVeth, c.HostIP, c.NetNSIP)

		client, peer := next(), next()
		c.EtcdURL = etcdURL(client)
		if err := u.startEtcdIn(ctx, c.NetNS, c.Name+"-etcd", filepath.Join(s.RunDir, "etcd-"+c.Name), client, peer); err != nil {
			return err
		}

		c.HubURL = "https://" + hostPort(c.HostIP, next())
		c.HubKubeconfig = filepath.Join(s.RunDir, "kubeconfig", "hub-from-"+c.Name+".kubeconfig")
		if err := writeKubeconfigAt(s.Hub.Kubeconfig, c.HubKubeconfig, c.HubURL, hubServerName); err != nil {
			return err
		}
	}
	return s.save()
}

// startHubForwarder starts the forwarder from the machine's end of c's veth
// pair to the hub, and waits until the hub answers through it from inside
// c's namespace.
func (u *upper) startHubForwarder(ctx context.Context, c *Cluster) error {
	listen, err := url.Parse(c.HubURL)
	if err != nil {
		return err
	}
	hub, err := url.Parse(u.state.Hub.URL)
	if err != nil {
		return err
	}
	p, err := u.start(hubForwarderName(c), []string{u.cfg.Binaries.Topology, "forward", "--listen=" + listen.Host, "--to=" + hub.Host})
	if err != nil {
		return err
	}
	config, err := clientcmd.BuildConfigFromFlags("", c.HubKubeconfig)
	if err != nil {
		return err
	}
	config.Dial = NetNSDialer(c.NetNS)
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	return waitFor(ctx, p, hubForwarderName(c), func(ctx context.Context) error {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// writeKubeconfigAt copies the kubeconfig from to to, with every cluster's
// server set to server and verified against tlsServerName.
func writeKubeconfigAt(from, to, server, tlsServerName string) error {
	config, err := clientcmd.LoadFromFile(from)
	if err != nil {
		return err
	}
	for _, cluster := range config.Clusters {
		cluster.Server = server
		cluster.TLSServerName = tlsServerName
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(*config, to); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", to, err)
	}
	return os.Chmod(to, 0o600)
}

// DialContext opens a connection to address as the topology's own code
// reaches the cluster: from inside its network namespace for an isolated
// member, from the machine's namespace for any other cluster.
func (c *Cluster) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if c.NetNS != "" {
		return NetNSDialer(c.NetNS)(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// HubURLFrom returns where a process running next to cluster c reaches the
// hub's kube-apiserver, and the name to verify the hub's serving
// certificate against. For an isolated member, that is the hub forwarder
// on the machine's end of its veth pair, an address the certificate does
// not name; for another cluster, the hub's own URL.
func (s *State) HubURLFrom(c *Cluster) (hubURL, tlsServerName string) {
	if c.NetNS != "" {
		return c.HubURL, hubServerName
	}
	return s.Hub.URL, hubServerName
}

// CheckIsolated proves that nothing in the machine's network namespace,
// where switchboard runs, can connect to the isolated member c's
// kube-apiserver: neither at the address it serves on inside its
// namespace (127.0.0.1:port) nor at the namespace's end of the veth pair
// at that port. It returns nil only when both dials fail while the same
// address accepts connections from inside the namespace (else the API
// server is not running, and the check would prove nothing). Otherwise
// the error names what connected.
func (s *State) CheckIsolated(ctx context.Context, c *Cluster) error {
	if c.NetNS == "" || c.NetNSIP == "" {
		return fmt.Errorf("%s is not an isolated member of the topology at %s: it has no network namespace", c.Name, s.RunDir)
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Port() == "" {
		return fmt.Errorf("%s: no port in its URL %q", c.Name, c.URL)
	}
	inside := u.Host
	conn, err := c.DialContext(ctx, "tcp", inside)
	if err != nil {
		return fmt.Errorf("the kube-apiserver of %s does not accept connections at %s inside its network namespace %s either, so its isolation proves nothing: %w", c.Name, inside, c.NetNS, err)
	}
	_ = conn.Close()

	var reached []string
	for _, address := range []string{inside, net.JoinHostPort(c.NetNSIP, u.Port())} {
		d := net.Dialer{Timeout: isolationDialTimeout}
		conn, err := d.DialContext(ctx, "tcp", address)
		if err == nil {
			_ = conn.Close()
			reached = append(reached, address)
			continue
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("checking that %s is isolated: %w", c.Name, ctxErr)
		}
	}
	if len(reached) > 0 {
		return fmt.Errorf("%s is not isolated: from the machine's network namespace, a connection to %s succeeded", c.Name, strings.Join(reached, " and "))
	}
	return nil
}
