"""``blendgate check-config`` / ``serve``: config errors are one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import EXIT_CONFIG, build_parser, main
from gateway.config import ServerConfig
from gateway.settings import GatewaySettings, default_config_path, read_api_keys

REPO = Path(__file__).resolve().parents[2]

GOOD = """
backends:
  local: {kind: openai, base_url: "http://127.0.0.1:1/v1", model: m}
  other: {kind: openai, base_url: "http://127.0.0.1:1/v1", model: n, expose: false}
models:
  - {type: ensemble, id: duo, members: [{backend: local, samples: 2}, {backend: other}],
     ranker: {type: none}, fuser: {type: none}, top_k: 2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blendgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_config_lists_served_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "duo  (ensemble: local x2, other x1; ranker none, fuser none, top_k 2)" in out
    assert "local  (single)" in out
    assert "other" not in out.replace("other x1", "")


def test_packaged_default_config_is_valid_and_resolves(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BLENDGATE_CONFIG", raising=False)
    assert main(["check-config"]) == 0  # no file: the default serve uses, resolved as serve does
    assert "blend  (ensemble: smollm2 x4, qwen x2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (GOOD.replace("samples: 2", "samples: 0"), ["models.0.members.0.samples",
                                                    "greater than or equal to 1"]),
        (GOOD.replace("model: m}", "model: m, colour: red}"),
         ["backends.local.colour: unknown key 'colour'"]),
        (GOOD.replace("backend: other}", "backend: ghost}"), ["unknown backend 'ghost'"]),
        ("backends: [\n", ["invalid YAML"]),
    ],
)
def test_config_errors_exit_2_with_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    assert main(["check-config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"blendgate: config error: {path}: ")
    for fragment in fragments:
        assert fragment in err
    assert "Traceback" not in err


def test_console_script_serve_with_missing_config(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(missing), "--port", "1"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == EXIT_CONFIG
    assert f"{missing}: cannot read config file" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_config_ships_inside_the_package() -> None:
    path = default_config_path()
    assert path == REPO / "gateway" / "configs" / "default.yaml" and path.is_file()
    assert not (REPO / "configs" / "default.yaml").exists()  # one copy of the file


def test_settings_from_env_are_cli_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLENDGATE_PORT", "9123")
    monkeypatch.setenv("BLENDGATE_HOST", "0.0.0.0")
    args = build_parser(GatewaySettings()).parse_args(["serve"])
    assert (args.host, args.port, args.config) == ("0.0.0.0", 9123, None)
    args = build_parser(GatewaySettings()).parse_args(["serve", "--port", "8001"])
    assert args.port == 8001


def test_read_api_keys_merges_config_and_env() -> None:
    server = ServerConfig(api_keys=["a"], api_keys_env="KEYS")
    assert read_api_keys(server, {"KEYS": " b, ,c "}) == {"a", "b", "c"}
    assert read_api_keys(server, {}) == {"a"}
    assert read_api_keys(ServerConfig(api_keys_env=None), {"BLENDGATE_API_KEYS": "x"}) == set()
