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

// Command proxybench measures switchboard's proxy on the local topology and
// prints one markdown table comparing three paths to member1, measured in the
// same run: A direct to its kube-apiserver, B straight to switchboard with
// front-proxy authentication, C through the hub as users go. It measures
// small GETs under load, a large LIST (with switchboard's RSS during it), the
// connections switchboard holds to the member, and switchboard's memory per
// idle watch.
//
// Another table measures path P, switchboard alone as B, through a second
// Cluster for member1 with a three-expression identity policy, in the same
// rounds of small GETs, against B.
//
// A second table measures a member that switchboard reaches only through
// its agent's tunnel (edge1, in a network namespace of its own), in the
// same rounds of small GETs: D direct to it, E switchboard alone through the
// tunnel, against B; and the tunnel's connections, streams and memory.
//
// The last table measures the fleet endpoint: client-go's pager over
// --fleet-pods pods spread over the directly reachable members, through
// fleets/<selector>/proxy, against listing each member directly one after
// another, paged and unpaged, with switchboard's RSS during the fleet LISTs.
//
// It brings the topology up in --run-dir, or reuses one running there, and
// takes it down at the end only if it started it (and --keep is not set).
// Timed numbers are reported, never asserted; it exits non-zero when a
// request fails or a path returns wrong data. hack/bench.sh (make bench)
// builds the binaries the topology needs and runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/test/bench"
	"github.com/switchboard-io/switchboard/test/topology"
)

// options are the command's flags.
type options struct {
	runDir   string
	members  int
	isolated int
	keep     bool
	out      string
	member   string
	// tunnelMember is the isolated member of paths D and E; empty
	// measures no tunnel.
	tunnelMember string
	// policy measures path P, through a Cluster with an identity policy.
	policy bool

	getPath     string
	workers     int
	rounds      int
	round       time.Duration
	warmup      time.Duration
	serialRound time.Duration

	listNamespace string
	listCount     int
	listSize      int
	listRounds    int
	seedParallel  int

	watches        int
	watchNamespace string
	settle         time.Duration
	fleetPods      int
	fleetPageSize  int64
	fleetNamespace string
	fleetRounds    int
	// only names the measurements to run; empty runs every one.
	only string
}

func main() {
	o := options{}
	flag.StringVar(&o.runDir, "run-dir", "_output/bench", "the topology's run directory: reused when a topology runs there, else started there and stopped at the end")
	flag.IntVar(&o.members, "members", 2, "member clusters to start, when starting a topology (the fleet LIST needs 2 or more)")
	flag.BoolVar(&o.keep, "keep", false, "leave a topology this run started running, to reuse it (and its objects) next time")
	flag.StringVar(&o.out, "out", "", "also write the table to this file")
	flag.StringVar(&o.member, "member", "member1", "the member cluster to measure")
	flag.IntVar(&o.isolated, "isolated-members", 1, "isolated member clusters (edge1, ...) to start, each reached through its agent's tunnel, when starting a topology")
	flag.StringVar(&o.tunnelMember, "tunnel-member", "edge1", "the isolated member to measure through its tunnel (paths D and E); empty measures no tunnel")
	flag.BoolVar(&o.policy, "policy", true, "measure path P: switchboard alone through a second Cluster for the member, with a three-expression identity policy")
	flag.StringVar(&o.getPath, "get-path", "/api/v1/namespaces/default", "the member path of the small GETs")
	flag.IntVar(&o.workers, "workers", 16, "concurrent workers of the small-GET load")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of the small-GET loads; the paths take turns within a round")
	flag.DurationVar(&o.round, "round", 5*time.Second, "length of one path's small-GET load in one round")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load per path before the rounds")
	flag.DurationVar(&o.serialRound, "serial-round", 2*time.Second, "length of one path's one-worker GETs in one round")
	flag.StringVar(&o.listNamespace, "list-namespace", "proxybench-list", "member namespace of the large LIST's ConfigMaps")
	flag.IntVar(&o.listCount, "list-count", 550, "ConfigMaps in the large LIST")
	flag.IntVar(&o.listSize, "list-size", 100*1024, "bytes of data in each ConfigMap of the large LIST")
	flag.IntVar(&o.listRounds, "list-rounds", 3, "timed LISTs per path")
	flag.IntVar(&o.seedParallel, "seed-parallel", 8, "parallel creates when making the LIST's ConfigMaps")
	flag.IntVar(&o.watches, "watches", 1000, "idle watches to open through switchboard")
	flag.StringVar(&o.watchNamespace, "watch-namespace", "proxybench-watch", "member namespace of the idle watches")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "wait before reading switchboard's RSS after opening or closing the watches")
	flag.IntVar(&o.fleetPods, "fleet-pods", 5000, "pods of the fleet LIST, spread over the members (member1, member2, ...); 0 measures no fleet LIST")
	flag.Int64Var(&o.fleetPageSize, "fleet-page-size", 500, "page size (kubectl --chunk-size) of the fleet LIST's paged walks")
	flag.StringVar(&o.fleetNamespace, "fleet-namespace", "proxybench-fleet", "member namespace of the fleet LIST's pods")
	flag.IntVar(&o.fleetRounds, "fleet-rounds", 3, "timed walks of each kind in the fleet LIST")
	flag.StringVar(&o.only, "only", "", "run only these measurements, comma-separated: gets, list, watches, fleet (default: every one); the tables of the others stay empty")
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, o)
	cancel()
	os.Exit(code)
}

