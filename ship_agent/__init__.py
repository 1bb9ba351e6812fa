"""The vessel process: ingest, fast path (parse, detect, enrich, correlate), store, local API."""
