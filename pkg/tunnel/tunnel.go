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

// Package tunnel reaches members that the hub cannot dial. A member's
// switchboard-agent opens a connection out to the hub's kube-apiserver, an
// upgrade request to clusters/<name>/attach that the hub authenticates,
// authorizes (create on clusters/attach for that one name) and audits, and
// that its aggregator forwards to switchboard as it forwards exec. On that
// connection, yamux carries one stream per connection switchboard opens to
// the member: the member's pooled HTTP/2 connection, and one per upgrade
// (exec, attach, port-forward). Each stream carries switchboard's own TLS
// connection to the member's API server; the agent relays its bytes to
// the one address it was started with and sees nothing in clear text.
//
// Server holds the tunnels of this replica and is the reach.Dialers of the
// transport cache; the agent side is pkg/agent.
package tunnel

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

const (
	// Protocol is the Upgrade token of the tunnel: yamux over the upgraded
	// connection, switchboard opening the streams.
	Protocol = "switchboard-tunnel.v1"
	// HeaderServerID names the switchboard replica in its 101 answer, so
	// that an agent can tell the replicas behind one Service apart.
	HeaderServerID = "Switchboard-Tunnel-Server"
	// Subresource is the subresource of clusters an agent connects to. The
	// hub's kube-apiserver treats attach (with exec, log, portforward and
	// proxy) as long-running: it neither cuts the connection at its request
	// timeout nor holds a seat of its priority and fairness for it. A
	// subresource of any other name would get both.
	Subresource = "attach"
)

// KeepAlive says how the two ends of a tunnel find that it died: each pings
// the other every Interval and gives up on the connection when a ping gets
// no answer within Timeout. yamux applies Timeout to every frame it writes,
// and a ping waits behind the data ahead of it (up to a 256 KiB window per
// busy stream), so Timeout must also cover sending that much data over the
// slowest link a tunnel runs on.
type KeepAlive struct {
	Interval time.Duration
	Timeout  time.Duration
}

// DefaultKeepAlive finds a dead connection within 30s, and keeps a tunnel
// up on a link that moves 1 MiB in 20s (about 400 kbit/s: four streams
// each sending a full window at once).
var DefaultKeepAlive = KeepAlive{Interval: 10 * time.Second, Timeout: 20 * time.Second}

// MuxConfig is the yamux configuration of both ends.
func MuxConfig(k KeepAlive) *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = true
	c.KeepAliveInterval = k.Interval
	// Bounds how long a ping, or any frame, may wait to be written before
	// the connection is taken for dead.
	c.ConnectionWriteTimeout = k.Timeout
	// A stream that one side closed and the other never does is dropped
	// after this, not kept for yamux's default of five minutes.
	c.StreamCloseTimeout = time.Minute
	c.LogOutput = io.Discard
	return c
}
