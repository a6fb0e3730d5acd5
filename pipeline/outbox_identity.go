package pipeline

// The outbox's identity: where this process records which outbox file it
// keeps, so that a start that finds the file missing, empty or replaced
// refuses rather than drops silently what was waiting in it (PostgreSQL
// refuses to start without its data directory, for the same reason).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// outboxRecord is one place's memory of the outbox this process kept.
type outboxRecord struct {
	// where names the place, for the messages.
	where string
	// identity is "" when the place only knows that an outbox lived here.
	identity string
	// pending is the count at the last clean stop, or
	// warehouse.PendingUnknown.
	pending int
}

// outboxKey is the file as the records name it: the host, and the
// absolute path.
type outboxKey struct{ host, path string }

func (c Config) outboxKey() outboxKey {
	// Replicas share one warehouse (and one Pub/Sub), each with an outbox
	// of its own, often at the same path inside its container: the host
	// name keeps their records apart. A container that gets a new host
	// name when recreated (Docker's default: its id) finds no record;
	// give it a stable one (compose's hostname:, a StatefulSet's pod name).
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	path, err := filepath.Abs(c.OutboxPath)
	if err != nil {
		path = c.OutboxPath
	}
	return outboxKey{host: host, path: path}
}

// openOutbox opens the outbox, or refuses to: when a record says an outbox
// lived at this path and the file is missing, empty or another one
// (unless OUTBOX_ACCEPT_LOSS), or when the file is damaged. A missing file
// is not created before the check passes, so that a refusal leaves the
// place empty for the file to be restored to.
func (s *Service) openOutbox(ctx context.Context) error {
	key := s.cfg.outboxKey()
	records := s.outboxRecords(ctx, key)

	info, err := os.Stat(s.cfg.OutboxPath)
	var found string
	switch {
	case errors.Is(err, os.ErrNotExist):
		found = "missing"
	case err != nil:
		return fmt.Errorf("OUTBOX_PATH: outbox %s: %w", key.path, err)
	case info.Size() == 0:
		found = "empty"
	}
	var lost []outboxRecord
	if found != "" {
		lost = records
	} else {
		box, err := s.openOutboxFile(ctx)
		if err != nil {
			return err
		}
		s.outbox = box
		for _, r := range records {
			// A place that only knows an outbox lived here cannot tell
			// this file from another; one that knows the identity can.
			if box.Created() || r.identity != "" && r.identity != box.Identity() {
				lost = append(lost, r)
			}
		}
		if len(lost) > 0 {
			found = "of another identity (" + box.Identity() + ")"
			if box.Created() {
				found = "not an outbox that held anything"
			}
		}
	}
	if len(lost) > 0 && !s.cfg.OutboxAcceptLoss {
		return refuseOutbox(key.path, found, lost)
	}
	if s.outbox == nil {
		box, err := s.openOutboxFile(ctx)
		if err != nil {
			return err
		}
		s.outbox = box
	}
	if len(lost) > 0 {
		s.outboxLossAccepted.Add(1)
		pending, _ := knownPending(lost)
		s.logger.Warn("Outbox loss accepted (OUTBOX_ACCEPT_LOSS): the payloads that waited in the outbox this process kept are lost",
			"outbox", key.path, "found", found, "identity_lost", lost[0].identity, "pending_known", pending,
			"recorded_in", recordPlaces(lost), "identity", s.outbox.Identity())
	} else if s.cfg.OutboxAcceptLoss {
		s.logger.Info("OUTBOX_ACCEPT_LOSS is set, and there was nothing to accept: the outbox is the one recorded, or none was; unset it",
			"outbox", key.path)
	}
	// Briefly: a warehouse another process holds locked must not hold up
	// the start; recordOutboxLoop tries again while the service runs.
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	s.outboxRecorded.Store(s.recordOutbox(rctx, key, warehouse.PendingUnknown, false))
	cancel()
	return nil
}

// recordOutboxLoop retries, every few seconds until it succeeds or ctx
// ends, the start's record that failed: until it lands, a later start
// cannot tell this outbox lost from a new one.
func (s *Service) recordOutboxLoop(ctx context.Context) {
	if s.outboxRecorded.Load() {
		return
	}
	key := s.cfg.outboxKey()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.recordOutbox(ctx, key, warehouse.PendingUnknown, true) {
			s.outboxRecorded.Store(true)
			s.logger.Info("Recorded the outbox's identity in the warehouse", "outbox", key.path, "identity", s.outbox.Identity())
			return
		}
	}
}

// refuseOutbox is the refusal to start without the outbox the records
// remember: what was found, what is known of what waited in it, and the
// two ways on.
func refuseOutbox(path, found string, lost []outboxRecord) error {
	var b strings.Builder
	fmt.Fprintf(&b, "OUTBOX_PATH: refusing to start: the outbox %s is %s, but %s records that this process kept an outbox there",
		path, found, recordPlaces(lost))
	ids := map[string]bool{}
	for _, r := range lost {
		if r.identity != "" && !ids[r.identity] {
			ids[r.identity] = true
			fmt.Fprintf(&b, " (identity %s)", r.identity)
		}
	}
	if n, ok := knownPending(lost); ok {
		fmt.Fprintf(&b, ", with %d entries pending at its last clean stop: %d payloads answered 200 are not applied yet unless the file comes back", n, n)
	} else {
		b.WriteString("; how many entries were pending is unknown (its last stop did not record a count: the process was killed, " +
			"or the warehouse could not be written then): payloads answered 200 may be waiting in it")
	}
	fmt.Fprintf(&b, ". Either restore the file to %s (with its -wal file if it had one) and start again, "+
		"or start once with --outbox-accept-loss (OUTBOX_ACCEPT_LOSS=true) to accept that they are lost", path)
	return errors.New(b.String())
}

