package main

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
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

// Every fenced code block in the Markdown ends: one left open turns the
// rest of its page into code, and hides that rest from the tests above.
func TestDocFencesClose(t *testing.T) {
	for _, page := range markdownPages(t) {
		raw, err := os.ReadFile(filepath.Join(repoRoot, page))
		if err != nil {
			t.Fatal(err)
		}
		open := 0
		for i, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				if open == 0 {
					open = i + 1
				} else {
					open = 0
				}
			}
		}
		if open != 0 {
			t.Errorf("%s:%d: this code block is never closed", page, open)
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
	for _, rel := range repoFiles(t) {
		if strings.HasSuffix(rel, ".md") {
			pages = append(pages, rel)
		}
	}
	return pages
}

// datedRecord reports whether page is a dated record (bench/RESULTS.md,
// docs/decisions/): it describes the builds it measured or weighed, paths,
// names and settings since removed included, so the checks that the docs
// name what exists leave it out.
func datedRecord(page string) bool {
	return page == "bench/RESULTS.md" || strings.HasPrefix(page, "docs/decisions/")
}

// repoFiles lists every file of the repository, relative to its root with
// slashes, leaving out hidden directories but those named in keepHidden.
func repoFiles(t *testing.T, keepHidden ...string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != repoRoot && strings.HasPrefix(d.Name(), ".") && !slices.Contains(keepHidden, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// parseGoFiles parses every Go file of the module, tests included,
// testdata left out, and hands each to visit with its path from the root.
func parseGoFiles(t *testing.T, mode goparser.Mode, visit func(rel string, f *ast.File)) {
	t.Helper()
	fset := token.NewFileSet()
	for _, rel := range repoFiles(t) {
		if !strings.HasSuffix(rel, ".go") || slices.Contains(strings.Split(rel, "/"), "testdata") {
			continue
		}
		f, err := goparser.ParseFile(fset, filepath.Join(repoRoot, filepath.FromSlash(rel)), nil, mode)
		if err != nil {
			t.Fatal(err)
		}
		visit(rel, f)
	}
}

// docProse calls f with every prose line of every Markdown page the
// existence checks read (all but the dated records), i counting from 0.
func docProse(t *testing.T, f func(page string, i int, line string)) {
	t.Helper()
	for _, page := range markdownPages(t) {
		if datedRecord(page) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(repoRoot, page))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range proseLines(string(raw)) {
			f(page, i, line)
		}
	}
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

// Every repository path the Markdown names in a code span (`pipeline/service.go`,
// `pipeline/outbox/`, `bench/peers.sh`) exists, and so does every bare source
// file name (`stage_apply.go`) somewhere in the repository: a file moved or
// renamed fails here, not in a newcomer's hands. A span counts as a path
// when its first element is one of the repository's top-level entries, so
// MIME types (`application/json`), URL paths (`/healthz`) and import paths
// of other modules (`net/http`) are left alone. In a command
// (`go test -bench Append ./pipeline/outbox`) the ./ arguments are checked.
func TestDocPathsExist(t *testing.T) {
	top := map[string]bool{}
	entries, err := os.ReadDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		top[e.Name()] = true
	}
	basenames := repoBasenames(t)
	checked := 0
	docProse(t, func(page string, i int, line string) {
		for _, span := range codeSpans(line) {
			p := strings.TrimPrefix(span, module+"/")
			switch {
			case pathSpan.MatchString(p) && top[strings.SplitN(p, "/", 2)[0]]:
				checked++
				if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(p))); err != nil {
					t.Errorf("%s:%d: `%s` names a path that does not exist", page, i+1, span)
				}
			case sourceName.MatchString(p):
				checked++
				if !basenames[p] {
					t.Errorf("%s:%d: `%s` names a file the repository does not hold", page, i+1, span)
				}
			default:
				// A command: its ./relative arguments (`go test ./pipeline/outbox`).
				for _, arg := range strings.Fields(span) {
					arg, ok := strings.CutPrefix(arg, "./")
					arg = strings.TrimSuffix(strings.TrimSuffix(arg, "..."), "/")
					if !ok || arg == "" || !pathSpan.MatchString(arg) || !top[strings.SplitN(arg, "/", 2)[0]] {
						continue
					}
					checked++
					if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(arg))); err != nil {
						t.Errorf("%s:%d: `%s` names ./%s, which does not exist", page, i+1, span, arg)
					}
				}
			}
		}
	})
	if checked < 50 {
		t.Errorf("checked only %d paths: is the path pattern still right?", checked)
	}
}

