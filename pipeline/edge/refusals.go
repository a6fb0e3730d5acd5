package edge

import (
	"net/http"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Refusal is an error that carries its own answer: the front door's
// refusals (package frontdoor: 401, 403, 429), rendered here in the
// ingestion API's body shape. Refused gives each the class refused: who
// sent the request, or how often, was refused, not what it holds.
type Refusal interface {
	error
	// Answer is the status, the message, the problems listed and the
	// headers (nil: none) of the answer.
	Answer() (status int, message string, problems []messages.Problem, header func(http.Header))
}

// Refuse answers a request the front door refused before the edge read it
// (401, 429), in the replaced service's body shape, with an
// X-Correlation-ID like every other answer of the route, and reports it to
// OnVerdict like every other verdict.
func (e *Edge) Refuse(w http.ResponseWriter, r *http.Request, err error) {
	correlate(w, r)
	e.render(w, r, &exchange{decided: true, err: err}, false)
}

// bareMessage stands for a request refused before it became a message,
// for OnVerdict: no id, no payload, only who sent it.
func bareMessage(r *http.Request) *message.Message {
	msg := message.NewMessage("", nil)
	if r != nil {
		if b := BackendFrom(r.Context()); b != "" {
			msg.Metadata.Set(messages.MetaBackend, b)
		}
	}
	return msg
}
