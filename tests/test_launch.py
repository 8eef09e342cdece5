"""The launcher's own pieces that need no running Flower process."""

from flwr.cli.build import build_fab_from_disk

from experiments.launch.flower import PROJECT_DIR, stage_app


def test_staged_app_builds_the_same_fab_as_the_project_folder(tmp_path):
    """`flwr run` gets a staged copy of the app (fast to walk); the FAB must not change."""
    staged = stage_app(tmp_path / "fab-src")
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert "pyproject.toml" in files and "strategies/server_app.py" in files
    assert all(f == "pyproject.toml" or f.endswith(".py") for f in files)
    assert build_fab_from_disk(staged) == build_fab_from_disk(PROJECT_DIR)  # walks the project: slow
