"""The bundled example project trains and its sweep expands as documented."""

import json
import os
import subprocess
import sys
from tests import REPO

EXAMPLE = str(REPO / "example")


def test_example_trainer_learns(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--epochs", "15", "--learning_rate", "1.0",
         "--job_dir", str(tmp_path)],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["loss"] < 0.6931 and metrics["accuracy"] > 0.6


def test_example_sweep_has_three_jobs():
    from caliban.sweep.experiments import count_experiments, load_experiment_config

    assert count_experiments(load_experiment_config(os.path.join(EXAMPLE, "experiment.json"))) == 3
