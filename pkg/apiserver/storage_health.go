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

package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/klog/v2"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
)

const (
	// storageProbeInterval is how often etcd is probed. The probe itself is
	// bounded by the storage readiness timeout (2s by default).
	storageProbeInterval = time.Second
	// storageRetryAfterSeconds is what clients are told to wait while etcd is
	// away. client-go retries up to ten times, so this stays short.
	storageRetryAfterSeconds = 1
)

// StorageHealth knows, from a probe in the background, whether etcd answers.
// While it does not, requests for Cluster objects fail at once with 503 and
// Retry-After, instead of hanging until the request timeout and then failing
// with a raw error. /readyz reports the same probe; /livez does not, because
// restarting the server does not bring etcd back.
type StorageHealth struct {
	check func() error
	// lastErr holds the error of the last probe; nil while etcd answers.
	lastErr atomic.Pointer[error]
}

// NewStorageHealth wraps a storage probe such as the one
// k8s.io/apiserver/pkg/storage/storagebackend/factory.CreateReadyCheck returns.
func NewStorageHealth(check func() error) *StorageHealth {
	return &StorageHealth{check: check}
}

// Run probes etcd until ctx ends.
func (h *StorageHealth) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	ticker := time.NewTicker(storageProbeInterval)
	defer ticker.Stop()
	for {
		err := h.check()
		if previous := h.Err(); (err == nil) != (previous == nil) {
			if err != nil {
				logger.Error(err, "Etcd is unavailable; requests for Cluster objects fail with 503 until it returns")
			} else {
				logger.Info("Etcd is available again")
			}
		}
		if err != nil {
			h.lastErr.Store(&err)
		} else {
			h.lastErr.Store(nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Err returns the error of the last probe, or nil if etcd answered.
func (h *StorageHealth) Err() error {
	if p := h.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// ReadyzCheck reports etcd on /readyz.
func (h *StorageHealth) ReadyzCheck() healthz.HealthChecker {
	return healthz.NamedCheck("etcd", func(*http.Request) error { return h.check() })
}

// WithStorageGate fails requests for Cluster objects with 503 while etcd is
// known to be unavailable. It runs after authentication and authorization,
// so only callers allowed to make the request learn why it failed.
func WithStorageGate(handler http.Handler, h *StorageHealth) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		err := h.Err()
		if err == nil {
			handler.ServeHTTP(w, req)
			return
		}
		info, ok := request.RequestInfoFrom(req.Context())
		if !ok || !usesStorage(info) {
			handler.ServeHTTP(w, req)
			return
		}
		gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
		responsewriters.ErrorNegotiated(storageUnavailable(info, err), Codecs, gv, w, req)
	})
}

// usesStorage says whether a request reads or writes Cluster objects in etcd.
func usesStorage(info *request.RequestInfo) bool {
	return info.IsResourceRequest && info.APIGroup == cluster.GroupName && info.Resource == "clusters" &&
		(info.Subresource == "" || info.Subresource == "status")
}

func storageUnavailable(info *request.RequestInfo, cause error) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure,
		Code:   http.StatusServiceUnavailable,
		Reason: metav1.StatusReasonServiceUnavailable,
		Message: fmt.Sprintf("the storage of Cluster objects (etcd) is unavailable, so %s %s cannot be served; retry in a few seconds: %v",
			info.Verb, info.Resource, cause),
		Details: &metav1.StatusDetails{
			Group:             info.APIGroup,
			Kind:              info.Resource,
			Name:              info.Name,
			RetryAfterSeconds: storageRetryAfterSeconds,
		},
	}}
}
