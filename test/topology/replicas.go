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
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
)

// replicasRecord, in a replica set's directory, lists its processes, so
// that the next StartReplicas or Down stops those a cut-short run left.
const replicasRecord = "processes.json"

// ReplicasConfig says how to run extra switchboard-apiserver replicas next
// to the topology's own: an HA installation on the topology's etcd.
type ReplicasConfig struct {
	// Name names the processes (<Name>-1, <Name>-2, ...), their logs, and
	// the directory of their files in the run directory.
	Name string
	// Addresses are the loopback addresses the replicas listen on, one
	// replica each, all on one port. Linux routes all of 127.0.0.0/8 to lo.
	Addresses []string
	// EtcdPrefix is where the replicas keep Clusters in the topology's
	// etcd, apart from every cluster's own prefix.
	EtcdPrefix string
	// EtcdURL, when set, is an etcd of the replicas' own instead of the
	// topology's.
	EtcdURL string
	// LeaseName is the hub Lease (in switchboard-system) the replicas elect
	// their status writer with; it must differ from the topology's own
	// switchboard's (switchboard-cluster-status).
	LeaseName string
	// AuditPolicy, when set, turns on each replica's audit log with this
	// policy (YAML).
	AuditPolicy string
	// ExtraArgs go on every replica's command line.
	ExtraArgs []string
}

// Replica is one switchboard-apiserver of a Replicas set.
type Replica struct {
	Name string
	// Address is the loopback address it listens on; Backend is
	// Address:port, URL https://Address:port.
	Address string
	Backend string
	URL     string
	Process *Process
	// AuditLog is its audit log, when ReplicasConfig.AuditPolicy is set.
	AuditLog string
}

// Replicas are switchboard-apiservers that share the topology's etcd and
// the topology's serving pair, as several pods of one Deployment would.
// They are not part of the topology's state: Down does not know them, and
// Stop must be called. A record in the run directory lets the next
// StartReplicas stop those a crashed test left behind.
type Replicas struct {
	Port     int
	Replicas []*Replica
	record   string
}

