"""The demo end to end at a toy size: synthetic data → Ray Data → Ray Train (V and AV) →
per-condition table → MLflow runs. The real demo only has more clips and steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflows.demo import CONDITIONS, mlflow_uri, run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end(ray_session, tmp_path: Path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "demo"
    scores = run_demo(out, clips=12, seconds=3.2, epochs=1, steps=2)
    assert set(scores) == {"AVRSP-tiny (V)", "AVRSP-tiny (AV)"}
    for per_condition in scores.values():
        assert set(per_condition) == set(CONDITIONS)  # clips 8–11 are the test cycle
        for values in per_condition.values():
            assert -1.0 <= values["cc"] <= 1.0 and 0.0 <= values["auc_judd"] <= 1.0
    printed = capsys.readouterr().out
    assert "| AVRSP-tiny (AV) |" in printed and "mlflow ui --backend-store-uri" in printed
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(scores))
    assert (out / "results.md").read_text().count("AVRSP-tiny") == 2
    client = MlflowClient(mlflow_uri(out))
    runs = client.search_runs(
        [client.get_experiment_by_name("avrsp-demo").experiment_id], max_results=10
    )
    assert sorted(r.data.tags["variant"] for r in runs) == ["AV", "V"]
    assert all(r.info.status == "FINISHED" for r in runs)
    # A second run finds everything done and trains nothing again.
    again = run_demo(out, clips=12, seconds=3.2, epochs=1, steps=2)
    assert again == scores
    assert "trained before" in capsys.readouterr().out
