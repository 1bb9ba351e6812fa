"""`seawatch bench nab`: Seawatch's metric detectors on the Numenta Anomaly Benchmark."""