// StartReplicas starts one switchboard-apiserver per address on the
// topology's etcd and waits until each is ready. The replicas use the
// serving pair of the topology's switchboard (it names the Service that the
// hub's aggregator verifies) and switchboard's identity on the hub, with the
// same flags as the topology's switchboard but --etcd-servers instead of
// --data-dir.
func (s *State) StartReplicas(ctx context.Context, cfg ReplicasConfig) (*Replicas, error) {
	if cfg.Name == "" || cfg.EtcdPrefix == "" || cfg.LeaseName == "" || len(cfg.Addresses) == 0 {
		return nil, errors.New("replicas need a name, addresses, an etcd prefix and a lease name")
	}
	own := s.process(switchboardProcess)
	if own == nil {
		return nil, errors.New("the topology records no switchboard-apiserver to take the binary from")
	}
	dir := filepath.Join(s.RunDir, cfg.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	rs := &Replicas{record: filepath.Join(dir, replicasRecord)}
	if err := stopRecorded(rs.record); err != nil {
		return nil, err
	}

	port, err := sharedFreePort(cfg.Addresses)
	if err != nil {
		return nil, err
	}
	rs.Port = port
	hubKubeconfig := filepath.Join(dir, "hub.kubeconfig")
	if err := writeKubeconfig(hubKubeconfig, "hub", s.Hub.URL, s.Hub.PKI.CACert, s.Switchboard.PKI.HubCert, s.Switchboard.PKI.HubKey); err != nil {
		return nil, err
	}
	var auditPolicyFile string
	if cfg.AuditPolicy != "" {
		auditPolicyFile = filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(auditPolicyFile, []byte(cfg.AuditPolicy), 0o600); err != nil {
			return nil, err
		}
	}

	etcd := s.EtcdURL
	if cfg.EtcdURL != "" {
		etcd = cfg.EtcdURL
	}
	for i, addr := range cfg.Addresses {
		r := &Replica{
			Name:    cfg.Name + "-" + strconv.Itoa(i+1),
			Address: addr,
			Backend: hostPort(addr, port),
		}
		r.URL = "https://" + r.Backend
		args := []string{
			own.Args[0],
			"--bind-address=" + addr,
			"--secure-port=" + strconv.Itoa(port),
			"--tls-cert-file=" + s.Switchboard.PKI.ServingCert,
			"--tls-private-key-file=" + s.Switchboard.PKI.ServingKey,
			"--etcd-servers=" + etcd,
			"--etcd-prefix=" + cfg.EtcdPrefix,
			"--kubeconfig=" + hubKubeconfig,
			"--authentication-kubeconfig=" + hubKubeconfig,
			"--authorization-kubeconfig=" + hubKubeconfig,
			"--profiling=false",
			"--request-timeout=" + SwitchboardRequestTimeout.String(),
			"--cluster-probe-interval=" + ProbeInterval.String(),
			"--leader-elect-resource-name=" + cfg.LeaseName,
		}
		if auditPolicyFile != "" {
			r.AuditLog = filepath.Join(s.LogDir(), r.Name+"-audit.log")
			args = append(args,
				"--audit-policy-file="+auditPolicyFile,
				"--audit-log-path="+r.AuditLog,
				"--audit-log-mode=blocking",
			)
		}
		args = append(args, cfg.ExtraArgs...)
		// A fresh log per run: tests read it.
		for _, old := range []string{filepath.Join(s.LogDir(), r.Name+".log"), r.AuditLog} {
			if old != "" {
				if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, err
				}
			}
		}
		// Logs in UTC, so that tests can compare their times with others.
		p, err := startProcess(r.Name, s.LogDir(), args, "TZ=UTC")
		if err != nil {
			_ = rs.Stop()
			return nil, err
		}
		r.Process = p
		rs.Replicas = append(rs.Replicas, r)
		if err := rs.save(); err != nil {
			_ = rs.Stop()
			return nil, err
		}
	}

	client, err := s.FrontProxyClient()
	if err != nil {
		_ = rs.Stop()
		return nil, err
	}
	for _, r := range rs.Replicas {
		err := waitFor(ctx, r.Process, r.Name, func(ctx context.Context) error {
			code, body, err := FrontProxyGet(ctx, client, r.URL+"/readyz")
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("/readyz answered %d: %s", code, body)
			}
			// Ready is not yet taking the aggregator's word: once, in
			// CI, a replica that had just passed /readyz answered the
			// aggregator's client certificate as system:anonymous.
			code, body, err = FrontProxyGet(ctx, client, r.URL+"/apis/cluster.switchboard.io/v1alpha1")
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("discovery as the hub's aggregator answered %d: %s", code, body)
			}
			return nil
		})
		if err != nil {
			_ = rs.Stop()
			return nil, err
		}
	}
	return rs, nil
}

// Backends are the replicas' host:port, for a load balancer.
func (rs *Replicas) Backends() []string {
	out := make([]string, 0, len(rs.Replicas))
	for _, r := range rs.Replicas {
		out = append(out, r.Backend)
	}
	return out
}

// ByBackend returns the replica that listens on backend (host:port).
func (rs *Replicas) ByBackend(backend string) *Replica {
	for _, r := range rs.Replicas {
		if r.Backend == backend {
			return r
		}
	}
	return nil
}

