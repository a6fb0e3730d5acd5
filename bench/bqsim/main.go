// Command bqsim measures the apply stage against a simulator of BigQuery's
// rules (warehouse/bigquery/bqsim): real apply stages (pipeline.Service
// with --stages=apply: the Watermill router, its middleware, the group
// committer and the BigQuery adapter) on one subscription of an embedded
// Pub/Sub, each over its own adapter, all over one simulated BigQuery.
//
// It publishes payloads to the accepted topic for --duration, keeping a
// bounded backlog, then waits for the backlog to drain, and counts lost
// and duplicated payloads from the simulator's final tables: every
// accepted payload must be in the ledger once, and the row each inserting
// payload writes must be in its table once.
//
// Usage: go run ./bench/bqsim [--tables N] [--replicas R] [--latency D]
// [--duration D] [--mix seed|insert] [--kill-replica-every D]
//
// It ends with one line:
//
//	bqsim: tables T replicas R latency L: applied N in S s = P payloads/s (Q per table), lost X, dup Y, quota violations V, jobs J, DML D, billed B bytes per 1000 payloads
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gbq "cloud.google.com/go/bigquery"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/transport/embedded"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery/bqsim"
)

type options struct {
	tables, replicas int
	latency          time.Duration
	duration         time.Duration
	mix              string
	killEvery        time.Duration
	backlog          int
	drain            time.Duration
	tableBytes       int64
	groupMaxSize     int
	groupMaxInFlight int
	maxOutstanding   int
	dmlBudget        int
	seed             uint64
	verbose          bool
	check            bool
}

func main() {
	var o options
	flag.IntVar(&o.tables, "tables", 1, "tables the payloads spread over")
	flag.IntVar(&o.replicas, "replicas", 4, "apply stages on the one subscription, each with its own committer and adapter")
	flag.DurationVar(&o.latency, "latency", 2*time.Second, "median job latency (the 99th percentile is 2.5 times it)")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "how long payloads are published")
	flag.StringVar(&o.mix, "mix", "seed", "payload mix: seed (insert, delete, delete+insert) or insert")
	flag.DurationVar(&o.killEvery, "kill-replica-every", 0, "stop a replica abruptly this often and start a fresh one (its running jobs go on); 0 never")
	flag.IntVar(&o.backlog, "backlog", 0, "most payloads published but not yet applied; default 4 s of the target rate, at least 20,000")
	flag.DurationVar(&o.drain, "drain", 0, "how long to wait for the backlog after publishing stops; default 30 s + 10 × latency")
	flag.Int64Var(&o.tableBytes, "table-bytes", 1<<30, "modelled size of each payload table, for bytes billed")
	flag.IntVar(&o.groupMaxSize, "group-max-size", 0, "GROUP_MAX_SIZE of each replica; 0 the default")
	flag.IntVar(&o.groupMaxInFlight, "group-max-in-flight", 0, "GROUP_MAX_IN_FLIGHT of each replica; 0 the default")
	flag.IntVar(&o.maxOutstanding, "max-outstanding", 0, "MAX_OUTSTANDING of each replica; 0 the default")
	flag.IntVar(&o.dmlBudget, "dml-budget", 0, "DML statements per table every 10 s each replica may run; default 25 / replicas")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the mix and the latency draws")
	flag.BoolVar(&o.check, "check", false, "exit 1 unless lost, dup and quota violations are all 0 (for CI)")
	flag.BoolVar(&o.verbose, "v", false, "log the replicas' warnings")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bqsim:", err)
		os.Exit(2)
	}
	// A watchdog: the run is bounded whatever happens inside it.
	limit := o.duration + o.drain + 2*time.Minute
	time.AfterFunc(limit, func() {
		fmt.Fprintf(os.Stderr, "bqsim: no result after %s; giving up. Goroutines:\n", limit)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		os.Exit(1)
	})
	line, clean, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bqsim:", err)
		os.Exit(1)
	}
	fmt.Println(line)
	if o.check && !clean {
		os.Exit(1)
	}
}

