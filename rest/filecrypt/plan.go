package filecrypt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Op is what a plan is for.
type Op int

const (
	// OpEncrypt: plaintext sources to SOURCE.tenc outputs.
	OpEncrypt Op = iota
	// OpDecrypt: .tenc sources to outputs without the suffix.
	OpDecrypt
)

// Job is one file to process (Src to Dst), or one directory to create (Dir,
// at Dst). Src and Dst "-" are the IO's Stdin and Stdout.
type Job struct {
	Src, Dst string
	Dir      bool
	// Perm is the mode the output gets.
	Perm fs.FileMode
}

// Plan turns sources into jobs, checking them all before any work starts:
// a failure here has written nothing. Errors in the request match ErrUsage;
// an output that exists without p.Force matches ErrOutputExists.
//
// Encrypt skips files already ending in Suffix when walking a tree, decrypt
// takes only those; both skip symbolic links and special files. A decrypted
// output gets its encrypted file's mode less the process umask, as a newly
// created file would.
func Plan(sources []string, p Params, op Op) ([]Job, error) {
	encrypt := op == OpEncrypt
	outName := func(src string) (string, error) {
		if encrypt {
			return src + Suffix, nil
		}
		if !strings.HasSuffix(src, Suffix) || len(filepath.Base(src)) == len(Suffix) {
			return "", usagef("%s does not end in %s: name the output with -o", src, Suffix)
		}
		return strings.TrimSuffix(src, Suffix), nil
	}
	outDir := false
	if p.Output != "" && p.Output != "-" {
		fi, err := os.Stat(p.Output)
		outDir = err == nil && fi.IsDir()
	}
	if len(sources) > 1 && p.Output != "" && !outDir {
		if p.Output == "-" {
			return nil, usagef("-o - takes a single source")
		}
		return nil, usagef("-o %s: with several sources, -o must be an existing directory", p.Output)
	}
	// Encrypted files are often left world-readable; the plaintext made from
	// them gets their mode less the umask, as a newly created file would.
	mode := func(m fs.FileMode) fs.FileMode { return m.Perm() }
	if !encrypt {
		mask := Umask()
		mode = func(m fs.FileMode) fs.FileMode { return m.Perm() &^ mask }
	}
	var jobs []Job
	for _, src := range sources {
		if src == "-" {
			if len(sources) > 1 {
				return nil, usagef(`"-" (stdin) must be the only source`)
			}
			dst := p.Output
			if dst == "" {
				dst = "-"
			}
			jobs = append(jobs, Job{Src: "-", Dst: dst, Perm: 0o600})
			continue
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, usageError{err}
		}
		if !fi.IsDir() {
			dst := p.Output
			switch {
			case p.Output == "-" || (p.Output != "" && !outDir):
			case outDir:
				name, err := outName(filepath.Base(src))
				if err != nil {
					return nil, err
				}
				dst = filepath.Join(p.Output, name)
			default:
				if dst, err = outName(src); err != nil {
					return nil, err
				}
			}
			jobs = append(jobs, Job{Src: src, Dst: dst, Perm: mode(fi.Mode())})
			continue
		}
		tree, err := planTree(src, p, len(sources) > 1, encrypt, outName, mode)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, tree...)
	}
	if !p.Force {
		if err := noOutputs(jobs); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

// noOutputs fails if any job's output file exists.
func noOutputs(jobs []Job) error {
	for _, j := range jobs {
		if j.Dir || j.Dst == "-" {
			continue
		}
		if _, err := os.Lstat(j.Dst); err == nil {
			return fmt.Errorf("%s: %w; nothing was written", j.Dst, ErrOutputExists)
		}
	}
	return nil
}

// planTree plans the directory src: its tree is recreated under p.Output
// (under p.Output/base(src) when there are several sources), or the outputs
// go beside the inputs.
func planTree(src string, p Params, several, encrypt bool, outName func(string) (string, error), mode func(fs.FileMode) fs.FileMode) ([]Job, error) {
	if !p.Recursive {
		return nil, usagef("%s is a directory: use -r", src)
	}
	if p.Output == "-" {
		return nil, usageError{errors.New("-o - cannot take a directory")}
	}
	root := src
	if p.Output != "" {
		root = p.Output
		if several {
			root = filepath.Join(p.Output, filepath.Base(filepath.Clean(src)))
		}
	}
	var jobs []Job
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if root != src {
				jobs = append(jobs, Job{Dst: filepath.Join(root, rel), Dir: true, Perm: mode(info.Mode())})
			}
		case !d.Type().IsRegular():
			// Symbolic links and special files are not followed or copied.
		case strings.HasSuffix(path, Suffix) == encrypt:
			// encrypt skips .tenc files; decrypt takes only them.
		default:
			name, err := outName(rel)
			if err != nil {
				return err
			}
			jobs = append(jobs, Job{Src: path, Dst: filepath.Join(root, name), Perm: mode(info.Mode())})
		}
		return nil
	})
	return jobs, err
}

// Umask reads the process's umask from /proc without changing it
// (umask(2) can only be read by setting it). If /proc cannot tell, it
// assumes the strictest sensible mask, 077.
func Umask() fs.FileMode {
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return fs.FileMode(m)
				}
			}
		}
	}
	return 0o077
}