func run(ctx context.Context, o options) int {
	begin := time.Now()
	for _, name := range strings.Split(o.only, ",") {
		switch strings.TrimSpace(name) {
		case "", "gets", "list", "watches", "fleet":
		default:
			logf("error: --only=%s: %q is no measurement; name some of gets, list, watches, fleet", o.only, name)
			return 1
		}
	}
	if o.tunnelMember != "" && o.isolated < 1 {
		logf("error: --tunnel-member=%s needs an isolated member: set --isolated-members to 1 or more, or --tunnel-member= to measure no tunnel", o.tunnelMember)
		return 1
	}
	state, started, err := up(ctx, o)
	if err != nil {
		logf("error: %v", err)
		return 1
	}
	if started && !o.keep {
		defer func() {
			logf("Stopping the topology this run started in %s", o.runDir)
			if err := topology.Down(o.runDir, os.Stderr); err != nil {
				logf("error: stopping the topology: %v", err)
			}
		}()
	}

	b := &benchmark{o: o, state: state}
	defer b.cleanup()
	report, failures := b.run(ctx, begin)
	if report != nil {
		table := report.Markdown()
		fmt.Print(table)
		if o.out != "" {
			if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
				failures = append(failures, err)
			}
		}
	}
	if len(failures) > 0 {
		for _, f := range failures {
			logf("FAILED: %v", f)
		}
		return 1
	}
	return 0
}

// up brings the topology up in o.runDir, or reuses the one running there.
// A broken leftover is taken down and started again, as the end-to-end
// suite does. started says whether this run started it.
func up(ctx context.Context, o options) (*topology.State, bool, error) {
	binaries, err := topology.BinariesFromEnv()
	if err != nil {
		return nil, false, err
	}
	cfg := topology.Config{RunDir: o.runDir, Members: o.members, IsolatedMembers: o.isolated, Binaries: binaries, Progress: os.Stderr}
	state, already, err := topology.Up(ctx, cfg)
	if err != nil {
		logf("The topology in %s cannot be reused (%v); starting a new one", o.runDir, err)
		if downErr := topology.Down(o.runDir, os.Stderr); downErr != nil {
			return nil, false, errors.Join(err, downErr)
		}
		if state, already, err = topology.Up(ctx, cfg); err != nil {
			return nil, false, err
		}
	}
	if already {
		logf("Reusing the topology that runs in %s", o.runDir)
		if o.tunnelMember != "" {
			if _, err := state.IsolatedMember(o.tunnelMember); err != nil {
				// Not taken down: it may be someone's make local-up.
				return nil, false, fmt.Errorf("the running topology cannot measure a tunnel: %w; "+
					"take it down (SWITCHBOARD_RUN_DIR=%s make local-down) for this run to start one with --isolated-members, or run with --tunnel-member=", err, o.runDir)
			}
		}
	}
	return state, !already, nil
}

// benchmark is one run of the measurements.
type benchmark struct {
	o     options
	state *topology.State
	paths *bench.Paths
	// pid is switchboard's process; memberPort is where the member listens.
	pid        int
	memberPort int
	// agentPID is the tunnelled member's agent and tunnelPort where that
	// member listens (in its network namespace); zero without a tunnel.
	agentPID   int
	tunnelPort int
	report     *bench.Report
	failures   []error
	// removePolicy deletes path P's Cluster; nil when there is none.
	removePolicy func(context.Context) error
}

// fail records a failure that does not stop the run: the table is still
// printed, and the command exits non-zero.
func (b *benchmark) fail(err error) {
	logf("error: %v", err)
	b.failures = append(b.failures, err)
}

