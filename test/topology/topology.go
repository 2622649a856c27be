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

// Package topology runs a hub Kubernetes cluster with member clusters and
// switchboard on loopback, from real binaries: one etcd, a kube-apiserver and
// a kube-controller-manager per cluster, kwok as the members' nodes and
// kubelets, and switchboard-apiserver registered with the hub through a real
// APIService. make local-up and the end-to-end suite both use it.
package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-io/switchboard/pkg/names"
)

const (
	// systemNamespace holds switchboard on the hub.
	systemNamespace = names.Namespace
	// serviceName is switchboard's Service on the hub.
	serviceName = names.Server
	// stateFile records what Up started, inside the run directory.
	stateFile = "state.json"
	// stopGrace is how long a process gets to exit after SIGTERM.
	stopGrace = 15 * time.Second
)

// Binaries are the programs the topology runs.
type Binaries struct {
	KubeAPIServer         string
	KubeControllerManager string
	Etcd                  string
	Kwok                  string
	// KwokStages is a directory of kwok Stage definitions.
	KwokStages  string
	Switchboard string
	// Topology is this package's command (test/cmd/topology), run as the
	// forwarder that lets isolated members reach the hub. Only
	// Config.IsolatedMembers needs it; it may be empty otherwise.
	Topology string
	// Agent is switchboard-agent, which isolated members run.
	Agent string
}

// BinariesFromEnv reads the binaries' paths from the environment that
// hack/versions.sh exports and the switchboard binary make build writes.
func BinariesFromEnv() (Binaries, error) {
	b := Binaries{
		KubeAPIServer:         os.Getenv("KUBE_APISERVER_BIN"),
		KubeControllerManager: os.Getenv("KUBE_CONTROLLER_MANAGER_BIN"),
		Etcd:                  os.Getenv("ETCD_BIN"),
		Kwok:                  os.Getenv("KWOK_BIN"),
		KwokStages:            os.Getenv("KWOK_STAGES_DIR"),
		Switchboard:           os.Getenv("SWITCHBOARD_APISERVER_BIN"),
		Topology:              os.Getenv("SWITCHBOARD_TOPOLOGY_BIN"),
		Agent:                 os.Getenv("SWITCHBOARD_AGENT_BIN"),
	}
	var errs []error
	for name, path := range map[string]string{"SWITCHBOARD_TOPOLOGY_BIN": b.Topology, "SWITCHBOARD_AGENT_BIN": b.Agent} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s=%s: %w", name, path, err))
		}
	}
	for name, path := range map[string]string{
		"KUBE_APISERVER_BIN":          b.KubeAPIServer,
		"KUBE_CONTROLLER_MANAGER_BIN": b.KubeControllerManager,
		"ETCD_BIN":                    b.Etcd,
		"KWOK_BIN":                    b.Kwok,
		"KWOK_STAGES_DIR":             b.KwokStages,
		"SWITCHBOARD_APISERVER_BIN":   b.Switchboard,
	} {
		if path == "" {
			errs = append(errs, fmt.Errorf("%s is not set", name))
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s=%s: %w", name, path, err))
		}
	}
	if len(errs) > 0 {
		return b, fmt.Errorf("the topology's binaries are missing (run it through make local-up or make test-e2e, which build them): %w", errors.Join(errs...))
	}
	return b, nil
}

