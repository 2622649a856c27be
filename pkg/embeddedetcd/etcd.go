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

// Package embeddedetcd runs a single-member etcd inside switchboard-apiserver,
// so that one replica needs nothing else installed. Clients reach it over a
// unix socket inside the data directory, which only the owner of the
// directory can open.
package embeddedetcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/klog/v2"
)

const (
	// memberName is the name of the only member of the embedded cluster.
	memberName = "switchboard"
	// socketName is the client socket, inside the data directory.
	socketName = "etcd.sock"
	// lockName is the file locked while a process uses the data directory.
	lockName = "switchboard.lock"
	// memberDirName holds etcd's own data.
	memberDirName = "etcd"
	// maxSocketPath is the longest path a unix socket may have on Linux.
	maxSocketPath = 107
)

// Config configures the embedded etcd.
type Config struct {
	// DataDir holds etcd's data, its client socket and a lock file.
	DataDir string
	// ReadyTimeout bounds the wait for etcd to accept requests.
	ReadyTimeout time.Duration
	// QuotaBackendBytes is etcd's space quota; 0 keeps etcd's default (2 GiB).
	QuotaBackendBytes int64
	// MinFreeDiskBytes is the space DiskSpace keeps free on the data
	// directory's filesystem; 0 keeps none.
	MinFreeDiskBytes int64
}

// Server is a running embedded etcd.
type Server struct {
	etcd     *embed.Etcd
	endpoint string
	lock     *os.File
	stopping *atomic.Bool
	dataDir  string
	minFree  int64
	// short is whether the last DiskSpace call found too little space;
	// the log says so when that changes, not on every write.
	short atomic.Bool
}

// Start starts etcd in cfg.DataDir and waits until it serves requests.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolving --data-dir %q: %w", cfg.DataDir, err)
	}
	socket := filepath.Join(dataDir, socketName)
	if len(socket) > maxSocketPath {
		return nil, fmt.Errorf("--data-dir %q is too long: the etcd socket path %q must be at most %d bytes", cfg.DataDir, socket, maxSocketPath)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating --data-dir: %w", err)
	}
	// etcd refuses a data directory others may read; so should we.
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting --data-dir to its owner: %w", err)
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}

	ecfg := embed.NewConfig()
	ecfg.Name = memberName
	ecfg.Dir = filepath.Join(dataDir, memberDirName)
	clientURL := url.URL{Scheme: "unix", Path: socket}
	ecfg.ListenClientUrls = []url.URL{clientURL}
	ecfg.AdvertiseClientUrls = []url.URL{clientURL}
	// A single member never talks to peers, but etcd insists on a peer
	// listener; an ephemeral loopback port keeps it off every fixed port.
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	ecfg.ListenPeerUrls = []url.URL{peerURL}
	ecfg.AdvertisePeerUrls = []url.URL{peerURL}
	ecfg.InitialCluster = ecfg.InitialClusterFromName(memberName)
	ecfg.ListenMetricsUrls = nil
	stopping := &atomic.Bool{}
	logger := klog.FromContext(ctx)
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newKlogCore(logger.WithName("etcd"), stopping)))
	if cfg.QuotaBackendBytes > 0 {
		ecfg.QuotaBackendBytes = cfg.QuotaBackendBytes
	}

	logger.Info("Starting embedded etcd", "dataDir", dataDir)
	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		unlock(lock)
		return nil, fmt.Errorf("starting embedded etcd in %q: %w", ecfg.Dir, err)
	}

	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stopping.Store(true)
		e.Close()
		unlock(lock)
		return nil, fmt.Errorf("embedded etcd failed while starting: %w", err)
	case <-timer.C:
		stopping.Store(true)
		e.Close()
		unlock(lock)
		return nil, fmt.Errorf("embedded etcd in %q was not ready after %s", ecfg.Dir, timeout)
	case <-ctx.Done():
		stopping.Store(true)
		e.Close()
		unlock(lock)
		return nil, ctx.Err()
	}
	logger.Info("Embedded etcd is ready", "endpoint", clientURL.String())
	return &Server{etcd: e, endpoint: clientURL.String(), lock: lock, stopping: stopping, dataDir: dataDir, minFree: cfg.MinFreeDiskBytes}, nil
}

// Endpoint is the URL clients use to reach etcd.
func (s *Server) Endpoint() string { return s.endpoint }

// Err reports a fatal etcd error after start.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops etcd and releases the data directory.
func (s *Server) Close() {
	s.stopping.Store(true)
	s.etcd.Close()
	unlock(s.lock)
}

// DiskSpaceError says that the data directory's filesystem has less free
// space than the server keeps free.
type DiskSpaceError struct {
	Free, Min int64
}

func (e *DiskSpaceError) Error() string {
	return fmt.Sprintf("the embedded etcd's data directory has %s free, less than the %s that --embedded-etcd-min-free-disk-bytes keeps free", mib(e.Free), mib(e.Min))
}

// mib rounds down, so that what is short never reads as the minimum.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", math.Floor(float64(n)/(1<<20)*10)/10) }

// DiskSpace returns a *DiskSpaceError when the data directory's filesystem
// has less free space (for an unprivileged writer) than cfg.MinFreeDiskBytes.
// etcd exits when a write to its log or database finds the disk full, so
// that writes are refused while etcd still has room for what it writes on
// its own (a compaction, the next log segment of 64 MiB). nil when no
// minimum is set or the space cannot be read.
func (s *Server) DiskSpace(ctx context.Context) error {
	if s.minFree <= 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dataDir, &st); err != nil {
		return nil //nolint:nilerr // etcd's own writes will say what is wrong
	}
	free := int64(st.Bavail) * st.Bsize //nolint:gosec // block counts of a real filesystem fit
	short := free < s.minFree
	if s.short.Swap(short) != short {
		logger := klog.FromContext(ctx)
		if short {
			logger.Error(nil, "Refusing Cluster writes: the embedded etcd's disk is almost full", "dataDir", s.dataDir, "freeBytes", free, "minFreeBytes", s.minFree)
		} else {
			logger.Info("Accepting Cluster writes again: the embedded etcd's disk has room", "dataDir", s.dataDir, "freeBytes", free, "minFreeBytes", s.minFree)
		}
	}
	if short {
		return &DiskSpaceError{Free: free, Min: s.minFree}
	}
	return nil
}

// lockDataDir takes an exclusive lock on the data directory, so that a second
// process fails at once instead of waiting on etcd's database lock.
func lockDataDir(dataDir string) (*os.File, error) {
	path := filepath.Join(dataDir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %q: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("--data-dir %q is in use by another switchboard-apiserver; give each replica its own data directory, or use --etcd-servers for several replicas", dataDir)
		}
		return nil, fmt.Errorf("locking %q: %w", path, err)
	}
	return f, nil
}

func unlock(f *os.File) {
	// Closing the file releases the flock.
	_ = f.Close()
}
