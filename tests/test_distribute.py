"""Distributed training: `synchronized` reaches every BatchNormalization, a MirroredStrategy
step matches one device, and a MultiWorkerMirroredStrategy job survives a lost worker.

The distributed scenarios need a TensorFlow whose devices are not yet initialised (two logical
CPUs, a multi-worker collective server), which any earlier test in this process has spoilt, so
they run in subprocesses of tests/distribute_worker.py, each bounded by a timeout and killed in
a `finally`. The layers are found through `keras_recalib.available()`: a new layer holding a
BatchNormalization is covered without editing this file.
"""

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from distribute_worker import batch_norms, layer_configs

import keras_recalib as kr

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distribute_worker.py")
TOLERANCE = 1e-5  # float32 round-off of one step; a missed all-reduce differs by > 1e-3
PER_REPLICA_GAP = 1e-3
CONFIGS = list(layer_configs())


def _build(name, kwargs, shape, **extra):
    layer = kr.get(name, **kwargs, **extra)
    layer(np.zeros(shape, "float32"))
    return layer


def _holds_batch_norm(name, kwargs, shape):
    return bool(batch_norms(_build(name, kwargs, shape)))


def _accepts_synchronized(name):
    return "synchronized" in inspect.signature(type(kr.get(name)).__init__).parameters


# --- `synchronized` is passed on (in process) -------------------------------------------------


@pytest.mark.parametrize(
    "name, case_id, kwargs, shape", CONFIGS, ids=[f"{c[0]}-{c[1]}" for c in CONFIGS]
)
def test_synchronized_reaches_every_batch_norm(name, case_id, kwargs, shape):
    assert case_id is not None, f"{name!r} has no LayerCase in tests/layer_cases.py"
    cls = type(kr.get(name))
    norms = batch_norms(_build(name, kwargs, shape))
    if not _accepts_synchronized(name):
        assert not norms, f"{cls.__name__} holds BatchNormalization but takes no `synchronized`"
        with pytest.raises((TypeError, ValueError), match="synchronized"):
            kr.get(name, **kwargs, synchronized=True)
        return
    if not norms:
        # This configuration holds no BN (e.g. SRM without it, parameter-free GE): the option
        # would do nothing here, so it is refused rather than silently ignored.
        with pytest.raises(ValueError, match="synchronized"):
            kr.get(name, **kwargs, synchronized=True)
        return
    assert [bn.synchronized for bn in norms] == [False] * len(norms), "default must be False"
    layer = _build(name, kwargs, shape, synchronized=True)
    assert layer.get_config()["synchronized"] is True
    assert [bn.synchronized for bn in batch_norms(layer)] == [True] * len(norms)
    restored = cls.from_config(layer.get_config())
    restored(np.zeros(shape, "float32"))
    assert [bn.synchronized for bn in batch_norms(restored)] == [True] * len(norms)
    with pytest.raises(ValueError, match="synchronized"):
        kr.get(name, **kwargs, synchronized="yes")


@pytest.mark.parametrize("name", kr.available())
def test_synchronized_is_offered_exactly_where_a_batch_norm_can_be(name):
    """A layer takes `synchronized` iff one of its contract configurations holds a BN."""
    holds = any(
        _holds_batch_norm(n, kwargs, shape)
        for n, case_id, kwargs, shape in CONFIGS
        if n == name and case_id is not None
    )
    accepts = _accepts_synchronized(name)
    assert accepts == holds, (
        f"{name!r}: takes `synchronized`={accepts}, but a contract case holds a "
        f"BatchNormalization={holds}"
    )


# --- subprocess helpers -----------------------------------------------------------------------


