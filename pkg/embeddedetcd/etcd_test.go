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

package embeddedetcd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func start(t *testing.T, dir string) *Server {
	t.Helper()
	s, err := Start(context.Background(), Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Start(%s): %v", dir, err)
	}
	return s
}

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s := start(t, dir)
	if !strings.HasPrefix(s.Endpoint(), "unix://") || !strings.HasSuffix(s.Endpoint(), filepath.Join(dir, socketName)) {
		t.Errorf("endpoint %q is not the socket in the data directory", s.Endpoint())
	}
	c := client(t, s)
	if _, err := c.Put(ctx, "/registry/test", "kept"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	s.Close()

	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("data directory mode = %o, want 700", perm)
	}

	s = start(t, dir)
	defer s.Close()
	c = client(t, s)
	defer func() { _ = c.Close() }()
	resp, err := c.Get(ctx, "/registry/test")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Fatalf("after restart: %v", resp.Kvs)
	}
}

func TestSecondProcessOnSameDataDirFails(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	defer s.Close()

	_, err := Start(context.Background(), Config{DataDir: dir, ReadyTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "in use by another switchboard-apiserver") {
		t.Fatalf("second start: err = %v, want an in-use error", err)
	}

	// The first one is unharmed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client(t, s)
	defer func() { _ = c.Close() }()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("first server broken by the second start: %v", err)
	}
}

func TestTooLongDataDirIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", maxSocketPath))
	_, err := Start(context.Background(), Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("err = %v, want a too-long error", err)
	}
	if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
		t.Errorf("refused data directory was created anyway")
	}
}

func TestUnusableDataDirIsReported(t *testing.T) {
	// A data directory below a regular file cannot be created, even by root.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{DataDir: filepath.Join(file, "data")})
	if err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("err = %v, want an error naming --data-dir", err)
	}
}
