// Package gctune sets the Go garbage collector for the webhook server: admissions
// allocate a lot for what they keep, so at Go's default target (GOGC=100) collection
// is a large share of their CPU. The server collects less often (GOGC=400) and bounds
// the heap with a soft memory limit below the container's, so that the extra headroom
// is spent only when the container has it.
package gctune

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the collection target the server uses unless GOGC is set.
const DefaultGCPercent = 400

// MemoryLimitFraction is the share of the container's memory limit the Go heap is
// softly limited to (the rest is for stacks, buffers and the runtime itself).
const MemoryLimitFraction = 0.9

// cgroupLimitFiles are where Linux states the container's memory limit: cgroup v2,
// then v1.
var cgroupLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// Settings says what Apply chose, for the startup log.
type Settings struct {
	GCPercent   int    // the collection target in effect
	MemoryLimit int64  // the soft memory limit set, 0 when none was set here
	Source      string // where each value came from
}

// Apply sets the collection target to DefaultGCPercent unless the GOGC environment
// variable is set, and the soft memory limit to MemoryLimitFraction of the cgroup's
// memory limit unless GOMEMLIMIT is set or there is no limit. getenv and readFile are
// os.Getenv and os.ReadFile but in tests.
func Apply(getenv func(string) string, readFile func(string) ([]byte, error)) Settings {
	var s Settings
	var from []string
	if v := getenv("GOGC"); v != "" {
		s.GCPercent = debug.SetGCPercent(-1)
		debug.SetGCPercent(s.GCPercent)
		from = append(from, "GOGC from the environment")
	} else {
		debug.SetGCPercent(DefaultGCPercent)
		s.GCPercent = DefaultGCPercent
		from = append(from, fmt.Sprintf("GOGC=%d (default)", DefaultGCPercent))
	}
	switch limit, file := cgroupLimit(readFile); {
	case getenv("GOMEMLIMIT") != "":
		from = append(from, "GOMEMLIMIT from the environment")
	case limit > 0:
		s.MemoryLimit = int64(float64(limit) * MemoryLimitFraction)
		debug.SetMemoryLimit(s.MemoryLimit)
		from = append(from, fmt.Sprintf("memory limit %.0f%% of %s", MemoryLimitFraction*100, file))
	default:
		from = append(from, "no memory limit (no cgroup limit found)")
	}
	s.Source = strings.Join(from, ", ")
	return s
}

// ApplyFromOS is Apply with the process environment and file system.
func ApplyFromOS() Settings { return Apply(os.Getenv, os.ReadFile) }

// cgroupLimit returns the container's memory limit in bytes and the file that gave
// it, or 0 when there is none ("max", absent, or the v1 "no limit" value).
func cgroupLimit(readFile func(string) ([]byte, error)) (int64, string) {
	for _, f := range cgroupLimitFiles {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, ""
		}
		n, err := strconv.ParseInt(v, 10, 64)
		// cgroup v1 reports "no limit" as a huge page-rounded number.
		if err != nil || n <= 0 || n >= math.MaxInt64/2 {
			return 0, ""
		}
		return n, f
	}
	return 0, ""
}
