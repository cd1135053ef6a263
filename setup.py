"""The design card's folders are subpackages of the one import package `teststand`.

The core lives in `src/teststand`; `devices/`, `plans/`, `callbacks/` and `sim/` are mapped
into it. Packages are found by walking those folders, so a new instrument folder needs no entry.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {
    "teststand": "src/teststand",
    "teststand.devices": "devices",
    "teststand.plans": "plans",
    "teststand.callbacks": "callbacks",
    "teststand.sim": "sim",
    # The IPython profile and the simulated stand, shipped as package data.
    "teststand.profile_collection": "profile_collection",
}


def packages() -> list[str]:
    return sorted(
        ".".join([name, *init.parent.relative_to(folder).parts])
        for name, folder in ROOTS.items()
        for init in Path(folder).rglob("__init__.py")
    )


setup(package_dir=ROOTS, packages=packages())
