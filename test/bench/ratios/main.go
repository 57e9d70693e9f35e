// Command ratios runs test/bench's benchmarks interleaved and prints each handler
// benchmark as a ratio to the plain-Go reference of the same size and match.
//
// It builds the benchmark binary once, then runs N rounds; each round runs the
// harness, then BenchmarkReference and BenchmarkHandler in alternating order (odd
// rounds reference first, even rounds handler first), all with -cpu 1 (GOMAXPROCS=1,
// so garbage collection is charged to the operation) and -count 1. A neighbour's load
// then hits both sides alike, and the ratio of one round is what is compared: the
// table gives the median over rounds of handler/reference, and the median ns/op,
// B/op and allocs/op with the min–max spread of ns/op.
//
//	go run ./test/bench/ratios -count 5
//	test/bench/ratios.sh -count 8 -benchtime 2s -out /tmp/bench.txt
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	count := flag.Int("count", 5, "rounds; each runs the reference and the handler once, in alternating order")
	benchtime := flag.String("benchtime", "1s", "-test.benchtime of each benchmark")
	sizes := flag.String("sizes", "small,typical,big", "benchdata sizes to run (comma-separated)")
	pkg := flag.String("pkg", "./test/bench", "the benchmark package, relative to the module root")
	out := flag.String("out", "", "also write the raw benchmark output there (benchstat reads it)")
	jsonOut := flag.Bool("json", false, "print the summary as JSON")
	strict := flag.Bool("strict", false, "exit 1 when a target of the issue is missed")
	flag.BoolVar(&floor, "floor", true, "also run BenchmarkFloor (the handler around a precomputed decision)")
	flag.Parse()
	if err := run(*count, *benchtime, *sizes, *pkg, *out, *jsonOut, *strict); err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(1)
	}
}

// floor says whether to run BenchmarkFloor too.
var floor bool

// sample is one benchmark result line.
type sample struct {
	ns, bytes, allocs float64
}

