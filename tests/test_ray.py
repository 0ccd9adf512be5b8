"""Campaigns on a real Ray cluster (--engine=ray): a head and two worker nodes started by the test
in a network namespace of their own with the loopback alone (Ray would otherwise probe an outside
address), every launch run in that namespace. A study on both nodes with GPUs as logical
resources, a search with two workers, the driver killed and a worker node killed mid-run, and the
errors before anything runs."""

import collections
import datetime
import glob
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from mlp_jax.store import results
from tests.helpers import REPO, write_digits

pytestmark = pytest.mark.slow

MB = 2**20
# The cluster: a head without CPUs (it only schedules) and worker nodes added on request, each
# a real raylet with its workers; `kill NODE` kills a node's raylet and everything it started
# with SIGKILL, as a lost machine. Fast health checks: a dead node is noticed in about a second.
CLUSTER = f"""
import json, os, signal, sys
from ray.cluster_utils import Cluster
small = dict(object_store_memory=100 * {MB}, node_ip_address="127.0.0.1")
cluster = Cluster(initialize_head=True, head_node_args=dict(
    num_cpus=0, include_dashboard=False, **small,
    _system_config=dict(health_check_initial_delay_ms=0, health_check_period_ms=300,
                        health_check_failure_threshold=3),
))
nodes = {{}}
print(json.dumps(cluster.address), flush=True)
for line in sys.stdin:
    command, argument = line.split(maxsplit=1)
    if command == "add":
        node = cluster.add_node(**json.loads(argument), **small)
        nodes[node.node_id] = node
        print(json.dumps(node.node_id), flush=True)
    elif command == "kill":
        parents = {{}}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = open(f"/proc/{{pid}}/stat").read()
                parents[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
        tree = [nodes[argument.strip()].all_processes["raylet"][0].process.pid]
        for pid in tree:
            tree += [child for child, parent in parents.items() if parent == pid]
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        print(json.dumps("killed"), flush=True)
    elif command == "alive":  # how many nodes the cluster counts alive
        import ray
        ray.is_initialized() or ray.init(address=cluster.address, log_to_driver=False)
        print(json.dumps(sum(n["Alive"] for n in ray.nodes())), flush=True)
"""
# Runs of a few seconds on the stand-in digits: long enough to be killed mid-run.
TINY = ("--validation_size=50", "--hidden=16", "--steps=100", "--eval_every=50")
LONG = ("--validation_size=50", "--hidden=128,128", "--batch_size=50", "--steps=2000")
LONG += ("--eval_every=200",)
NOT_COMPARED = {"compile_seconds", "train_seconds", "eval_seconds", "steps_per_sec", "time"}
NOT_COMPARED |= {"host", "ray_node", "resumed_from_step"}
# Ray's own warning in a namespace without an outside route: not the launch's.
RAY_NOISE = re.compile(r"^\[.*\] network_util\.cc:\d+: Failed to determine local IP")


