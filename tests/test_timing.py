"""How benchmarks time sessions: settings of one session call by call, sessions in turns, spin-waiting threads
that stop when a run returns."""
from __future__ import annotations

import numpy as np
import pytest
from edgeadapt.runtime.devices import load_profile
from edgeadapt.runtime.providers import _options
from edgeadapt.runtime.timing import SESSION_TURN, time_interleaved


@pytest.mark.parametrize(("spin_wait", "allowed"), [(True, "1"), (False, "0")])
def test_spin_wait_spins_only_while_a_run_is_in_progress(spin_wait: bool, allowed: str) -> None:
    opts = _options(2, spin_wait)
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == allowed
    assert opts.get_session_config_entry("session.force_spinning_stop") == "1"


def test_profile_spin_wait_defaults_on_and_reads_false(tmp_path) -> None:
    text = ('name = "box"\ndescription = "d"\n[hardware]\narch = "x86_64"\ncpu = "c"\ncores = 2\nmemory_mb = 1024\n'
            'sources = ["s"]\n[runtime]\nthreads = 2\nexecution_providers = ["CPUExecutionProvider"]\n%s'
            '[budgets]\nlatency_ms = 10\nlatency_percentile = 90\nmemory_mb = 512\n')
    (tmp_path / "on.toml").write_text(text % "")
    (tmp_path / "off.toml").write_text(text % "spin_wait = false\n")
    assert load_profile(tmp_path / "on.toml").runtime.spin_wait is True
    assert load_profile(tmp_path / "off.toml").runtime.spin_wait is False


