package pipeline

import (
	"google.golang.org/api/option"
)

// ClientOptions reach the Pub/Sub cfg selects from a process other than the
// service: in embedded mode, the running service's embedded server.
func ClientOptions(cfg Config) []option.ClientOption {
	switch cfg.ResolvedPubSubMode() {
	case PubSubEmbedded:
		return emulatorOptions(cfg.EmbeddedPubSubAddr)
	case PubSubEmulator:
		return emulatorOptions(cfg.EmulatorHost)
	default:
		if cfg.CredentialsFile != "" {
			return []option.ClientOption{option.WithAuthCredentialsFile(option.ServiceAccount, cfg.CredentialsFile)}
		}
		return nil
	}
}
