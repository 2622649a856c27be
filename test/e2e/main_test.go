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

// Package e2e tests switchboard against real processes on loopback: a hub
// kube-apiserver with its aggregator, member kube-apiservers with kwok nodes,
// controller-managers, etcd, and switchboard registered through an
// APIService, driven with client-go and the real kubectl binary.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

// f is the topology every test uses.
var f *framework.Framework

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	var err error
	f, err = framework.Setup(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bringing up the topology: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "tearing down the topology: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// teardown stops the topology if this run started it, through make
// local-down as a user would, and checks that nothing it started still runs.
func teardown() error {
	if !f.Started() {
		fmt.Fprintf(os.Stderr, "Leaving the topology in %s running: this run did not start it\n", f.State.RunDir)
		return nil
	}
	cmd := exec.Command("make", "-C", framework.RepoRoot(), "--no-print-directory", "local-down")
	cmd.Env = append(os.Environ(), "SWITCHBOARD_RUN_DIR="+f.State.RunDir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("make local-down: %w", err)
	}
	for _, p := range f.State.Processes {
		if p.Alive() {
			return fmt.Errorf("make local-down left %s (pid %d) running", p.Name, p.PID)
		}
	}
	if _, err := os.Stat(f.State.RunDir); !os.IsNotExist(err) {
		return fmt.Errorf("make local-down left %s behind", f.State.RunDir)
	}
	return nil
}

// stopProcess stops a process of the topology and returns what starts it
// again, once: call it to bring the process back within the test; the
// test's cleanup calls it too.
func stopProcess(t *testing.T, name string) (restart func()) {
	t.Helper()
	if err := f.State.StopProcess(name); err != nil {
		t.Fatal(err)
	}
	restarted := false
	restart = func() {
		if !restarted {
			restarted = true
			if err := f.State.RestartProcess(name); err != nil {
				t.Fatalf("restarting %s: %v", name, err)
			}
		}
	}
	t.Cleanup(restart)
	return restart
}

// eventually retries fn until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(time.Second)
	}
}

type kubectlError struct{ r framework.KubectlResult }

func (e *kubectlError) Error() string {
	return fmt.Sprintf("%v: %s%s", e.r.Err, e.r.Stdout, e.r.Stderr)
}

// lineHas says whether one line of out contains every word.
func lineHas(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func loadState() (*topology.State, error) { return topology.Load(f.State.RunDir) }

// rawRequest makes one request with config's credentials, without
// client-go's retries: what a caller sees. It reuses one HTTP client per
// config, so requests share connections as a real client's would.
var rawHTTPClients sync.Map // *rest.Config -> *http.Client

func rawRequest(config *rest.Config, method, path string, body []byte) (int, string, error) {
	client, err := rawClient(config)
	if err != nil {
		return 0, "", err
	}
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, config.Host+path, reader)
	if err != nil {
		return 0, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), err
}

// rawClient is the one HTTP client of config, whose requests time out
// after 30 s.
func rawClient(config *rest.Config) (*http.Client, error) {
	if c, ok := rawHTTPClients.Load(config); ok {
		return c.(*http.Client), nil
	}
	c, err := rest.HTTPClientFor(config)
	if err != nil {
		return nil, err
	}
	c.Timeout = 30 * time.Second
	actual, _ := rawHTTPClients.LoadOrStore(config, c)
	return actual.(*http.Client), nil
}

// describe says what went wrong with a request: its error, or the
// message of the Status it answered with.
func describe(code int, body string, err error) string {
	if err != nil {
		return err.Error()
	}
	var status metav1.Status
	if json.Unmarshal([]byte(body), &status) == nil && status.Message != "" {
		return fmt.Sprintf("%d %s", code, status.Message)
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
}
