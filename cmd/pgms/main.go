// Command pgms manages PostgreSQL microshards declaratively.
//
// The command layer parses flags, asks questions and wires packages
// together; the behaviour lives in config, state, planner, rebalance,
// executor, runner and sql, and what each command shows in views.
package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/dsn"
)

// Exit codes, the same for every command.
const (
	exitOK          = 0   // success; for plan -detailed-exitcode: no changes
	exitError       = 1   // any error, and a declined apply
	exitChanges     = 2   // plan -detailed-exitcode: there are changes
	exitInterrupted = 130 // stopped by SIGINT at a safe point (128 + 2)
	exitTerminated  = 143 // stopped by SIGTERM at a safe point (128 + 15)
)

// received is the signal that cancelled the run, if one did.
var received atomic.Value

// interruptedCode is the exit code of a run a signal stopped: 128 plus the
// signal's number, as shells report it.
func interruptedCode() int {
	if sig, ok := received.Load().(os.Signal); ok && sig == syscall.SIGTERM {
		return exitTerminated
	}
	return exitInterrupted
}

// exitCodeError carries a specific exit code through cobra.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitCodeError) Unwrap() error { return e.err }

// withCode makes a command end with code; a nil err prints nothing.
func withCode(code int, err error) error { return &exitCodeError{code: code, err: err} }

// errReported ends a command, with the exit code withCode gives it, after
// the command reported its errors itself (a plan's, a node's).
var errReported = errors.New("")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes pgms with args and returns the exit code. SIGINT and SIGTERM
// cancel the context; long operations stop at their next safe point.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		select {
		case sig := <-signals:
			received.Store(sig)
			cancel()
		case <-ctx.Done():
		}
	}()

	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(longFlags(args))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitError
	var ce *exitCodeError
	if errors.As(err, &ce) {
		code = ce.code
	} else if ctx.Err() != nil {
		code = interruptedCode()
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "pgms: "+dsn.Redact(msg))
	}
	return code
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "pgms",
		Short:         "Manage PostgreSQL microshards declaratively",
		Long:          longHelp("pgms"),
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       "-", // any value: cobra adds --version, printed by the template below
	}
	root.SetVersionTemplate(versionText())
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	var noColor bool
	root.PersistentFlags().BoolVar(&noColor, "no-color", false, "print no colour escapes, even on a terminal (as does NO_COLOR=1)")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if noColor {
			// Colour is decided by whether the writer is a terminal
			// (colorful): writers that are not files never get any.
			root.SetOut(plainWriter{stdout})
			root.SetErr(plainWriter{stderr})
		}
	}
	root.AddCommand(
		// The declarative workflow.
		newValidateCommand(), newFmtCommand(), newPlanCommand(), newApplyCommand(), newShowCommand(),
		newRebalanceCommand(), newImportCommand(), newStatusCommand(), newForceUnlockCommand(), newRollbackCommand(), newVersionCommand(),
		// The imperative commands of pg-microsharding.
		newInstallCommand(), newListCommand(), newAllocateCommand(), newActivateCommand(),
		newDeactivateCommand(), newMoveCommand(), newCleanupCommand(),
		// Help topics.
		&cobra.Command{Use: "topology", Short: "The topology files: every block and setting with its default", Long: config.Grammar()},
	)
	registerCompletions(root)
	return root
}

// longFlags accepts flags written with one dash (-out=plan, -detailed-exitcode,
// as in Terraform) by rewriting them to the two-dash form cobra parses. pgms
// defines no one-letter flag but -h, so a single dash followed by two or more
// letters is never a group of short flags. Arguments after "--" are kept.
func longFlags(args []string) []string {
	out := make([]string, len(args))
	rest := false
	for i, a := range args {
		out[i] = a
		if rest {
			continue
		}
		if a == "--" {
			rest = true
			continue
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && isLetter(a[1]) && isLetter(a[2]) {
			out[i] = "-" + a
		}
	}
	return out
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// helpTexts hold the long help of every command, help/<command>.txt: prose
// kept apart from the wiring, written as the terminal shows it.
//
//go:embed help/*.txt
var helpTexts embed.FS

// longHelp is the long help of a command.
func longHelp(command string) string {
	b, err := helpTexts.ReadFile("help/" + command + ".txt")
	if err != nil {
		// Every command has its file; TestHelp checks that each one loads.
		panic(err)
	}
	return strings.TrimRight(string(b), "\n")
}
