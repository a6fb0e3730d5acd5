// Package pipeline is gatekeeper's composition root: it builds the stages
// from a Config and runs them, in one process or apart.
//
// A payload's way through it, file by file:
//
//   - stage_ingest.go: the HTTP subscriber (package edge renders the
//     answer) → handlers.Gate → the accepted topic;
//   - stage_apply.go: the accepted topic → handlers.Apply, through the
//     group committer (package warehouse) → the applied topic, or the
//     poison topic;
//   - middleware_*.go: what the stages wrap their handlers in, one file
//     each, in an order each stage writes down once;
//   - package transport: Pub/Sub clients, the shared publisher and the
//     topics and subscriptions each stage needs (package embedded is the
//     in-process server); transport.go builds its Config;
//   - outbox_*.go: the outbox's part (package outbox is the store):
//     publishing again what was accepted and not settled;
//   - package health: recreating lost Pub/Sub resources, and what /readyz
//     ("send me traffic") and /healthz ("restart me") answer, each reason
//     named (package condition logs what repeats); health_config.go
//     builds its Config;
//   - operator.go: the operator tools' wiring (package operator holds
//     them): the poison index (the poison subscription → the warehouse's
//     events log), and what operators and backends do with it: list,
//     summary, show, replay, export, purge (the CLI and the admin API
//     share Console), and GET /api/activities/{id};
//   - middleware_frontdoor.go, ordering_block.go: API keys, quotas and
//     load shedding in front of the ingest stage (package frontdoor holds
//     the backends file), and ORDERING_POISON=block's held keys;
//   - config.go, service.go, warehouse_open.go: the settings, the
//     lifecycle (start, serve, drain, stop) and the warehouse adapters.
//
// Package metrics holds the service's own series.
package pipeline
