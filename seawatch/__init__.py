"""The seawatch command line."""
