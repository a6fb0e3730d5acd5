// Package pipeline is gatekeeper's composition root: it reads the one big
// Config, builds every part from its own small Config, wires them together
// and runs them, in one process or as separate stages. Nothing but the
// commands (cmd/gatekeeper, bench/floor) imports it; the parts it builds
// never do.
//
// What it wires, and where:
//
//   - config.go: the settings (Config), their defaults and checks;
//   - service.go: the lifecycle: build, serve, the background workers
//     (one run group), drain, stop, in the order that loses nothing;
//   - stage_ingest.go: the HTTP subscriber → handlers.Gate → the accepted
//     topic, behind package frontdoor's Guard (keys, quotas, the body
//     budget) and package edge (the answer);
//   - stage_apply.go: the accepted topic → handlers.Apply, through the
//     group committer (package warehouse) → the applied topic, or the
//     poison topic, in the middleware order written down there, with
//     package pause (outages) and package ordering (ORDERING_POISON=block);
//   - middleware_*.go: the stages' small Watermill middleware (the apply
//     stage's attempts and failure metadata, and what it is handling;
//     panics, in both stages);
//   - transport.go, health_config.go, operator.go, outbox_workers.go,
//     frontdoor_wiring.go, warehouse_open.go: each builds one package's
//     Config from Config, and its collaborators from the others;
//   - watermill_logger.go: Watermill's logger over slog, gated by level;
//   - check.go: `gatekeeper check`, which looks at what a process with
//     Config needs (Pub/Sub, IAM, the warehouse) before a deploy.
//
// The parts: transport (Pub/Sub: clients, publisher, subscribers, topics
// and subscriptions, and the embedded server), health (/readyz, /healthz
// and the resource monitor), outbox (the store, its keeper, redeliverer
// and follower), frontdoor, edge, pause, ordering, operator (console,
// admin API, status, poison index, replay), metrics and condition.
// docs/architecture.md walks a payload through them.
package pipeline