def _worker_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    env["CUDA_VISIBLE_DEVICES"] = "-1"  # CPU only, also on a GPU machine
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _start(args, out_path, **env):
    with open(out_path, "w") as out:
        return subprocess.Popen(
            [sys.executable, WORKER, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_worker_env(**env),
        )


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def _tail(path, lines=40):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _wait_all(processes, outputs, timeout):
    deadline = time.monotonic() + timeout
    for process, output in zip(processes, outputs, strict=True):
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker ran over {timeout} s:\n{_tail(output)}")
        assert process.returncode == 0, f"worker failed:\n{_tail(output)}"


# --- MirroredStrategy over two logical CPUs ---------------------------------------------------


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """Both subprocesses (model.fit; XLA-compiled replica steps) run side by side."""
    folder = tmp_path_factory.mktemp("mirrored")
    runs = {"fit": [], "xla": ["--xla"]}
    processes, outputs, results = [], [], {}
    try:
        for key, flags in runs.items():
            outputs.append(folder / f"{key}.log")
            processes.append(_start(["mirrored", str(folder / f"{key}.json"), *flags], outputs[-1]))
        _wait_all(processes, outputs, timeout=420)
    finally:
        for process in processes:
            _stop(process)
    for key in runs:
        with open(folder / f"{key}.json") as f:
            results[key] = json.load(f)
    return results


def _bn_holding_names():
    names = []
    for name, case_id, kwargs, shape in CONFIGS:
        if case_id is not None and name not in names and _holds_batch_norm(name, kwargs, shape):
            names.append(name)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("run", ["fit", "xla"])
def test_mirrored_covers_every_batch_norm_layer(mirrored, run):
    assert "srm" in mirrored[run]["layers"]
    assert mirrored[run]["layers"] == _bn_holding_names()


@pytest.mark.slow
def test_mirrored_synchronized_step_matches_one_device(mirrored):
    report = mirrored["fit"]["scenarios"]["sync"]
    assert "error" not in report, report.get("error")
    assert report["weights_error"] < TOLERANCE
    for path, bn in report["bn"].items():
        assert bn["stats_error"] < TOLERANCE, path


@pytest.mark.slow
@pytest.mark.parametrize("run", ["fit", "xla"])
def test_mirrored_unsynchronized_statistics_are_per_replica(mirrored, run):
    """Each replica's moving statistics are those of its half of the batch on one device, and
    differ from the whole batch's; the weights still follow the all-reduced gradient."""
    report = mirrored[run]["scenarios"]["local"]
    assert "error" not in report, report.get("error")
    assert report["weights_error"] < TOLERANCE
    for path, bn in report["bn"].items():
        assert bn["stats_error"] < TOLERANCE, path
        assert bn["vs_single_device"] > PER_REPLICA_GAP, path


@pytest.mark.slow
def test_xla_synchronized_step(mirrored):
    """Synchronized BN inside an XLA-compiled replica step.

    MirroredStrategy all-reduces inside XLA only when every device is a GPU (TF's
    `_use_merge_call`); on CPUs TF refuses with a merge_call RuntimeError, which is expected.
    Where it runs, it must match one device like the uncompiled step.
    """
    report = mirrored["xla"]["scenarios"]["sync"]
    if "error" in report:
        assert "merge_call" in report["error"], report["error"]
        pytest.xfail("TF cannot all-reduce inside XLA on CPU devices (merge_call)")
    assert report["weights_error"] < TOLERANCE
    for path, bn in report["bn"].items():
        assert bn["stats_error"] < TOLERANCE, path


# --- MultiWorkerMirroredStrategy: a lost worker and a restart ---------------------------------

EPOCHS = 4
STEPS_PER_EPOCH = 2
LOST_AFTER = 1  # 0-based epoch after whose backup worker 1 stops responding


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_job(folder, backup, hang_after=None):
    """Two workers on 127.0.0.1 with fresh ports; worker 1 optionally hangs."""
    folder.mkdir(parents=True, exist_ok=True)
    cluster = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        args = ["multiworker", "--log", str(folder / f"events{index}.jsonl")]
        args += ["--backup", str(backup), "--epochs", str(EPOCHS)]
        args += ["--weights", str(folder / "weights.npz")]
        if hang_after is not None and index == 1:
            args += ["--hang-after", str(hang_after)]
        processes.append(_start(args, folder / f"worker{index}.log", TF_CONFIG=json.dumps(config)))
    return processes


def _events(folder, index):
    path = folder / f"events{index}.jsonl"
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _epochs(events, kind):
    return [e["epoch"] for e in events if e["event"] == kind]


def _worker_logs(folder):
    return "\n".join(f"--- worker {i}:\n{_tail(folder / f'worker{i}.log', 20)}" for i in range(2))


def _run_job(folder, backup, timeout=180):
    processes = _start_job(folder, backup)
    try:
        _wait_all(processes, [folder / f"worker{i}.log" for i in range(2)], timeout)
    finally:
        for process in processes:
            _stop(process)
    return [_events(folder, i) for i in range(2)]


def _lose_a_worker(folder, backup, timeout=180):
    """Runs until worker 1 hangs after epoch LOST_AFTER, kills it, then stops worker 0."""
    processes = _start_job(folder, backup, hang_after=LOST_AFTER)
    try:
        deadline = time.monotonic() + timeout
        while True:
            hung = any(e["event"] == "hang" for e in _events(folder, 1))
            if hung and LOST_AFTER in _epochs(_events(folder, 0), "end"):
                break
            if any(p.poll() is not None for p in processes):
                pytest.fail(f"a worker exited before the loss:\n{_worker_logs(folder)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no hang within {timeout} s:\n{_worker_logs(folder)}")
            time.sleep(0.2)
        processes[1].send_signal(signal.SIGKILL)  # the lost worker
        processes[1].wait(timeout=30)
        processes[0].kill()  # its peer is stuck in a collective; a scheduler would restart both
        processes[0].wait(timeout=30)
    finally:
        for process in processes:
            _stop(process)
    return [_events(folder, i) for i in range(2)]


@pytest.mark.slow
def test_multiworker_training_survives_a_lost_worker(tmp_path):
    uninterrupted = _run_job(tmp_path / "uninterrupted", tmp_path / "backup-uninterrupted")
    lost = _lose_a_worker(tmp_path / "lost", tmp_path / "backup")
    resumed = _run_job(tmp_path / "resumed", tmp_path / "backup")

    every_epoch = list(range(EPOCHS))
    before, after = every_epoch[: LOST_AFTER + 1], every_epoch[LOST_AFTER + 1 :]
    for index in range(2):
        assert _epochs(uninterrupted[index], "end") == every_epoch
        # Epochs finished before the loss were backed up; the restart begins after them and
        # repeats none, so together the runs finish every epoch exactly once.
        assert _epochs(lost[index], "end") == before
        assert not any(e["event"] == "done" for e in lost[index])
        assert _epochs(resumed[index], "begin") == after
        assert _epochs(resumed[index], "end") == after
        for events in (uninterrupted[index], resumed[index]):
            done = [e for e in events if e["event"] == "done"]
            assert [e["iterations"] for e in done] == [EPOCHS * STEPS_PER_EPOCH]

    # The resumed job ends where the uninterrupted one does, BN moving statistics included.
    with np.load(tmp_path / "uninterrupted" / "weights.npz") as a:
        with np.load(tmp_path / "resumed" / "weights.npz") as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-6)
