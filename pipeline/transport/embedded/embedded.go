// Package embedded runs an in-process Pub/Sub server (pstest) on a
// loopback port, with its message log trimmed so that memory stays bounded.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"cloud.google.com/go/pubsub/v2/pstest"
)

// Server is an in-process Pub/Sub server (pstest) on a loopback port,
// so that `gatekeeper serve` needs no cloud account and other processes can
// share it through PUBSUB_EMULATOR_HOST.
//
// pstest keeps every message ever published in a log that only
// ClearMessages empties, and ClearMessages also drops the subscriptions'
// unacknowledged messages: calling it under load would lose accepted
// payloads. The log exists only for test inspection (Server.Messages), so
// Server trims that log alone, under pstest's own lock, and never
// touches a subscription's pending messages. Memory then stays bounded by
// what is pending, not by what was ever published.
type Server struct {
	server *pstest.Server
	log    pstestLog
	logger *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// pstestLog reaches pstest's unexported message log. The fields are checked
// when the server starts, so a pstest upgrade that renames them fails
// loudly at start instead of leaking memory silently.
type pstestLog struct {
	mu       *sync.Mutex
	msgs     reflect.Value // []*pstest.Message
	msgsByID reflect.Value // map[string]*pstest.Message
}

// Config configures a Server.
type Config struct {
	// Addr is where it listens. Optional, default 127.0.0.1:0 (a free
	// loopback port: see Server.Addr).
	Addr string
	// TrimEvery is how often the message log is trimmed. Optional,
	// default 1s.
	TrimEvery time.Duration
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.TrimEvery == 0 {
		c.TrimEvery = time.Second
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	if c.TrimEvery < 0 {
		return errors.New("embedded Pub/Sub config: TrimEvery must not be negative")
	}
	return nil
}

// New starts the server, or returns every problem with cfg.
func New(cfg Config, logger *slog.Logger) (e *Server, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	addr, trimEvery := cfg.Addr, cfg.TrimEvery
	// pstest panics when it cannot listen; the constructor must not.
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("embedded Pub/Sub on %s: %v", addr, r)
		}
	}()
	server := pstest.NewServerWithAddress(addr)
	log, err := reachLog(server)
	if err != nil {
		_ = server.Close()
		return nil, err
	}
	e = &Server{
		server: server, log: log, logger: logger,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go e.trimLoop(trimEvery)
	return e, nil
}

func reachLog(server *pstest.Server) (pstestLog, error) {
	g := reflect.ValueOf(&server.GServer).Elem()
	mu, msgs, byID := g.FieldByName("mu"), g.FieldByName("msgs"), g.FieldByName("msgsByID")
	if !mu.IsValid() || mu.Type() != reflect.TypeOf(sync.Mutex{}) ||
		!msgs.IsValid() || msgs.Kind() != reflect.Slice ||
		!byID.IsValid() || byID.Kind() != reflect.Map {
		return pstestLog{}, fmt.Errorf("this pstest version keeps its message log differently; the embedded Pub/Sub cannot bound its memory")
	}
	return pstestLog{
		mu:       (*sync.Mutex)(unsafe.Pointer(mu.UnsafeAddr())),
		msgs:     reflect.NewAt(msgs.Type(), unsafe.Pointer(msgs.UnsafeAddr())).Elem(),
		msgsByID: reflect.NewAt(byID.Type(), unsafe.Pointer(byID.UnsafeAddr())).Elem(),
	}, nil
}

// Addr is the host:port other processes use as PUBSUB_EMULATOR_HOST.
func (e *Server) Addr() string { return e.server.Addr }

// Server exposes pstest for tests that inspect what was published.
func (e *Server) PSTest() *pstest.Server { return e.server }

// TrimLog forgets the log of published messages and returns how many it
// held. Pending (unacknowledged) messages stay with their subscriptions.
func (e *Server) TrimLog() int {
	e.log.mu.Lock()
	defer e.log.mu.Unlock()
	n := e.log.msgs.Len()
	if n == 0 {
		return 0
	}
	e.log.msgs.SetZero()
	e.log.msgsByID.Set(reflect.MakeMap(e.log.msgsByID.Type()))
	return n
}

func (e *Server) trimLoop(every time.Duration) {
	defer close(e.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if n := e.TrimLog(); n > 0 {
				e.logger.Debug("Trimmed embedded Pub/Sub log", "messages", n)
			}
		}
	}
}

// Close stops the server. Unacknowledged messages are gone with it: the
// service drains the apply stage before closing (see pipeline.Service.drain).
func (e *Server) Close() error {
	var err error
	e.once.Do(func() {
		close(e.stop)
		<-e.done
		err = e.server.Close()
	})
	return err
}
