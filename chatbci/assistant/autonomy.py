"""Adaptive autonomy: what the assistant may do without asking.

The human sets the level in ``workspace.toml`` (``autonomy``) or the UI:

``suggest``
    Every tool call becomes a suggestion awaiting a human decision.
``assist`` (default)
    Read-only tools run at once; compute and write tools wait for a decision.
``auto``
    Everything runs, within the workspace's compute budgets; past a budget
    the call becomes a suggestion, so the human decides.

Only the assistant's own initiatives are gated: an action the human approved
runs as approved (the decision is the human's).
"""

from __future__ import annotations

from dataclasses import dataclass

from .tools import Cost

LEVELS = ("suggest", "assist", "auto")

#: Fits an ``auto`` call may run without asking when nothing in the workspace
#: tells how long one takes yet (a small first benchmark is fine; a 600-point
#: grid over ten subjects is not).
MAX_UNTIMED_FITS = 500


@dataclass(frozen=True)
class Verdict:
    """What to do with one tool call: ``run`` it, or ``suggest`` it, and why."""

    action: str
    reason: str

    @property
    def run(self) -> bool:
        return self.action == "run"


@dataclass
class Spend:
    """Compute seconds already spent (by tools the assistant ran on its own)."""

    turn: float = 0.0
    session: float = 0.0


class AutonomyPolicy:
    """Decide, per tool call, whether the assistant may act now.

    Parameters
    ----------
    level : {"suggest", "assist", "auto"}
    budgets : object
        With ``seconds_per_turn``, ``seconds_per_session`` and
        ``max_benchmark_subjects`` (the workspace's ``[budgets]``).
    """

    def __init__(self, level="assist", budgets=None):
        if level not in LEVELS:
            raise ValueError(f"autonomy level {level!r} is not one of {LEVELS}.")
        self.level = level
        self.budgets = budgets

    def decide(self, tool, args, spend: Spend, n_subjects: int | None = None,
               estimate: dict | None = None) -> Verdict:
        """Verdict for the assistant's call of ``tool`` with validated ``args``.

        ``estimate`` (``{"fits": ..., "seconds": ...}``, see
        :func:`chatbci.bci.cost.estimate_cost`) is checked against what is left
        of the budgets *before* the call runs: a call whose estimate does not
        fit, or whose duration is unknown and whose fits exceed
        :data:`MAX_UNTIMED_FITS`, is proposed instead.
        """
        if tool.name == "propose":
            return Verdict("run", "a proposal only records a suggestion")
        if self.level == "suggest":
            return Verdict("suggest", "autonomy level 'suggest': every action needs "
                                      "the human's approval")
        if tool.cost is Cost.READ_ONLY:
            return Verdict("run", "read-only")
        if self.level == "assist":
            return Verdict("suggest", f"autonomy level 'assist': {tool.cost.value} tools "
                                      "need the human's approval")
        # auto: within budgets
        b = self.budgets
        if b is not None and tool.cost is Cost.COMPUTE:
            if spend.turn >= b.seconds_per_turn:
                return Verdict("suggest", f"the turn's compute budget "
                                          f"({b.seconds_per_turn:.0f} s) is spent")
            if spend.session >= b.seconds_per_session:
                return Verdict("suggest", f"the session's compute budget "
                                          f"({b.seconds_per_session:.0f} s) is spent")
            if estimate:
                seconds, fits = estimate.get("seconds"), estimate.get("fits") or 0
                left_turn = b.seconds_per_turn - spend.turn
                left_session = b.seconds_per_session - spend.session
                if seconds is not None and seconds > min(left_turn, left_session):
                    return Verdict("suggest", f"estimated {seconds:.0f} s ({fits:,} fits) "
                                              f"exceeds the {min(left_turn, left_session):.0f}"
                                              " s left of the compute budget")
                if seconds is None and fits > MAX_UNTIMED_FITS:
                    return Verdict("suggest", f"{fits:,} fits of pipelines not timed in this "
                                              "workspace yet")
            limit = getattr(b, "max_benchmark_subjects", None)
            if limit is not None and n_subjects is not None and n_subjects > limit:
                return Verdict("suggest", f"{n_subjects} subjects exceed the largest "
                                          f"benchmark allowed without asking ({limit})")
        return Verdict("run", "autonomy level 'auto', within budget")
