"""The READMEs stay true: the flag table is generated, the set-up commands are CI's, and every
command they quote parses (its module exists, its flags exist, its values are accepted)."""

import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from mlp_jax.core import config
from tests.helpers import REPO

# The top-level README, results/README.md and each published folder's (a study's findings and
# their commands live in the study's README only).
READMES = (
    "README.md",
    *sorted(glob.glob(os.path.join("results", "**", "README.md"), root_dir=REPO, recursive=True)),
)
MAX_README_LINES = 200
REGENERATE = "python -c \"from mlp_jax.core import config; print(config.flag_table(), end='')\""
TABLE_BEGIN = f"<!-- flag table: {REGENERATE} -->"
TABLE_END = "<!-- end of flag table -->"
SETUP = "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && "
RUN_COMMAND = (
    SETUP + ".venv/bin/python -m experiments.mlp --hidden=625,441 --act=relu6 "
    "--data_dir=../shared/datasets/mnist"
)
TEST_COMMAND = SETUP + "MLP_JAX_DATA=../shared/datasets/mnist .venv/bin/python -m pytest"
SEPARATORS = {"&&", "||", ";", "|", "&"}
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
FOR_LOOP = re.compile(r"for (\w+) in ([^;]+); do (.*); done")


def read(name: str) -> str:
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        return f.read()


def quoted_commands(name: str) -> list[tuple[str, str]]:
    """Return (file:line, command) for every shell line of a fenced code block and every inline
    code span that runs an entry point (`-m experiments.`) or launch.sh."""
    found, fenced, pending = [], False, ""
    for number, line in enumerate(read(name).splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            pending += line.rstrip("\\") + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                found.append((f"{name}:{number}", pending))
                pending = ""
        else:
            found += [(f"{name}:{number}", span) for span in re.findall(r"`([^`]+)`", line)]
    return [
        (where, text)
        for where, text in found
        if "-m experiments." in text or re.match(r"(time )?\./launch\.sh\b", text.strip())
    ]


def simple_commands(text: str) -> list[list[str]]:
    """Split a shell line into its simple commands' words, without `VAR=value` prefixes, `time`,
    redirections or comments; a `for V in A B; do ...; done` loop gives its body once per value."""
    loop = FOR_LOOP.fullmatch(text.strip())
    if loop:
        var, values, body = loop.groups()
        return [
            words
            for value in values.split()
            for words in simple_commands(body.replace(f"${var}", value))
        ]
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands, words = [], []
    for token in [*lexer, ";"]:
        if token in SEPARATORS:
            commands.append(words)
            words = []
        elif words and words[-1] in {">", ">>", "<"}:
            words.pop()  # a redirection and its target
        else:
            words.append(token)
    stripped = []
    for words in commands:
        while words and (ASSIGNMENT.match(words[0]) or words[0] == "time"):
            words = words[1:]
        if words:
            stripped.append(words)
    return stripped


def entry_point_commands() -> tuple[dict[str, list[tuple[str, list[str]]]], list]:
    """Return the quoted commands of every README: {module: [(where, args)]} for
    `python -m experiments.X ARGS`, and [(where, args)] for `./launch.sh ARGS`."""
    modules: dict[str, list[tuple[str, list[str]]]] = {}
    launches = []
    for name in READMES:
        for where, text in quoted_commands(name):
            for words in simple_commands(text):
                if words[:2] == ["./launch.sh", "search"]:  # experiments.search's own flags
                    modules.setdefault("experiments.search", []).append((where, words[2:]))
                elif words[0] == "./launch.sh":
                    launches.append((where, words[1:]))
                elif len(words) > 2 and words[1] == "-m" and words[2].startswith("experiments."):
                    assert re.search(r"(^|/)python3?$", words[0]), (where, words)
                    modules.setdefault(words[2], []).append((where, words[3:]))
    return modules, launches


MODULES, LAUNCHES = entry_point_commands()
# Never in a README: they must fail, or the check checks nothing.
MISSPELT = ("(misspelt flag)", ["--hiden=625,441"])
BAD_VALUE = ("(bad value)", ["--act=relu7"])

LAUNCH = "./launch.sh"  # the job of the launches, beside the modules' jobs

# One fresh interpreter imports what the entry points share, then parses each module's command
# lines in a child forked for the module (flags of different modules clash): the child imports
# the module, which defines its absl flags, and parses each line without calling main. The
# launches' child parses each launch's options and runs experiments.launch's main with --list,
# which prints each row's command and trains nothing. No child starts JAX before it forks.
PARSE = """
import contextlib, importlib, importlib.util, io, json, os, sys
from absl import flags
from experiments import cli

def parse(module, arg_lists):
    source = open(importlib.util.find_spec(module).origin, encoding="utf-8").read()
    importlib.import_module(module)
    for args in arg_lists:
        try:
            flags.FLAGS.unparse_flags()
            flags.FLAGS([module, *args])
            if "cli.define_config_flags()" in source:
                cli.config_from_flags()
            yield None, ""
        except Exception as e:  # absl's flags.Error, or InputError from the Config
            yield f"{type(e).__name__}: {e}", ""

def list_launches(arg_lists):
    from experiments import launch
    for args in arg_lists:
        try:
            flags.FLAGS.unparse_flags()
            names, options, extra = launch.split_arguments(args)
            flags.FLAGS(["launch.sh", *options, "--list"])
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                launch.main([], names, extra, "")
            yield None, printed.getvalue()
        except Exception as e:
            yield f"{type(e).__name__}: {e}", ""

children = {}
for job, arg_lists in json.load(sys.stdin).items():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        run = list_launches(arg_lists) if job == "LAUNCH" else parse(job, arg_lists)
        with os.fdopen(write, "w") as f:
            json.dump(list(run), f)
        os._exit(0)
    os.close(write)
    children[job] = (pid, read)
parsed = {}
for job, (pid, read) in children.items():
    with os.fdopen(read) as f:
        parsed[job] = json.load(f)
    assert os.waitpid(pid, 0)[1] == 0, job
print("parsed:", json.dumps(parsed))
""".replace("LAUNCH", LAUNCH)


def run_parser(jobs: dict[str, list[tuple[str, list[str]]]]) -> dict[str, dict[str, tuple]]:
    """Return, per module (or LAUNCH), {where and command: (error or None, what it printed)}."""
    proc = subprocess.run(
        [sys.executable, "-c", PARSE],
        input=json.dumps({job: [args for _, args in commands] for job, commands in jobs.items()}),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("parsed: ")]
    assert proc.returncode == 0 and lines, f"python -c PARSE:\n{proc.stderr[-3000:]}"
    parsed = json.loads(lines[-1].removeprefix("parsed: "))
    return {
        job: {
            f"{where}: {job} {shlex.join(args)}": tuple(result)
            for (where, args), result in zip(commands, parsed[job], strict=True)
        }
        for job, commands in jobs.items()
    }


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, tuple]]:
    """Parse every module's commands and list every launch, in one interpreter; the misspelt
    flag and the bad value ride along with experiments.mlp."""
    jobs = {module: list(commands) for module, commands in MODULES.items()}
    jobs.setdefault("experiments.mlp", []).extend([MISSPELT, BAD_VALUE])
    return run_parser({**jobs, LAUNCH: LAUNCHES})


