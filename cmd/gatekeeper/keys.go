package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
)

// keysCommand is `gatekeeper keys new BACKEND`: a fresh key for the backends
// file. The entry goes to stdout, so that `>> backends.yaml` appends it;
// the key itself goes to stderr, once, alone on the last line, and is
// never written anywhere else.
func keysCommand(args []string, stdout, stderr io.Writer) int {
	const synopsis = "usage: gatekeeper keys new BACKEND [--rate N] [--burst M] [--tables t1,orders_*] [--admin]\n\n" +
		"Prints a BACKENDS_FILE entry with a fresh key's hash on stdout, and the key, once, on stderr's last line."
	if len(args) == 0 || args[0] != "new" {
		fmt.Fprintln(stderr, synopsis)
		return 2
	}
	fs := flag.NewFlagSet("keys new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rate := fs.Float64("rate", 0, "payloads per second the backend may post; 0 for no quota")
	burst := fs.Int("burst", 0, "payloads it may post at once above the rate (default the rate, rounded up)")
	tables := fs.String("tables", "", "comma-separated tables it may write, exact or prefix* (default all)")
	admin := fs.Bool("admin", false, "an admin key: opens the admin API and page, not the ingestion API")
	fs.Usage = func() { fmt.Fprintln(stderr, synopsis); fs.PrintDefaults() }
	// The backend's name may come before or after the flags.
	rest := args[1:]
	var name string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if name == "" || fs.NArg() > 1 || (fs.NArg() == 1 && name != fs.Arg(0)) {
		fmt.Fprintln(stderr, "gatekeeper keys new: name one backend")
		return 2
	}
	key, k, err := frontdoor.NewKey()
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper keys new: %v\n", err)
		return 1
	}
	e := frontdoor.Entry{Name: name, Keys: []frontdoor.Key{k}, Admin: *admin, Rate: *rate, Burst: *burst}
	for _, t := range strings.Split(*tables, ",") {
		if t = strings.TrimSpace(t); t != "" {
			e.Tables = append(e.Tables, t)
		}
	}
	// The entry is checked as the service would load it, so that a bad
	// flag never reaches the file.
	out, err := frontdoor.EntryYAML(e)
	if err == nil {
		_, err = frontdoor.Parse("the new entry", out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper keys new: %v\n", err)
		return 2
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "gatekeeper keys new: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "The key for %s (shown once; the file keeps only its hash; send it as Authorization: Bearer KEY):\n%s\n", name, key)
	return 0
}
