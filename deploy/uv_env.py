"""Print ``export UV_...`` lines that hand pip's configuration to uv.

uv does not read pip's configuration files or ``PIP_*`` variables. Machines that point pip at
an extra index, local wheels or a global constraints file (``pip config list``) would make uv
resolve differently from pip, so deploy/bootstrap.sh evaluates this script's output before it
calls uv. Nothing is written to disk: the values come from pip's own config at run time.
Variables the user already set win.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

# pip option -> (uv variable, separator uv expects between several values)
OPTIONS = {
    "index-url": ("UV_DEFAULT_INDEX", None),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", None),
}


def pip_config(python: str) -> dict[str, list[str]]:
    """pip's effective options (``global.``/``install.``/``:env:.`` sections merged)."""
    listing = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    found: dict[str, list[str]] = {}
    for line in listing.splitlines():
        name, _, value = line.partition("=")
        option = name.rpartition(".")[2]
        if option in OPTIONS and value:
            for item in shlex.split(value):
                found.setdefault(option, [])
                if item not in found[option]:
                    found[option].append(item)
    return found


def main() -> None:
    python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
    for option, values in pip_config(python).items():
        variable, separator = OPTIONS[option]
        if variable in os.environ:
            continue
        value = values[-1] if separator is None else separator.join(values)
        print(f"export {variable}={shlex.quote(value)}")
    # pip takes the best version across all indexes; uv's default stops at the first index
    # that has the package, so a partial local mirror would hide newer releases.
    if "UV_INDEX_STRATEGY" not in os.environ:
        print("export UV_INDEX_STRATEGY=unsafe-best-match")


if __name__ == "__main__":
    main()