class Ray:
    """A Ray cluster in a network namespace of its own, and launches run inside it."""

    def __init__(self, digits: str):
        self.digits = digits
        self.process = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" -c "$0"',
             CLUSTER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        self.address = self._answer()
        self.namespace = f"/proc/{self.process.pid}/ns/net"

    def _answer(self):
        line = self.process.stdout.readline()
        assert line, "the Ray cluster did not start"
        return json.loads(line)

    def _ask(self, command: str, argument: str):
        self.process.stdin.write(f"{command} {argument}\n")
        self.process.stdin.flush()
        return self._answer()

    def add(self, **resources) -> str:
        """Add a worker node with `resources` (num_cpus, num_gpus); return its id."""
        return self._ask("add", json.dumps(resources))

    def kill(self, node: str) -> None:
        """Kill a worker node and everything it runs with SIGKILL."""
        assert self._ask("kill", node) == "killed"

    def alive(self) -> int:
        """Return how many nodes the cluster counts alive."""
        return self._ask("alive", "-")

    def inside(self, *command: str) -> list[str]:
        """Return `command` run inside the cluster's network namespace."""
        return ["nsenter", f"--net={self.namespace}", *command]

    def start(self, module: str, *args: str) -> subprocess.Popen:
        """Start `python -m module args` in the namespace from the repository root."""
        return subprocess.Popen(
            self.inside(sys.executable, "-m", module, *args),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip

    def launch(self, *args: str, flags=TINY) -> subprocess.Popen:
        """Start a launch on the cluster (`args` before `--`, then `flags` and the digits)."""
        return self.start(
            "experiments.launch", *args, "--engine=ray", f"--ray_address={self.address}",
            "--", *flags, f"--data_dir={self.digits}",
        )  # fmt: skip

    def close(self) -> None:
        """End the cluster: every process in its namespace, by SIGKILL."""
        inode = os.stat(self.namespace).st_ino
        self.process.stdin.close()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:  # gone already
                pass
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and two worker nodes of 1 CPU and 2 (logical) GPUs each."""
    cluster = Ray(write_digits(tmp_path_factory.mktemp("digits"), 250, 60))
    try:
        cluster.nodes = [cluster.add(num_cpus=1, num_gpus=2) for _ in range(2)]
        yield cluster
    finally:
        cluster.close()


def finish(proc: subprocess.Popen, code: int = 0) -> str:
    """Wait for a launch; assert its exit code; return its stdout."""
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stdout + stderr
    return stdout


def records(out) -> list[dict]:
    return results.read(os.path.join(out, "results.jsonl"))


def attempts(log: str) -> list[tuple[datetime.datetime, str, str]]:
    """Return each run started in a log: its start time, Ray node and CUDA_VISIBLE_DEVICES."""
    found = []
    with open(log, encoding="utf-8") as lines:
        text = lines.read().splitlines()
    for line in text:
        match = re.match(r"=== (\S+) on [^,]+, Ray node (\w+), CUDA_VISIBLE_DEVICES=(\S*):", line)
        if match:
            start, node, devices = match.groups()
            found.append((datetime.datetime.fromisoformat(start), node, devices))
    return found


def ends(log: str) -> list[datetime.datetime]:
    """Return when each run that ended in a log ended."""
    with open(log, encoding="utf-8") as lines:
        text = lines.read().splitlines()
    return [datetime.datetime.fromisoformat(x.split()[1]) for x in text if x.startswith("--- ")]


def test_a_study_runs_on_both_nodes_each_run_on_its_own_gpu(ray_cluster, tmp_path):
    out = tmp_path / "study"
    axes = ("--axis", "act=relu,tanh", "--axis", "lr=0.1,0.5")
    options = ("study", "s", *axes, "--out", str(out), "--cpus_per_run=0.5", "--gpus_per_run=1")
    stdout = finish(ray_cluster.launch(*options))
    assert "4 row(s) to run, 4 at a time (ray)" in stdout
    made = records(out)
    assert collections.Counter((r["name"], r["seed"]) for r in made) == {
        (f"act-{act}__lr-{lr}", 0): 1 for act in ("relu", "tanh") for lr in ("0.1", "0.5")
    }
    assert {r["ray_node"] for r in made} == set(ray_cluster.nodes)
    logs = sorted(glob.glob(str(out / "logs" / "*.log")))
    started = {log: attempts(log) for log in logs}
    assert all(len(runs) == 1 for runs in started.values())
    for node in ray_cluster.nodes:  # two runs at once on each node, each with its own GPU
        mine = [log for log in logs if started[log][0][1] == node]
        assert len(mine) == 2 and {started[log][0][2] for log in mine} == {"0", "1"}
        first, second = mine
        assert started[first][0][0] < ends(second)[0] and started[second][0][0] < ends(first)[0]
    for record in made:
        log = out / "logs" / f"{record['name']}.log"
        assert record["ray_node"] == attempts(str(log))[0][1]
    assert (out / "table.md").exists()


def test_a_search_runs_its_two_workers_on_the_cluster(ray_cluster, tmp_path):
    out = tmp_path / "search"
    proc = ray_cluster.start(
        "experiments.search", "tiny", "--param=lr=float:0.05:0.5:log", "--trials=2", "--jobs=2",
        f"--out={out}", "--engine=ray", f"--ray_address={ray_cluster.address}",
        "--", *TINY, f"--data_dir={ray_cluster.digits}",
    )  # fmt: skip
    stdout = finish(proc)
    made = records(out)
    assert sorted(r["trial"] for r in made) == [0, 1]
    assert all(r["trial_state"] == "complete" and r["ray_node"] for r in made)
    logs = [out / "logs" / f"worker_{k}.log" for k in (1, 2)]
    assert all(len(attempts(str(log))) == 1 for log in logs)
    assert "wrote" in stdout and (out / "table.md").exists()


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def sealed_steps(out, row: str) -> list[int]:
    """Return the steps of the sealed checkpoints of a row's work folder(s)."""
    sealed = glob.glob(str(out / "work" / row / "*" / "checkpoints" / "*" / "digest.json"))
    return [int(path.split(os.sep)[-2]) for path in sealed]


def test_a_killed_driver_and_a_lost_node_lose_nothing(ray_cluster, tmp_path):
    """The driver killed once a row is recorded: the same command trains the other row alone,
    from its checkpoint; its node killed mid-run: Ray retries it on the other node, from its
    checkpoint, and it records what the same command uninterrupted records, number for number."""
    out = tmp_path / "killed"
    options = ("study", "k", "--axis", "steps=100,4000", "--out", str(out))
    flags = tuple(f for f in LONG if not f.startswith("--steps"))
    driver = ray_cluster.launch(*options, flags=flags)
    wait_for(lambda: (out / "results.jsonl").exists() and records(out), driver, "no record")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = max(sealed_steps(out, "steps-4000"), default=0)

    again = ray_cluster.launch(*options, flags=flags)
    log = str(out / "logs" / "steps-4000.log")
    wait_for(
        lambda: (
            len(attempts(log)) == 2 and max(sealed_steps(out, "steps-4000"), default=0) > before
        ),
        again,
        "the relaunch trains nothing",
    )
    lost = attempts(log)[-1][1]
    killed_at = max(sealed_steps(out, "steps-4000"))
    ray_cluster.kill(lost)
    # The same command, uninterrupted, in a local process of its own.
    with open(log, encoding="utf-8") as f:
        command = shlex.split(f.readline().split(": ", 1)[1])
    local = tmp_path / "local"
    command = [a for a in command if not a.startswith(("--workdir=", "--out="))]
    command += [f"--workdir={local}", f"--out={local / 'results.jsonl'}"]
    uninterrupted = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert "1 row(s) to run" in finish(again)

    made = {r["name"]: r for r in records(out)}
    assert sorted(made) == ["steps-100", "steps-4000"] and len(records(out)) == 2
    assert len(attempts(str(out / "logs" / "steps-100.log"))) == 1  # trained once
    record, (whole,) = made["steps-4000"], records(local)
    assert record["ray_node"] != lost and record["ray_node"] in ray_cluster.nodes
    assert [node for _, node, _ in attempts(log)][1:] == [lost, record["ray_node"]]
    assert record["resumed_from_step"] >= killed_at and whole["resumed_from_step"] == 0
    assert whole["ray_node"] is None and record["host"] == whole["host"]
    assert {k: v for k, v in record.items() if k not in NOT_COMPARED} == {
        k: v for k, v in whole.items() if k not in NOT_COMPARED
    }


def only_line(proc: subprocess.Popen, code: int) -> str:
    """Wait for a refused launch; assert its exit code and one line of its own; return it."""
    _, stderr = proc.communicate(timeout=300)
    lines = [line for line in stderr.splitlines() if not RAY_NOISE.match(line)]
    assert proc.returncode == code and len(lines) == 1, stderr
    return lines[0]


def test_errors_before_anything_runs_are_one_line(ray_cluster, tmp_path):
    # A node that mounts no OUT: a tmpfs over the tests' temporary folder in its own mounts.
    hidden, alive = str(tmp_path.parent), ray_cluster.alive()
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    start = (
        f"mount -t tmpfs tmpfs {hidden} && exec {ray} start --address={ray_cluster.address} "
        f"--num-cpus=1 --object-store-memory={100 * MB} --node-ip-address=127.0.0.1 --block"
    )
    node = subprocess.Popen(
        ray_cluster.inside("unshare", "-m", "sh", "-c", start),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        unreachable = ray_cluster.start(
            "experiments.launch", "study", "u", "--axis", "lr=0.3", "--out", str(tmp_path / "u"),
            "--engine=ray", "--ray_address=127.0.0.1:1",
        )  # fmt: skip
        too_big = ray_cluster.launch(
            "study", "c", "--axis", "lr=0.3", "--out", str(tmp_path / "c"), "--cpus_per_run=4"
        )
        assert only_line(unreachable, 3) == (
            "error: --ray_address 127.0.0.1:1: the cluster cannot be reached (Connection "
            "refused); start its head with `ray start --head`"
        )
        assert only_line(too_big, 2).startswith("error: --cpus_per_run 4 --gpus_per_run 0: no")
        wait_for(lambda: ray_cluster.alive() > alive, node, "the node did not join")
        blind = ray_cluster.launch("study", "b", "--axis", "lr=0.3", "--out", str(tmp_path / "b"))
        line = only_line(blind, 2)
        assert "cannot read --out" in line and "a folder that every node mounts" in line
        assert not (tmp_path / "b" / "work").exists()
    finally:
        node.kill()
