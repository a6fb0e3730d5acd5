package pipeline

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
)

func TestWatermillLoggerSkipsDisabledLevelsForFree(t *testing.T) {
	var out bytes.Buffer
	fields := watermill.LogFields{"message_uuid": "m1", "url": "/api/activities"}

	quiet := watermillLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))).With(watermill.LogFields{"stage": "ingest"})
	if allocs := testing.AllocsPerRun(100, func() {
		quiet.Trace("Sending msg", fields)
		quiet.Debug("Waiting for ACK", fields)
	}); allocs != 0 {
		t.Errorf("disabled Trace and Debug allocated %v times per call", allocs)
	}
	quiet.Info("kept", fields)
	if out.Len() == 0 || strings.Contains(out.String(), "Sending msg") || strings.Contains(out.String(), "Waiting for ACK") {
		t.Errorf("at info: %q", out.String())
	}

	out.Reset()
	loud := watermillLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: watermill.LevelTrace}))).With(watermill.LogFields{"stage": "ingest"})
	loud.Trace("Sending msg", fields)
	loud.Debug("Waiting for ACK", fields)
	for _, want := range []string{"Sending msg", "Waiting for ACK", "message_uuid=m1", "stage=ingest"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("at trace, %q missing from %q", want, out.String())
		}
	}
}