// The Go symbols the Markdown names exist: a code span `pkg.Name` or
// `pkg.Type.Member` whose pkg is one of this module's packages names
// something declared there (a function, type, variable, constant, method
// or field), and a span right after a Go file's path (`pipeline/service.go`
// `shutdown`) names something declared in that file (a method by its name
// alone). A test the docs name (`TestMetricsCountExactly`) exists.
func TestDocSymbolsExist(t *testing.T) {
	decls := moduleDecls(t)
	checked := 0
	docProse(t, func(page string, i int, line string) {
		for _, m := range fileThenSymbol.FindAllStringSubmatch(line, -1) {
			file, sym := m[1], strings.TrimSuffix(m[2], "()")
			declared, ok := decls.byFile[file]
			if !ok {
				continue // TestDocPathsExist names a missing file
			}
			checked++
			if !declared[sym] && !declaresMethod(declared, sym) {
				t.Errorf("%s:%d: `%s` `%s`: %s declares no %s", page, i+1, m[1], m[2], file, sym)
			}
		}
		for _, span := range codeSpans(line) {
			if testFunc.MatchString(span) {
				checked++
				if !decls.funcs[span] {
					t.Errorf("%s:%d: `%s`: no package declares it", page, i+1, span)
				}
				continue
			}
			m := qualifiedSymbol.FindStringSubmatch(span)
			if m == nil || fileName.MatchString(span) {
				continue
			}
			dirs := decls.dirsNamed[m[1]]
			if len(dirs) == 0 {
				continue // not one of ours (http.Server, middleware.Retry)
			}
			checked++
			found := false
			for _, dir := range dirs {
				found = found || decls.byDir[dir][m[2]]
			}
			if !found {
				t.Errorf("%s:%d: `%s`: package %s declares no %s", page, i+1, span, m[1], m[2])
			}
		}
	})
	if checked < 30 {
		t.Errorf("checked only %d symbols: are the patterns still right?", checked)
	}
}

// declaresMethod reports whether declared holds a method or field named
// name, of any type: a doc names `pipeline/service.go` `shutdown` for
// Service.shutdown.
func declaresMethod(declared map[string]bool, name string) bool {
	for d := range declared {
		if strings.HasSuffix(d, "."+name) {
			return true
		}
	}
	return false
}

// Every environment variable the Markdown names in a code span
// (`SHUTDOWN_DELAY`, `SQLITE_SYNC=full`) appears in the
// repository's Go source, scripts or .env.example: a setting renamed or
// gone fails here. The dated records are left out (datedRecord).
func TestDocSettingsExist(t *testing.T) {
	known := map[string]bool{}
	for _, rel := range repoFiles(t, ".ci") {
		name := path.Base(rel)
		if !(strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".sh") ||
			strings.HasSuffix(name, ".yml") || name == ".env.example" || name == "Dockerfile" || name == "run") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range envName.FindAllString(string(raw), -1) {
			known[v] = true
		}
	}
	checked := 0
	docProse(t, func(page string, i int, line string) {
		for _, span := range codeSpans(line) {
			name, _, _ := strings.Cut(span, "=")
			if !envSpan.MatchString(name) {
				continue
			}
			checked++
			if !known[name] {
				t.Errorf("%s:%d: `%s` names a setting nothing in the repository reads", page, i+1, span)
			}
		}
	})
	if checked < 50 {
		t.Errorf("checked only %d settings: is the pattern still right?", checked)
	}
}

// module is this repository's module path, as go.mod names it.
const module = "github.com/gatekeeper/gatekeeper"

var (
	// pathSpan is a relative path: elements joined by slashes, an optional
	// trailing slash, nothing else.
	pathSpan = regexp.MustCompile(`^[\w.-]+(/[\w.-]+)*/?$`)
	// sourceName is a bare file name of the kinds the repository holds.
	sourceName = regexp.MustCompile(`^[\w-]+\.(go|sh|html|md)$`)
	// fileThenSymbol is a Go file's path in a code span, then, after
	// blanks only, an identifier in one (`Type.Method`, `func()`).
	fileThenSymbol = regexp.MustCompile("`([\\w./-]+\\.go)`\\s+`([A-Za-z_]\\w*(?:\\.[A-Za-z_]\\w*)?(?:\\(\\))?)`")
	// fileName is a file name that qualifiedSymbol would take for a
	// symbol (`sqlite.go`, `alerts.yml`).
	fileName = regexp.MustCompile(`\.(go|sh|html|md|ya?ml|json|db|sql|txt|png|example)$`)
	// envName is an environment variable's name, in code; envSpan is a
	// code span that is one.
	envName = regexp.MustCompile(`[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]`)
	envSpan = regexp.MustCompile(`^[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]$`)
	// testFunc is a test, benchmark, example or fuzz function's name.
	testFunc = regexp.MustCompile(`^(Test|Benchmark|Example|Fuzz)[A-Z]\w*$`)
	// qualifiedSymbol is pkg.Name or pkg.Type.Member, optionally called.
	qualifiedSymbol = regexp.MustCompile(`^([a-z]\w*)\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)(?:\(\))?$`)
)

// codeSpans returns the contents of a line's code spans.
func codeSpans(line string) []string {
	var spans []string
	for _, s := range codeSpan.FindAllString(line, -1) {
		spans = append(spans, strings.Trim(s, "`"))
	}
	return spans
}

