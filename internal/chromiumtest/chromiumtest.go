// Package chromiumtest is a test harness: a page opened in headless
// Chromium (Debian's chromium package), driven with chromedp, to check
// what a reader sees and to keep a screenshot of it as a test artifact.
// Without Chromium the test is skipped, unless CI=true, where it fails
// (.ci/install-chromium.sh installs it).
package chromiumtest

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Binary returns the Chromium to run: $CHROMIUM_BIN, else chromium on
// the PATH, else /usr/bin/chromium; "" when there is none.
func Binary() string {
	if b := os.Getenv("CHROMIUM_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return ""
		}
		return b
	}
	if b, err := exec.LookPath("chromium"); err == nil {
		return b
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// How is what to do when Binary finds none.
const How = "install Debian's chromium (.ci/install-chromium.sh) or set CHROMIUM_BIN"

// Require returns Chromium's path, or skips the test (fails it when
// CI=true).
func Require(t testing.TB) string {
	t.Helper()
	b := Binary()
	if b == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium not found, and CI=true: %s", How)
		}
		t.Skipf("Chromium not found: %s", How)
	}
	return b
}

// ArtifactDir is where a test keeps what it wants looked at:
// $NESTGUARD_TEST_ARTIFACTS/<test name> when set, else a temporary
// directory removed after the test.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("NESTGUARD_TEST_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, filepath.Base(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Page is a file opened in a browser of its own.
type Page struct {
	ctx context.Context
}

// Open starts Chromium (headless, no sandbox as root, no GPU, and none of
// its background network traffic, which a machine without network would
// answer with refused connections; a fresh profile) and opens the file at
// path. The browser stops when the test ends; it may run at most two
// minutes.
func Open(t testing.TB, path string) *Page {
	t.Helper()
	bin := Require(t)
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(1200, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(acancel)
	pctx, pcancel := chromedp.NewContext(actx)
	t.Cleanup(pcancel)
	u := url.URL{Scheme: "file", Path: abs}
	if err := chromedp.Do(pctx, chromedp.Navigate(u.String())); err != nil {
		t.Fatalf("opening %s in Chromium: %v", abs, err)
	}
	return &Page{ctx: pctx}
}

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](t testing.TB, p *Page, expr string) T {
	t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// Screenshot returns a PNG of the whole page.
func (p *Page) Screenshot(t testing.TB) []byte {
	t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return b
}

// ViewportScreenshot returns a PNG of what the window shows (1200x900):
// the page as a reader first sees it.
func (p *Page) ViewportScreenshot(t testing.TB) []byte {
	t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return b
}

// PDF prints the page on A4 paper, as a reader's "print" would, with its
// print style sheet.
func (p *Page) PDF(t testing.TB) []byte {
	t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4), chromedp.PDFPrintBackground()))
	if err != nil {
		t.Fatalf("printing to PDF: %v", err)
	}
	if len(b) < 5 || string(b[:5]) != "%PDF-" {
		t.Fatalf("printing to PDF gave %d bytes that are no PDF", len(b))
	}
	return b
}

// Save writes b as name in dir and logs where.
func Save(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s (%d bytes)", path, len(b))
	return path
}