// Stop stops every replica that still runs (SIGTERM, then SIGKILL after the
// grace period) and forgets the record.
func (rs *Replicas) Stop() error {
	var errs []error
	for _, r := range rs.Replicas {
		if err := r.Process.Stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(rs.record); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Kill ends the replica with SIGKILL, as a node failure or the OOM killer
// would: no graceful shutdown, no Lease released. It returns once the
// process is gone.
func (r *Replica) Kill() error {
	if !r.Process.Alive() {
		return fmt.Errorf("%s (pid %d) does not run", r.Name, r.Process.PID)
	}
	return r.Process.Kill()
}

// Alive says whether the replica still runs.
func (r *Replica) Alive() bool { return r.Process.Alive() }

func (rs *Replicas) save() error {
	processes := make([]*Process, 0, len(rs.Replicas))
	for _, r := range rs.Replicas {
		processes = append(processes, r.Process)
	}
	data, err := json.MarshalIndent(processes, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(rs.record, data, 0o600)
}

// stopRecorded stops replicas that an earlier run recorded and left running
// (a test that crashed before its cleanup). Process.Alive compares the
// command line, so a recycled pid is left alone.
func stopRecorded(record string) error {
	data, err := os.ReadFile(record)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var processes []*Process
	if err := json.Unmarshal(data, &processes); err != nil {
		return fmt.Errorf("reading %s: %w", record, err)
	}
	var errs []error
	for _, p := range processes {
		if err := p.Stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return os.Remove(record)
}

// sharedFreePort returns a port that was free a moment ago on every address.
func sharedFreePort(addrs []string) (int, error) {
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		first, err := net.Listen("tcp", hostPort(addrs[0], 0))
		if err != nil {
			return 0, fmt.Errorf("listening on %s: %w", addrs[0], err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		listeners := []net.Listener{first}
		last = nil
		for _, a := range addrs[1:] {
			l, err := net.Listen("tcp", hostPort(a, port))
			if err != nil {
				last = err
				break
			}
			listeners = append(listeners, l)
		}
		for _, l := range listeners {
			_ = l.Close()
		}
		if last == nil {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free on every one of %v: %w", addrs, last)
}

// FrontProxyClient is an HTTP client that calls switchboard, any replica,
// as the hub's aggregator does: with the front-proxy client certificate,
// verifying the serving certificate against the Service name. Requests need
// the X-Remote-User and X-Remote-Group headers (FrontProxyGet sets them).
func (s *State) FrontProxyClient() (*http.Client, error) {
	ca, err := os.ReadFile(s.Switchboard.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", s.Switchboard.CACert)
	}
	pair, err := tls.LoadX509KeyPair(s.FrontProxy.ClientCert, s.FrontProxy.ClientKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				RootCAs:      pool,
				Certificates: []tls.Certificate{pair},
				ServerName:   SwitchboardServerName,
				MinVersion:   tls.VersionTLS12,
			},
			ForceAttemptHTTP2: true,
		},
		Timeout: 30 * time.Second,
	}, nil
}

// FrontProxyGet makes a GET with client (from FrontProxyClient) as the
// hub's administrator (admin in system:masters).
func FrontProxyGet(ctx context.Context, client *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Remote-User", "admin")
	req.Header.Set("X-Remote-Group", "system:masters")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// PointAPIServiceAt sends the hub's requests for switchboard's API to port
// on localhost: it sets the port of the Service switchboard-system/
// switchboard-apiserver (an ExternalName to localhost) and spec.service.port
// of the APIService, then waits until the APIService is Available and a
// discovery request through the hub succeeds.
func (s *State) PointAPIServiceAt(ctx context.Context, port int) error {
	client, err := s.Hub.Client()
	if err != nil {
		return err
	}
	agg, err := hubAggregator(s)
	if err != nil {
		return err
	}
	p := int32(port)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := client.CoreV1().Services(systemNamespace).Get(ctx, serviceName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(svc.Spec.Ports) != 1 {
			return fmt.Errorf("the Service %s/%s has %d ports, not 1", systemNamespace, serviceName, len(svc.Spec.Ports))
		}
		svc.Spec.Ports[0].Port = p
		svc.Spec.Ports[0].TargetPort = intstr.FromInt32(p)
		_, err = client.CoreV1().Services(systemNamespace).Update(ctx, svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("pointing the Service %s/%s at port %d: %w", systemNamespace, serviceName, port, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := agg.ApiregistrationV1().APIServices().Get(ctx, apiServiceName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if svc.Spec.Service == nil {
			return apierrors.NewBadRequest("the APIService " + apiServiceName + " names no Service")
		}
		svc.Spec.Service.Port = ptr(p)
		_, err = agg.ApiregistrationV1().APIServices().Update(ctx, svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("pointing the APIService %s at port %d: %w", apiServiceName, port, err)
	}
	return waitFor(ctx, nil, "the APIService "+apiServiceName+" on port "+strconv.Itoa(port), func(ctx context.Context) error {
		if err := s.APIServiceAvailable(ctx); err != nil {
			return err
		}
		_, err := client.Discovery().RESTClient().Get().AbsPath("/apis/cluster.switchboard.io/v1alpha1").DoRaw(ctx)
		return err
	})
}

// RestoreAPIService points the hub back at the topology's own switchboard
// and waits until the APIService is Available.
func (s *State) RestoreAPIService(ctx context.Context) error {
	port, err := strconv.Atoi(s.Switchboard.port())
	if err != nil {
		return fmt.Errorf("the port of %s: %w", s.Switchboard.URL, err)
	}
	return s.PointAPIServiceAt(ctx, port)
}
