package main

// Browser tests: the admin page and the browser client in real headless
// Chromium (Debian's chromium package, which scripts/test.sh installs when
// run as root), driven with chromedp.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is the browser the tests drive. Under CI it must be there.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; scripts/test.sh installs Debian's chromium package when run as root")
	}
	t.Skip("browser tests need Debian's chromium package: apt-get install chromium (scripts/test.sh does it when run as root)")
	return ""
}

// browser is one headless Chromium for a test; tab opens pages in it.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	// This chromedp's protocol tables are older than Debian's Chromium:
	// events with values it does not know (network address spaces) fail
	// to decode, and are of no use to the tests.
	errorf := func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "could not unmarshal event") {
			t.Logf("chromedp: %s", msg)
		}
	}
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithErrorf(errorf))
	t.Cleanup(bcancel)
	if err := chromedp.Run(bctx); err != nil { // starts the browser
		t.Fatalf("chromium: %v", err)
	}
	return &browser{t: t, ctx: bctx}
}

// tab is one page: its console errors and warnings, uncaught exceptions
// and failed loads are kept; a dialog (confirm) is accepted.
type tab struct {
	t        *testing.T
	ctx      context.Context
	mu       sync.Mutex
	problems []string
}

func (b *browser) tab() *tab {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	tb := &tab{t: b.t, ctx: ctx}
	chromedp.ListenTarget(ctx, func(ev any) {
		var problem string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeWarning {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problem = fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			problem = "exception: " + e.ExceptionDetails.Error()
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.LevelError || e.Entry.Level == cdplog.LevelWarning {
				problem = fmt.Sprintf("log %s: %s %s", e.Entry.Level, e.Entry.Text, e.Entry.URL)
			}
		case *page.EventJavascriptDialogOpening:
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(true)) }()
		}
		if problem != "" {
			tb.mu.Lock()
			tb.problems = append(tb.problems, problem)
			tb.mu.Unlock()
		}
	})
	if err := chromedp.Run(ctx, cdplog.Enable()); err != nil {
		b.t.Fatal(err)
	}
	return tb
}

// run runs actions on the page, failing the test with what was asked.
func (tb *tab) run(what string, actions ...chromedp.Action) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v (page problems: %v)", what, err, tb.consoleProblems())
	}
}

// until waits up to d for the JavaScript expression cond to be true.
func (tb *tab) until(what string, d time.Duration, cond string) {
	tb.t.Helper()
	var ok bool
	ctx, cancel := context.WithTimeout(tb.ctx, d+5*time.Second)
	defer cancel()
	err := chromedp.Run(ctx, chromedp.Poll(cond, &ok, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil || !ok {
		var html string
		_ = chromedp.Run(tb.ctx, chromedp.OuterHTML("body", &html, chromedp.ByQuery))
		if len(html) > 3000 {
			html = html[:3000]
		}
		tb.t.Fatalf("%s: not within %v (%v); page: %s", what, d, err, html)
	}
}

// text is the text of the element sel.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	var s string
	tb.run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery, chromedp.NodeVisible))
	return s
}

func (tb *tab) consoleProblems() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.problems...)
}

// screenshot saves the page as a PNG: into testdata/screenshots (the
// README's) when UPDATE_SCREENSHOTS is set, else into the test's temp dir.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	var png []byte
	tb.run("screenshot", chromedp.FullScreenshot(&png, 100))
	dir := tb.t.TempDir()
	if os.Getenv("UPDATE_SCREENSHOTS") != "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// TestAdminPageBrowser: three nodes; the admin page of the first, with a
