package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/redistest"
	"github.com/gokbs/kbs/sdk"
	bolt "go.etcd.io/bbolt"
)

// backends runs a test against every Store implementation.
func backends(t *testing.T, f func(t *testing.T, s Store)) {
	t.Helper()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		f(t, NewMemory())
	})
	t.Run("bolt", func(t *testing.T) {
		t.Parallel()
		s, err := OpenBolt(filepath.Join(t.TempDir(), "state", "kbs.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		f(t, newRedisStore(t, redistest.Start(t, redistest.Options{}).URL, "kbs-test:"))
	})
}

func TestStoreOperations(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		steps := []struct {
			name string
			do   func() error
		}{
			{"get missing", func() error {
				_, err := s.Get(ctx, "ns", "a")
				return wantErr(err, ErrNotFound)
			}},
			{"put", func() error { return s.Put(ctx, "ns", "a", []byte("one")) }},
			{"get", func() error { return wantValue(s, "ns", "a", "one") }},
			{"overwrite", func() error { return s.Put(ctx, "ns", "a", []byte("two")) }},
			{"get overwritten", func() error { return wantValue(s, "ns", "a", "two") }},
			{"namespaces are separate", func() error {
				_, err := s.Get(ctx, "other", "a")
				return wantErr(err, ErrNotFound)
			}},
			{"put if absent on existing key", func() error {
				ok, err := s.PutIfAbsent(ctx, "ns", "a", []byte("three"))
				if err != nil || ok {
					return fmt.Errorf("wrote=%v err=%v, want no write", ok, err)
				}
				return wantValue(s, "ns", "a", "two")
			}},
			{"put if absent on new key", func() error {
				ok, err := s.PutIfAbsent(ctx, "ns", "b/c", []byte("x"))
				if err != nil || !ok {
					return fmt.Errorf("wrote=%v err=%v, want a write", ok, err)
				}
				return wantValue(s, "ns", "b/c", "x")
			}},
			{"empty value", func() error {
				if err := s.Put(ctx, "ns", "empty", nil); err != nil {
					return err
				}
				return wantValue(s, "ns", "empty", "")
			}},
			{"list", func() error {
				keys, err := s.List(ctx, "ns")
				if err != nil {
					return err
				}
				if want := []string{"a", "b/c", "empty"}; !slices.Equal(keys, want) {
					return fmt.Errorf("keys %q, want %q", keys, want)
				}
				return nil
			}},
			{"list unknown namespace", func() error {
				keys, err := s.List(ctx, "nothing-here")
				if err != nil || len(keys) != 0 {
					return fmt.Errorf("keys %q err %v, want none", keys, err)
				}
				return nil
			}},
			{"delete", func() error { return s.Delete(ctx, "ns", "a") }},
			{"get deleted", func() error {
				_, err := s.Get(ctx, "ns", "a")
				return wantErr(err, ErrNotFound)
			}},
			{"delete missing", func() error { return wantErr(s.Delete(ctx, "ns", "a"), ErrNotFound) }},
			{"empty key", func() error { return wantErr(s.Put(ctx, "ns", "", []byte("x")), sdk.ErrInvalidArgument) }},
			{"bad namespace", func() error { return wantErr(s.Put(ctx, "NS", "k", []byte("x")), sdk.ErrInvalidArgument) }},
			{"control character in key", func() error {
				return wantErr(s.Put(ctx, "ns", "a\nb", []byte("x")), sdk.ErrInvalidArgument)
			}},
			{"cancelled context", func() error {
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				return wantErr(s.Put(cctx, "ns", "k", []byte("x")), context.Canceled)
			}},
		}
		for _, st := range steps {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
	})
}

