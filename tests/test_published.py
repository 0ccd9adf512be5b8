"""The published results stay true: each committed table is what its committed records give, each
study is complete, and each finding quotes its table."""

import collections
import dataclasses
import glob
import json
import os
import re

import pytest

from experiments import cli
from mlp_jax.campaign import grids, tables
from mlp_jax.store import results
from tests.helpers import REPO

RESULTS = os.path.join(REPO, "results")
GRIDS = ("seed_table", "course_extras", "best_cpu", "committee_cpu", "committee_v2")
# Each published committee folder: the (weights, test-time augmentation) of its committees.
COMMITTEES = {
    "committee_cpu": {("equal", "none"), ("validation", "none")},
    "committee_v2": {(w, tta) for w in ("equal", "accuracy") for tta in ("none", "shifts")},
}
EXPORTS = ("table.md", "table.csv", "table.json", "table.tex", "table.png", "README.md")


def read(*path: str) -> str:
    with open(os.path.join(RESULTS, *path), encoding="utf-8") as f:
        return f.read()


def header(table: str) -> list[str]:
    """The provenance lines above a committed table."""
    return table.split("\n\n", 1)[0].splitlines()


@pytest.mark.parametrize("grid", GRIDS)
def test_committed_grid_tables_are_their_records_exported(grid):
    committed = read(grid, "table.md")
    records = results.read(os.path.join(RESULTS, grid, "results.jsonl"))
    assert tables.to_markdown(tables.build(records, grid), header(committed)) == committed


def committee_table(record: dict) -> str:
    """Return the file a committee's table is published in: `committee_WEIGHTS[_TTA].md`."""
    tta = tables.committee_tta(record)
    return f"committee_{record['weights']}{'' if tta == 'none' else '_' + tta}.md"


@pytest.mark.parametrize("folder", list(COMMITTEES))
def test_committed_committee_tables_are_their_records_exported(folder):
    records = [json.loads(line) for line in read(folder, "committee.jsonl").splitlines()]
    assert {(r["weights"], tables.committee_tta(r)) for r in records} == COMMITTEES[folder]
    for record in records:
        committed = read(folder, committee_table(record))
        assert tables.committee_markdown(record, header(committed)) == committed


def study_matrices(name: str) -> list[dict]:
    study = grids.STUDIES[name]
    configs = {row.name: dataclasses.asdict(cli.row_config(row, [])) for row in study.rows()}
    records = results.read(os.path.join(RESULTS, "studies", name, "results.jsonl"))
    return tables.pivot(records, study, configs)


@pytest.mark.parametrize("name", list(grids.STUDIES))
def test_published_studies_are_whole_and_their_records_exported(name):
    for export in EXPORTS:
        assert os.path.getsize(os.path.join(RESULTS, "studies", name, export)) > 0, export
    committed = read("studies", name, "table.md")
    top = header(committed)
    assert top[0].startswith(
        f"Command: `./launch.sh {name} --seeds 3 --out results/studies/{name}`"
    )
    assert [line.split(":")[0] for line in top] == ["Command", "Date", "Machine", "Total wall time"]
    matrices = study_matrices(name)
    assert tables.study_markdown(matrices, top) == committed
    cells = [cell for matrix in matrices for row in matrix["cells"] for cell in row]
    assert all(cell["n"] + cell["diverged"] >= 3 for cell in cells)


@pytest.mark.parametrize("name", list(grids.STUDIES))
def test_each_figure_of_a_studys_findings_is_in_its_table(name):
    findings = read("studies", name, "README.md").split("## Findings", 1)[1]
    table = read("studies", name, "table.md")
    quoted = re.findall(r"\b0\.\d{4}\b", findings)
    assert quoted, "the findings quote no accuracy"
    assert [q for q in quoted if q not in table] == []


def words(text: str) -> str:
    return " ".join(text.split())


COPY_WORDS = 10  # this many words of a study's findings in a row, elsewhere, are a copy


def readme_texts() -> dict[str, str]:
    """Every README of the repository but the studies', by path."""
    paths = ["README.md", *glob.glob("results/**/README.md", root_dir=REPO, recursive=True)]
    texts = {}
    for path in paths:
        if not path.startswith(os.path.join("results", "studies")):
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                texts[path] = f.read()
    return texts


@pytest.mark.parametrize("name", list(grids.STUDIES))
def test_each_study_readme_shows_its_heatmap_and_findings_and_readme_links_it(name):
    """A finding lives in one place, its study's README, beside the heatmap; the results index
    links that README in one line, and no other README copies a phrase of the findings."""
    study = read("studies", name, "README.md")
    heatmap, findings = study.split("## Findings", 1)
    assert "](table.png)" in heatmap and words(findings)
    index = read("README.md").splitlines()  # results/README.md
    linked = [line for line in index if f"](studies/{name}/README.md)" in line]
    assert len(linked) == 1
    said = words(findings).split()
    phrases = {" ".join(said[i : i + COPY_WORDS]) for i in range(len(said) - COPY_WORDS + 1)}
    for path, text in readme_texts().items():
        copied = sorted(p for p in phrases if p in words(text))
        assert copied == [], f"{path} copies the findings of {name}: {copied[:3]}"


@pytest.mark.parametrize(
    "path",
    sorted(glob.glob("**/results.jsonl", root_dir=RESULTS, recursive=True)),
)
def test_no_runs_ensemble_is_below_its_worst_finished_replica(path):
    processes = collections.defaultdict(list)  # one process's records share a name and a time
    for record in results.read(os.path.join(RESULTS, path)):
        processes[record["name"], record.get("time")].append(record)
    for (name, time), records in processes.items():
        (ensemble,) = {r.get("ensemble_test_accuracy") for r in records}
        finished = [r["test_accuracy"] for r in records if not r["diverged"]]
        assert ensemble is None or (finished and ensemble >= min(finished)), (name, time)
        members = {r.get("ensemble_members", len(finished)) for r in records}
        assert members <= {len(finished), None}, (name, time)


def test_the_published_search_and_its_confirmation_are_their_records_exported():
    committed = read("search", "table.md")
    trials = results.read(os.path.join(RESULTS, "search", "results.jsonl"))
    assert tables.trials_markdown(tables.trials(trials), header(committed)) == committed
    confirmed = read("search", "confirm", "table.md")
    records = results.read(os.path.join(RESULTS, "search", "confirm", "results.jsonl"))
    assert tables.to_markdown(tables.build(records), header(confirmed)) == confirmed