// row is the summary of one benchmark.
type row struct {
	Name        string  `json:"name"`
	Runs        int     `json:"runs"`
	NsPerOp     float64 `json:"nsPerOp"`
	NsMin       float64 `json:"nsMin"`
	NsMax       float64 `json:"nsMax"`
	BytesPerOp  float64 `json:"bytesPerOp"`
	AllocsPerOp float64 `json:"allocsPerOp"`
	// Ratio is the median over rounds of this benchmark's ns/op over the reference's of
	// the same size and match; 0 for the reference and the harness.
	Ratio    float64 `json:"ratio,omitempty"`
	RatioMin float64 `json:"ratioMin,omitempty"`
	RatioMax float64 `json:"ratioMax,omitempty"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
}

func run(count int, benchtime, sizes, pkg, out string, jsonOut, strict bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ratios")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bench.test")
	build := exec.Command(goCmd(), "test", "-c", "-o", bin, pkg)
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the benchmarks: %w", err)
	}
	var sizeRE []string
	for _, s := range strings.Split(sizes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			sizeRE = append(sizeRE, regexp.QuoteMeta(s))
		}
	}
	sizeFilter := "/^(" + strings.Join(sizeRE, "|") + ")$"

	var raw bytes.Buffer
	fmt.Fprintf(os.Stderr, "load average before: %s\n", loadavg())
	started := time.Now()
	// rounds[name] holds the sample of each round, in round order.
	rounds := map[string][]sample{}
	for r := 1; r <= count; r++ {
		order := []string{"BenchmarkHarness", "BenchmarkReference", "BenchmarkHandler"}
		if r%2 == 0 {
			order = []string{"BenchmarkHarness", "BenchmarkHandler", "BenchmarkReference"}
		}
		if floor {
			order = append(order, "BenchmarkFloor")
		}
		for _, b := range order {
			fmt.Fprintf(os.Stderr, "round %d/%d: %s\n", r, count, b)
			cmd := exec.Command(bin, "-test.run", "^$", "-test.bench", "^"+b+"$"+sizeFilter,
				"-test.benchmem", "-test.cpu", "1", "-test.count", "1", "-test.benchtime", benchtime)
			cmd.Dir = filepath.Join(root, pkg)
			var stdout bytes.Buffer
			cmd.Stdout, cmd.Stderr = io.MultiWriter(&stdout, &raw), os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w\n%s", b, err, stdout.String())
			}
			for name, s := range parse(stdout.Bytes()) {
				rounds[name] = append(rounds[name], s)
			}
		}
	}
	elapsed := time.Since(started)
	fmt.Fprintf(os.Stderr, "load average after: %s (%s)\n", loadavg(), elapsed.Round(time.Second))
	if out != "" {
		if err := os.WriteFile(out, raw.Bytes(), 0o644); err != nil {
			return err
		}
	}
	rows := summarize(rounds)
	missed := 0
	for _, r := range rows {
		if r.Met != nil && !*r.Met {
			missed++
		}
	}
	if jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{
			"rounds": count, "benchtime": benchtime, "goVersion": runtime.Version(),
			"loadavg": loadavg(), "benchmarks": rows, "targetsMissed": missed,
		}); err != nil {
			return err
		}
	} else {
		printTable(os.Stdout, rows, count)
	}
	if strict && missed > 0 {
		return fmt.Errorf("%d targets missed", missed)
	}
	return nil
}

var lineRE = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

func parse(out []byte) map[string]sample {
	res := map[string]sample{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		b, _ := strconv.ParseFloat(m[3], 64)
		a, _ := strconv.ParseFloat(m[4], 64)
		res[m[1]] = sample{ns: ns, bytes: b, allocs: a}
	}
	return res
}

// referenceOf names the reference benchmark a handler (or floor) benchmark compares
// with: Handler/typical/matched/miss → Reference/typical/matched.
func referenceOf(name string) string {
	parts := strings.Split(name, "/")
	if (parts[0] != "Handler" && parts[0] != "Floor") || len(parts) < 3 {
		return ""
	}
	return "Reference/" + parts[1] + "/" + parts[2]
}

// target is one of the targets.
type target struct {
	text  string
	check func(r row) bool
}

// targets are the issue's, for the benchmarks they name. "unmatched ≤ 30 µs" is
// applied to the typical pod. The cache-miss targets are held to "cold" as well as
// "miss" (see BenchmarkHandler).
var targets = map[string]target{
	"Handler/typical/matched/miss": typicalMiss,
	"Handler/typical/matched/cold": typicalMiss,
	"Handler/big/matched/miss":     bigMiss,
	"Handler/big/matched/cold":     bigMiss,
	"Handler/small/matched/miss":   smallMiss,
	"Handler/small/matched/cold":   smallMiss,
	"Handler/typical/matched/hit": {"≤0.15x, ≤150 allocs", func(r row) bool {
		return r.Ratio <= 0.15 && r.AllocsPerOp <= 150
	}},
	"Handler/typical/unmatched/miss": {"≤30 µs", func(r row) bool { return r.NsPerOp <= 30_000 }},
	"Handler/typical/unmatched/hit":  {"≤30 µs", func(r row) bool { return r.NsPerOp <= 30_000 }},
}

var (
	typicalMiss = target{"≤1.0x, ≤1500 allocs, ≤80 KiB", func(r row) bool {
		return r.Ratio <= 1.0 && r.AllocsPerOp <= 1500 && r.BytesPerOp <= 80*1024
	}}
	bigMiss   = target{"≤0.5x", func(r row) bool { return r.Ratio <= 0.5 }}
	smallMiss = target{"≤1.2x", func(r row) bool { return r.Ratio <= 1.2 }}
)

func summarize(rounds map[string][]sample) []row {
	var rows []row
	for name, ss := range rounds {
		r := row{Name: name, Runs: len(ss)}
		var ns, b, a []float64
		for _, s := range ss {
			ns, b, a = append(ns, s.ns), append(b, s.bytes), append(a, s.allocs)
		}
		r.NsPerOp, r.NsMin, r.NsMax = median(ns), minOf(ns), maxOf(ns)
		r.BytesPerOp, r.AllocsPerOp = median(b), median(a)
		if ref := rounds[referenceOf(name)]; len(ref) > 0 {
			var ratios []float64
			for i := range min(len(ss), len(ref)) {
				ratios = append(ratios, ss[i].ns/ref[i].ns)
			}
			r.Ratio, r.RatioMin, r.RatioMax = median(ratios), minOf(ratios), maxOf(ratios)
		}
		if t, ok := targets[name]; ok {
			met := t.check(r)
			r.Target, r.Met = t.text, &met
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return order(rows[i].Name) < order(rows[j].Name) })
	return rows
}

// order sorts by size, then the harness, then by match, reference before handler,
// miss before hit.
func order(name string) string {
	parts := append(strings.Split(name, "/"), "", "", "")
	rank := func(s string, list ...string) int {
		for i, l := range list {
			if s == l {
				return i
			}
		}
		return len(list)
	}
	return fmt.Sprintf("%d%d%d%d", rank(parts[1], "small", "typical", "big"), rank(parts[2], "", "matched", "unmatched"),
		rank(parts[0], "Harness", "Reference", "Handler", "Floor"), rank(parts[3], "", "miss", "cold", "hit"))
}

func printTable(w io.Writer, rows []row, count int) {
	head := fmt.Sprintf("benchmark (-cpu 1, median of %d)", count)
	width := len(head)
	for _, r := range rows {
		width = max(width, len(r.Name))
	}
	fmt.Fprintf(w, "%-*s %9s %6s %10s %9s %8s %11s  %s\n", width, head, "µs/op", "spread", "B/op", "allocs/op", "vs ref", "ratio range", "target (issue)")
	for _, r := range rows {
		spread := ""
		if r.NsPerOp > 0 {
			spread = fmt.Sprintf("±%.0f%%", 100*(r.NsMax-r.NsMin)/2/r.NsPerOp)
		}
		ratio, rng := "", ""
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
			rng = fmt.Sprintf("%.2f-%.2f", r.RatioMin, r.RatioMax)
		}
		tgt := r.Target
		if r.Met != nil {
			if *r.Met {
				tgt += ": ok"
			} else {
				tgt += ": MISSED"
			}
		}
		fmt.Fprintf(w, "%-*s %9s %6s %10s %9.0f %8s %11s  %s\n", width, r.Name, micros(r.NsPerOp), spread,
			size(r.BytesPerOp), r.AllocsPerOp, ratio, rng, tgt)
	}
}

func micros(ns float64) string {
	switch {
	case ns < 1000:
		return fmt.Sprintf("%.3f", ns/1000)
	case ns < 100_000:
		return fmt.Sprintf("%.1f", ns/1000)
	default:
		return fmt.Sprintf("%.0f", ns/1000)
	}
}

func size(b float64) string {
	if b < 10*1024 {
		return fmt.Sprintf("%.0f", b)
	}
	return fmt.Sprintf("%.1f Ki", b/1024)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func moduleRoot() (string, error) {
	out, err := exec.Command(goCmd(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// goCmd is $GO, else go.
func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
