"""Where the Hydra config tree lives: inside the installed package (wheel installs, copied there at build
time) or at the repository's top level (editable installs and source checkouts)."""

from __future__ import annotations

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
