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

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"

	"github.com/switchboard-io/switchboard/pkg/fleet"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
)

// FleetLabel marks the Clusters of the fleet LIST, and its pods.
const FleetLabel = "proxybench.switchboard.io/fleet"

// FleetList is the fleet LIST: Count pods, spread evenly over Members, in
// Namespace of each. The pods name no node, so they stay Pending and cost
// the members nothing but storage.
type FleetList struct {
	Namespace string
	Count     int
	Members   []string
	// PageSize is kubectl's --chunk-size for the paged walks.
	PageSize int64
}

func (l FleetList) perMember(i int) int {
	n := l.Count / len(l.Members)
	if i < l.Count%len(l.Members) {
		n++
	}
	return n
}

// Ensure creates the pods each member lacks, through the members' admin
// configs, and labels the members' Clusters on the hub so that the fleet
// selector picks exactly them. It returns how many pods it created.
func (l FleetList) Ensure(ctx context.Context, hub *rest.Config, members map[string]*rest.Config, parallel int) (int, error) {
	created := 0
	for i, name := range l.Members {
		config := rest.CopyConfig(members[name])
		config.QPS, config.Burst = 1000, 1000
		client, err := kubernetes.NewForConfig(config)
		if err != nil {
			return created, err
		}
		if err := ensureNamespace(ctx, client.CoreV1(), l.Namespace); err != nil {
			return created, err
		}
		existing, err := client.CoreV1().Pods(l.Namespace).List(ctx, metav1.ListOptions{LabelSelector: FleetLabel})
		if err != nil {
			return created, err
		}
		have := map[string]bool{}
		for _, p := range existing.Items {
			have[p.Name] = true
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(parallel)
		for j := range l.perMember(i) {
			podName := fmt.Sprintf("fleet-%s-%05d", name, j)
			if have[podName] {
				continue
			}
			created++
			g.Go(func() error {
				no := false
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: podName, Labels: map[string]string{FleetLabel: "yes"}},
					Spec: corev1.PodSpec{
						AutomountServiceAccountToken: &no,
						Containers:                   []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
					},
				}
				_, err := client.CoreV1().Pods(l.Namespace).Create(gctx, pod, metav1.CreateOptions{})
				if apierrors.IsAlreadyExists(err) {
					return nil
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return created, err
		}
	}
	return created, l.labelClusters(ctx, hub, "yes")
}

// Unlabel takes the fleet's label off the Clusters.
func (l FleetList) Unlabel(ctx context.Context, hub *rest.Config) error {
	return l.labelClusters(ctx, hub, "")
}

func (l FleetList) labelClusters(ctx context.Context, hub *rest.Config, value string) error {
	client, err := rest.HTTPClientFor(hub)
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, FleetLabel, value)
	if value == "" {
		patch = fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, FleetLabel)
	}
	for _, name := range l.Members {
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, hub.Host+"/apis/cluster.switchboard.io/v1alpha1/clusters/"+name, strings.NewReader(patch))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", string(types.MergePatchType))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("labelling Cluster %s: %d %s", name, resp.StatusCode, body)
		}
	}
	return nil
}

// FleetConfig is hub's configuration pointed at the fleet of the Clusters
// that Ensure labelled, with JSON on the wire (the fleet answers JSON).
func (l FleetList) FleetConfig(hub *rest.Config) *rest.Config {
	config := rest.CopyConfig(hub)
	config.Host = strings.TrimSuffix(config.Host, "/") + kubeconfig.FleetPath(FleetLabel+"=yes")
	config.ContentType, config.AcceptContentTypes = "application/json", "application/json"
	config.QPS, config.Burst = 1000, 1000
	return config
}

// walk is one LIST of the pods through config: every page of pageSize (0:
// one request), with client-go's pager. It returns the items' keys, the
// pages and the time.
func walk(ctx context.Context, config *rest.Config, namespace string, pageSize int64, key func(*corev1.Pod) string) ([]string, int, time.Duration, error) {
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, 0, 0, err
	}
	pages := 0
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		pages++
		return client.CoreV1().Pods(namespace).List(ctx, opts)
	})
	p.PageSize = pageSize
	var keys []string
	start := time.Now()
	err = p.EachListItem(ctx, metav1.ListOptions{LabelSelector: FleetLabel}, func(obj runtime.Object) error {
		keys = append(keys, key(obj.(*corev1.Pod)))
		return nil
	})
	return keys, pages, time.Since(start), err
}

