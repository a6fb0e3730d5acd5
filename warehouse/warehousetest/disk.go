package warehousetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TmpfsDir mounts a tmpfs of size bytes on a new directory under parent
// (t.TempDir() when parent is ""), unmounted when the test ends, after the
// processes the test starts later are stopped (cleanups run last first).
// Mounting needs root: CI runs as root, and there (CI set) a failed mount
// fails the test; elsewhere it skips.
func TmpfsDir(t testing.TB, parent string, size int) string {
	t.Helper()
	if parent == "" {
		parent = t.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot mount a tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// FillDisk writes path until its file system is full and returns how many
// bytes it wrote.
func FillDisk(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	var n int64
	for range 1 << 20 { // 64 GiB: no test's file system is larger
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return n
		}
	}
	t.Fatalf("%s never filled its file system", path)
	return n
}
