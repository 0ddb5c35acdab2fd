"""The ``blendgate-llm-blender`` distribution (compat/llm-blender): alias modules only, its
metadata, and its two refusals to coexist with an original LLM-Blender (on import, on install).

"An original" is faked by a ``llm_blender-0.0.2.dist-info`` (LLM-Blender's setup.py name and
version) in a site directory; installs go into a throwaway venv that borrows only pip and
setuptools from this interpreter (offline, ``--no-build-isolation``), from a copy of the
project, so nothing is written to the checkout or to this environment.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.dropin.conftest import DROP_IN_SRC, ROOT

pytestmark = pytest.mark.timeout(300)

PROJECT = DROP_IN_SRC.parent
DISTRIBUTION = "blendgate-llm-blender"
MODULES = {
    "llm_blender/__init__.py", "llm_blender/_guard.py", "llm_blender/py.typed",
    "llm_blender/blender/__init__.py", "llm_blender/blender/blender.py",
    "llm_blender/blender/blender_utils.py",
    "llm_blender/pair_ranker/__init__.py", "llm_blender/pair_ranker/pairrm.py",
}
ALIASES = {  # module -> the ensemble.compat names it re-exports
    "llm_blender": ["Blender"],
    "llm_blender.blender.blender": ["Blender"],
    "llm_blender.blender.blender_utils": ["get_topk_candidates_from_ranks"],
    "llm_blender.pair_ranker.pairrm": ["DebertaV2PairRM"],
}


def fake_distribution(site: Path, name: str, version: str, top_level: str | None = None) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level + "\n")


def run_python(code: str, *path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (*path, DROP_IN_SRC, ROOT))}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_source_tree_holds_only_the_alias_modules() -> None:
    files = {str(p.relative_to(DROP_IN_SRC)) for p in DROP_IN_SRC.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)}
    assert files == MODULES


def test_each_alias_is_blendgates_object() -> None:
    checks = "".join(
        f"import {module}\nassert {module}.{name} is getattr(compat, {name!r}), {module!r}\n"
        for module, names in ALIASES.items() for name in names)
    done = run_python("import ensemble.compat as compat\n" + checks)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("name", "top_level"), [("llm_blender", None),
                                                 ("llm-blender-fork", "llm_blender")])
def test_import_refuses_next_to_an_original(tmp_path: Path, name: str,
                                            top_level: str | None) -> None:
    fake_distribution(tmp_path, name, "0.0.2", top_level)
    done = run_python("import llm_blender", tmp_path)
    assert done.returncode != 0
    assert "ImportError: blendgate-llm-blender refuses to be imported" in done.stderr
    assert f"{name} 0.0.2 at {tmp_path}" in done.stderr
    assert "'pip uninstall llm-blender'" in done.stderr
    assert "'pip uninstall blendgate-llm-blender'" in done.stderr


def test_an_unrelated_distribution_does_not_trigger_the_refusal(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "llm-blender-tools", "1.0", "llm_blender_tools")
    done = run_python("import llm_blender; print(llm_blender.Blender.__module__)", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ensemble.compat.blender"


# ----------------------------------------------------------------------------- installing


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv whose only borrowed packages are this interpreter's pip and setuptools."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    tools = tmp_path / "tools"
    tools.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for dist_name in ("pip", "setuptools"):
        dist = importlib.metadata.distribution(dist_name)
        names = [f"{dist_name}-{dist.version}.dist-info", *(dist.read_text("top_level.txt")
                                                             or dist_name).split()]
        for entry in names:
            if (site / entry).exists():
                (tools / entry).symlink_to(site / entry)
    (target_site(env_dir) / "borrowed-tools.pth").write_text(f"{tools}\n")
    return env_dir


def target_site(env_dir: Path) -> Path:
    python = env_dir / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def pip_install(env_dir: Path, project: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", *flags, str(project)],
        capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PROJECT, tmp_path / "llm-blender",
                                ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")))


@pytest.mark.parametrize("editable", [False, True])
def test_install_refuses_an_environment_with_an_original(venv: Path, project_copy: Path,
                                                         editable: bool) -> None:
    fake_distribution(target_site(venv), "llm_blender", "0.0.2")
    done = pip_install(venv, project_copy, *(["-e"] if editable else []))
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "blendgate-llm-blender refuses to be installed" in output
    assert "'pip uninstall llm-blender'" in output
    assert not list(target_site(venv).glob("blendgate_llm_blender*"))
    assert not (target_site(venv) / "llm_blender").exists()


def test_installed_metadata(venv: Path, project_copy: Path) -> None:
    done = pip_install(venv, project_copy)
    assert done.returncode == 0, done.stdout + done.stderr
    code = (
        "import importlib.metadata as m, json\n"
        f"d = m.distribution({DISTRIBUTION!r})\n"
        "print(json.dumps({'name': d.metadata['Name'], 'version': d.version,"
        " 'requires': d.requires, 'top_level': d.read_text('top_level.txt').split(),"
        " 'files': sorted(str(f) for f in d.files if str(f).startswith('llm_blender/')"
        " and '__pycache__' not in str(f))}))\n")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                         text=True, check=True)
    import json

    metadata = json.loads(out.stdout)
    blendgate_version = importlib.metadata.version("blendgate")
    assert metadata == {"name": DISTRIBUTION, "version": blendgate_version,
                        "requires": [f"blendgate>={blendgate_version}"],
                        "top_level": ["llm_blender"], "files": sorted(MODULES)}


def test_the_distribution_installed_here_is_this_one() -> None:
    """``make setup`` installs the drop-in (editable) into .venv: its metadata is the project's."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{DISTRIBUTION} is not installed here (make setup installs it)")
    assert dist.requires == [f"blendgate>={importlib.metadata.version('blendgate')}"]
    done = subprocess.run([sys.executable, "-c", "import llm_blender; print(llm_blender.__file__)"],
                          capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()).resolve().is_relative_to(PROJECT.resolve().parent)
