"""Every live :class:`maild.secret.Secret` is masked by :func:`maild.secret.redact_known`, also when
another object holds the same value (QA of session 12: secrets compare by value, and the registry was
a set, so a second object of one password was never registered: once the first was gone, a reloaded
configuration's password, or one that two accounts share, was shown unmasked in logs and errors)."""

from __future__ import annotations

import gc
import threading

from maild.secret import Secret, redact_known


def test_a_second_secret_of_the_same_value_is_masked_after_the_first_is_gone() -> None:
    """Two objects of one password (the configuration read again on SIGHUP): the first dropped, the
    second still masks it."""
    first = Secret("hunter2-reloaded")
    second = Secret("hunter2-reloaded")
    assert first == second  # the premise: equal by value
    del first
    gc.collect()
    assert redact_known("echo hunter2-reloaded") == "echo ********"
    del second
    gc.collect()
    assert redact_known("echo hunter2-reloaded") == "echo hunter2-reloaded"  # none alive: nothing known


def test_secrets_made_in_other_threads_while_masking_are_safe() -> None:
    """Secrets made and dropped in other threads while text is masked: no error, each live one masked."""
    keep = Secret("kept-secret-value")
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            [Secret(f"churned-{n}") for n in range(50)]

    threads = [threading.Thread(target=churn) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(300):
            assert redact_known("x kept-secret-value y") == "x ******** y"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert keep.reveal() == "kept-secret-value"