// run measures everything. A nil report means it could not measure at all.
func (b *benchmark) run(ctx context.Context, begin time.Time) (*bench.Report, []error) {
	if err := b.prepare(ctx); err != nil {
		return nil, append(b.failures, err)
	}
	// The small GETs come first, so that the connections counted during
	// them are theirs: the idle watches leave connections to the member
	// that switchboard keeps for its transport's idle timeout (90 s).
	type step struct {
		name string
		fn   func(context.Context) error
	}
	steps := []step{{"small GETs", b.measureGets}}
	if b.paths.Tunnel != nil {
		steps = []step{
			{"idle tunnel before the small GETs", b.measureTunnelBefore},
			{"small GETs", b.measureGets},
			{"idle tunnel after the small GETs", b.measureTunnelAfter},
		}
	}
	// P's Cluster goes once its GETs are done: switchboard then closes
	// its connections to the member, which the later counts would take
	// for B's.
	steps = append(steps, step{"deleting path P's Cluster", b.dropPolicy}, step{"large LIST", b.measureList}, step{"idle watches", b.measureWatches},
		step{"fleet LIST", b.measureFleet})
	for _, step := range steps {
		if !b.wanted(step.name) {
			continue
		}
		if err := step.fn(ctx); err != nil {
			b.fail(fmt.Errorf("%s: %w", step.name, err))
			if ctx.Err() != nil {
				return nil, b.failures
			}
		}
	}
	b.paths.Close()
	r := b.report
	r.LoadAfter = bench.LoadAverage()
	r.OtherAPIServers[1] = bench.CountProcesses("kube-apiserver", b.ownPIDs())
	r.Duration = time.Since(begin)
	return r, b.failures
}

// wanted says whether --only lets a step run. The steps that are no
// measurement (such as deleting path P's Cluster) always run.
func (b *benchmark) wanted(step string) bool {
	if b.o.only == "" {
		return true
	}
	measurement := map[string]string{"small GETs": "gets", "large LIST": "list", "idle watches": "watches", "fleet LIST": "fleet",
		"idle tunnel before the small GETs": "gets", "idle tunnel after the small GETs": "gets"}[step]
	if measurement == "" {
		return true
	}
	for _, name := range strings.Split(b.o.only, ",") {
		if strings.TrimSpace(name) == measurement {
			return true
		}
	}
	return false
}

// dropPolicy deletes path P's Cluster, if the run made one.
func (b *benchmark) dropPolicy(ctx context.Context) error {
	if b.removePolicy == nil {
		return nil
	}
	err := b.removePolicy(ctx)
	if err == nil {
		b.removePolicy = nil
	}
	return err
}

// cleanup deletes what the run made on the hub.
func (b *benchmark) cleanup() {
	if b.removePolicy == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.removePolicy(ctx); err != nil {
		logf("warning: deleting Cluster %s: %v", bench.PolicyCluster(b.o.member), err)
	}
}

func (b *benchmark) ownPIDs() map[int]bool {
	own := map[int]bool{}
	for _, p := range b.state.Processes {
		own[p.PID] = true
	}
	return own
}

