package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// terminal returns r as an *os.File if it is a terminal.
func terminal(r io.Reader) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok {
		return nil, false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return f, err == nil
}

// readSecret prompts on w and reads one line from the terminal in without
// echo. The caller zeroes the result.
func readSecret(in *os.File, w io.Writer, prompt string) ([]byte, error) {
	fd := int(in.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return nil, err
	}
	defer func() {
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintln(w)
	}()
	fmt.Fprint(w, prompt)
	var line []byte
	var b [1]byte
	for {
		n, err := in.Read(b[:])
		if n == 1 {
			if b[0] == '\n' || b[0] == '\r' {
				break
			}
			line = append(line, b[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			clear(line)
			return nil, err
		}
	}
	return line, nil
}

// confirm asks on a terminal for the word want to be typed back.
func confirm(in *os.File, w io.Writer, question, want string) bool {
	fmt.Fprintf(w, "%s\nType %q to confirm: ", question, want)
	line, _ := bufio.NewReader(in).ReadString('\n')
	return strings.TrimSpace(line) == want
}
