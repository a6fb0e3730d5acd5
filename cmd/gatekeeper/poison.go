package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// poison lets an operator see why payloads were poisoned and send them back
// once the cause is fixed:
//
//	gatekeeper poison list [--max N]
//	gatekeeper poison replay [--max N] [--id PAYLOAD_ID]
func poison(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintln(stderr, "usage: gatekeeper poison list|replay [flags]; gatekeeper poison list --help")
		return 2
	}
	verb := args[0]
	var max int
	var id string
	synopsis := "usage: gatekeeper poison list [flags]\n\nPrints poisoned payloads as JSON lines, with why, and leaves them on the poison subscription."
	if verb == "replay" {
		synopsis = "usage: gatekeeper poison replay [flags]\n\nPublishes poisoned payloads back to TOPIC_ID with their original id, then removes them from the poison subscription. The ledger makes replaying an applied payload harmless."
	}
	cfg, _, _, err := loadConfig("poison "+verb, synopsis, args[1:], stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&max, "max", 100, "most payloads to handle; 0 for all")
		if verb == "replay" {
			fs.StringVar(&id, "id", "", "replay only this payload id")
		}
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	q, err := pipeline.NewPoisonQueue(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 1
	}
	defer q.Close()

	var ps []pipeline.Poisoned
	if verb == "list" {
		ps, err = q.List(ctx, max)
	} else {
		ps, err = q.Replay(ctx, max, id)
	}
	enc := json.NewEncoder(stdout)
	for _, p := range ps {
		_ = enc.Encode(p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 1
	}
	if verb == "replay" {
		fmt.Fprintf(stderr, "replayed %d payload(s) to %s\n", len(ps), cfg.TopicID)
	}
	return 0
}