// Config says what to run and where.
type Config struct {
	// RunDir holds certificates, kubeconfigs, data, logs and the state file.
	RunDir string
	// Members is the number of member clusters, named member1, member2, ...
	Members int
	// IsolatedMembers is the number of member clusters, named edge1,
	// edge2, ..., that each run in a network namespace of their own, which
	// nothing in the machine's namespace (switchboard, the hub) can reach.
	// Each is joined through a switchboard-agent that runs in its namespace.
	IsolatedMembers int
	Binaries        Binaries
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

// Cluster describes one running Kubernetes cluster of the topology.
type Cluster struct {
	Name string `json:"name"`
	// URL of its kube-apiserver.
	URL string `json:"url"`
	// Kubeconfig authenticates as a member of system:masters.
	Kubeconfig string     `json:"kubeconfig"`
	PKI        clusterPKI `json:"pki"`
	// KubeletPort is where kwok serves as the nodes' kubelet (members only).
	KubeletPort int `json:"kubeletPort,omitempty"`
	// Nodes and Pods are the kwok nodes and pods made for tests (members only).
	Nodes []string `json:"nodes,omitempty"`
	Pods  []string `json:"pods,omitempty"`
	// PodNamespace holds Pods.
	PodNamespace string `json:"podNamespace,omitempty"`
	// AuditLog records every request a member serves; the hub's records
	// AuditTrailUser's requests only.
	AuditLog string `json:"auditLog,omitempty"`

	// The fields below are set for isolated members only.

	// NetNS is the network namespace (ip netns) the cluster's processes
	// run in, all on its 127.0.0.1: URL is an address inside NetNS.
	// RESTConfig, Client and DialContext connect from inside it.
	NetNS string `json:"netns,omitempty"`
	// HostIP and NetNSIP are the addresses of the two ends of the veth
	// pair between the machine's namespace (HostVeth) and NetNS, in one /30.
	// Nothing listens on NetNSIP; processes in NetNS reach the hub's
	// forwarder on HostIP.
	HostIP   string `json:"hostIP,omitempty"`
	NetNSIP  string `json:"netnsIP,omitempty"`
	HostVeth string `json:"hostVeth,omitempty"`
	// EtcdURL is the cluster's own etcd, in NetNS. Other clusters share
	// State.EtcdURL.
	EtcdURL string `json:"etcdURL,omitempty"`
	// HubURL is where processes in NetNS reach the hub's kube-apiserver
	// (see State.HubURLFrom), and HubKubeconfig an admin kubeconfig for
	// the hub at that address.
	HubURL        string `json:"hubURL,omitempty"`
	HubKubeconfig string `json:"hubKubeconfig,omitempty"`
	// AgentKubeconfig is the hub kubeconfig of its switchboard-agent.
	AgentKubeconfig string `json:"agentKubeconfig,omitempty"`
}

// Switchboard describes the running switchboard-apiserver.
type Switchboard struct {
	URL string `json:"url"`
	// CACert is the APIService caBundle, the CA of switchboard's serving certificate.
	CACert string         `json:"caCert"`
	PKI    switchboardPKI `json:"pki"`
	// AuditLog records AuditTrailUser's requests.
	AuditLog string `json:"auditLog,omitempty"`
}

// AuditTrailUser is the hub user whose requests the hub and switchboard
// audit too (members audit every request), so that a test can follow one
// request's audit ID from the hub through switchboard to a member without
// every other request of the suite in the hub's and switchboard's logs.
const AuditTrailUser = "e2e:audit-trail"

// trailAuditPolicy is the hub's and switchboard's audit policy.
const trailAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["` + AuditTrailUser + `"]
- level: None
`

// State is everything Up started, saved in the run directory so that
// another process (make local-down, a later test run) can find and stop it.
type State struct {
	RunDir  string    `json:"runDir"`
	EtcdURL string    `json:"etcdURL"`
	Hub     Cluster   `json:"hub"`
	Members []Cluster `json:"members"`
	// Isolated are the isolated members, each in its own network namespace.
	Isolated    []Cluster      `json:"isolated,omitempty"`
	FrontProxy  frontProxyPKI  `json:"frontProxy"`
	Switchboard Switchboard    `json:"switchboard"`
	Processes   []*Process     `json:"processes"`
	Started     time.Time      `json:"started"`
	Extra       map[string]any `json:"extra,omitempty"`
}

// LogDir is where every process writes its log.
func (s *State) LogDir() string { return filepath.Join(s.RunDir, "logs") }

// Member returns the member cluster with the given name, isolated or not.
func (s *State) Member(name string) (*Cluster, error) {
	for i := range s.Members {
		if s.Members[i].Name == name {
			return &s.Members[i], nil
		}
	}
	for i := range s.Isolated {
		if s.Isolated[i].Name == name {
			return &s.Isolated[i], nil
		}
	}
	return nil, fmt.Errorf("no member cluster %q in the topology at %s", name, s.RunDir)
}

// IsolatedMember returns the isolated member cluster with the given name.
func (s *State) IsolatedMember(name string) (*Cluster, error) {
	for i := range s.Isolated {
		if s.Isolated[i].Name == name {
			return &s.Isolated[i], nil
		}
	}
	return nil, fmt.Errorf("no isolated member cluster %q in the topology at %s, which has %d (topology up --isolated-members N starts them)", name, s.RunDir, len(s.Isolated))
}

// dead returns the recorded processes that no longer run.
func (s *State) dead() []*Process {
	var dead []*Process
	for _, p := range s.Processes {
		if !p.Alive() {
			dead = append(dead, p)
		}
	}
	return dead
}

func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.RunDir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.RunDir, stateFile))
}

// Load reads the state of a topology started earlier in runDir. It returns
// an error wrapping os.ErrNotExist when none was started there.
func Load(runDir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(runDir, stateFile))
	if err != nil {
		return nil, err
	}
	s := &State{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(runDir, stateFile), err)
	}
	return s, nil
}

// Healthy says whether every recorded process runs and the hub serves
// switchboard's API.
func (s *State) Healthy(ctx context.Context) error {
	if dead := s.dead(); len(dead) > 0 {
		return fmt.Errorf("%s (pid %d) is no longer running; see %s", dead[0].Name, dead[0].PID, dead[0].Log)
	}
	return s.APIServiceAvailable(ctx)
}

// Down stops every process recorded in runDir, by pid, removes the network
// namespaces of its isolated members, and removes the run directory. It is
// safe to call when nothing runs there.
func Down(runDir string, progress io.Writer) error {
	out := progressWriter(progress)
	if abs, err := filepath.Abs(runDir); err == nil {
		runDir = abs
	}
	err := stopAndRemove(runDir, out)
	// After the processes, which keep a namespace alive while they run.
	// Also when no state is left: a run that crashed may have made some.
	return errors.Join(err, removeNetNS(runDir, out))
}

// stopAndRemove stops what runs in runDir and removes the directory.
func stopAndRemove(runDir string, out io.Writer) error {
	s, err := Load(runDir)
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Stat(runDir); statErr == nil {
			fmt.Fprintf(out, "No topology state in %s; removing the directory\n", runDir)
			if errs := stopLeftoverReplicas(runDir, out); len(errs) > 0 {
				return errors.Join(errs...)
			}
			return os.RemoveAll(runDir)
		}
		fmt.Fprintf(out, "Nothing runs in %s\n", runDir)
		return nil
	}
	if err != nil {
		return err
	}
	// Replicas that tests start next to the topology (StartReplicas) and
	// did not stop, because a run was cut short.
	errs := stopLeftoverReplicas(runDir, out)
	// Stop in reverse order of start: switchboard and kwok before the
	// control planes, etcd last.
	for i := len(s.Processes) - 1; i >= 0; i-- {
		p := s.Processes[i]
		if !p.Alive() {
			continue
		}
		fmt.Fprintf(out, "Stopping %s (pid %d)\n", p.Name, p.PID)
		if err := p.Stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintf(out, "Removing %s\n", runDir)
	return os.RemoveAll(runDir)
}

// stopLeftoverReplicas stops the replica sets recorded in runDir.
func stopLeftoverReplicas(runDir string, out io.Writer) []error {
	records, err := filepath.Glob(filepath.Join(runDir, "*", replicasRecord))
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, record := range records {
		fmt.Fprintf(out, "Stopping the replicas recorded in %s\n", record)
		if err := stopRecorded(record); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func progressWriter(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func memberName(i int) string { return "member" + strconv.Itoa(i+1) }

// Summary tells a person how to use the running topology.
func (s *State) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nHub:        %s\n            export KUBECONFIG=%s\n", s.Hub.URL, s.Hub.Kubeconfig)
	for _, m := range s.Members {
		fmt.Fprintf(&b, "%-11s %s\n            kubectl --kubeconfig %s get nodes\n", m.Name+":", m.URL, m.Kubeconfig)
	}
	for _, m := range s.Isolated {
		fmt.Fprintf(&b, "%-11s %s in network namespace %s, reached through its switchboard-agent, which reaches the hub at %s\n            ip netns exec %s kubectl --kubeconfig %s get nodes\n",
			m.Name+":", m.URL, m.NetNS, m.HubURL, m.NetNS, m.Kubeconfig)
	}
	fmt.Fprintf(&b, "Switchboard: %s, registered as APIService %s\n", s.Switchboard.URL, apiServiceName)
	fmt.Fprintf(&b, "Logs:       %s\n\nTry:\n", s.LogDir())
	fmt.Fprintf(&b, "  kubectl --kubeconfig %s get apiservice %s\n", s.Hub.Kubeconfig, apiServiceName)
	fmt.Fprintf(&b, "  kubectl --kubeconfig %s get sbc\n", s.Hub.Kubeconfig)
	fmt.Fprintf(&b, "  kubectl --kubeconfig %s explain sbc.spec\n", s.Hub.Kubeconfig)
	fmt.Fprintf(&b, "Stop everything with: make local-down\n")
	return b.String()
}

// StopProcess stops one recorded process, for tests of failures. The
// process stays in the state, so RestartProcess and Down still know it.
func (s *State) StopProcess(name string) error {
	p := s.process(name)
	if p == nil {
		return fmt.Errorf("no process %q in the topology", name)
	}
	return p.Stop(stopGrace)
}

// RestartProcess starts a stopped process again with its recorded command
// line, and records its new pid.
func (s *State) RestartProcess(name string) error {
	p := s.process(name)
	if p == nil {
		return fmt.Errorf("no process %q in the topology", name)
	}
	if p.Alive() {
		return fmt.Errorf("%s (pid %d) still runs", name, p.PID)
	}
	started, err := startProcessIn(p.NetNS, name, s.LogDir(), p.Args)
	if err != nil {
		return err
	}
	p.adopt(started)
	return s.save()
}
