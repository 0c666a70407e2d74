"""Where otgan_lab finds and keeps files.

- ``conf_dir()``: the Hydra config tree, inside the installed package (wheel installs, copied there at
  build time) or at the repository's top level (editable installs and source checkouts).
- ``cache_root(env_var, kind)``: files it can rebuild or re-fetch (datasets, reference statistics): the
  environment override when set, else ``$XDG_CACHE_HOME/otgan_lab/<kind>`` (``~/.cache`` when unset).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def conf_dir() -> Path:
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"otgan_lab's config tree was not found (looked in {_PACKAGE_DIR / 'conf'} and "
        f"{_PACKAGE_DIR.parent / 'conf'}); reinstall the package"
    )


def cache_root(env_var: str, kind: str) -> Path:
    """``$env_var`` when set and non-empty (``OTLAB_DATA``, ``OTLAB_CACHE``), else the user cache folder
    ``.../otgan_lab/<kind>``."""
    if os.environ.get(env_var):
        return Path(os.environ[env_var]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "otgan_lab" / kind
