package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// version is set by the build: go build -ldflags "-X main.version=v1.2.3"
// (the Dockerfile's VERSION argument). Without it, the module's version
// and the commit come from the build information Go records.
var version string

// versionString is what --version prints: the version, and the commit it
// was built from where Go recorded one ("+dirty" for uncommitted changes).
func versionString(set string, info *debug.BuildInfo, ok bool) string {
	if set != "" {
		return set
	}
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " " + rev + dirty
	}
	return v
}

// versionCommand is `gatekeeper version` and `gatekeeper --version`.
func versionCommand(_ []string, stdout, _ io.Writer) int {
	info, ok := debug.ReadBuildInfo()
	fmt.Fprintf(stdout, "gatekeeper %s\n", versionString(version, info, ok))
	return exitOK
}
