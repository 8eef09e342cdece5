"""Run a whole study from a preset: tune on validation, choose by code, run the finals, report.

    python -m experiments.study compare_fmnist               # the Fashion-MNIST comparison
    python -m experiments.study wsa_where --only model=cnn   # a subset of the cells
    python -m experiments.study wsa_where --report           # report what has finished
    python -m experiments.study wsa_where --dry-run          # list the runs, run nothing
    python -m experiments.study my_study.yaml tune.rounds=3  # a preset file, and overrides
    python -m experiments.study wsa_where --export DIR       # ended runs' results, to keep in git
    python -m experiments.study wsa_where --restore DIR      # continue from them on a new machine
    python -m experiments.study wsa_where --report --merge OLD/study.json   # with an earlier report's cells
    python -m experiments.study merging --workers 2          # a merging study (experiments.connect runs)

A preset (``experiments/conf/study/<name>.yaml``) names the settings every run shares
(``common``), the cells (the product of ``axes``; each value a list of overrides), the
strategies (each a list of overrides, and optionally a knob to ``tune`` with its grid),
the tuning runs (``tune``: rounds, seed, overrides such as ``validation=0.1``), the final
runs (``final``: rounds, seeds) and, for the decision rule, which strategies are the
``challengers`` and which the ``references``.

Per cell, in order: every tuning run (the test split is never looked at when the tune
overrides set ``validation``), the choice (``experiments.study.rules.choose``: highest accuracy
at the last tuning round, ties to the smaller value, diverged or failed runs last), the
final runs with the chosen values, seeds as listed. Runs on Flower's Simulation Engine share
one Ray, one SuperLink and one Flower run, as the jobs of a multirun do (``sweep_ray``;
stopped when the study ends). Every run goes to its own folder under ``--out``; a finished
run is skipped, an unfinished one resumes from its checkpoint, so an interrupted study
continues where it stopped. A run that fails (diverged: every reply rejected for
``max_failed_rounds`` rounds) is recorded as failed and the study goes on; a failed final
is scored by the last accuracy evaluated before it stopped (``final_entry``).
The report (``<out>/report/``: study.md, study.json, mechanism.png) is written at the end,
and by ``--report`` from whatever has finished.

The package, by job: ``preset`` (the preset, its cells and their runs), ``runner`` (one run,
and a study's runs one after another), ``pool`` (side by side, ``--workers``), ``rules``
(choice, decision rule, mismatch: pure functions tested by hand), ``scoring`` (each cell's
results and decisions), ``writeup`` (study.md, study.json, the figure), ``archive``
(``--export``/``--restore``), ``merging`` (a ``kind: merging`` preset: each run one
``experiments.connect``, and its report), ``cli`` (the command line).
"""
