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
	"time"

	utilwaitgroup "k8s.io/apimachinery/pkg/util/waitgroup"
	genericapiserver "k8s.io/apiserver/pkg/server"
)

// refusalPoll is how often notAcceptingNewRequests looks, once shutdown
// has begun and its delay has passed.
const refusalPoll = 50 * time.Millisecond

// notAcceptingNewRequests is done when the generic server stops taking new
// requests, and ends its own watches: once --shutdown-delay-duration has
// passed after shutdown began and every pre-shutdown hook has returned.
// The generic server does not export that signal, but what it does then
// shows: its NonLongRunningRequestWaitGroup starts to refuse Add, which is
// how its WithWaitGroup filter turns new requests away. So this waits for
// shutdown to begin and the delay to pass, then watches for that refusal;
// a pre-shutdown hook that runs longer than the delay holds it back, as it
// holds back the generic server.
func notAcceptingNewRequests(initiated <-chan struct{}, s *genericapiserver.GenericAPIServer) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		<-initiated
		time.Sleep(s.ShutdownDelayDuration)
		for !refusesNewRequests(s.NonLongRunningRequestWaitGroup) {
			time.Sleep(refusalPoll)
		}
	}()
	return ctx
}

// refusesNewRequests says whether wg has begun to wait, and so takes no
// new requests.
func refusesNewRequests(wg *utilwaitgroup.SafeWaitGroup) bool {
	if err := wg.Add(1); err != nil {
		return true
	}
	wg.Done()
	return false
}
