package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
)

func newForceUnlockCommand() *cobra.Command {
	var (
		nodes     stateFlags
		terminate bool
		yes       bool
	)
	cmd := &cobra.Command{
		Use:   "force-unlock",
		Short: "Clear the run lock of a pgms run that is gone",
		Long:  longHelp("force-unlock"),
		Example: `  pgms force-unlock --dsn postgres://admin@db1/app
  pgms force-unlock --dsn postgres://admin@db1/app --terminate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			n, err := connectStateNode(ctx, cmd.ErrOrStderr(), &nodes, "force-unlock")
			if err != nil {
				return err
			}
			defer n.Close()
			out := cmd.OutOrStdout()
			st, err := state.ReadLock(ctx, n.Conn, nodes.schema)
			if err != nil {
				return pgutil.Wrap(err, "state node %s", n.Name)
			}
			if !st.Held && st.Holder == nil {
				fmt.Fprintf(out, "The run lock on %s is free; nothing to do.\n", n.Name)
				return nil
			}
			if st.Held && terminate && !yes {
				who := fmt.Sprintf("session %d", st.HolderPID)
				if st.Holder != nil {
					who = fmt.Sprintf("session %d of %s", st.HolderPID, st.Holder)
				}
				q := question{text: fmt.Sprintf("Terminate %s on %s? Its run stops where it is.", who, n.Name),
					skip: "pass --auto-approve to terminate without asking"}
				ok, err := q.ask(cmd.InOrStdin(), out)
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(out, "Not terminated.")
					return nil
				}
			}
			res, err := state.ForceUnlock(ctx, n.Conn, nodes.schema, terminate)
			if errors.Is(err, state.ErrLockLive) {
				return fmt.Errorf("state node %s: %w", n.Name, err)
			}
			if err != nil {
				return pgutil.Wrap(err, "state node %s", n.Name)
			}
			if res.Terminated != 0 {
				fmt.Fprintf(out, "Terminated session %d.\n", res.Terminated)
			}
			if res.Cleared {
				fmt.Fprintf(out, "Cleared the holder row of %s.\n", res.Before.Holder)
			}
			return nil
		},
	}
	nodes.add(cmd)
	cmd.Flags().BoolVar(&terminate, "terminate", false, "end the session holding the lock (only if its process is gone)")
	autoApproveFlag(cmd, &yes, "terminate", "")
	return cmd
}
