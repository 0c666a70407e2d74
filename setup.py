"""Copies the top-level conf/ tree into the package when building a wheel, so that a non-editable install
finds its configs (otgan_lab/paths.py looks there first, then beside the package for editable installs)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConf(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).parent / "conf"
        target = Path(self.build_lib) / "otgan_lab" / "conf"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)


setup(cmdclass={"build_py": BuildPyWithConf})