// FleetResult is what the fleet LIST measured.
type FleetResult struct {
	Count    int
	Members  int
	PageSize int64
	// Direct and Fleet are the median times of a paged walk: each member
	// directly, one after another, and the fleet endpoint through the hub.
	Direct, Fleet time.Duration
	// DirectAll and FleetAll are the same without pages: one LIST per
	// member, one after another, and one fleet LIST.
	DirectAll, FleetAll time.Duration
	// Alone and AloneAll are the fleet's walks straight to switchboard, as
	// the hub's aggregator calls it (path B): the hub's share is the rest.
	Alone, AloneAll time.Duration
	// DirectPages and FleetPages are the requests of one paged walk.
	DirectPages, FleetPages int
	// PageBytes is the size of the fleet's first page, as JSON.
	PageBytes int64
	// RSSBefore is switchboard's RSS before the walks; PagedPeak and
	// UnpagedPeak its highest RSS during the paged and unpaged fleet LISTs.
	RSSBefore, PagedPeak, UnpagedPeak int64
}

// MeasureFleetList times rounds of each LIST, checks that every walk
// returns every pod once, and samples switchboard's RSS (pid).
func MeasureFleetList(ctx context.Context, l FleetList, hub, alone *rest.Config, members map[string]*rest.Config, pid, rounds int) (*FleetResult, error) {
	res := &FleetResult{Count: l.Count, Members: len(l.Members), PageSize: l.PageSize}
	fleetConfig := l.FleetConfig(hub)
	aloneConfig := l.FleetConfig(alone)
	var want []string
	for i, name := range l.Members {
		for j := range l.perMember(i) {
			want = append(want, fmt.Sprintf("%s/fleet-%s-%05d", name, name, j))
		}
	}
	sort.Strings(want)
	check := func(what string, keys []string) error {
		sort.Strings(keys)
		if len(keys) != len(want) {
			return fmt.Errorf("%s returned %d pods, want %d", what, len(keys), len(want))
		}
		for i := range keys {
			if keys[i] != want[i] {
				return fmt.Errorf("%s returned %s where %s was expected (lost or repeated)", what, keys[i], want[i])
			}
		}
		return nil
	}
	fleetKey := func(p *corev1.Pod) string { return p.Annotations[fleet.ClusterAnnotation] + "/" + p.Name }
	direct := func(pageSize int64) ([]string, int, time.Duration, error) {
		var all []string
		var pages int
		var took time.Duration
		for _, name := range l.Members {
			config := rest.CopyConfig(members[name])
			config.ContentType, config.AcceptContentTypes = "application/json", "application/json"
			config.QPS, config.Burst = 1000, 1000
			keys, n, d, err := walk(ctx, config, l.Namespace, pageSize, func(p *corev1.Pod) string { return name + "/" + p.Name })
			if err != nil {
				return nil, 0, 0, fmt.Errorf("listing %s directly: %w", name, err)
			}
			all, pages, took = append(all, keys...), pages+n, took+d
		}
		return all, pages, took, nil
	}

	// Switchboard sees the Clusters' new label a moment after the hub has
	// it: wait until the fleet holds every pod.
	deadline := time.Now().Add(time.Minute)
	for {
		keys, _, _, err := walk(ctx, fleetConfig, l.Namespace, 0, fleetKey)
		if err == nil {
			if err = check("the fleet LIST", keys); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the fleet does not hold every pod after a minute: %w", err)
		}
		time.Sleep(time.Second)
	}

	// The size of one page, as a client reads it.
	client, err := rest.HTTPClientFor(fleetConfig)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fleetConfig.Host+fmt.Sprintf("/api/v1/namespaces/%s/pods?labelSelector=%s&limit=%d", l.Namespace, FleetLabel, l.PageSize), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("a fleet page: %d", resp.StatusCode)
	}
	res.PageBytes = n

	if res.RSSBefore, err = SettledRSS(pid); err != nil {
		return nil, err
	}
	var directs, fleets, directAlls, fleetAlls, alones, aloneAlls []time.Duration
	for range rounds {
		keys, pages, took, err := direct(l.PageSize)
		if err != nil {
			return nil, err
		}
		if err := check("the direct paged walk", keys); err != nil {
			return nil, err
		}
		res.DirectPages, directs = pages, append(directs, took)

		sampler := StartRSSSampler(pid, 5*time.Millisecond)
		keys, pages, took, err = walk(ctx, fleetConfig, l.Namespace, l.PageSize, fleetKey)
		peak, serr := sampler.Stop()
		if err != nil {
			return nil, fmt.Errorf("the fleet's paged walk: %w", err)
		}
		if serr != nil {
			return nil, serr
		}
		if err := check("the fleet's paged walk", keys); err != nil {
			return nil, err
		}
		res.FleetPages, fleets, res.PagedPeak = pages, append(fleets, took), max(res.PagedPeak, peak)

		keys, _, took, err = direct(0)
		if err != nil {
			return nil, err
		}
		if err := check("the direct LISTs", keys); err != nil {
			return nil, err
		}
		directAlls = append(directAlls, took)

		for _, pageSize := range []int64{l.PageSize, 0} {
			keys, _, took, err = walk(ctx, aloneConfig, l.Namespace, pageSize, fleetKey)
			if err != nil {
				return nil, fmt.Errorf("the fleet's walk straight to switchboard: %w", err)
			}
			if err := check("the fleet's walk straight to switchboard", keys); err != nil {
				return nil, err
			}
			if pageSize > 0 {
				alones = append(alones, took)
			} else {
				aloneAlls = append(aloneAlls, took)
			}
		}
	}
	// The unpaged fleet LISTs last: they hold the whole fleet at once.
	for range rounds {
		sampler := StartRSSSampler(pid, 5*time.Millisecond)
		keys, _, took, err := walk(ctx, fleetConfig, l.Namespace, 0, fleetKey)
		peak, serr := sampler.Stop()
		if err != nil {
			return nil, fmt.Errorf("the fleet LIST: %w", err)
		}
		if serr != nil {
			return nil, serr
		}
		if err := check("the fleet LIST", keys); err != nil {
			return nil, err
		}
		fleetAlls, res.UnpagedPeak = append(fleetAlls, took), max(res.UnpagedPeak, peak)
	}
	res.Direct, res.Fleet, res.DirectAll, res.FleetAll = median(directs), median(fleets), median(directAlls), median(fleetAlls)
	res.Alone, res.AloneAll = median(alones), median(aloneAlls)
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// WithHeaders sets headers on every request through rt.
func WithHeaders(rt http.RoundTripper, headers map[string]string) http.RoundTripper {
	return headerSetter{rt: rt, headers: headers}
}