class _Recorder:
    """Stands in for a Runtime: logs (session, input index, thresholds) for every call."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def prepare(self, images: np.ndarray) -> np.ndarray:
        return images

    def one(self, prepared: np.ndarray, i: int) -> np.ndarray:
        return prepared[i:i + 1]

    def infer(self, x: np.ndarray, thr=None):
        self.log.append((self.name, int(x[0]), thr))
        return x, np.zeros((1, 0), bool)


def test_settings_of_one_session_alternate_call_by_call_and_sessions_take_turns() -> None:
    log: list = []
    a, b = _Recorder("a", log), _Recorder("b", log)
    runs, n = SESSION_TURN + 5, 7
    seen: list = []
    times = time_interleaved({"a1": (a, None), "a2": (a, "open"), "b": (b, None)}, np.arange(n), runs, warmup=2,
                             record=lambda name, i, out: seen.append((name, i)))
    assert {k: len(v) for k, v in times.items()} == {"a1": runs, "a2": runs, "b": runs}
    a_round = lambda i: [("a", i % n, None), ("a", i % n, "open")]  # noqa: E731
    expected = a_round(0) + a_round(1) + [("b", 0, None), ("b", 1, None)]  # warm-up, session by session
    for turn in (range(SESSION_TURN), range(SESSION_TURN, runs)):
        expected += a_round(turn[0]) + [c for i in turn for c in a_round(i)]  # an untimed round, then the turn
        expected += [("b", turn[0] % n, None)] + [("b", i % n, None) for i in turn]
    assert log == expected
    assert seen[:4] == [("a1", 0), ("a2", 0), ("a1", 1), ("a2", 1)]
    assert [i for name, i in seen if name == "b"] == list(range(runs))


def test_one_session_is_never_interrupted_by_untimed_calls() -> None:
    log: list = []
    a = _Recorder("a", log)
    time_interleaved({"gated": (a, None), "open": (a, "open")}, np.arange(3), 2 * SESSION_TURN + 1, warmup=0)
    assert len(log) == 2 * (2 * SESSION_TURN + 1)  # no untimed wake-up rounds with a single session
    assert [i for _, i, _ in log[::2]] == [k % 3 for k in range(2 * SESSION_TURN + 1)]


def test_min_duration_extends_the_run_past_runs() -> None:
    log: list = []
    a = _Recorder("a", log)
    times = time_interleaved({"gated": (a, None)}, np.arange(3), 1, warmup=0, min_duration_s=0.05)
    assert len(times["gated"]) > 1 and len(times["gated"]) % SESSION_TURN == 1


def test_the_host_probe_runs_before_every_turn_and_sessions_then_reopen_untimed() -> None:
    log: list = []
    a = _Recorder("a", log)
    probes: list = []
    runs = 2 * SESSION_TURN + 1  # three turns
    times = time_interleaved({"gated": (a, None), "open": (a, "open")}, np.arange(3), runs, warmup=0,
                             probe=lambda: probes.append(len(log)))
    assert probes == [0, 2 + 2 * SESSION_TURN, 4 + 4 * SESSION_TURN]  # before each turn's untimed round
    assert len(log) == 2 * runs + 3 * 2 and len(times["gated"]) == runs


@pytest.mark.parametrize(("ms", "steady", "words"), [
    ([2.0, 2.02, 2.05, 1.98, 2.01] * 6, True, "steady (reference workload p90/p10 1.0"),
    ([2.0] * 15 + [3.4] * 15, False, "UNSTEADY (reference workload p90/p10 1.70 over 30 turns, above 1.3)"),
])
def test_host_summary_says_when_the_host_changed_speed(ms: list[float], steady: bool, words: str) -> None:
    from edgeadapt.runtime.host import host_summary, host_text

    host = host_summary(ms)
    assert host["steady"] is steady and host["probes"] == 30
    assert host["spread"] == pytest.approx(np.percentile(ms, 90) / np.percentile(ms, 10))
    assert words in host_text(host)
    assert ("time again on a quiet host" in host_text(host)) is not steady


def test_host_text_counts_one_turn_in_the_singular() -> None:
    from edgeadapt.runtime.host import host_summary, host_text

    assert host_text(host_summary([2.0])).endswith("over 1 turn)")


def test_host_probe_times_the_reference_workload() -> None:
    from edgeadapt.runtime.host import HostProbe

    probe = HostProbe(threads=1)
    for _ in range(3):
        probe()
    assert len(probe.ms) == 3 and min(probe.ms) > 0 and probe.summary()["probes"] == 3


class _Classifier(_Recorder):
    """A Runtime stand-in that ``measure_bundles`` can score: every input is class 0."""

    kind = "image"

    def __init__(self, name: str, log: list):
        super().__init__(name, log)
        self.bundle = type("B", (), {"root": name, "manifest": {"mode": "dense"}})()

    def infer(self, x: np.ndarray, thr=None):
        self.log.append((self.name, int(x[0]), thr))
        return np.tile([1.0, 0.0], (len(x), 1)), np.zeros((len(x), 0), bool)


class _ScriptedProbe:
    """Stands in for HostProbe: each rotation reports the next spread of a script."""

    spreads: list = []
    made = 0

    def __init__(self, threads=None, spin_wait=True):
        type(self).made += 1
        self.spread = self.spreads[self.made - 1]

    def __call__(self) -> None:
        pass

    def summary(self) -> dict:
        from edgeadapt.runtime.host import host_summary

        return host_summary([1.0] * 5 + [self.spread] * 5)


@pytest.mark.parametrize(("spreads", "timings", "rotations", "kept"), [
    ([1.8, 1.1, 1.0], 3, 2, 1.1),  # timed again once: the second rotation was steady
    ([1.8, 1.6, 1.7], 3, 3, 1.6),  # never steady: the steadiest of the three is kept
    ([1.8, 1.1], 1, 1, 1.8),  # --timings 1: one rotation, whatever the probe says
])
def test_measure_bundles_times_again_while_the_host_is_unsteady(monkeypatch, spreads, timings, rotations, kept) -> None:
    import edgeadapt.runtime.compare as compare
    import edgeadapt.runtime.timing as timing
    from edgeadapt.runtime.host import host_text

    monkeypatch.setattr(_ScriptedProbe, "spreads", spreads)
    monkeypatch.setattr(_ScriptedProbe, "made", 0)
    monkeypatch.setattr(timing, "HostProbe", _ScriptedProbe)  # time_until_steady, which compare and bench share
    calls: list = []
    said: list = []
    runtimes = {"a": _Classifier("a", calls), "b": _Classifier("b", calls)}
    rows, host = compare.measure_bundles(runtimes, np.arange(4), np.zeros(4, int), runs=3, timings=timings,
                                         log=said.append)
    assert _ScriptedProbe.made == rotations and host["rotations"] == pytest.approx(spreads[:rotations])
    assert host["spread"] == pytest.approx(kept) and host["steady"] is (kept <= 1.3)
    assert len(said) == rotations - 1 and all("timing again" in s for s in said)
    assert [r["accuracy"] for r in rows] == [1.0, 1.0] and len(rows[0]["latency_ms"]) == 4
    assert (f"steadiest of {rotations} rotations" in host_text(host)) is (rotations > 1)
