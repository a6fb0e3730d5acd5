package transport

import (
	"strings"
	"testing"
	"time"
)

// The zero Config is an embedded Pub/Sub with gatekeeper's names, and valid.
func TestZeroConfigIsTheEmbeddedDefault(t *testing.T) {
	var c Config
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{
		Mode: ModeEmbedded, ProjectID: "gatekeeper-local", EmbeddedAddr: "127.0.0.1:8086",
		Topic: "db-transaction-topic", OrderedTopic: "db-transaction-topic-ordered",
		AppliedTopic: "db-transaction-topic-applied", PoisonTopic: "db-transaction-topic-poison",
		Subscription: "db-sub", OrderedSubscription: "db-sub-ordered", PoisonSubscription: "db-sub-poison",
		PublishTimeout: 10 * time.Second, ReceiveStreams: 4, MaxOutstanding: 1000,
	}
	if c.Mode != want.Mode || c.ProjectID != want.ProjectID || c.EmbeddedAddr != want.EmbeddedAddr ||
		c.Topic != want.Topic || c.OrderedTopic != want.OrderedTopic || c.AppliedTopic != want.AppliedTopic ||
		c.PoisonTopic != want.PoisonTopic || c.Subscription != want.Subscription ||
		c.OrderedSubscription != want.OrderedSubscription || c.PoisonSubscription != want.PoisonSubscription ||
		c.PublishTimeout != want.PublishTimeout || c.ReceiveStreams != want.ReceiveStreams || c.MaxOutstanding != want.MaxOutstanding {
		t.Errorf("zero Config with defaults: %+v, want %+v", c, want)
	}
}

// Validate names every problem at once, in a stable order.
func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{Mode: ModeGoogle, DeadLetterMaxAttempts: 3, PublishDelay: -1, ReceiveStreams: -1}
	c.setDefaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{"project ID is required", "dead-letter max attempts 3", "publish delay -1ns", "receive streams -1"}
	got := err.Error()
	at := 0
	for _, w := range want {
		i := strings.Index(got[at:], w)
		if i < 0 {
			t.Fatalf("Validate: %q, want %q after position %d", got, w, at)
		}
		at += i + len(w)
	}
	c = Config{Mode: "kafka"}
	c.setDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `mode "kafka"`) {
		t.Errorf("unknown mode: %v", err)
	}
	c = Config{Mode: ModeEmulator}
	c.setDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "emulator's host:port") {
		t.Errorf("emulator without a host: %v", err)
	}
}
