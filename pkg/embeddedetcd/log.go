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
	"sort"
	"sync/atomic"

	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// klogCore writes etcd's zap log entries through klog, so the embedded etcd
// logs in the server's format and at its verbosity. Errors are logged as
// errors and everything else at verbosity 2: etcd's warnings are about
// deployments of etcd itself, not about a private single-member store. While
// the server shuts down, etcd reports every closed listener as an error; those
// are logged at verbosity 2 as well.
type klogCore struct {
	logger   klog.Logger
	fields   []zapcore.Field
	stopping *atomic.Bool
}

var _ zapcore.Core = &klogCore{}

func newKlogCore(logger klog.Logger, stopping *atomic.Bool) *klogCore {
	return &klogCore{logger: logger, stopping: stopping}
}

func (c *klogCore) Enabled(level zapcore.Level) bool {
	return level >= zapcore.ErrorLevel || c.logger.V(2).Enabled()
}

func (c *klogCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = append(append([]zapcore.Field{}, c.fields...), fields...)
	return &clone
}

func (c *klogCore) Check(entry zapcore.Entry, checked *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(entry.Level) {
		return checked.AddCore(entry, c)
	}
	return checked
}

func (c *klogCore) Write(entry zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kvs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		kvs = append(kvs, k, enc.Fields[k])
	}

	if entry.Level >= zapcore.ErrorLevel && !c.stopping.Load() {
		c.logger.Error(nil, entry.Message, kvs...)
		return nil
	}
	c.logger.V(2).Info(entry.Message, kvs...)
	return nil
}

func (c *klogCore) Sync() error { return nil }
