// Command benthos is Benthos v4.27 with the components bench/peers.sh uses:
// the pure, io and gcp ones (http_server, json_schema, switch, reject,
// gcp_pubsub), and with the build tag sql the sql ones (its sqlite buffer).
// It is its own module, so that the service's module does not carry
// Benthos's dependencies, and its go.sum pins every one of them.
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/gcp"
	_ "github.com/benthosdev/benthos/v4/public/components/io"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	"github.com/benthosdev/benthos/v4/public/service"
)

func main() { service.RunCLI(context.Background()) }
