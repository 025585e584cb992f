package testbed

import (
	"bufio"
	"fmt"
	"io"
	"sort"
)

// cpioEntry is one file, directory or symlink of an initramfs archive.
type cpioEntry struct {
	mode uint32 // full st_mode: type bits | permissions
	data []byte // file contents or symlink target
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
)

// archive is an in-memory initramfs: guest path (no leading slash) to entry.
// Parent directories are added by writeNewc, so callers only add leaves.
type archive map[string]cpioEntry

func (a archive) file(path string, perm uint32, data []byte) {
	a[path] = cpioEntry{mode: sIFREG | perm, data: data}
}

// symlink adds a symbolic link at path pointing to target.
func (a archive) symlink(path, target string) {
	a[path] = cpioEntry{mode: sIFLNK | 0o777, data: []byte(target)}
}

func (a archive) dir(path string) { a[path] = cpioEntry{mode: sIFDIR | 0o755} }

// writeNewc writes the archive in the "newc" cpio format the kernel unpacks
// into its initial root file system, sorted so the output is reproducible
// and every directory comes before its contents.
func (a archive) writeNewc(w io.Writer) error {
	all := map[string]cpioEntry{}
	for p, e := range a {
		all[p] = e
		for d := parentDir(p); d != ""; d = parentDir(d) {
			if _, ok := all[d]; !ok {
				if _, ok := a[d]; !ok {
					all[d] = cpioEntry{mode: sIFDIR | 0o755}
				}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	bw := bufio.NewWriter(w)
	var off int64
	put := func(name string, e cpioEntry, ino int) error {
		nlink := 1
		if e.mode&0o170000 == sIFDIR {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, 0, 0, len(name)+1, 0)
		n, _ := bw.WriteString(hdr)
		m, _ := bw.WriteString(name + "\x00")
		off += int64(n + m)
		if err := pad4(bw, &off); err != nil {
			return err
		}
		k, err := bw.Write(e.data)
		off += int64(k)
		if err != nil {
			return fmt.Errorf("cpio: writing %s: %w", name, err)
		}
		return pad4(bw, &off)
	}
	for i, n := range names {
		if err := put(n, all[n], i+1); err != nil {
			return err
		}
	}
	if err := put("TRAILER!!!", cpioEntry{}, 0); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	return nil
}

func pad4(w io.Writer, off *int64) error {
	if r := *off % 4; r != 0 {
		n, err := w.Write(make([]byte, 4-r))
		*off += int64(n)
		if err != nil {
			return fmt.Errorf("cpio: padding: %w", err)
		}
	}
	return nil
}

func parentDir(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return ""
}

func sortStrings(s []string) { sort.Strings(s) }