func (o *options) validate() error {
	var errs []error
	if o.tables < 1 {
		errs = append(errs, fmt.Errorf("--tables must be at least 1, got %d", o.tables))
	}
	if o.replicas < 1 {
		errs = append(errs, fmt.Errorf("--replicas must be at least 1, got %d", o.replicas))
	}
	if o.duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration must be positive, got %s", o.duration))
	}
	if o.mix != "seed" && o.mix != "insert" {
		errs = append(errs, fmt.Errorf("--mix %q: want seed or insert", o.mix))
	}
	if o.killEvery < 0 {
		errs = append(errs, fmt.Errorf("--kill-replica-every must not be negative, got %s", o.killEvery))
	}
	if o.backlog == 0 {
		o.backlog = max(20_000, 4*1000*o.tables)
	}
	if o.dmlBudget == 0 {
		o.dmlBudget = max(1, 25/o.replicas)
	}
	if o.drain == 0 {
		o.drain = 30*time.Second + 10*o.latency
	}
	return errors.Join(errs...)
}

// The seed mix of gatekeeper loadgen: an insert, a delete, a delete then
// an insert, in equal parts. Keys are unique per payload, so each
// inserting payload's row can be found and counted; the deletes name a
// row no payload inserts (a = 3), as loadgen's do.
const (
	insertBody       = `{"activities":[{"operation":"insert","table":"%s","col_names":["a","b","c","e"],"col_types":["INTEGER","TEXT","TEXT","TEXT"],"col_values":[%d,"Disaster Recovery","2019-04-28 10:24:30.183414","something"]}]}`
	deleteBody       = `{"activities":[{"operation":"delete","table":"%s","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}}]}`
	deleteInsertBody = `{"activities":[{"operation":"delete","table":"%s","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},{"operation":"insert","table":"%s","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[%d,"Backup and Restore","2018-03-27 11:58:28.988414"]}]}`
)

// payload is one accepted payload: its id, table, and the key of the row
// it inserts (0 when it only deletes).
type payload struct {
	id    string
	table string
	key   int64
}

func tableName(i int) string { return "table" + strconv.Itoa(i+1) }

func makePayload(r *rand.Rand, mix string, seq int64, tables int) (payload, []byte) {
	p := payload{id: watermill.NewUUID(), table: tableName(int(seq) % tables), key: 1000 + seq}
	kind := 0
	if mix == "seed" {
		kind = r.IntN(3)
	}
	switch kind {
	case 0:
		return p, fmt.Appendf(nil, insertBody, p.table, p.key)
	case 1:
		p.key = 0
		return p, fmt.Appendf(nil, deleteBody, p.table)
	default:
		return p, fmt.Appendf(nil, deleteInsertBody, p.table, p.table, p.key)
	}
}

type replica struct {
	svc    *pipeline.Service
	cancel context.CancelFunc
	done   chan error
}

