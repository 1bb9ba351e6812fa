"""Contracts both sides of the link speak: models, ids, time, wire codec, logging,
settings and the policy loader."""
