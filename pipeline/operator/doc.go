// Package operator holds what operators and backends do with payloads
// after the gate, over the warehouse's events log and ledger:
//
//   - poison_index.go: Indexer, the poison subscription → the events log,
//     the poison index operators query;
//   - console.go, replay.go: Console, what operators do with the index:
//     list, summary, show, export, purge and replay (the CLI and the admin
//     API share it);
//   - page.go: the list's pages and their cursor, and causes (CauseOf);
//   - admin.go (+ console.html), jobs.go: Admin, the admin listener: the
//     console's JSON API, its background replays, the page over it, and
//     the profiles;
//   - status.go: Status, GET /api/activities/{id}.
//
// Each part is built with NewX(cfg, logger) from its own Config; what it
// stands on (the warehouse, Pub/Sub, the admin key check, the HTTP
// metrics) comes in that Config. Package pipeline wires them.
package operator
