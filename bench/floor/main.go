// floor: the design card's libraries alone, with none of gatekeeper's
// per-request code: the watermill-http subscriber, a Watermill router and a
// no-publisher handler that publishes each body through the ingest stage's
// own publisher (pipeline.NewPubSub's, so its settings cannot drift from
// the stage's). It answers watermill-http's bare 200. What it does per
// request is the least the ingestion stage can do, so its throughput is the
// stage's ceiling on this machine.
//
// With --direct it leaves out watermill-http and the router too: a bare
// net/http handler reads the body and publishes it through the same
// publisher. The difference between the two is what the design card's
// HTTP subscriber and router cost per request.
//
// bench/floor.sh runs both beside the ingest stage. FLOOR_PPROF_ADDR, when
// set, serves net/http/pprof there.
//
//	PUBSUB_EMULATOR_HOST=127.0.0.1:8085 go run ./bench/floor [--direct] 127.0.0.1:8090 TOPIC
package main

import (
	"context"
	"flag"
	"io"
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
	direct := flag.Bool("direct", false, "a bare net/http handler publishes each body: no watermill-http, no router")
	flag.Parse()
	if flag.NArg() != 2 || os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		log.Fatal("usage: PUBSUB_EMULATOR_HOST=HOST:PORT floor [--direct] LISTEN_ADDR TOPIC")
	}
	addr, topic := flag.Arg(0), flag.Arg(1)
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
	// publish is all the handler does in either mode: the body, under the
	// stage's publish timeout.
	publish := func(ctx context.Context, uuid string, body []byte) error {
		out := message.NewMessage(uuid, body)
		ctx, cancel := context.WithTimeout(ctx, cfg.PublishTimeout)
		defer cancel()
		out.SetContext(ctx)
		return pub.Publish(topic, out)
	}
	var handler http.Handler
	if *direct {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if err := publish(r.Context(), watermill.NewUUID(), body); err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
	} else {
		handler = viaRouter(publish)
	}
	if debug := os.Getenv("FLOOR_PPROF_ADDR"); debug != "" {
		go func() { log.Println(http.ListenAndServe(debug, nil)) }()
	}
	server := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(server.ListenAndServe())
}

// viaRouter is the ingest stage's shape: the watermill-http subscriber on
// /api/activities feeds a Watermill router whose one handler publishes.
func viaRouter(publish func(context.Context, string, []byte) error) http.Handler {
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
		return publish(context.Background(), msg.UUID, msg.Payload)
	})
	go func() {
		if err := router.Run(context.Background()); err != nil {
			log.Fatal(err)
		}
	}()
	<-router.Running()
	return routes
}
