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

package reach

import (
	"fmt"
	"time"
)

// NoAgentError is the dial error of a Cluster reached through a tunnel
// when no switchboard-agent of the member holds one to this replica.
type NoAgentError struct {
	Cluster string
	// Since is when the last agent went away, or, if none ever came, when
	// this replica started waiting for one.
	Since time.Time
	// Never says that no agent has connected since Since.
	Never bool
}

// NoAgentMessage begins the message of a NoAgentError.
const NoAgentMessage = "no switchboard-agent is connected for cluster"

func (e *NoAgentError) Error() string {
	since := e.Since.UTC().Format(time.RFC3339)
	if e.Never {
		return fmt.Sprintf(NoAgentMessage+" %q: none has connected to this switchboard replica since it started at %s; "+
			"check that the member runs switchboard-agent --cluster=%s and that its hub identity may create clusters/attach for %q", e.Cluster, since, e.Cluster, e.Cluster)
	}
	return fmt.Sprintf(NoAgentMessage+" %q: the last one disconnected at %s", e.Cluster, since)
}
