package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// stdinIsTerminal says whether a question can be answered; tests replace
// it.
var stdinIsTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// question is what a command asks before it changes something.
type question struct {
	text string
	// skip says how to go ahead without the question, for the error when
	// it cannot be answered.
	skip string
	// terminal refuses to read the answer from anything but a terminal,
	// so that a pipe that happens to say yes drops nothing.
	terminal bool
}

// ask writes the question on out and reads the answer from in: only "yes"
// goes ahead. An input that ends without an answer is not taken for one.
func (q question) ask(in io.Reader, out io.Writer) (bool, error) {
	if q.terminal && !stdinIsTerminal(in) {
		return false, errors.New("refusing to go ahead without confirmation: standard input is not a terminal; " + q.skip)
	}
	fmt.Fprint(out, q.text+" Only 'yes' is accepted: ")
	line, err := bufio.NewReader(in).ReadString('\n')
	answer := strings.TrimSpace(line)
	if answer == "" && err != nil {
		fmt.Fprintln(out)
		return false, errors.New("refusing to go ahead without confirmation: standard input ended without an answer; " + q.skip)
	}
	return answer == "yes", nil
}