// token: a wrong token in the login form is refused, the right one shows
// the three nodes with live counts; a node killed shows down within 5 s; a
// channel search finds a channel with its member count; publishing from
// the page reaches a WebSocket client; disconnecting a user from the page
// closes its connections.
func TestAdminPageBrowser(t *testing.T) {
	const token = "admin-token-0123456789"
	cfg := writeConfig(t, historyConfig)
	n1 := startTestNode(t, "n1", nil, "--config", cfg, "--admin-listen", "127.0.0.1:0", "--admin-token", token)
	n2 := startTestNode(t, "n2", []string{n1.broker.ClusterURL()}, "--config", cfg)
	k3 := startProcess(t, "k3", []string{n1.broker.ClusterURL()}, "--config", cfg)
	awaitNodes(t, n1, 3)
	awaitHistory(t, n1, 3)
	admin := "http://" + n1.AdminAddr() + "/"

	alice := dial(t, n1.ws, dialOpts{query: "?user=alice"})
	bob1 := dial(t, n2.ws, dialOpts{query: "?user=bob"})
	bob2 := dial(t, k3.ws, dialOpts{query: "?user=bob"})
	for _, c := range []*wsClient{alice, bob1, bob2} {
		c.join("hist.lobby")
	}

	b := newBrowser(t)
	p := b.tab()
	p.run("open the admin page", chromedp.Navigate(admin), chromedp.WaitVisible("#login", chromedp.ByID))
	p.run("log in with a wrong token",
		chromedp.SendKeys("#token", "not-the-token-0123456", chromedp.ByID),
		chromedp.Submit("#login", chromedp.ByID),
		chromedp.WaitVisible("#login-error", chromedp.ByID))
	p.run("log in", chromedp.SendKeys("#token", token, chromedp.ByID), chromedp.Submit("#login", chromedp.ByID),
		chromedp.WaitVisible("#app", chromedp.ByID))

	row := func(node, cell string) string {
		return fmt.Sprintf(`document.querySelector('#nodes tr[data-node="%s"] td.%s')?.textContent`, node, cell)
	}
	for _, n := range []string{"n1", "n2", "k3"} {
		p.until(n+" listed up with its connection", 10*time.Second, row(n, "status")+` === "up" && `+row(n, "connections")+` === "1"`)
	}

	killed := time.Now()
	if err := k3.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.until("k3 shown down", 5*time.Second, `(`+row("k3", "status")+` || "").startsWith("down")`)
	t.Logf("k3 shown down %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	// Some traffic for the rates and the chart: 100 messages over 2 s.
	nc := natsConnect(t, n2.nats)
	for i := range 100 {
		_ = nc.Publish("push.chan.hist.lobby", fmt.Appendf(nil, `{"type":"news","n":%d}`, i))
		time.Sleep(20 * time.Millisecond)
	}
	p.until("n1's rate out", 5*time.Second, `parseFloat(`+row("n1", "out")+`) > 0`)

	p.run("publish", chromedp.SendKeys("#pub-channel", "hist.lobby", chromedp.ByID),
		chromedp.SendKeys("#pub-payload", `{"type":"news","from":"admin"}`, chromedp.ByID),
		chromedp.Click("#pub-submit", chromedp.ByID))
	alice.nextWhere("news", func(f frame) bool { return f["from"] == "admin" })
	p.until("publish result", 5*time.Second, `document.getElementById("pub-result").textContent.startsWith("Published")`)

	// bob's connection on k3 is gone with it; alice and bob on n2 remain.
	p.run("search channels", chromedp.SendKeys("#pattern", "hist.>", chromedp.ByID), chromedp.Click("#search", chromedp.ByID))
	p.until("hist.lobby with its members", 10*time.Second,
		`document.querySelector('#channels tr[data-channel="hist.lobby"] td.members')?.textContent === "2"`)
	p.run("open hist.lobby", chromedp.Click(`#channels tr[data-channel="hist.lobby"]`, chromedp.ByQuery))
	p.until("hist.lobby's presence", 10*time.Second, `[...document.querySelectorAll("#presence li")].map(li => li.textContent).join() === "alice (1),bob (1)"`)
	p.until("hist.lobby's last messages", 10*time.Second, `document.querySelector("#history li:last-child")?.textContent.includes('"from":"admin"')`)
	p.screenshot("admin.png")

	p.run("disconnect bob", chromedp.SendKeys("#dc-user", "bob", chromedp.ByID), chromedp.Click("#dc-submit", chromedp.ByID))
	if code := bob1.closeCode(10 * time.Second); code != 4002 {
		t.Fatalf("bob's connection: close %d, want 4002", code)
	}
	p.until("disconnect result", 5*time.Second, `document.getElementById("dc-result").textContent === "Closed 1 connection(s)."`)
	alice.send(map[string]any{"type": "ping", "id": "still"})
	alice.answer("still")
}
