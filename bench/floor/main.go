// floor: the design card's libraries alone, with none of gatekeeper's
// per-request code: the watermill-http subscriber, a Watermill router and a
// no-publisher handler that publishes each body through the ingest stage's
// own publisher (pipeline.NewPubSub's, so its settings cannot drift from
// the stage's). It answers watermill-http's bare 200. What it does per
// request is the least the ingestion stage can do, so its throughput is the
// stage's ceiling on this machine.
//
// bench/floor.sh runs it beside the ingest stage. FLOOR_PPROF_ADDR, when
// set, serves net/http/pprof there.
//
//	PUBSUB_EMULATOR_HOST=127.0.0.1:8085 go run ./bench/floor 127.0.0.1:8090 TOPIC
package main

import (
	"context"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	whttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-chi/chi"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

func main() {
	if len(os.Args) != 3 || os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		log.Fatal("usage: PUBSUB_EMULATOR_HOST=HOST:PORT floor LISTEN_ADDR TOPIC")
	}
	addr, topic := os.Args[1], os.Args[2]
	cfg := pipeline.DefaultConfig()
	cfg.PubSubMode = pipeline.PubSubEmulator
	cfg.EmulatorHost = os.Getenv("PUBSUB_EMULATOR_HOST")
	cfg.ProjectID = "test"
	cfg.TopicID, cfg.SubscriptionID = topic, topic+"-sub"
	cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	cfg = cfg.WithDefaults()
	// Creates the topic and its subscriptions, as the ingest stage does, so
	// that what is published is kept.
	ps, err := pipeline.NewPubSub(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	pub := ps.Publisher()
	logger := watermill.NopLogger{}
	routes := chi.NewRouter()
	sub, err := whttp.NewSubscriber("", whttp.SubscriberConfig{Router: routes}, logger)
	if err != nil {
		log.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		log.Fatal(err)
	}
	router.AddConsumerHandler("floor", "/api/activities", sub, func(msg *message.Message) error {
		out := message.NewMessage(msg.UUID, msg.Payload)
		ctx, cancel := context.WithTimeout(context.Background(), cfg.PublishTimeout)
		defer cancel()
		out.SetContext(ctx)
		return pub.Publish(topic, out)
	})
	go func() {
		if err := router.Run(context.Background()); err != nil {
			log.Fatal(err)
		}
	}()
	<-router.Running()
	if debug := os.Getenv("FLOOR_PPROF_ADDR"); debug != "" {
		go func() { log.Println(http.ListenAndServe(debug, nil)) }()
	}
	server := &http.Server{Addr: addr, Handler: routes, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(server.ListenAndServe())
}
