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
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPU    string
	Cores  int
	Memory string
	Kernel string
	Go     string
	Date   time.Time
}

// ReadMachine reads the machine's description from /proc.
func ReadMachine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), Memory: "unknown", Kernel: "unknown", Go: runtime.Version(), Date: time.Now().UTC()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPU = strings.TrimSpace(value)
				break
			}
		}
	}
	if total, err := meminfoKB("MemTotal"); err == nil {
		m.Memory = fmt.Sprintf("%.1f GiB", float64(total)/(1<<20))
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(data))
	}
	return m
}

func meminfoKB(field string) (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	v, err := parseStatusKB(data, field)
	return v / 1024, err
}

// LoadAverage is the one-minute load average, from /proc/loadavg.
func LoadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if fields := strings.Fields(string(data)); len(fields) > 0 {
		return fields[0]
	}
	return "?"
}
