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
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
)

// PolicyTarget is the share of B's requests per second that P should
// reach: an identity policy of three expressions may cost at most 3%.
const PolicyTarget = 0.97

// Policy is the three-expression identity policy of path P: a rule, the
// user name and the groups. For the benchmark's caller (Impersonated) it
// gives the caller itself, so that the member does the same work on B
// and on P, and what differs is switchboard evaluating the policy.
var Policy = v1alpha1.IdentityPolicy{
	Rules: []v1alpha1.IdentityRule{{
		Expression: `user.username != "system:anonymous" && !("system:unauthenticated" in user.groups)`,
		Message:    "anonymous hub callers are refused",
	}},
	Username: `user.username.startsWith("system:serviceaccount:") ? "hub:" + user.username : user.username`,
	Groups:   `user.groups.filter(g, !g.startsWith("system:serviceaccounts"))`,
}

// PolicyRefused is a caller the hub authorizes (it is in system:masters)
// and Policy's rule refuses: the preflight's proof that P applies it.
var PolicyRefused = struct{ User, Group string }{"proxybench-refused", "system:unauthenticated"}

// PolicyCluster is the name of the Cluster of path P: the same member as
// member's Cluster, with Policy.
func PolicyCluster(member string) string { return member + "-policy" }

// EnsurePolicyCluster makes, or brings up to date, the Cluster of path P:
// a copy of member's Cluster spec, with its endpoint and credential, and
// Policy. It returns a function that deletes it.
func EnsurePolicyCluster(ctx context.Context, hub *rest.Config, member string) (func(context.Context) error, error) {
	client, err := clientset.NewForConfig(hub)
	if err != nil {
		return nil, err
	}
	clusters := client.ClusterV1alpha1().Clusters()
	source, err := clusters.Get(ctx, member, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the Cluster of %s: %w", member, err)
	}
	spec := *source.Spec.DeepCopy()
	spec.Identity = Policy.DeepCopy()
	name := PolicyCluster(member)
	_, err = clusters.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			existing, err := clusters.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			existing.Spec = spec
			_, err = clusters.Update(ctx, existing, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("making Cluster %s: %w", name, err)
	}
	remove := func(ctx context.Context) error {
		err := clusters.Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	// Switchboard proxies to a Cluster once it has probed it.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := clusters.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range c.Status.Conditions {
			if cond.Type == v1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == c.Generation {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return remove, fmt.Errorf("the Cluster %s is not Ready: %w", name, err)
	}
	return remove, nil
}

// CheckPolicyRefuses checks that path p applies Policy: its rule refuses
// PolicyRefused with switchboard's 403, before anything reaches the member.
func CheckPolicyRefuses(ctx context.Context, p *Path, memberPath string) error {
	refused := *p
	refused.Header = p.Header.Clone()
	refused.Header.Set("X-Remote-User", PolicyRefused.User)
	refused.Header.Add("X-Remote-Group", PolicyRefused.Group)
	code, body, _, err := refused.Get(ctx, memberPath)
	if err != nil {
		return err
	}
	if code != http.StatusForbidden || !strings.Contains(string(body), "identity policy refuses") {
		return fmt.Errorf("path %s does not apply its identity policy: %s in groups %v got status %d: %.300s",
			p.Key, PolicyRefused.User, refused.Header.Values("X-Remote-Group"), code, body)
	}
	return nil
}

// PolicyReport is what one run measured of path P, against B.
type PolicyReport struct {
	// Cluster is P's Cluster and Path its key.
	Cluster, Path string
}

// policyMarkdown renders the identity policy's table, after the others.
func (r *Report) policyMarkdown(b *strings.Builder) {
	p, s := r.Policy.Path, r.SwitchboardPath
	fmt.Fprintf(b, "\n#### With an identity policy\n\n")
	fmt.Fprintf(b, "**%s** is switchboard alone, as B, to Cluster %s: the same %s, endpoint and credential, with an identity policy of three expressions "+
		"(rule `%s`; username `%s`; groups `%s`), which gives B's caller itself, so that %s does the same work for both. "+
		"Before the rounds, a caller the rule refuses got switchboard's 403. P takes turns with the other paths in the same rounds, with the same load "+
		"(target: P ≥ %.0f%% of B).\n\n",
		p, r.Policy.Cluster, r.Member, Policy.Rules[0].Expression, Policy.Username, Policy.Groups, r.Member, 100*PolicyTarget)
	fmt.Fprintf(b, "| metric | %s: switchboard alone to %s (above) | %s: the same with the policy | P vs B (target) |\n|---|---:|---:|---|\n", s, r.Member, p)
	keys := []string{s, p}
	row := func(metric string, c cell, compare string) {
		fmt.Fprintf(b, "| %s |", metric)
		for _, k := range keys {
			fmt.Fprintf(b, " %s |", c(k))
		}
		fmt.Fprintf(b, " %s |\n", compare)
	}
	load := func(k string) *LoadResult { return orEmpty(r.Load[k]) }
	get := fmt.Sprintf("GET %s, %d workers", r.GetPath, r.Workers)
	row(get+": requests/s", func(k string) string { return fmt.Sprintf("%.0f", load(k).RPS()) },
		fmt.Sprintf("**%s** (≥ %.0f%%)", percent(load(p).RPS(), load(s).RPS()), 100*PolicyTarget))
	row(get+": p50 / p99 latency", func(k string) string { return ms(load(k).Percentile(0.50)) + " / " + ms(load(k).Percentile(0.99)) },
		delta(load(p).Percentile(0.50)-load(s).Percentile(0.50))+" / "+delta(load(p).Percentile(0.99)-load(s).Percentile(0.99)))
	cpu := func(k, process string) float64 {
		if load(k).Requests == 0 {
			return 0
		}
		return r.LoadCPU[k][process].Seconds() * 1000 / float64(load(k).Requests)
	}
	processes := []string{r.Member, "switchboard"}
	row(get+": CPU ms per request of "+strings.Join(processes, " · "), func(k string) string {
		parts := make([]string, 0, len(processes))
		for _, name := range processes {
			parts = append(parts, fmt.Sprintf("%.3f", cpu(k, name)))
		}
		return strings.Join(parts, " · ")
	}, func() string {
		before, after := cpu(s, "switchboard"), cpu(p, "switchboard")
		if before == 0 {
			return ""
		}
		return fmt.Sprintf("switchboard %+.3f ms per request (%s of B's)", after-before, percent(after, before))
	}())
	serial := func(k string) *LoadResult { return orEmpty(r.Serial[k]) }
	row(fmt.Sprintf("GET %s, 1 worker: p50 / p99 latency", r.GetPath), func(k string) string {
		return ms(serial(k).Percentile(0.50)) + " / " + ms(serial(k).Percentile(0.99))
	}, delta(serial(p).Percentile(0.50)-serial(s).Percentile(0.50))+" / "+delta(serial(p).Percentile(0.99)-serial(s).Percentile(0.99)))
	row("failed requests or wrong answers", func(k string) string {
		n := 0
		for _, l := range []*LoadResult{r.Load[k], r.Serial[k]} {
			if l != nil {
				n += l.Errors
			}
		}
		return fmt.Sprintf("%d", n)
	}, "must be 0")
}