func run(ctx context.Context, o options) (string, bool, error) {
	logLevel := slog.LevelError
	if o.verbose {
		logLevel = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	quiet := slog.New(slog.DiscardHandler)

	server, err := embedded.New(embedded.Config{}, quiet)
	if err != nil {
		return "", false, err
	}
	defer server.Close()
	sim, err := bqsim.New(bqsim.Config{Latency: o.latency, Seed: o.seed, TableBytes: o.tableBytes})
	if err != nil {
		return "", false, err
	}

	// The tables exist before the run, as in production: a delete on a
	// table that does not exist yet would be rejected.
	if err := seedTables(sim, o.tables); err != nil {
		return "", false, err
	}

	base := pipeline.DefaultConfig()
	base.PubSubMode = pipeline.PubSubEmulator
	base.EmulatorHost = server.Addr()
	base.ProjectID = "bqsim"
	base.Warehouse = "bigquery"
	base.Outbox = pipeline.OutboxOff
	base.HTTPAddr = "127.0.0.1:0"
	base.AdminAddr = pipeline.AdminOff
	base.GroupMaxSize = o.groupMaxSize
	base.GroupMaxInFlight = o.groupMaxInFlight
	base.MaxOutstanding = o.maxOutstanding

	// The topics and subscriptions, as the ingest stage makes them, and the
	// publisher that stands for the gate.
	pubCfg := base
	pubCfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	pubCfg = pubCfg.WithDefaults()
	ps, err := pipeline.NewPubSub(ctx, pubCfg, quiet)
	if err != nil {
		return "", false, err
	}
	defer ps.Close()

	applyCfg := base
	applyCfg.Stages = []pipeline.Stage{pipeline.StageApply}
	// A stopped replica goes at once: what it held is redelivered, and
	// its jobs run on in the simulator.
	applyCfg.ShutdownTimeout = time.Millisecond
	applyCfg = applyCfg.WithDefaults()

	var (
		mu       sync.Mutex
		replicas []*replica
	)
	start := func() error {
		store, err := bigquery.OpenSimulated(ctx, bigquery.Config{ProjectID: "bqsim", DMLBudget: o.dmlBudget}, logger, sim)
		if err != nil {
			return err
		}
		svc, err := pipeline.NewService(ctx, applyCfg, logger, pipeline.WithWarehouse(store))
		if err != nil {
			_ = store.Close()
			return err
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &replica{svc: svc, cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- svc.Run(rctx) }()
		mu.Lock()
		replicas = append(replicas, r)
		mu.Unlock()
		return nil
	}
	for range o.replicas {
		if err := start(); err != nil {
			return "", false, err
		}
	}
	stopAll := func() {
		mu.Lock()
		rs := replicas
		replicas = nil
		mu.Unlock()
		// All at once: each may wait for its router's handlers to give up.
		for _, r := range rs {
			r.cancel()
		}
		for _, r := range rs {
			<-r.done
		}
	}
	defer stopAll()

	var killed atomic.Int64
	killCtx, stopKilling := context.WithCancel(ctx)
	defer stopKilling()
	var killing sync.WaitGroup
	if o.killEvery > 0 {
		killing.Go(func() {
			t := time.NewTicker(o.killEvery)
			defer t.Stop()
			n := 0
			for {
				select {
				case <-killCtx.Done():
					return
				case <-t.C:
				}
				mu.Lock()
				victim := replicas[n%len(replicas)]
				replicas = append(replicas[:n%len(replicas)], replicas[n%len(replicas)+1:]...)
				mu.Unlock()
				n++
				victim.cancel()
				<-victim.done
				killed.Add(1)
				if err := start(); err != nil {
					log.Printf("bqsim: start a replica: %v", err)
				}
			}
		})
	}

	// Publish for the duration, keeping at most o.backlog unapplied, from
	// a few publishers at once: one publish of a batch waits for every
	// message's acknowledgement.
	var (
		acceptedMu sync.Mutex
		accepted   []payload
		seq        atomic.Int64
	)
	applied := func() int { return sim.RowCount(warehouse.LedgerTable) }
	pub := ps.Publisher()
	began := time.Now()
	deadline := began.Add(o.duration)
	const batch, publishers = 200, 8
	var publishing sync.WaitGroup
	publishErr := make(chan error, publishers)
	for w := range publishers {
		rng := rand.New(rand.NewPCG(o.seed, uint64(w)+2))
		publishing.Go(func() {
			for time.Now().Before(deadline) {
				acceptedMu.Lock()
				backlog := len(accepted) - applied()
				acceptedMu.Unlock()
				if backlog >= o.backlog {
					time.Sleep(20 * time.Millisecond) // a bounded backlog, not an interleaving
					continue
				}
				msgs := make([]*message.Message, 0, batch)
				batchPayloads := make([]payload, 0, batch)
				for range batch {
					p, body := makePayload(rng, o.mix, seq.Add(1), o.tables)
					msgs = append(msgs, message.NewMessage(p.id, body))
					batchPayloads = append(batchPayloads, p)
				}
				// A publish that times out (a loaded machine) is tried
				// again with the same ids: a payload published twice is
				// one payload to the ledger.
				var err error
				for range 5 {
					if err = pub.Publish(pubCfg.TopicID, msgs...); err == nil {
						break
					}
					retry := make([]*message.Message, len(msgs))
					for i, m := range msgs {
						retry[i] = message.NewMessage(m.UUID, m.Payload)
					}
					msgs = retry
				}
				if err != nil {
					publishErr <- fmt.Errorf("publish: %w", err)
					return
				}
				acceptedMu.Lock()
				accepted = append(accepted, batchPayloads...)
				acceptedMu.Unlock()
			}
		})
	}
	publishing.Wait()
	select {
	case err := <-publishErr:
		return "", false, err
	default:
	}

	// Drain: wait until every accepted payload is in the ledger, or the
	// drain time is up.
	// Distinct payloads: the ledger may hold one twice.
	lastApplied, lastChange := 0, time.Now()
	drainEnd := time.Now().Add(o.drain)
	for time.Now().Before(drainEnd) {
		_, _, n := count(sim, accepted)
		if n != lastApplied {
			lastApplied, lastChange = n, time.Now()
		}
		if n >= len(accepted) {
			break
		}
		time.Sleep(250 * time.Millisecond) // polling the simulator
	}
	elapsed := lastChange.Sub(began)
	stopKilling()
	killing.Wait()
	stopAll()
	// Jobs of stopped replicas run on; the tables are final once they end.
	sim.Wait()

	lost, dup, n := count(sim, accepted)
	st := sim.Stats()
	secs := elapsed.Seconds()
	rate := float64(n) / secs
	billed := int64(0)
	if n > 0 {
		billed = st.BilledBytes * 1000 / int64(n)
	}
	if o.verbose || killed.Load() > 0 {
		fmt.Fprintf(os.Stderr, "bqsim: accepted %d, replicas killed %d, jobs committed %d failed %d aborted %d, violations %v, max queued %d\n",
			len(accepted), killed.Load(), st.Committed, st.Failed, st.Aborted, st.Violations, st.MaxQueued)
	}
	clean := lost == 0 && dup == 0 && st.ViolationCount() == 0
	return fmt.Sprintf("bqsim: tables %d replicas %d latency %s: applied %d in %.1f s = %.0f payloads/s (%.0f per table), lost %d, dup %d, quota violations %d, jobs %d, DML %d, billed %d bytes per 1000 payloads",
		o.tables, o.replicas, o.latency, n, secs, rate, rate/float64(o.tables), lost, dup, st.ViolationCount(), st.Jobs, st.DML, billed), clean, nil
}

// seedTables creates the payload tables, empty, with the columns the
// payloads write: through the tables API, which DML quotas do not count.
func seedTables(sim *bqsim.Sim, tables int) error {
	schema := gbq.Schema{
		{Name: "a", Type: gbq.IntegerFieldType},
		{Name: "b", Type: gbq.StringFieldType},
		{Name: "c", Type: gbq.StringFieldType},
		{Name: "e", Type: gbq.StringFieldType},
	}
	for i := range tables {
		// Clustered as the adapter clusters the tables it creates.
		if _, err := sim.CreateTable(tableName(i), schema, []string{"a"}); err != nil {
			return err
		}
	}
	return nil
}

// count compares the simulator's final tables with what was accepted. A
// payload is lost when the ledger lacks it or its row is missing, and
// duplicated when either holds it more than once. applied counts the
// distinct accepted payloads in the ledger.
func count(sim *bqsim.Sim, accepted []payload) (lost, dup, applied int) {
	inLedger := map[string]int{}
	for _, r := range sim.Rows(warehouse.LedgerTable) {
		if id, ok := r["payload_id"].(string); ok {
			inLedger[id]++
		}
	}
	rows := map[string]map[string]int{}
	for _, name := range sim.TableNames() {
		byKey := map[string]int{}
		for _, r := range sim.Rows(name) {
			if k, ok := r["a"].(string); ok {
				byKey[k]++
			}
		}
		rows[name] = byKey
	}
	for _, p := range accepted {
		l := inLedger[p.id]
		r := 1
		if p.key != 0 {
			r = rows[p.table][strconv.FormatInt(p.key, 10)]
		}
		if l > 0 {
			applied++
		}
		switch {
		case l == 0 || r == 0:
			lost++
		case l > 1 || r > 1:
			dup++
		}
	}
	return lost, dup, applied
}