type headerSetter struct {
	rt      http.RoundTripper
	headers map[string]string
}

func (h headerSetter) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	return h.rt.RoundTrip(req)
}

// FleetTarget is the most the fleet's LIST may take, as a share of the
// direct loop's time; switchboard's RSS must also grow by less than two
// pages during the paged walk.
const FleetTarget = 1.0

// fleetMarkdown renders the fleet LIST's table, after the others.
func (r *Report) fleetMarkdown(b *strings.Builder) {
	f := r.Fleet
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	ratio := func(a, b time.Duration) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(a)/float64(b))
	}
	fmt.Fprintf(b, "\n#### Fleet LIST: %d pods over %d members\n\n", f.Count, f.Members)
	fmt.Fprintf(b, "client-go's pager through the fleet endpoint (fleets/<selector>/proxy, through the hub) against each member listed directly, one after another. "+
		"Every walk is checked to return every pod once. Median of the rounds.\n\n")
	b.WriteString("| metric | each member directly, in turn | the fleet endpoint, through the hub | fleet / direct (target) | the fleet, switchboard alone (as B) | alone / direct |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| paged walk, --chunk-size=%d | %s in %d pages | %s in %d pages | %s (at most %.2f) | %s | %s |\n",
		f.PageSize, f.Direct.Round(time.Millisecond), f.DirectPages, f.Fleet.Round(time.Millisecond), f.FleetPages, ratio(f.Fleet, f.Direct), FleetTarget,
		f.Alone.Round(time.Millisecond), ratio(f.Alone, f.Direct))
	fmt.Fprintf(b, "| one LIST, no pages | %s | %s | %s (at most %.2f) | %s | %s |\n",
		f.DirectAll.Round(time.Millisecond), f.FleetAll.Round(time.Millisecond), ratio(f.FleetAll, f.DirectAll), FleetTarget,
		f.AloneAll.Round(time.Millisecond), ratio(f.AloneAll, f.DirectAll))
	fmt.Fprintf(b, "| switchboard RSS before | | %s | | | |\n", mib(f.RSSBefore))
	growth := f.PagedPeak - f.RSSBefore
	pages := "-"
	if f.PageBytes > 0 {
		pages = fmt.Sprintf("%.2f pages", float64(growth)/float64(f.PageBytes))
	}
	fmt.Fprintf(b, "| RSS growth, paged walk (one page: %s) | | %s | %s (under 2 pages) | | |\n", mib(f.PageBytes), mib(growth), pages)
	fmt.Fprintf(b, "| RSS growth, one LIST of the whole fleet | | %s | | | |\n", mib(f.UnpagedPeak-f.RSSBefore))
}
