// floor: the design card's libraries alone, with no gatekeeper code: the
// watermill-http subscriber, a Watermill router and a no-publisher handler
// that publishes each body through watermill-googlecloud, configured as the
// ingestion stage's publisher is. It answers watermill-http's bare 200.
// What it does per request is the least the ingestion stage can do, so its
// throughput is the stage's ceiling on this machine.
//
// bench/floor.sh runs it beside the ingest stage. FLOOR_PPROF_ADDR, when
// set, serves net/http/pprof there.
//
//	PUBSUB_EMULATOR_HOST=127.0.0.1:8085 go run ./bench/floor 127.0.0.1:8090 TOPIC
package main

import (
	"context"
	"log"
	"net/http"
	_ "net/http/pprof"
	"os"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	whttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-chi/chi"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if len(os.Args) != 3 || os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		log.Fatal("usage: PUBSUB_EMULATOR_HOST=HOST:PORT floor LISTEN_ADDR TOPIC (the topic must exist)")
	}
	addr, topic := os.Args[1], os.Args[2]
	logger := watermill.NopLogger{}
	// The ingest stage's publisher, setting for setting (pipeline's
	// publishSettings and NewPubSub); keep the two in step.
	settings := pubsub.DefaultPublishSettings
	settings.DelayThreshold = time.Millisecond
	settings.CountThreshold = 100
	settings.Timeout = 10 * time.Second
	settings.FlowControlSettings.MaxOutstandingMessages = 10_000
	settings.FlowControlSettings.MaxOutstandingBytes = 256 << 20
	settings.FlowControlSettings.LimitExceededBehavior = pubsub.FlowControlBlock
	pub, err := googlecloud.NewPublisher(googlecloud.PublisherConfig{
		ProjectID:                 "test",
		DoNotCheckTopicExistence:  true,
		DoNotCreateTopicIfMissing: true,
		PublishTimeout:            10 * time.Second,
		PublishSettings:           &settings,
		ClientOptions: []option.ClientOption{
			option.WithEndpoint(os.Getenv("PUBSUB_EMULATOR_HOST")),
			option.WithGRPCConnectionPool(4),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		},
		EnableMessageOrdering:                         true,
		EnableMessageOrderingAutoResumePublishOnError: true,
		// Unkeyed, as the gate publishes a payload sent without a key.
		Marshaler: googlecloud.NewOrderingMarshaler(func(string, *message.Message) (string, error) { return "", nil }),
	}, logger)
	if err != nil {
		log.Fatal(err)
	}
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
	log.Fatal(http.ListenAndServe(addr, routes))
}
