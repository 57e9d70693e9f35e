package gctune

import (
	"errors"
	"math"
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))

	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, errors.New("no such file")
		}
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	tests := []struct {
		name        string
		env         map[string]string
		files       map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"cgroup v2 limit", nil, map[string]string{"/sys/fs/cgroup/memory.max": "268435456\n"}, DefaultGCPercent, 241591910},
		{"cgroup v2 unlimited", nil, map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, DefaultGCPercent, 0},
		{"cgroup v1 limit", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824"}, DefaultGCPercent, 966367641},
		{"cgroup v1 unlimited", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}, DefaultGCPercent, 0},
		{"no cgroup", nil, nil, DefaultGCPercent, 0},
		{"garbage", nil, map[string]string{"/sys/fs/cgroup/memory.max": "lots"}, DefaultGCPercent, 0},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "100MiB"}, map[string]string{"/sys/fs/cgroup/memory.max": "268435456"}, DefaultGCPercent, 0},
		{"GOGC wins", map[string]string{"GOGC": "150"}, nil, 150, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(150) // what the runtime would have read from GOGC=150
			debug.SetMemoryLimit(math.MaxInt64)
			s := Apply(env(tt.env), files(tt.files))
			if s.GCPercent != tt.wantPercent || s.MemoryLimit != tt.wantLimit {
				t.Fatalf("Apply = %+v, want GOGC %d and limit %d", s, tt.wantPercent, tt.wantLimit)
			}
			if got := debug.SetGCPercent(100); got != tt.wantPercent {
				t.Errorf("GC percent in effect = %d, want %d", got, tt.wantPercent)
			}
			if got := debug.SetMemoryLimit(-1); tt.wantLimit > 0 && got != tt.wantLimit {
				t.Errorf("memory limit in effect = %d, want %d", got, tt.wantLimit)
			}
			if s.Source == "" {
				t.Error("no source given for the log")
			}
		})
	}
}
