"""The default policy bundle, shipped inside the wheel."""