// prepare finds switchboard's process, builds the paths, checks that each
// answers correctly and makes the objects the measurements need.
func (b *benchmark) prepare(ctx context.Context) error {
	o, s := b.o, b.state
	for _, p := range s.Processes {
		if p.Name == names.Server && p.Alive() {
			b.pid = p.PID
		}
	}
	if b.pid == 0 {
		return fmt.Errorf("switchboard-apiserver does not run in the topology at %s", s.RunDir)
	}
	m, err := s.Member(o.member)
	if err != nil {
		return err
	}
	u, err := url.Parse(m.URL)
	if err != nil {
		return err
	}
	if b.memberPort, err = strconv.Atoi(u.Port()); err != nil {
		return fmt.Errorf("member URL %s: %w", m.URL, err)
	}
	policyCluster := ""
	if o.policy {
		hub, err := s.Hub.RESTConfig()
		if err != nil {
			return err
		}
		policyCluster = bench.PolicyCluster(o.member)
		logf("Making Cluster %s: %s with an identity policy", policyCluster, o.member)
		if b.removePolicy, err = bench.EnsurePolicyCluster(ctx, hub, o.member); err != nil {
			return err
		}
	}
	if b.paths, err = bench.NewPaths(s, o.member, policyCluster, o.tunnelMember); err != nil {
		return err
	}
	if err := b.findTunnel(); err != nil {
		return err
	}
	if limit, err := bench.RaiseOpenFilesLimit(); err != nil {
		logf("warning: raising the open-files limit: %v", err)
	} else if uint64(o.watches)+256 > limit {
		logf("warning: the open-files limit is %d, low for %d watches", limit, o.watches)
	}
	b.report = &bench.Report{
		Machine:         bench.ReadMachine(),
		LoadBefore:      bench.LoadAverage(),
		OtherAPIServers: [2]int{bench.CountProcesses("kube-apiserver", b.ownPIDs())},
		Member:          o.member,
		Protocols:       map[string]string{},
		Paths:           b.paths.All(),
		GetPath:         o.getPath,
		Workers:         o.workers,
		Rounds:          o.rounds,
		RoundLength:     o.round,
		Load:            map[string]*bench.LoadResult{},
		Serial:          map[string]*bench.LoadResult{},
		LoadCPU:         map[string]bench.CPUSnapshot{},
		ConnsPeak:       map[string]int{},
		ConnsAtEnd:      map[string]int{},
		ListRounds:      map[string][]bench.ListResult{},
		ListErrors:      map[string]int{},
		Watches:         o.watches,
		DirectPath:      b.paths.Direct.Key,
		SwitchboardPath: b.paths.Switchboard.Key,
	}
	if b.paths.Tunnel != nil {
		b.report.Tunnel = &bench.TunnelReport{
			Member:     o.tunnelMember,
			Paths:      b.paths.Tunnelled(),
			DirectPath: b.paths.TunnelDirect.Key,
			TunnelPath: b.paths.Tunnel.Key,
		}
	}
	if b.paths.Policy != nil {
		b.report.Policy = &bench.PolicyReport{Cluster: policyCluster, Path: b.paths.Policy.Key}
	}
	if b.report.SwitchboardOpenFiles, err = bench.OpenFilesLimit(b.pid); err != nil {
		return err
	}
	if err := b.preflight(ctx); err != nil {
		return err
	}

	config, err := m.RESTConfig()
	if err != nil {
		return err
	}
	list := bench.LargeList{Namespace: o.listNamespace, Count: o.listCount, Size: o.listSize}
	b.report.List = list
	logf("Making %d ConfigMaps of %d KiB in %s/%s (reusing those already there)", list.Count, list.Size/1024, o.member, list.Namespace)
	start := time.Now()
	created, err := list.Ensure(ctx, config, o.seedParallel)
	if err != nil {
		return fmt.Errorf("making the LIST's ConfigMaps: %w", err)
	}
	logf("Created %d ConfigMaps in %s", created, time.Since(start).Round(time.Millisecond))
	if err := bench.EnsureNamespace(ctx, config, o.watchNamespace); err != nil {
		return fmt.Errorf("making the watches' namespace: %w", err)
	}
	return nil
}

// preflight checks that every path answers with the right data before
// anything is timed, retrying for a while: a topology that just came up
// may still be syncing switchboard's caches.
func (b *benchmark) preflight(ctx context.Context) error {
	check := bench.ContainsAll(`"kind":"Namespace"`, `"name":"default"`)
	for _, p := range b.paths.Every() {
		deadline := time.Now().Add(time.Minute)
		for {
			code, body, proto, err := p.Get(ctx, b.o.getPath)
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d: %.300s", code, body)
			}
			if err == nil {
				err = check(body)
			}
			if err == nil {
				b.report.Protocols[p.Key] = proto
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("path %s (%s) does not answer GET %s correctly: %w", p.Key, p.Name, b.o.getPath, err)
			}
			time.Sleep(time.Second)
		}
	}
	if p := b.paths.Policy; p != nil {
		if err := bench.CheckPolicyRefuses(ctx, p, b.o.getPath); err != nil {
			return err
		}
	}
	var err error
	if b.report.MemberVersion, err = gitVersion(ctx, b.paths.Direct); err != nil {
		return fmt.Errorf("the member's version: %w", err)
	}
	if b.report.SwitchboardVersion, err = gitVersion(ctx, b.switchboardRoot()); err != nil {
		return fmt.Errorf("switchboard's version: %w", err)
	}
	if t := b.report.Tunnel; t != nil {
		if t.MemberVersion, err = gitVersion(ctx, b.paths.TunnelDirect); err != nil {
			return fmt.Errorf("the version of %s: %w", t.Member, err)
		}
	}
	return nil
}

// switchboardRoot is switchboard's own API (/version, /metrics), on its
// port with the same credentials as path B.
func (b *benchmark) switchboardRoot() *bench.Path {
	own := *b.paths.Switchboard
	own.Base = b.state.Switchboard.URL
	return &own
}

func gitVersion(ctx context.Context, p *bench.Path) (string, error) {
	code, body, _, err := p.Get(ctx, "/version")
	if err != nil {
		return "", err
	}
	var v version.Info
	if err := json.Unmarshal(body, &v); err != nil || code != 200 {
		return "", fmt.Errorf("status %d: %.200s", code, body)
	}
	return v.GitVersion, nil
}

