"""The metadata is in setup.cfg. This hook puts the shipped bundles (``bundles/``) into the wheel as package data,
``misr_monai/shipped_bundles``, where :py:mod:`misr_monai.predictors.registry` finds them through ``importlib.resources`` when the
package is installed without its checkout."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLES = Path(__file__).resolve().parent / "bundles"
LEFT_OUT = shutil.ignore_patterns("runs", "eval", "input", "__pycache__", ".*")


class BuildPyWithBundles(build_py):
    """``build_py`` that also copies each bundle's configs, models, docs and licence (not its run outputs)."""

    def run(self) -> None:
        super().run()
        if BUNDLES.is_dir() and not getattr(self, "editable_mode", False):  # an editable install reads the checkout
            shutil.copytree(BUNDLES, Path(self.build_lib) / "misr_monai" / "shipped_bundles", ignore=LEFT_OUT,
                            dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithBundles})
