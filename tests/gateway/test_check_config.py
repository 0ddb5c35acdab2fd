"""``check-config`` fails where ``serve`` would: readable messages, the resolve step, the env.

Messages name the key as written in the file, suggest the closest valid key, and carry none of
pydantic's internals (``Value error,``, ``function-after[...]``, ``tagged-union[...]``).
The resolve step (``ensemble.preflight``) finds GGUF files, packages, chunk packages,
checkpoints and API-key env vars without loading any weights.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import huggingface_hub.constants
import pytest

from ensemble.errors import ConfigError
from ensemble.preflight import check_resources, find_problems
from gateway.cli import EXIT_CONFIG, main
from gateway.config import parse_config
from gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]
OPENAI = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
INTERNALS = re.compile(r"Value error,|function-after\[|tagged-union\[|function-wrap\[|"
                       r"model-fields|\[type=")


def config_error(data: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="x.yaml")
    message = str(caught.value)
    assert not INTERNALS.search(message), message
    assert "\n" not in message
    return message


def ensemble(**fields: object) -> dict:
    return {"type": "ensemble", "id": "e", "members": [{"backend": "a"}], **fields}


@pytest.mark.parametrize("url", ["localhost:8000/v1", "htp:/oops", "http//x", "ftp://x/v1", ""])
def test_base_url_must_be_an_absolute_http_url(url: str) -> None:
    message = config_error({"backends": {"a": {**OPENAI, "base_url": url}}})
    assert message.startswith("x.yaml: backends.a.base_url: ")
    assert f"got {url!r}" in message and "http(s) URL" in message


def test_a_remote_ranker_url_is_checked_too() -> None:
    message = config_error({"backends": {"a": OPENAI},
                            "rank_service": {"type": "remote", "url": "ranker:8000"}})
    assert message.startswith("x.yaml: rank_service.url: ") and "got 'ranker:8000'" in message


def test_good_urls_keep_their_path() -> None:
    for url in ("http://vllm-qwen:8000/v1", "https://api.example.com/v1", "http://10.0.0.2:8001"):
        config = parse_config({"backends": {"a": {**OPENAI, "base_url": url}}})
        assert str(config.backends["a"].base_url).rstrip("/") == url  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"backend": {"a": OPENAI}}, "x.yaml: backend: unknown key 'backend'; did you mean 'backends'?"),
        ({"backends": {"a": {**OPENAI, "modle": "m"}}},
         "backends.a.modle: unknown key 'modle'; did you mean 'model'?"),
        ({"backends": {"a": OPENAI}, "rank_service": {"type": "pairrm", "chekpoint": "x"}},
         "rank_service.chekpoint: unknown key 'chekpoint'; did you mean 'checkpoint'?"),
        ({"backends": {"a": OPENAI}, "models": [ensemble(fuser={
            "type": "genfuser", "fallback": {"type": "llm", "backend": "a", "tempalte": "x"}})]},
         "models.0.fuser.fallback.tempalte: unknown key 'tempalte'; did you mean 'template'?"),
        ({"backends": {"a": OPENAI}, "models": [ensemble(min_candidate=1)]},
         "models.0.min_candidate: unknown key 'min_candidate'; did you mean 'min_candidates'?"),
        ({"backends": {"a": {**OPENAI, "kind": "opanai"}}},
         "backends.a: kind 'opanai' is not one of 'openai', 'local'; did you mean 'openai'?"),
        ({"backends": {"a": {"kind": "local", "model": {"chunks": ["p"], "sha265": "0"}}}},
         "backends.a.model.sha265: unknown key 'sha265'; did you mean 'sha256'?"),
        ({"backends": {"a": OPENAI}, "models": [ensemble(zzz=1)]},
         "models.0.zzz: unknown key 'zzz'; valid keys: deadline_s, fuser, id"),
    ],
)
def test_misspelt_keys_name_the_key_and_the_closest_valid_one(data: dict, expected: str) -> None:
    assert expected in config_error(data)


def test_validator_messages_have_no_value_error_prefix() -> None:
    message = config_error({"backends": {"a": OPENAI},
                            "server": {"max_tokens_limit": 5, "default_max_tokens": 10}})
    assert message == "x.yaml: server: default_max_tokens=10 exceeds max_tokens_limit=5"


# ----------------------------------------------------------------------------- resolve step


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blendgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def local(model: str, runtime: str = "llamacpp") -> str:
    return f"""
backends:
  m: {{kind: local, runtime: {runtime}, model: {model!r}}}