// knownPending is the largest pending count the records know.
func knownPending(rs []outboxRecord) (int, bool) {
	n, ok := 0, false
	for _, r := range rs {
		if r.pending >= 0 {
			n, ok = max(n, r.pending), true
		}
	}
	return n, ok
}

func recordPlaces(rs []outboxRecord) string {
	var places []string
	for _, r := range rs {
		places = append(places, r.where)
	}
	return strings.Join(places, " and ")
}

// outboxRecords reads what the warehouse and Pub/Sub remember of the
// outbox at key. A place that cannot be read is logged and skipped: the
// ingest stage starts while the warehouse is down.
func (s *Service) outboxRecords(ctx context.Context, key outboxKey) []outboxRecord {
	var rs []outboxRecord
	if reg, ok := s.Store.(warehouse.OutboxRegistry); ok && s.cfg.Runs(StageApply) {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rec, found, err := reg.OutboxRecord(rctx, key.host, key.path)
		cancel()
		switch {
		case err != nil:
			s.logger.Warn("Cannot read the warehouse's record of the outbox; starting without checking it against the file",
				"outbox", key.path, "error", err)
		case found:
			rs = append(rs, outboxRecord{where: "the warehouse", identity: rec.Identity, pending: rec.Pending})
		}
	}
	if r, ok := s.subscriptionRecord(ctx); ok {
		rs = append(rs, r)
	}
	return rs
}

// subscriptionRecord is what Pub/Sub remembers of an ingest-only process's
// outbox: its follow subscription on the applied topic, named after the
// host and the file, existed before this start (NewPubSub did not create
// it). Its existence is all it says. Labels could carry the identity and
// the count, but the emulator refuses to update them ("labels is not a
// known Subscription field"), and a subscription's labels set only at its
// creation would keep a lost outbox's identity for ever. So on Pub/Sub a
// missing or empty file is caught, a file replaced by another outbox is
// not. The embedded Pub/Sub keeps nothing across restarts, and a follow
// subscription unused for a day expires: then only the warehouse
// remembers, when this process applies to it.
func (s *Service) subscriptionRecord(ctx context.Context) (outboxRecord, bool) {
	if !s.cfg.OutboxFollowsTopics() || s.PubSub.Mode == transport.ModeEmbedded {
		return outboxRecord{}, false
	}
	name := s.cfg.outboxSubscription("applied")
	for _, r := range s.PubSub.Created() {
		if r.Subscription == name {
			return outboxRecord{}, false
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := s.PubSub.Client().SubscriptionAdminClient.GetSubscription(rctx,
		&pubsubpb.GetSubscriptionRequest{Subscription: transport.SubscriptionPath(s.cfg.ProjectID, name)})
	if err != nil {
		if status.Code(err) != codes.NotFound {
			s.logger.Warn("Cannot read Pub/Sub's record of the outbox; starting without checking it against the file",
				"subscription", name, "error", err)
		}
		return outboxRecord{}, false
	}
	return outboxRecord{where: "Pub/Sub (subscription " + name + ")", pending: warehouse.PendingUnknown}, true
}

// recordOutbox writes the outbox's identity and pending count in the
// warehouse, where it survives the file (Pub/Sub's record is the follow
// subscription's existence, made by NewPubSub), and reports whether it
// did or there is nowhere to write. A failure is logged (unless quiet: a
// retry): it weakens the next start's check, not this process's work.
func (s *Service) recordOutbox(ctx context.Context, key outboxKey, pending int, quiet bool) bool {
	reg, ok := s.Store.(warehouse.OutboxRegistry)
	if !ok || !s.cfg.Runs(StageApply) {
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := reg.RecordOutbox(rctx, warehouse.OutboxRecord{Host: key.host, Path: key.path, Identity: s.outbox.Identity(), Pending: pending})
	cancel()
	switch {
	case err == nil:
		return true
	case quiet:
	case pending == warehouse.PendingUnknown:
		s.logger.Warn("Cannot record the outbox's identity in the warehouse yet; until it lands, a later start cannot tell this outbox lost from a new one",
			"outbox", key.path, "error", err)
	default:
		s.logger.Warn("Cannot record in the warehouse how many entries the outbox holds at this stop; a start that finds it lost will say the count is unknown",
			"outbox", key.path, "pending", pending, "error", err)
	}
	return false
}

// recordOutboxAtStop records how many entries the outbox holds pending at
// a clean stop, for the message of a start that finds the file gone.
func (s *Service) recordOutboxAtStop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.outbox.Flush(ctx); err != nil {
		s.logger.Warn("Cannot count the outbox at stop", "error", err)
		return
	}
	counts, err := s.outbox.Count(ctx)
	if err != nil {
		s.logger.Warn("Cannot count the outbox at stop", "error", err)
		return
	}
	s.recordOutbox(ctx, s.cfg.outboxKey(), counts[outbox.Pending], false)
}

// openOutboxFile opens (creating if needed) the outbox at OUTBOX_PATH with
// the service's settings.
func (s *Service) openOutboxFile(ctx context.Context) (*outbox.Outbox, error) {
	box, err := outbox.Open(ctx, outbox.Config{
		Path: s.cfg.OutboxPath, Sync: s.cfg.SQLiteSync, RedeliverAfter: s.cfg.OutboxRedeliverAfter,
		LogEvery: s.cfg.LogRepeatInterval,
	}, s.logger)
	if err != nil {
		return nil, fmt.Errorf("OUTBOX_PATH: %w", err)
	}
	return box, nil
}
