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
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// readyTimeout bounds the wait for any one component to become ready.
const readyTimeout = 3 * time.Minute

// Up starts the topology in cfg.RunDir, or finds it already running there.
// already is true when it was running and nothing was started.
func Up(ctx context.Context, cfg Config) (state *State, already bool, err error) {
	out := progressWriter(cfg.Progress)
	if cfg.Members < 1 {
		return nil, false, fmt.Errorf("the topology needs at least one member cluster, not %d", cfg.Members)
	}
	if cfg.IsolatedMembers < 0 || cfg.IsolatedMembers > maxIsolatedMembers {
		return nil, false, fmt.Errorf("the topology runs 0 to %d isolated member clusters, not %d", maxIsolatedMembers, cfg.IsolatedMembers)
	}
	if cfg.IsolatedMembers > 0 && cfg.Binaries.Agent == "" {
		return nil, false, errors.New("isolated member clusters run switchboard-agent: set Binaries.Agent (SWITCHBOARD_AGENT_BIN)")
	}
	if cfg.IsolatedMembers > 0 && cfg.Binaries.Topology == "" {
		return nil, false, errors.New("isolated member clusters need the topology command as their hub forwarder: set Binaries.Topology (SWITCHBOARD_TOPOLOGY_BIN)")
	}
	runDir, err := filepath.Abs(cfg.RunDir)
	if err != nil {
		return nil, false, err
	}

	if existing, err := Load(runDir); err == nil {
		switch dead := existing.dead(); {
		case len(dead) == 0:
			if err := existing.Healthy(ctx); err != nil {
				return nil, false, fmt.Errorf("a topology runs in %s but is not healthy (%w); run make local-down and try again", runDir, err)
			}
			return existing, true, nil
		case len(dead) < len(existing.Processes):
			return nil, false, fmt.Errorf("a topology in %s is partly down: %s (pid %d) has exited, see %s; run make local-down and try again",
				runDir, dead[0].Name, dead[0].PID, dead[0].Log)
		default:
			fmt.Fprintf(out, "Removing the stale topology in %s: none of its processes runs\n", runDir)
			if err := os.RemoveAll(runDir); err != nil {
				return nil, false, err
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	// Network namespaces that a run in the same directory left behind.
	if err := removeNetNS(runDir, out); err != nil {
		return nil, false, err
	}

	u := &upper{cfg: cfg, out: out, state: &State{RunDir: runDir, Started: time.Now()}}
	if err := u.run(ctx); err != nil {
		// Stop what was started; keep the logs and certificates for a look.
		for i := len(u.state.Processes) - 1; i >= 0; i-- {
			_ = u.state.Processes[i].Stop(stopGrace)
		}
		if netnsErr := removeNetNS(runDir, out); netnsErr != nil {
			err = errors.Join(err, netnsErr)
		}
		return nil, false, fmt.Errorf("%w\n(logs are in %s)", err, u.state.LogDir())
	}
	return u.state, false, nil
}

// upper carries one run of Up.
type upper struct {
	cfg   Config
	out   io.Writer
	state *State
	mu    sync.Mutex // guards state.Processes
}

func (u *upper) step(format string, args ...any) {
	fmt.Fprintf(u.out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// start starts a process and records it in the state file at once, so that
// Down can stop it whatever happens next.
func (u *upper) start(name string, args []string, env ...string) (*Process, error) {
	return u.startIn("", name, args, env...)
}

// startIn is start inside the network namespace netns, or in the
// machine's own when netns is empty.
func (u *upper) startIn(netns, name string, args []string, env ...string) (*Process, error) {
	p, err := startProcessIn(netns, name, u.state.LogDir(), args, env...)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.state.Processes = append(u.state.Processes, p)
	return p, u.state.save()
}

func (u *upper) run(ctx context.Context) error {
	s := u.state
	for _, dir := range []string{s.RunDir, s.LogDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	// Ports: etcd client and peer, one kube-apiserver per cluster, one kwok
	// per member, switchboard, and for each isolated member its etcd's
	// client and peer, its kube-apiserver, its kwok and its hub forwarder.
	// The isolated members' ports are free in the machine's namespace
	// too, so that a dial there cannot meet a listener by chance.
	ports, err := freePorts(2 + (1 + u.cfg.Members) + u.cfg.Members + 1 + 5*u.cfg.IsolatedMembers)
	if err != nil {
		return err
	}
	next := func() int { p := ports[0]; ports = ports[1:]; return p }

	u.step("Generating certificates in %s", filepath.Join(s.RunDir, "pki"))
	if err := u.makePKI(next); err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}

	u.step("Starting etcd")
	if err := u.startEtcd(ctx, next(), next()); err != nil {
		return err
	}
	if len(s.Isolated) > 0 {
		u.step("Making a network namespace for each of %d isolated members, with its own etcd", len(s.Isolated))
		if err := u.isolate(ctx, next); err != nil {
			return err
		}
	}

	u.step("Starting the kube-apiservers of hub, %d members and %d isolated members", u.cfg.Members, len(s.Isolated))
	clusters := append(append([]*Cluster{&s.Hub}, memberPointers(s)...), isolatedPointers(s)...)
	// Every member, isolated or not, gets kwok nodes and pods.
	allMembers := append(memberPointers(s), isolatedPointers(s)...)
	for _, c := range clusters {
		if err := u.startAPIServer(c); err != nil {
			return err
		}
	}
	if err := eachCluster(ctx, clusters, func(ctx context.Context, c *Cluster) error {
		return u.waitAPIServer(ctx, c)
	}); err != nil {
		return err
	}
	if err := s.save(); err != nil {
		return err
	}

	u.step("Starting kube-controller-managers, kwok and switchboard-apiserver")
	for _, c := range clusters {
		if err := u.startControllerManager(c); err != nil {
			return err
		}
	}
	for _, m := range allMembers {
		if err := u.startKwok(m); err != nil {
			return err
		}
	}
	if err := u.startSwitchboard(next()); err != nil {
		return err
	}

	u.step("Registering switchboard with the hub and waiting for the APIService to be Available")
	if err := u.registerSwitchboard(ctx); err != nil {
		return err
	}

	u.step("Waiting for service accounts, nodes and pods in every cluster")
	if err := eachCluster(ctx, clusters, func(ctx context.Context, c *Cluster) error {
		return u.waitControllerManager(ctx, c)
	}); err != nil {
		return err
	}
	if err := eachCluster(ctx, allMembers, func(ctx context.Context, c *Cluster) error {
		return u.populateMember(ctx, c)
	}); err != nil {
		return err
	}

	u.step("Joining the members: an impersonate-only identity in each, a Cluster and its credentials on the hub")
	if err := eachCluster(ctx, memberPointers(s), func(ctx context.Context, c *Cluster) error {
		return u.joinMember(ctx, c)
	}); err != nil {
		return err
	}
	if len(s.Isolated) > 0 {
		u.step("Forwarding the hub into the isolated members' namespaces")
		if err := eachCluster(ctx, isolatedPointers(s), func(ctx context.Context, c *Cluster) error {
			return u.startHubForwarder(ctx, c)
		}); err != nil {
			return err
		}
		u.step("Joining the isolated members through tunnels: an agent in each namespace, its hub identity, a Cluster")
		if err := eachCluster(ctx, isolatedPointers(s), func(ctx context.Context, c *Cluster) error {
			return u.joinIsolated(ctx, c)
		}); err != nil {
			return err
		}
	}
	if err := s.save(); err != nil {
		return err
	}
	u.step("Topology is up")
	return nil
}

func (u *upper) makePKI(next func() int) error {
	s := u.state
	pkiDir := filepath.Join(s.RunDir, "pki")
	hubPKI, err := newClusterPKI(filepath.Join(pkiDir, "hub"), "hub")
	if err != nil {
		return err
	}
	s.Hub = Cluster{Name: "hub", PKI: *hubPKI}
	fp, err := newFrontProxyPKI(filepath.Join(pkiDir, "hub"))
	if err != nil {
		return err
	}
	s.FrontProxy = *fp
	for i := 0; i < u.cfg.Members; i++ {
		name := memberName(i)
		p, err := newClusterPKI(filepath.Join(pkiDir, name), name)
		if err != nil {
			return err
		}
		s.Members = append(s.Members, Cluster{Name: name, PKI: *p})
	}
	for i := 0; i < u.cfg.IsolatedMembers; i++ {
		name := isolatedName(i)
		p, err := newClusterPKI(filepath.Join(pkiDir, name), name)
		if err != nil {
			return err
		}
		s.Isolated = append(s.Isolated, Cluster{Name: name, PKI: *p})
	}
	sb, err := newSwitchboardPKI(filepath.Join(pkiDir, "switchboard"), hubPKI)
	if err != nil {
		return err
	}
	s.Switchboard = Switchboard{CACert: sb.CACert, PKI: *sb}

	// Ports and kubeconfigs. An isolated member's kubeconfig names its
	// address inside its namespace.
	for _, c := range append(append([]*Cluster{&s.Hub}, memberPointers(s)...), isolatedPointers(s)...) {
		c.URL = "https://127.0.0.1:" + strconv.Itoa(next())
		c.Kubeconfig = filepath.Join(s.RunDir, "kubeconfig", c.Name+".kubeconfig")
		if err := writeKubeconfig(c.Kubeconfig, c.Name, c.URL, c.PKI.CACert, c.PKI.AdminCert, c.PKI.AdminKey); err != nil {
			return err
		}
	}
	for _, m := range append(memberPointers(s), isolatedPointers(s)...) {
		m.KubeletPort = next()
	}
	return nil
}

func (u *upper) startEtcd(ctx context.Context, clientPort, peerPort int) error {
	u.state.EtcdURL = etcdURL(clientPort)
	return u.startEtcdIn(ctx, "", "etcd", filepath.Join(u.state.RunDir, "etcd"), clientPort, peerPort)
}

func etcdURL(clientPort int) string { return "http://127.0.0.1:" + strconv.Itoa(clientPort) }

// startEtcdIn starts an etcd named name in the network namespace netns
// (empty: the machine's), at etcdURL(clientPort), and waits until it is
// healthy.
func (u *upper) startEtcdIn(ctx context.Context, netns, name, dataDir string, clientPort, peerPort int) error {
	client := etcdURL(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	p, err := u.startIn(netns, name, []string{
		u.cfg.Binaries.Etcd,
		"--name=local",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=local=" + peer,
		// Throwaway data on a shared machine: skip fsync for speed.
		"--unsafe-no-fsync",
		"--log-level=warn",
	})
	if err != nil {
		return err
	}
	httpClient := http.DefaultClient
	if netns != "" {
		httpClient = &http.Client{Transport: &http.Transport{DialContext: NetNSDialer(netns)}}
		defer httpClient.CloseIdleConnections()
	}
	return waitFor(ctx, p, name, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health answered %d", resp.StatusCode)
		}
		return nil
	})
}

// waitFor polls check until it passes, the process exits, or readyTimeout passes.
func waitFor(ctx context.Context, p *Process, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		if p != nil && !p.Alive() {
			how := "exited"
			if status := p.exitStatus(); status != "" {
				how += " (" + status + ")"
			}
			return fmt.Errorf("%s %s while starting; the end of %s:\n%s", p.Name, how, p.Log, p.tail(20))
		}
		checkCtx, checkCancel := context.WithTimeout(ctx, 10*time.Second)
		last = check(checkCtx)
		checkCancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("%s was not ready within %s: %v", what, readyTimeout, last)
			if p != nil {
				msg += fmt.Sprintf("; the end of %s:\n%s", p.Log, p.tail(20))
			}
			return errors.New(msg)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// eachCluster runs fn for every cluster at once and returns the first error.
func eachCluster(ctx context.Context, clusters []*Cluster, fn func(context.Context, *Cluster) error) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, c := range clusters {
		g.Go(func() error { return fn(ctx, c) })
	}
	return g.Wait()
}

func memberPointers(s *State) []*Cluster {
	out := make([]*Cluster, 0, len(s.Members))
	for i := range s.Members {
		out = append(out, &s.Members[i])
	}
	return out
}

func isolatedPointers(s *State) []*Cluster {
	out := make([]*Cluster, 0, len(s.Isolated))
	for i := range s.Isolated {
		out = append(out, &s.Isolated[i])
	}
	return out
}