func TestStoreValuesAreCopies(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		v := []byte("abc")
		if err := s.Put(ctx, "ns", "k", v); err != nil {
			t.Fatal(err)
		}
		v[0] = 'X'
		got, _ := s.Get(ctx, "ns", "k")
		got[1] = 'Y'
		if err := wantValue(s, "ns", "k", "abc"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStoreRevision(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		rev := func(ns string) uint64 {
			t.Helper()
			r, err := s.Revision(ctx, ns)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := rev("ns"); r != 0 {
			t.Fatalf("fresh revision %d, want 0", r)
		}
		ops := []struct {
			name    string
			do      func() error
			changes bool
		}{
			{"put", func() error { return s.Put(ctx, "ns", "a", []byte("1")) }, true},
			{"put again", func() error { return s.Put(ctx, "ns", "a", []byte("2")) }, true},
			{"put if absent, no write", func() error { _, err := s.PutIfAbsent(ctx, "ns", "a", nil); return err }, false},
			{"put if absent, write", func() error { _, err := s.PutIfAbsent(ctx, "ns", "b", nil); return err }, true},
			{"write to another namespace", func() error { return s.Put(ctx, "other", "a", nil) }, false},
			{"get", func() error { _, err := s.Get(ctx, "ns", "a"); return err }, false},
			{"delete", func() error { return s.Delete(ctx, "ns", "a") }, true},
			{"failed delete", func() error { s.Delete(ctx, "ns", "a"); return nil }, false},
		}
		for _, op := range ops {
			before := rev("ns")
			if err := op.do(); err != nil {
				t.Fatalf("%s: %v", op.name, err)
			}
			if after := rev("ns"); (after > before) != op.changes || after < before {
				t.Errorf("%s: revision %d -> %d, want change=%v", op.name, before, after, op.changes)
			}
		}
	})
}

func TestStoreConcurrentWrites(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for j := range 10 {
					if err := s.Put(ctx, "ns", fmt.Sprintf("k%d-%d", i, j), []byte("v")); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		keys, err := s.List(ctx, "ns")
		if err != nil || len(keys) != 80 {
			t.Fatalf("%d keys (err %v), want 80", len(keys), err)
		}
		if r, _ := s.Revision(ctx, "ns"); r != 80 {
			t.Fatalf("revision %d, want 80", r)
		}
	})
}

func TestBoltPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kbs.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, NamespaceResourcePolicy, "/", []byte("package policy")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := wantValue(s, NamespaceResourcePolicy, "/", "package policy"); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Revision(ctx, NamespaceResourcePolicy); r != 1 {
		t.Fatalf("revision %d after reopen, want 1", r)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("file mode %o, want 600", perm)
	}
}

func TestBoltRefusesSecondOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kbs.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if s2, err := OpenBolt(path); err == nil {
		s2.Close()
		t.Fatal("second open of a locked database succeeded")
	}
	if d := time.Since(start); d > 3*lockTimeout {
		t.Fatalf("second open took %v", d)
	}
}

// TestBoltSurvivesSIGKILL runs a child process that writes keys in a loop
// and reports each one after Put returns; the test kills it with SIGKILL in
// the middle of the loop and checks that every reported key is in the file
// and the file is consistent.
func TestBoltSurvivesSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kbs.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltWriterProcess$")
	cmd.Env = append(os.Environ(), "KBS_STORE_WRITER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			continue // test framework output
		}
		acked = n
		if acked >= 40 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked < 40 {
		t.Fatalf("writer acknowledged only %d writes", acked+1)
	}

	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := 0; i <= acked; i++ {
		if err := wantValue(s, "ns", fmt.Sprintf("k%06d", i), strconv.Itoa(i)); err != nil {
			t.Fatalf("acknowledged write lost: %v", err)
		}
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("consistency check: %v", err)
	}
	keys, err := s.List(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < acked+1 {
		t.Fatalf("%d keys after kill, want at least %d", len(keys), acked+1)
	}
}

// TestBoltWriterProcess is the child of TestBoltSurvivesSIGKILL; it does
// nothing unless started by it.
func TestBoltWriterProcess(t *testing.T) {
	path := os.Getenv("KBS_STORE_WRITER")
	if path == "" {
		return
	}
	s, err := OpenBolt(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		if err := s.Put(ctx, "ns", fmt.Sprintf("k%06d", i), []byte(strconv.Itoa(i))); err != nil {
			fmt.Println("put:", err)
			os.Exit(2)
		}
		fmt.Println(i)
	}
}

func wantValue(s Store, ns, key, want string) error {
	got, err := s.Get(context.Background(), ns, key)
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("%s/%s = %q, want %q", ns, key, got, want)
	}
	return nil
}

func wantErr(err, target error) error {
	if !errors.Is(err, target) {
		return fmt.Errorf("error %v, want %v", err, target)
	}
	return nil
}
