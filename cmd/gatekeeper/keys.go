package main

import (
	"errors"
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
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
		fmt.Fprintln(stdout, synopsis)
		return 0
	}
	if len(args) == 0 || args[0] != "new" {
		fmt.Fprintln(stderr, "gatekeeper: keys needs a command (new BACKEND); see gatekeeper keys --help")
		return 2
	}
	var own struct {
		Rate   float64 `name:"rate" help:"payloads per second the backend may post; 0 for no quota"`
		Burst  int     `name:"burst" help:"payloads it may post at once above the rate (default the rate, rounded up)"`
		Tables string  `name:"tables" help:"comma-separated tables it may write, exact or prefix* (default all)"`
		Admin  bool    `name:"admin" help:"an admin key: opens the admin API and page, not the ingestion API"`
	}
	// The backend's name may come before or after the flags.
	names, err := parseFlags("keys new", synopsis, args[1:], stdout, &own)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper keys new: %v\n", err)
		return 2
	}
	if len(names) != 1 {
		fmt.Fprintln(stderr, "gatekeeper keys new: name one backend")
		return 2
	}
	name := names[0]
	rate, burst, tables, admin := &own.Rate, &own.Burst, &own.Tables, &own.Admin
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
