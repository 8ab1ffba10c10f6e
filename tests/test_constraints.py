"""The locked install: constraints.txt pins every requirement at a version it allows, the
Makefile installs with it, and this environment has exactly those versions."""

import re
from importlib.metadata import PackageNotFoundError, version

from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The other backends' packages: make test installs them, a plain `make venv` does not.
OPTIONAL = {"jax", "jaxlib", "torch"}


def pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    found = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(parts) == 2 for parts in found), "every constraint is name==version"
    return {canonicalize_name(name): pinned for name, pinned in found}


def requirements() -> list[Requirement]:
    found = []
    for name in ("requirements-core.txt", "requirements.txt", "requirements-dev.txt",
                 "requirements-jax.txt", "requirements-torch.txt"):
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                found.append(Requirement(line))
    return list({requirement.name: requirement for requirement in found}.values())


def test_every_requirement_is_pinned_within_its_range():
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(pinned[name]), (
            f"constraints.txt pins {name}=={pinned[name]} outside {requirement}")


def test_the_makefile_installs_with_the_constraints():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"pip install [^\n]*-r requirements-dev\.txt \\\n\s*-c constraints\.txt",
                     makefile)
    assert "constraints.txt" in makefile.split("$(VENV)/.installed:")[1].splitlines()[0]


def test_this_environment_has_the_pinned_versions():
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            assert name in OPTIONAL, f"{name} is not installed"
            continue
        assert installed.split("+")[0] == pinned[name], name  # torch 2.13.0+cpu is 2.13.0