// measureFleet lists the fleet's pods through the fleet endpoint and each
// member directly (see bench.MeasureFleetList).
func (b *benchmark) measureFleet(ctx context.Context) error {
	o, s := b.o, b.state
	if o.fleetPods == 0 {
		return nil
	}
	var members []string
	configs := map[string]*rest.Config{}
	for _, m := range s.Members {
		if m.NetNS != "" {
			continue // reached through its agent only: no direct LIST
		}
		config, err := m.RESTConfig()
		if err != nil {
			return err
		}
		members, configs[m.Name] = append(members, m.Name), config
	}
	if len(members) < 2 {
		return fmt.Errorf("the fleet LIST needs 2 members that the bench can reach directly, and the topology has %d: start it with --members 2, or pass --fleet-pods 0", len(members))
	}
	hub, err := s.Hub.RESTConfig()
	if err != nil {
		return err
	}
	list := bench.FleetList{Namespace: o.fleetNamespace, Count: o.fleetPods, Members: members, PageSize: o.fleetPageSize}
	logf("Making %d pods over %s for the fleet LIST", o.fleetPods, strings.Join(members, ", "))
	created, err := list.Ensure(ctx, hub, configs, o.seedParallel)
	if err != nil {
		return err
	}
	defer func() {
		if err := list.Unlabel(context.Background(), hub); err != nil {
			logf("warning: taking the fleet label off the Clusters: %v", err)
		}
	}()
	logf("Created %d pods; timing the fleet LIST", created)
	// As the hub's aggregator calls switchboard (path B).
	alone := &rest.Config{
		Host:            s.Switchboard.URL,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.Switchboard.CACert, CertFile: s.FrontProxy.ClientCert, KeyFile: s.FrontProxy.ClientKey},
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return bench.WithHeaders(rt, map[string]string{"X-Remote-User": bench.Impersonated.User, "X-Remote-Group": bench.Impersonated.Group})
		},
	}
	res, err := bench.MeasureFleetList(ctx, list, hub, alone, configs, b.pid, o.fleetRounds)
	if err != nil {
		return err
	}
	b.report.Fleet = res
	return nil
}

// measureWatches opens idle watches through switchboard alone and reads
// its RSS before, with them open, and after closing them.
func (b *benchmark) measureWatches(ctx context.Context) error {
	o, r := b.o, b.report
	logf("Letting switchboard settle for %s", o.settle)
	sleep(ctx, o.settle)
	var err error
	if r.WatchRSSBefore, err = bench.SettledRSS(b.pid); err != nil {
		return err
	}
	if r.WatchGoBefore, err = bench.ReadGoStats(ctx, b.switchboardRoot()); err != nil {
		return err
	}
	logf("Opening %d idle watches through %s (switchboard RSS %.1f MiB)", o.watches, b.paths.Switchboard.Key, float64(r.WatchRSSBefore)/(1<<20))
	w, err := bench.OpenWatches(ctx, b.paths.Switchboard, bench.IdleWatchPath(o.watchNamespace), o.watches, 50, 2*time.Minute)
	if err != nil {
		r.WatchErrors++
		return err
	}
	r.WatchHeadersIn = w.HeadersIn
	logf("All %d watches have their response headers after %s; letting switchboard settle for %s", w.Opened, w.HeadersIn.Round(time.Millisecond), o.settle)
	sleep(ctx, o.settle)
	if r.WatchRSSOpen, err = bench.SettledRSS(b.pid); err != nil {
		w.Close()
		return err
	}
	if r.WatchConns, err = bench.EstablishedConns(b.pid, b.memberPort); err != nil {
		w.Close()
		return err
	}
	if r.WatchGoOpen, err = bench.ReadGoStats(ctx, b.switchboardRoot()); err != nil {
		w.Close()
		return err
	}
	idleErr := w.Err()
	w.Close()
	logf("Closed the watches; letting switchboard settle for %s", o.settle)
	sleep(ctx, o.settle)
	if r.WatchRSSClosed, err = bench.SettledRSS(b.pid); err != nil {
		return err
	}
	if r.WatchConnsClosed, err = bench.EstablishedConns(b.pid, b.memberPort); err != nil {
		return err
	}
	if r.WatchGoClosed, err = bench.ReadGoStats(ctx, b.switchboardRoot()); err != nil {
		return err
	}
	if idleErr != nil {
		r.WatchErrors++
		return idleErr
	}
	return nil
}

