package main

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The repository's root, from this package's directory.
const repoRoot = "../.."

// Every relative link in the repository's Markdown (README.md, docs/,
// bench/RESULTS.md...) names a file or directory that exists, and every
// #anchor a heading of the page it points into; so does every alert's
// runbook_url. A page moved or a heading renamed fails here, not in a
// reader's browser.
func TestDocLinksResolve(t *testing.T) {
	t.Parallel()
	pages := markdownPages(t)
	if len(pages) < 5 {
		t.Fatalf("found only %d Markdown pages: %v", len(pages), pages)
	}
	anchors := map[string]map[string]bool{} // page → its headings' anchors
	anchorsOf := func(page string) map[string]bool {
		if a, ok := anchors[page]; ok {
			return a
		}
		raw, err := os.ReadFile(filepath.Join(repoRoot, page))
		if err != nil {
			t.Fatal(err)
		}
		anchors[page] = headingAnchors(string(raw))
		return anchors[page]
	}
	check := func(from, target string) string {
		if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			return ""
		}
		file, anchor, _ := strings.Cut(target, "#")
		page := from
		if file != "" {
			page = path.Clean(path.Join(path.Dir(from), file))
			if page == ".." || strings.HasPrefix(page, "../") {
				return "points outside the repository"
			}
			if _, err := os.Stat(filepath.Join(repoRoot, page)); err != nil {
				return "names a file that does not exist"
			}
		}
		if anchor != "" && strings.HasSuffix(page, ".md") && !anchorsOf(page)[anchor] {
			return "names an anchor " + page + " has no heading for"
		}
		return ""
	}

	checked := 0
	for _, page := range pages {
		raw, err := os.ReadFile(filepath.Join(repoRoot, page))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range proseLines(string(raw)) {
			for _, m := range markdownLink.FindAllStringSubmatch(stripCodeSpans(line), -1) {
				checked++
				if why := check(page, m[1]); why != "" {
					t.Errorf("%s:%d: the link %s %s", page, i+1, m[1], why)
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked only %d links: is the link pattern still right?", checked)
	}

	alerts, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	urls := runbookURL.FindAllStringSubmatch(string(alerts), -1)
	if len(urls) == 0 {
		t.Error("alerts.yml has no runbook_url")
	}
	for _, m := range urls {
		// A runbook_url is relative to the repository's root.
		if why := check("alerts.yml", m[1]); why != "" {
			t.Errorf("alerts.yml: the runbook_url %s %s", m[1], why)
		}
	}
}

// The anchors GitHub gives headings, checked on the headings this
// repository's pages have.
func TestHeadingAnchors(t *testing.T) {
	t.Parallel()
	got := headingAnchors("# Operating gatekeeper\n## What \"applied\" means\n### `gatekeeper poison`\n" +
		"### Scraped and pushed: counting once\n## Keys, quotas and load shedding\n```\n## not a heading\n```\n" +
		"## Runbooks\n### Runbooks\n## Slow clients, broken bodies and memory\n")
	for _, want := range []string{"operating-gatekeeper", "what-applied-means", "gatekeeper-poison",
		"scraped-and-pushed-counting-once", "keys-quotas-and-load-shedding", "runbooks", "runbooks-1",
		"slow-clients-broken-bodies-and-memory"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a line in a code block counted as a heading")
	}
}

var (
	markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	runbookURL   = regexp.MustCompile(`runbook_url:\s*"([^"]+)"`)
	codeSpan     = regexp.MustCompile("`[^`]*`")
)

// markdownPages lists the repository's Markdown files, relative to its
// root, leaving out hidden directories (.git, .ci's caches).
func markdownPages(t *testing.T) []string {
	t.Helper()
	var pages []string
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != repoRoot && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(repoRoot, p)
			if err != nil {
				return err
			}
			pages = append(pages, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pages
}

// proseLines returns the page's lines with those inside fenced code blocks
// blanked, so that line numbers stay right.
func proseLines(page string) []string {
	lines := strings.Split(page, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			lines[i] = ""
			continue
		}
		if fenced {
			lines[i] = ""
		}
	}
	return lines
}

func stripCodeSpans(line string) string { return codeSpan.ReplaceAllString(line, "") }

// headingAnchors returns the anchors of a page's headings as GitHub makes
// them: lower case, punctuation dropped, spaces as hyphens, and -1, -2...
// after a repeated one.
func headingAnchors(page string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, line := range proseLines(page) {
		text, ok := strings.CutPrefix(line, "#")
		if !ok {
			continue
		}
		text = strings.TrimLeft(text, "#")
		if !strings.HasPrefix(text, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(text)) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			anchors[slug+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}
