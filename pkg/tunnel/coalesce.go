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

package tunnel

import (
	"encoding/binary"
	"io"
)

// yamux's frame header (its spec.md): version, type, flags, stream ID and
// length, 12 bytes; for a data frame, length bytes of body follow.
const (
	frameHeaderSize = 12
	frameTypeData   = 0
)

// Coalesce returns conn with each yamux data frame written in one Write.
// yamux writes a frame's header and its body with two Writes; on a TLS
// connection each becomes a record of its own, and each a system call, on
// every hop of the tunnel (switchboard, the hub both ways, the agent). Only
// yamux's send loop writes to the connection, one Write after another, so
// a data header is held until the body that follows it.
func Coalesce(conn io.ReadWriteCloser) io.ReadWriteCloser {
	return &coalescingConn{ReadWriteCloser: conn}
}

type coalescingConn struct {
	io.ReadWriteCloser
	// held is the header of a data frame whose body comes next.
	held bool
	buf  []byte
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if !c.held {
		if len(p) == frameHeaderSize && p[1] == frameTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
			c.buf = append(c.buf[:0], p...)
			c.held = true
			return len(p), nil
		}
		return c.ReadWriteCloser.Write(p)
	}
	c.held = false
	c.buf = append(c.buf, p...)
	n, err := c.ReadWriteCloser.Write(c.buf)
	n -= frameHeaderSize
	if n < 0 {
		n = 0
	}
	if len(c.buf) > 1<<20 {
		// Do not keep an unusually large frame's buffer.
		c.buf = nil
	}
	return n, err
}
