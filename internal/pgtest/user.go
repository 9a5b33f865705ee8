package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUser is the operating-system account the servers run as. PostgreSQL
// refuses to start as root, so a root test process hands the servers to an
// unprivileged account; otherwise they run as the current user.
type serverUser struct {
	Name       string
	UID, GID   uint32
	credential *syscall.Credential // nil when no switch is needed
}

// defaultServerAccount is created when running as root and no better
// account exists.
const defaultServerAccount = "pgms-test"

func resolveServerUser() (serverUser, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return serverUser{}, err
		}
		return serverUser{Name: u.Username, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}, nil
	}
	names := []string{}
	if n := os.Getenv("PGMS_TEST_OS_USER"); n != "" {
		names = append(names, n)
	}
	names = append(names, "postgres", defaultServerAccount)
	for _, name := range names {
		if u, err := user.Lookup(name); err == nil {
			return credentialFor(u)
		}
	}
	// No account to use: make a system account without a login shell.
	cmd := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", defaultServerAccount)
	if out, err := cmd.CombinedOutput(); err != nil {
		return serverUser{}, fmt.Errorf("running as root and no unprivileged account for PostgreSQL: useradd %s: %v: %s (set PGMS_TEST_OS_USER to an existing account)", defaultServerAccount, err, out)
	}
	u, err := user.Lookup(defaultServerAccount)
	if err != nil {
		return serverUser{}, err
	}
	return credentialFor(u)
}

func credentialFor(u *user.User) (serverUser, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return serverUser{}, fmt.Errorf("account %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return serverUser{}, fmt.Errorf("account %s: gid %q: %w", u.Username, u.Gid, err)
	}
	if uid == 0 {
		return serverUser{}, fmt.Errorf("account %s is root; PostgreSQL refuses to run as root", u.Username)
	}
	return serverUser{
		Name: u.Username, UID: uint32(uid), GID: uint32(gid),
		credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true},
	}, nil
}

// own hands a path (and everything below it) to the server account.
func (u serverUser) own(path string) error {
	if u.credential == nil {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.UID), int(u.GID))
	})
}