// measureGets runs the small-GET loads: a warm-up per path, then rounds in
// which the paths take turns, with workers and then with one worker.
// Switchboard's connections to the member are sampled during the loads of
// the paths through switchboard.
func (b *benchmark) measureGets(ctx context.Context) error {
	o, r := b.o, b.report
	check := bench.ContainsAll(`"kind":"Namespace"`, `"name":"default"`)
	var errs []error
	for _, p := range b.paths.Every() {
		logf("Warming up %s for %s", p.Key, o.warmup)
		if w := bench.RunLoad(ctx, p, o.getPath, o.workers, o.warmup, check); w.Errors > 0 {
			r.Load[p.Key] = &bench.LoadResult{Errors: w.Errors}
			errs = append(errs, w.FirstError)
		}
	}
	pids, err := b.cpuPIDs()
	if err != nil {
		return err
	}
	for round := range o.rounds {
		for _, p := range b.paths.Every() {
			var conns, tunnelConns *bench.ConnSampler
			var traffic map[uint64]bench.ConnTraffic
			switch p {
			case b.paths.Switchboard, b.paths.Hub:
				conns = bench.StartConnSampler(b.pid, b.memberPort, 100*time.Millisecond)
			case b.paths.Tunnel:
				tunnelConns = bench.StartConnSampler(b.pid, b.tunnelPort, 100*time.Millisecond)
				if traffic, err = bench.ReadConnTraffic(b.pid); err != nil {
					errs = append(errs, fmt.Errorf("switchboard's connections before %s's load: %w", p.Key, err))
				}
			}
			cpuBefore, err := bench.TakeCPUSnapshot(pids)
			if err != nil {
				return err
			}
			res := bench.RunLoad(ctx, p, o.getPath, o.workers, o.round, check)
			cpuAfter, err := bench.TakeCPUSnapshot(pids)
			if err != nil {
				return err
			}
			if r.LoadCPU[p.Key] == nil {
				r.LoadCPU[p.Key] = bench.CPUSnapshot{}
			}
			for name, d := range cpuAfter.Since(cpuBefore) {
				r.LoadCPU[p.Key][name] += d
			}
			if conns != nil {
				peak, last, err := conns.Stop()
				if err != nil {
					errs = append(errs, err)
				}
				r.ConnsPeak[p.Key] = max(r.ConnsPeak[p.Key], peak)
				r.ConnsAtEnd[p.Key] = last
			}
			if tunnelConns != nil {
				if err := b.afterTunnelLoad(ctx, tunnelConns, traffic, res); err != nil {
					errs = append(errs, err)
				}
			}
			add(r.Load, p.Key, res)
			logf("Round %d/%d, %s, %d workers: %.0f requests/s, p50 %s, p99 %s, %d errors",
				round+1, o.rounds, p.Key, o.workers, res.RPS(), res.Percentile(0.5), res.Percentile(0.99), res.Errors)
			if res.FirstError != nil {
				errs = append(errs, res.FirstError)
			}
		}
	}
	for round := range o.rounds {
		for _, p := range b.paths.Every() {
			res := bench.RunLoad(ctx, p, o.getPath, 1, o.serialRound, check)
			add(r.Serial, p.Key, res)
			logf("Round %d/%d, %s, 1 worker: %.0f requests/s, p50 %s, p99 %s, %d errors",
				round+1, o.rounds, p.Key, res.RPS(), res.Percentile(0.5), res.Percentile(0.99), res.Errors)
			if res.FirstError != nil {
				errs = append(errs, res.FirstError)
			}
		}
	}
	return errors.Join(errs...)
}

// cpuPIDs are the processes whose CPU time the small GETs account for,
// by the names the report shows, in order.
func (b *benchmark) cpuPIDs() (map[string]int, error) {
	pids := map[string]int{"switchboard": b.pid, "this client": 0}
	names := map[string]string{b.o.member + "-kube-apiserver": b.o.member, "hub-kube-apiserver": "hub", "etcd": "etcd"}
	for _, p := range b.state.Processes {
		if name, ok := names[p.Name]; ok {
			pids[name] = p.PID
		}
	}
	b.report.CPUOrder = []string{b.o.member, "switchboard", "hub", "etcd", "this client"}
	want := b.report.CPUOrder
	if t := b.report.Tunnel; t != nil {
		edge := t.Member
		// The names topology gives the isolated member's processes.
		tunnelNames := map[string]string{
			edge + "-kube-apiserver": edge,
			edge + "-etcd":           edge + " etcd",
			edge + "-hub-forwarder":  "hub forwarder",
			topology.AgentProcess(&topology.Cluster{Name: edge}): "agent",
		}
		for _, p := range b.state.Processes {
			if name, ok := tunnelNames[p.Name]; ok {
				pids[name] = p.PID
			}
		}
		t.CPURoles = []string{"the member", "switchboard", "agent", "hub", "hub forwarder", "the member's etcd", "this client"}
		t.CPUProcesses = map[string][]string{
			b.paths.Switchboard.Key:  {b.o.member, "switchboard", "agent", "hub", "hub forwarder", "etcd", "this client"},
			b.paths.TunnelDirect.Key: {edge, "switchboard", "agent", "hub", "hub forwarder", edge + " etcd", "this client"},
			b.paths.Tunnel.Key:       {edge, "switchboard", "agent", "hub", "hub forwarder", edge + " etcd", "this client"},
		}
		want = append(slices.Clone(want), t.CPUProcesses[t.DirectPath]...)
	}
	for _, name := range want {
		if _, ok := pids[name]; !ok {
			return nil, fmt.Errorf("no %s process in the topology", name)
		}
	}
	return pids, nil
}

