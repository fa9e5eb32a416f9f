package metrics

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// awkward are label values and texts that need escaping.
var awkward = []string{`/srv/backup`, `s3://b/p "q"`, `C:\backup\`, "two\nlines", `ü €`, ``}

// TestTextReadByPrometheus checks that what Write writes is what
// Prometheus's own parser reads.
func TestTextReadByPrometheus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.prom")
	start := time.Date(2026, 12, 5, 10, 0, 0, 123456789, time.UTC)
	for i, repo := range awkward {
		r := Run{Command: "pg archive-wal", Repo: repo, Start: start.Add(time.Duration(i) * time.Hour),
			Duration: 41 * time.Millisecond, ExitCode: i % 2, Values: map[string]float64{"bytes": 16 << 20}}
		if err := Write(path, r); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	theirs, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Prometheus cannot parse the file: %v\n%s", err, b)
	}
	ours, err := parseText(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(theirs) != len(ours) {
		t.Fatalf("%d families, Prometheus reads %d", len(ours), len(theirs))
	}
	for name, tf := range theirs {
		of := ours[name]
		if of == nil || tf.GetType() != dto.MetricType_GAUGE || !of.gauge || tf.GetHelp() != of.help || len(tf.Metric) != len(of.series) {
			t.Fatalf("%s: Prometheus reads %v", name, tf)
		}
		for i, m := range tf.Metric {
			s := of.series[i]
			if m.GetGauge().GetValue() != s.value || len(m.Label) != len(s.labels) {
				t.Errorf("%s[%d]: Prometheus reads %v, we %v", name, i, m, s)
				continue
			}
			for j, lp := range m.Label {
				if lp.GetName() != s.labels[j].name || lp.GetValue() != s.labels[j].value {
					t.Errorf("%s[%d]: label %v, we %v", name, i, lp, s.labels[j])
				}
			}
		}
	}
	for _, repo := range awkward {
		if got, found := value(t, path, "nestguard_pg_archive_wal_bytes", "pg archive-wal", repo); !found || got != 16<<20 {
			t.Errorf("repo %q: bytes %v (found %v)", repo, got, found)
		}
	}
}

// TestTextWrittenByPrometheus checks that files in Prometheus's own
// rendering (an earlier nestguard wrote them with it) read the same.
func TestTextWrittenByPrometheus(t *testing.T) {
	var buf bytes.Buffer
	values := []float64{0, 1, -2.5, 1.764928800123e9, 16 << 20, math.Inf(1), math.Inf(-1)}
	for i, repo := range awkward {
		f := &dto.MetricFamily{
			Name: proto.String("nestguard_x" + strings.Repeat("_", i)),
			Help: proto.String("help [" + repo + "]"),
			Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{
				Label: []*dto.LabelPair{{Name: proto.String("command"), Value: proto.String("backup")}, {Name: proto.String("repo"), Value: proto.String(repo)}},
				Gauge: &dto.Gauge{Value: proto.Float64(values[i])},
			}},
		}
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			t.Fatal(err)
		}
		var ours bytes.Buffer
		writeText(&ours, &family{name: f.GetName(), help: f.GetHelp(), gauge: true,
			series: []series{{labels: []label{{"command", "backup"}, {"repo", repo}}, value: values[i]}}})
		if !bytes.Contains(buf.Bytes(), ours.Bytes()) {
			t.Errorf("we write\n%s\nPrometheus writes\n%s", ours.Bytes(), buf.Bytes())
		}
	}
	fams, err := parseText(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for i, repo := range awkward {
		f := fams["nestguard_x"+strings.Repeat("_", i)]
		if f == nil || !f.gauge || f.help != "help ["+repo+"]" || len(f.series) != 1 || f.series[0].get("repo") != repo || f.series[0].value != values[i] {
			t.Errorf("repo %q: read %+v", repo, f)
		}
	}
}

func TestTextRejects(t *testing.T) {
	for _, in := range []string{
		"this is { not the text format",
		`x{a="b"`,
		`x{a=b} 1`,
		`x{a="b} 1`,
		`x 1 2 3`,
		`x one`,
		`x{a="\q"} 1`,
		`9x 1`,
		"# TYPE x\n",
	} {
		if _, err := parseText(strings.NewReader(in + "\n")); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
	fams, err := parseText(strings.NewReader("# a comment\n\nx_total{a=\"b\",} 3 1700000000000\n# TYPE y counter\ny 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fams["x_total"].series[0].value != 3 || fams["y"].gauge {
		t.Errorf("read %+v %+v", fams["x_total"], fams["y"])
	}
}
