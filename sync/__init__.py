"""Store-and-forward sync over NATS leaf nodes (see docs/architecture.md)."""