func add(results map[string]*bench.LoadResult, key string, res bench.LoadResult) {
	if results[key] == nil {
		results[key] = &bench.LoadResult{}
	}
	results[key].Add(res)
}

// measureList times the large LIST on every path, in turns. The first LIST,
// direct and untimed, is decoded and checked in full; every later answer
// must have the same items, byte for byte.
func (b *benchmark) measureList(ctx context.Context) error {
	o, r := b.o, b.report
	list := r.List
	memberPath := list.MemberPath()
	buf := bytesBuffer(o.listCount*o.listSize + o.listCount*1024)

	logf("Checking the LIST's answer on %s", b.paths.Direct.Key)
	if _, err := bench.TimedList(ctx, b.paths.Direct, memberPath, buf, 0, 0); err != nil {
		return err
	}
	if err := list.Validate(buf.Bytes()); err != nil {
		return err
	}
	want, err := bench.ItemsHash(buf.Bytes())
	if err != nil {
		return err
	}

	var errs []error
	for round := range o.listRounds {
		for _, p := range b.paths.All() {
			pid := b.pid
			if p == b.paths.Direct {
				pid = 0 // switchboard is not involved
			}
			res, err := bench.TimedList(ctx, p, memberPath, buf, pid, 20*time.Millisecond)
			if err == nil {
				err = sameItems(list, buf.Bytes(), want)
			}
			if err != nil {
				r.ListErrors[p.Key]++
				errs = append(errs, fmt.Errorf("LIST on %s: %w", p.Key, err))
				continue
			}
			r.ListRounds[p.Key] = append(r.ListRounds[p.Key], res)
			logf("LIST %d/%d on %s: %.1f MB, first byte %s, total %s, %.0f MB/s, switchboard RSS %.1f → %.1f MiB, read %.1f MB, wrote %.1f MB",
				round+1, o.listRounds, p.Key, float64(res.Bytes)/1e6, res.FirstByte.Round(time.Millisecond), res.Total.Round(time.Millisecond),
				res.MBps(), float64(res.RSSBefore)/(1<<20), float64(res.RSSPeak)/(1<<20), float64(res.IO.Read)/1e6, float64(res.IO.Written)/1e6)
		}
	}
	return errors.Join(errs...)
}

// sameItems checks that a LIST answer has the expected items, and says
// what is wrong with it when not.
func sameItems(list bench.LargeList, body []byte, want [32]byte) error {
	got, err := bench.ItemsHash(body)
	if err != nil {
		return err
	}
	if got == want {
		return nil
	}
	if err := list.Validate(body); err != nil {
		return err
	}
	return errors.New("the items differ from the direct LIST's")
}

