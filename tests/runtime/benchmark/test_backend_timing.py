"""The step timer: every contestant timed each round, each round starting one contestant later
(none always runs right after the same one)."""

from __future__ import annotations

from onnxforge.runtime.benchmark.timing import time_backends


def test_rounds_rotate_the_contestants_and_report_each():
    calls = []

    def factory(name):
        def make(model, optimizer, threads, weight_decay):
            def step(x, y, lr):
                if not calls or calls[-1] != name:
                    calls.append(name)
            return step
        return make

    rates = time_backends("mlp_small", backends=(), seconds=0.01, rounds=3,
                          others={k: factory(k) for k in ("a", "b", "c")})
    assert set(rates) == {"a", "b", "c"} and all(v > 0 for v in rates.values())
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # after the warm-ups a, b, c
