//go:build sql

package main

// The sqlite buffer, Benthos's durable one, for bench/peers.sh --durable.
import _ "github.com/benthosdev/benthos/v4/public/components/sql"