func bytesBuffer(capacity int) *bytes.Buffer { return bytes.NewBuffer(make([]byte, 0, capacity)) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// findTunnel finds the tunnelled member's agent and port, if the run
// measures a tunnel.
func (b *benchmark) findTunnel() error {
	if b.paths.Tunnel == nil {
		return nil
	}
	edge, err := b.state.IsolatedMember(b.o.tunnelMember)
	if err != nil {
		return err
	}
	for _, p := range b.state.Processes {
		if p.Name == topology.AgentProcess(edge) && p.Alive() {
			b.agentPID = p.PID
		}
	}
	if b.agentPID == 0 {
		return fmt.Errorf("the switchboard-agent of %s does not run in the topology at %s", edge.Name, b.state.RunDir)
	}
	u, err := url.Parse(edge.URL)
	if err != nil {
		return err
	}
	if b.tunnelPort, err = strconv.Atoi(u.Port()); err != nil {
		return fmt.Errorf("member URL %s: %w", edge.URL, err)
	}
	return nil
}

// afterTunnelLoad records what one of E's loads did to the tunnel: the
// most connections switchboard held to the member's port, the connections
// that carried the load (against traffic, read before it), and the
// streams open right after it.
func (b *benchmark) afterTunnelLoad(ctx context.Context, conns *bench.ConnSampler, traffic map[uint64]bench.ConnTraffic, res bench.LoadResult) error {
	t := b.report.Tunnel
	var errs []error
	peak, _, err := conns.Stop()
	if err != nil {
		errs = append(errs, err)
	}
	t.ConnsToMember = max(t.ConnsToMember, peak)
	if traffic != nil {
		carriers, err := b.carriers(traffic, res.Requests)
		if err != nil {
			errs = append(errs, fmt.Errorf("switchboard's connections after %s's load: %w", t.TunnelPath, err))
		} else {
			t.Carriers = append(t.Carriers, carriers)
			t.CarrierRequests = append(t.CarrierRequests, res.Requests)
			logf("Connections of switchboard that carried %s's load: %v, bytes %v", t.TunnelPath, carriers.Conns, carriers.Bytes)
		}
	}
	m, err := bench.ReadTunnelMetrics(ctx, b.switchboardRoot(), t.Member)
	if err != nil {
		errs = append(errs, err)
	} else {
		t.StreamsAfterLoad = max(t.StreamsAfterLoad, m.StreamsOpen)
	}
	return errors.Join(errs...)
}

// carriers are switchboard's connections that carried a load of requests,
// against their traffic before it, by the process at their other end.
func (b *benchmark) carriers(before map[uint64]bench.ConnTraffic, requests int) (bench.Carriers, error) {
	after, err := bench.ReadConnTraffic(b.pid)
	if err != nil {
		return bench.Carriers{}, err
	}
	hubPID := 0
	for _, p := range b.state.Processes {
		if p.Name == "hub-kube-apiserver" {
			hubPID = p.PID
		}
	}
	peers := map[string]map[bench.ConnPair]bool{}
	for name, pid := range map[string]int{bench.HubPeer: hubPID, bench.ClientPeer: os.Getpid()} {
		if peers[name], err = bench.EstablishedPairs(pid); err != nil {
			return bench.Carriers{}, fmt.Errorf("the connections of %s (pid %d): %w", name, pid, err)
		}
	}
	return bench.FindCarriers(before, after, uint64(requests)*bench.CarrierMinBytesPerRequest, peers), nil
}

// measureTunnelBefore reads the idle tunnel's memory and switchboard's
// tunnel metrics before the small GETs.
func (b *benchmark) measureTunnelBefore(ctx context.Context) error {
	t := b.report.Tunnel
	var err error
	if t.IdleBefore, err = b.tunnelIdle(ctx); err != nil {
		return err
	}
	t.MetricsBefore, err = bench.ReadTunnelMetrics(ctx, b.switchboardRoot(), t.Member)
	return err
}

// measureTunnelAfter reads them again after the small GETs.
func (b *benchmark) measureTunnelAfter(ctx context.Context) error {
	t := b.report.Tunnel
	var err error
	if t.IdleAfter, err = b.tunnelIdle(ctx); err != nil {
		return err
	}
	t.MetricsAfter, err = bench.ReadTunnelMetrics(ctx, b.switchboardRoot(), t.Member)
	return err
}

// tunnelIdle reads the memory of switchboard and of the agent, once they
// have settled.
func (b *benchmark) tunnelIdle(ctx context.Context) (bench.TunnelIdle, error) {
	var idle bench.TunnelIdle
	logf("Letting switchboard and the agent settle for %s", b.o.settle)
	sleep(ctx, b.o.settle)
	var err error
	if idle.SwitchboardRSS, err = bench.SettledRSS(b.pid); err != nil {
		return idle, err
	}
	if idle.Switchboard, err = bench.ReadGoStats(ctx, b.switchboardRoot()); err != nil {
		return idle, err
	}
	if idle.AgentRSS, err = bench.SettledRSS(b.agentPID); err != nil {
		return idle, fmt.Errorf("the agent's RSS: %w", err)
	}
	logf("Idle tunnel: switchboard RSS %.1f MiB, heap in use %.1f MiB, %.0f goroutines; agent RSS %.1f MiB",
		float64(idle.SwitchboardRSS)/(1<<20), idle.Switchboard.HeapInuse/(1<<20), idle.Switchboard.Goroutines, float64(idle.AgentRSS)/(1<<20))
	return idle, nil
}
