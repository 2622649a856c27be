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
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// LargeList is the set of ConfigMaps that the large LIST reads: Count
// objects of Size bytes of data each, in Namespace, labelled so that the
// LIST selects exactly them (every namespace also holds kube-root-ca.crt).
type LargeList struct {
	Namespace string
	Count     int
	Size      int
}

const (
	// listLabel marks the ConfigMaps; its value names the object's shape, so
	// that objects of another size left in a reused topology are not selected.
	listLabel = "proxybench.switchboard.io/list"
	// blobKey is the data key holding each object's payload.
	blobKey = "blob"
)

func (l LargeList) labelValue() string { return fmt.Sprintf("%d-bytes", l.Size) }

func (l LargeList) name(i int) string { return fmt.Sprintf("blob-%d-%04d", l.Size, i) }

// MemberPath is the LIST request, on any path.
func (l LargeList) MemberPath() string {
	q := url.Values{"labelSelector": {listLabel + "=" + l.labelValue()}}
	return "/api/v1/namespaces/" + l.Namespace + "/configmaps?" + q.Encode()
}

// payload is an object's data: pseudo-random letters and digits, the same
// for the same index on every run, and as hard to compress as real data.
func (l LargeList) payload(i int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	r := rand.New(rand.NewPCG(uint64(l.Size), uint64(i)))
	b := make([]byte, l.Size)
	for j := range b {
		b[j] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// Ensure creates the namespace and whichever ConfigMaps are missing, with
// parallel workers; objects left by an earlier run are reused. It returns
// how many it created.
func (l LargeList) Ensure(ctx context.Context, config *rest.Config, parallel int) (int, error) {
	config = rest.CopyConfig(config)
	// Creating hundreds of objects at once: no client-side rate limit.
	config.QPS, config.Burst = 1000, 1000
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return 0, err
	}
	if err := ensureNamespace(ctx, client.CoreV1(), l.Namespace); err != nil {
		return 0, err
	}
	meta, err := metadata.NewForConfig(config)
	if err != nil {
		return 0, err
	}
	existing, err := meta.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(l.Namespace).
		List(ctx, metav1.ListOptions{LabelSelector: listLabel + "=" + l.labelValue()})
	if err != nil {
		return 0, err
	}
	have := map[string]bool{}
	for _, item := range existing.Items {
		have[item.Name] = true
	}
	var missing []int
	for i := range l.Count {
		if !have[l.name(i)] {
			missing = append(missing, i)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, i := range missing {
		g.Go(func() error {
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: l.name(i), Labels: map[string]string{listLabel: l.labelValue()}},
				Data:       map[string]string{blobKey: l.payload(i)},
			}
			_, err := client.CoreV1().ConfigMaps(l.Namespace).Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
	}
	return len(missing), g.Wait()
}

// EnsureNamespace creates a namespace unless it exists.
func EnsureNamespace(ctx context.Context, config *rest.Config, name string) error {
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	return ensureNamespace(ctx, client.CoreV1(), name)
}

func ensureNamespace(ctx context.Context, client corev1client.CoreV1Interface, name string) error {
	_, err := client.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Validate decodes a LIST answer and checks that it holds exactly the
// expected objects with their full payload. It is slow (it decodes the
// whole body), so it runs outside the timed part.
func (l LargeList) Validate(body []byte) error {
	var list struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Continue string `json:"continue"`
		} `json:"metadata"`
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("the LIST answer is not JSON: %w", err)
	}
	if list.Kind != "ConfigMapList" || list.Metadata.Continue != "" {
		return fmt.Errorf("the LIST answer is a %q (continue %q), not a whole ConfigMapList", list.Kind, list.Metadata.Continue)
	}
	if len(list.Items) != l.Count {
		return fmt.Errorf("the LIST returned %d ConfigMaps, not %d", len(list.Items), l.Count)
	}
	seen := map[string]bool{}
	for _, item := range list.Items {
		seen[item.Metadata.Name] = true
		if n := len(item.Data[blobKey]); n != l.Size {
			return fmt.Errorf("ConfigMap %s holds %d bytes, not %d", item.Metadata.Name, n, l.Size)
		}
	}
	for i := range l.Count {
		if !seen[l.name(i)] {
			return fmt.Errorf("the LIST lacks ConfigMap %s", l.name(i))
		}
	}
	return nil
}

// ItemsHash hashes a LIST answer from its items on. The list's own
// resourceVersion (the etcd revision, which moves with every write
// anywhere) comes before the items; the items do not change between LISTs,
// so every path must return the same bytes for them.
func ItemsHash(body []byte) ([32]byte, error) {
	i := bytes.Index(body, []byte(`"items":`))
	if i < 0 {
		return [32]byte{}, fmt.Errorf("the LIST answer has no items: %.200s", body)
	}
	return sha256.Sum256(body[i:]), nil
}

// ListResult is one timed LIST.
type ListResult struct {
	// FirstByte is the time from sending to the first byte of the body;
	// Total to its last.
	FirstByte, Total time.Duration
	Bytes            int64
	// RSSBefore and RSSPeak are switchboard's RSS just before the LIST and
	// its highest sample during it (zero when not sampled).
	RSSBefore, RSSPeak int64
	// IO is what switchboard read and wrote during the LIST (zero when not
	// sampled): mostly the answer, from the member and to the caller.
	IO IOCounters
}

// MBps is the body's size over the total time, in MB (10^6 bytes) per second.
func (r ListResult) MBps() float64 {
	if r.Total <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Total.Seconds()
}

// TimedList sends the LIST on p and reads the answer into buf. When
// samplePID is not zero, that process's RSS is sampled every sampleEvery
// while the LIST runs.
func TimedList(ctx context.Context, p *Path, memberPath string, buf *bytes.Buffer, samplePID int, sampleEvery time.Duration) (ListResult, error) {
	var res ListResult
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := p.NewRequest(ctx, http.MethodGet, memberPath)
	if err != nil {
		return res, err
	}
	var sampler *RSSSampler
	var ioBefore IOCounters
	if samplePID != 0 {
		if ioBefore, err = ReadIOCounters(samplePID); err != nil {
			return res, err
		}
		if res.RSSBefore, err = RSS(samplePID); err != nil {
			return res, err
		}
		sampler = StartRSSSampler(samplePID, sampleEvery)
	}
	stopSampler := func() error {
		if sampler == nil {
			return nil
		}
		peak, err := sampler.Stop()
		sampler = nil
		res.RSSPeak = peak
		if err != nil {
			return err
		}
		ioAfter, err := ReadIOCounters(samplePID)
		res.IO = IOCounters{Read: ioAfter.Read - ioBefore.Read, Written: ioAfter.Written - ioBefore.Written}
		return err
	}
	defer func() { _ = stopSampler() }()

	buf.Reset()
	start := time.Now()
	resp, err := p.Client.Do(req)
	if err != nil {
		return res, err
	}
	defer func() { _ = resp.Body.Close() }()
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		return res, fmt.Errorf("reading the first byte: %w", err)
	}
	res.FirstByte = time.Since(start)
	buf.Write(first)
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return res, fmt.Errorf("reading the body after %d bytes: %w", buf.Len(), err)
	}
	res.Total = time.Since(start)
	res.Bytes = int64(buf.Len())
	if err := stopSampler(); err != nil {
		return res, err
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("status %d: %.300s", resp.StatusCode, buf.Bytes())
	}
	return res, nil
}
