package compliance

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"sync"
	"time"
)

// reportCSS is the report's whole style: inline, so the file needs
// nothing else, with a print layout.
//
//go:embed report.css
var reportCSS string

//go:embed report.html.tmpl
var reportTemplate string

// htmlTemplate is parsed on first use, not when the package initializes:
// every nestguard process links this package, and one archive_command
// call, whose start PostgreSQL waits on, has no report to write.
var htmlTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"time":   fmtTime,
		"status": statusLabel,
		"class":  func(s string) string { return strings.ReplaceAll(s, " ", "-") },
		"dur":    func(sec float64) string { return fmtDur(time.Duration(sec * float64(time.Second))) },
		"short": func(s string) string {
			if len(s) > 16 {
				return s[:16] + "…"
			}
			return s
		},
		"css": func() template.CSS { return template.CSS(reportCSS) },
	}).Parse(reportTemplate))
})

// htmlView is what the template reads.
type htmlView struct {
	*Report
	Title, Period, CountLine string
	Rows                     []htmlControl
}

type htmlControl struct {
	*Control
	ClauseList string
}

// WriteHTML writes the report as one self-contained HTML file: inline
// style, no script, no external resource; readable on a screen and
// printable (a page per section, status colours kept).
func (rep *Report) WriteHTML(w io.Writer) error {
	v := htmlView{Report: rep, Title: rep.title(), Period: rep.period(), CountLine: rep.countLine()}
	for i := range rep.Controls {
		c := &rep.Controls[i]
		v.Rows = append(v.Rows, htmlControl{Control: c, ClauseList: clauseList(c.Clauses)})
	}
	if err := htmlTemplate().Execute(w, v); err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	return nil
}
