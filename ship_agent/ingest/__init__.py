"""Ingest: syslog (UDP/TCP), HTTP JSON batches and a local NATS subject, into raw inputs."""