"""


SHA = "0" * 64
CHUNKS = f"backends:\n  m: {{kind: local, model: {{chunks: [no_chunk_pkg_1], sha256: '{SHA}'}}}}\n"
KEYED = ("backends:\n  m: {kind: openai, base_url: 'http://h:1/v1', model: x, "
         "api_key_env: BLENDGATE_TEST_UNSET_KEY}\n")
REMOTE = "backends:\n  a: {kind: openai, base_url: 'http://h:1/v1', model: x}\n"


def with_models(members_and_more: str) -> str:
    return REMOTE + f"models:\n  - {{type: ensemble, id: e, members: {members_and_more}}}\n"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (local("/nowhere/model.gguf"), ["backends.m.model", "'/nowhere/model.gguf' does not exist"]),
        (local("package:no_such_pkg_x"), ["backends.m.model", "'no_such_pkg_x' is not installed"]),
        (CHUNKS, ["backends.m.model", "no_chunk_pkg_1"]),
        (KEYED, ["backends.m.api_key_env", "BLENDGATE_TEST_UNSET_KEY (the API key) is not set"]),
        (local("/nowhere/hf-model", "transformers"), ["backends.m.model", "does not exist"]),
        (with_models("[{backend: a}, {backend: a}], ranker: {type: pairrm, checkpoint: ./no/rm}"),
         ["models.0.ranker.checkpoint", "directory './no/rm' does not exist"]),
        (with_models("[{backend: a}], fuser: {type: genfuser, checkpoint: /no/fuser}"),
         ["models.0.fuser.checkpoint", "'/no/fuser' does not exist"]),
        (REMOTE + "rank_service: {type: remote, url: 'http://r:1', "
                  "api_key_env: BLENDGATE_TEST_UNSET_KEY}\n",
         ["rank_service.api_key_env", "BLENDGATE_TEST_UNSET_KEY (the API key) is not set"]),
        (REMOTE + "rank_service: {type: consensus, model: 'package:no_minilm_pkg'}\n",
         ["rank_service.model", "'no_minilm_pkg' is not installed"]),
        (REMOTE + "rank_service: {type: llm_judge, backend: a, fallback: "
                  "{type: consensus, model: 'package:no_minilm_pkg'}}\n",
         ["rank_service.fallback.model", "'no_minilm_pkg' is not installed"]),
    ],
)
def test_check_config_fails_where_serve_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    text: str, fragments: list[str],
) -> None:
    monkeypatch.delenv("BLENDGATE_TEST_UNSET_KEY", raising=False)
    path = write(tmp_path, text)
    assert main(["check-config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"blendgate: config error: {path}: ")
    for fragment in fragments:
        assert fragment in err
    # serve stops at the same step, before loading anything (no port is opened)
    assert main(["serve", "--config", str(path), "--port", "1"]) == EXIT_CONFIG
    assert fragments[-1] in capsys.readouterr().err
    # --schema-only checks the YAML alone
    assert main(["check-config", "--schema-only", str(path)]) == 0


def test_existing_resources_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    monkeypatch.setenv("BLENDGATE_TEST_KEY", "sk-x")
    config = parse_config({
        "backends": {"g": {"kind": "local", "model": str(gguf)},
                     "o": {**OPENAI, "api_key_env": "BLENDGATE_TEST_KEY"}},
        "models": [{"type": "ensemble", "id": "e", "members": [{"backend": "g"}],
                    "ranker": {"type": "pairrm", "checkpoint": str(checkpoint)},
                    "fuser": {"type": "genfuser", "checkpoint": str(checkpoint)}}],
    })
    assert find_problems(config) == []


def test_an_uncached_hub_id_is_a_warning_online_and_an_error_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config({
        "backends": {"a": OPENAI},
        "models": [ensemble(ranker={"type": "pairrm", "checkpoint": "nobody/not-cached",
                                    "cache_dir": str(tmp_path)})],
    })
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    [warning] = check_resources(config)
    assert not warning.fatal and "serve will download it" in warning.message
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="models.0.ranker.checkpoint: 'nobody/not-cached' .*"
                                          "HF_HUB_OFFLINE is set"):
        check_resources(config)


def test_a_cached_hub_id_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = (tmp_path / "models--org--fuser" / "snapshots" / ("a" * 40))
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--fuser" / "refs").mkdir()
    (tmp_path / "models--org--fuser" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = parse_config({"backends": {"a": OPENAI}, "models": [ensemble(fuser={
        "type": "genfuser", "checkpoint": "org/fuser", "cache_dir": str(tmp_path)})]})
    assert find_problems(config) == []


# ----------------------------------------------------------------------------- environment


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], check=False,
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_a_bad_port_in_the_environment_is_one_line_and_exit_2() -> None:
    result = run_cli("check-config", env={"BLENDGATE_PORT": "abc"})
    assert result.returncode == EXIT_CONFIG
    expected = ("blendgate: environment error: BLENDGATE_PORT: Input should be a valid "
                "integer, unable to parse string as an integer (got 'abc')")
    assert result.stderr.splitlines() == [expected]


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"blendgate \d+\.\d+\.\d+\S*\n", result.stdout)


def test_every_blendgate_variable_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Environment"):]
    section = section[: section.index("\n## ")]
    names = {f"BLENDGATE_{field.upper()}" for field in GatewaySettings.model_fields}
    for source in [*(REPO / "gateway").rglob("*.py"), *(REPO / "ensemble").rglob("*.py")]:
        names.update(re.findall(r"BLENDGATE_[A-Z_]*[A-Z]", source.read_text(encoding="utf-8")))
    names -= {"BLENDGATE_"}
    assert names, "no BLENDGATE_* variable found"
    missing = sorted(n for n in names if f"`{n}`" not in section)
    assert not missing, f"not documented in README's Environment section: {missing}"


def test_the_wheel_ships_the_default_config_and_serves_it_outside_a_checkout(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("gateway", "ensemble"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("blendgate-*.whl")
    assert "gateway/configs/default.yaml" in zipfile.ZipFile(wheel).namelist()
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a wheel is a zip of the installed tree
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("check-config", cwd=elsewhere,
                     env={"PYTHONPATH": str(site), "BLENDGATE_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    assert "blend  (ensemble: smollm2 x4, qwen x2" in result.stdout
    where = run_cli("--version", cwd=elsewhere, env={"PYTHONPATH": str(site)})
    assert where.returncode == 0