// repoBasenames is the set of every file and directory name in the
// repository.
func repoBasenames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, rel := range repoFiles(t) {
		for _, name := range strings.Split(rel, "/") {
			names[name] = true
		}
	}
	return names
}

// declarations is what the module's Go files declare: by file (its path
// from the root), by package directory, and the directories of each
// package name.
type declarations struct {
	byFile    map[string]map[string]bool
	byDir     map[string]map[string]bool
	dirsNamed map[string][]string
	// funcs holds every top-level function's name, in any package.
	funcs map[string]bool
}

// moduleDecls parses every Go file of the module (tests too: a doc may
// name a test) for its top-level names, its methods as Type.Method and its
// struct fields and interface methods as Type.Field.
func moduleDecls(t *testing.T) declarations {
	t.Helper()
	d := declarations{byFile: map[string]map[string]bool{}, byDir: map[string]map[string]bool{}, dirsNamed: map[string][]string{},
		funcs: map[string]bool{}}
	parseGoFiles(t, goparser.SkipObjectResolution, func(rel string, f *ast.File) {
		dir := path.Dir(rel)
		if d.byDir[dir] == nil {
			d.byDir[dir] = map[string]bool{}
			// The name a doc qualifies with is the directory's, which is
			// the package's for every package but main.
			d.dirsNamed[path.Base(dir)] = append(d.dirsNamed[path.Base(dir)], dir)
		}
		names := map[string]bool{}
		for _, name := range fileDecls(f) {
			names[name] = true
			d.byDir[dir][name] = true
			d.funcs[name] = true
		}
		d.byFile[rel] = names
	})
	return d
}

// fileDecls lists what f declares.
func fileDecls(f *ast.File) []string {
	var names []string
	for _, decl := range f.Decls {
		switch decl := decl.(type) {
		case *ast.FuncDecl:
			name := decl.Name.Name
			if decl.Recv != nil && len(decl.Recv.List) == 1 {
				if recv := receiverName(decl.Recv.List[0].Type); recv != "" {
					name = recv + "." + name
				}
			}
			names = append(names, name)
		case *ast.GenDecl:
			for _, spec := range decl.Specs {
				switch spec := spec.(type) {
				case *ast.TypeSpec:
					names = append(names, spec.Name.Name)
					var fields *ast.FieldList
					switch typ := spec.Type.(type) {
					case *ast.StructType:
						fields = typ.Fields
					case *ast.InterfaceType:
						fields = typ.Methods
					}
					if fields != nil {
						for _, field := range fields.List {
							for _, n := range field.Names {
								names = append(names, spec.Name.Name+"."+n.Name)
							}
							if len(field.Names) == 0 {
								// An embedded field is named by its type.
								if n := receiverName(field.Type); n != "" {
									names = append(names, spec.Name.Name+"."+n)
								}
							}
						}
					}
				case *ast.ValueSpec:
					for _, n := range spec.Names {
						names = append(names, n.Name)
					}
				}
			}
		}
	}
	return names
}

// receiverName is the type name in a receiver or embedded field: T, *T,
// T[P], pkg.T.
func receiverName(expr ast.Expr) string {
	switch e := expr.(type) {
	case *ast.StarExpr:
		return receiverName(e.X)
	case *ast.IndexExpr:
		return receiverName(e.X)
	case *ast.IndexListExpr:
		return receiverName(e.X)
	case *ast.SelectorExpr:
		return e.Sel.Name
	case *ast.Ident:
		return e.Name
	}
	return ""
}

// The import rules docs/architecture.md states: only the commands (cmd/,
// and the measuring commands in bench/) import
// pipeline (and pipeline's own external tests), messages imports nothing of
// this module's, and no warehouse adapter imports another.
func TestImportsPointDown(t *testing.T) {
	checked := 0
	parseGoFiles(t, goparser.ImportsOnly, func(rel string, f *ast.File) {
		dir := path.Dir(rel)
		for _, imp := range f.Imports {
			target, ok := strings.CutPrefix(strings.Trim(imp.Path.Value, `"`), module+"/")
			if !ok {
				continue
			}
			checked++
			switch {
			case target == "pipeline" && dir != "pipeline" && !strings.HasPrefix(dir, "cmd/") && !strings.HasPrefix(dir, "bench/"):
				t.Errorf("%s imports pipeline: only the commands may", rel)
			case dir == "messages" && target != "messages":
				t.Errorf("%s imports %s: messages imports nothing of this module's", rel, target)
			case (dir == "warehouse/sqlite" || dir == "warehouse/bigquery") && (target == "warehouse/sqlite" || target == "warehouse/bigquery") && target != dir:
				t.Errorf("%s imports %s: no adapter imports another", rel, target)
			}
		}
	})
	if checked < 50 {
		t.Errorf("checked only %d imports of this module's", checked)
	}
}
