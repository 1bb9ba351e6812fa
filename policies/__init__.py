"""The default policy bundle, shipped inside the wheel."""

from importlib import resources
from pathlib import Path


def runbooks_dir() -> Path:
    """The starter runbooks shipped with the package (Markdown with front matter)."""
    return Path(str(resources.files("policies") / "runbooks"))
