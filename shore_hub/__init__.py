"""Shore hub: fleet store, incident memory and fleet API (see docs/architecture.md)."""
