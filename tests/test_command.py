"""The `eventsnn` dispatcher: sub-commands, usage, and the OpenMP policy of training commands."""

import types

import pytest

from pipelines import cli


@pytest.fixture
def dispatched(monkeypatch) -> list[tuple[str, list[str], str | None]]:
    """Calls reaching the sub-command modules: (module, argv, OMP_WAIT_POLICY at that time)."""
    calls = []
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)

    def fake_module(name: str):
        def main(argv):
            calls.append((name, argv, cli.os.environ.get("OMP_WAIT_POLICY")))
            return 0

        return types.SimpleNamespace(main=main)

    monkeypatch.setattr(cli.importlib, "import_module", fake_module)
    return calls


def test_training_runs_with_passive_openmp_and_inference_keeps_the_default(dispatched):
    assert cli.main(["stream", "--source", "x"]) == 0
    assert cli.main(["fit", "--config", "c.yaml"]) == 0
    assert dispatched == [
        ("pipelines.stream", ["stream", "--source", "x"], None),
        ("pipelines.train", ["fit", "--config", "c.yaml"], "PASSIVE"),
    ]


def test_a_users_policy_wins(dispatched, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli.main(["test"])
    assert dispatched[-1][2] == "ACTIVE"


def test_unknown_command_and_usage(capsys):
    assert cli.main(["fitt"]) == 2
    assert "unknown command 'fitt'" in capsys.readouterr().err
    assert cli.main([]) == 0
    assert "commands:" in capsys.readouterr().out