def test_flag_table_is_generated_from_config():
    text = read("README.md")
    assert TABLE_BEGIN in text and TABLE_END in text, "README lost the flag table's markers"
    quoted = text.split(TABLE_BEGIN + "\n", 1)[1].split(TABLE_END, 1)[0]
    assert quoted == config.flag_table(), (
        "README's flag table differs from Config; replace the lines between the markers with "
        f"the output of: {REGENERATE}"
    )


def test_readme_is_short():
    assert len(read("README.md").splitlines()) <= MAX_README_LINES


def test_setup_commands_open_the_readme():
    text = read("README.md")
    blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    assert blocks[:2] == [RUN_COMMAND, TEST_COMMAND]
    assert 'pytest -m "not slow"' in text and "pytest -m slow" in text


def test_readme_test_command_is_what_ci_runs():
    """CI runs README's test command: the same data folder, and pytest over the same tests
    (whole, or as the fast tier then the slow tier, which together are the whole)."""
    ci = read(os.path.join(".ci", "run"))
    assert "MLP_JAX_DATA=../shared/datasets/mnist" in ci
    readme_args = shlex.split(TEST_COMMAND.split(" -m pytest", 1)[1])
    loops = {  # for tier in "not slow" "slow"; do ... -m "$tier" ...
        f"${var}": shlex.split(values) for var, values in re.findall(r"for (\w+) in (.+); do", ci)
    }
    markers = []
    for line in ci.splitlines():
        if " -m pytest" not in line or line.lstrip().startswith("#"):
            continue
        words = shlex.split(line.split(" -m pytest", 1)[1], comments=True)
        words = words[: next((i for i, w in enumerate(words) if w in SEPARATORS), len(words))]
        words = [w for w in words if not w.startswith("2>")]
        if "-m" in words:
            at = words.index("-m")
            markers += loops.get(words[at + 1], [words[at + 1]])
            del words[at : at + 2]
        assert [w for w in words if w != "tests"] == readme_args, line
    assert markers in ([], ["not slow", "slow"]), markers


def test_readme_links_exist():
    for name in READMES:
        folder = os.path.dirname(os.path.join(REPO, name))
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(name)):
            if not re.match(r"[a-z]+://", target):
                path = os.path.join(folder, target)
                assert os.path.exists(path), f"{name} links to {target}, which does not exist"


def test_readmes_quote_commands():
    """The extraction finds the commands (a guard against a parser that finds none)."""
    assert {"experiments.mlp", "experiments.table", "experiments.bench"} <= set(MODULES)
    assert len(LAUNCHES) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(MODULES))
def test_quoted_commands_parse(parsed, module):
    bad = {command: error for command, (error, _) in parsed[module].items() if error}
    bad.pop(f"{MISSPELT[0]}: experiments.mlp {shlex.join(MISSPELT[1])}", None)
    bad.pop(f"{BAD_VALUE[0]}: experiments.mlp {shlex.join(BAD_VALUE[1])}", None)
    assert not bad, "README commands that do not parse:\n" + "\n".join(
        f"{command}\n    {error}" for command, error in bad.items()
    )


@pytest.mark.slow
def test_parse_check_catches_a_misspelt_flag_and_a_bad_value(parsed):
    errors = parsed["experiments.mlp"]
    misspelt, _ = errors[f"{MISSPELT[0]}: experiments.mlp {shlex.join(MISSPELT[1])}"]
    bad_value, _ = errors[f"{BAD_VALUE[0]}: experiments.mlp {shlex.join(BAD_VALUE[1])}"]
    assert misspelt and "hiden" in misspelt
    assert bad_value and "relu7" in bad_value


@pytest.mark.slow
def test_quoted_launches_list(parsed):
    failed = [
        f"{command}\n    {error}"
        for command, (error, printed) in parsed[LAUNCH].items()
        if error or "-m experiments.mlp" not in printed
    ]
    assert not failed, "README launches that fail with --list:\n" + "\n".join(failed)
