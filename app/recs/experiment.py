"""A/B experiments: stable arm assignment by a salted hash, and the statistics that compare arms."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Experiment, RecommendationEvent, RecommendationSlate, utcnow

ARMS = ("model", "heuristic")


def running_experiment() -> Experiment | None:
    return db.session.scalar(
        select(Experiment)
        .where(Experiment.status == "running")
        .order_by(Experiment.id.desc())
        .limit(1)
    )


def latest_experiment() -> Experiment | None:
    return db.session.scalar(select(Experiment).order_by(Experiment.id.desc()).limit(1))


def bucket(salt: str, user_id: int) -> int:
    """0..99, uniform and stable for a (salt, user) pair; a new salt reshuffles everyone."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def arm_for(experiment: Experiment, user_id: int) -> str:
    if bucket(experiment.salt, user_id) < experiment.allocation_percent:
        return experiment.treatment_arm
    return experiment.control_arm


def assign_arm(user_id: int) -> str | None:
    """The arm that decides this student's slate: None means no experiment (the model when it has
    rows, else the heuristic); after a stop, everyone gets the winner if one was declared, until
    an admin hands serving back to the default (``end_winner``)."""
    experiment = latest_experiment()
    if experiment is None:
        return None
    if experiment.status == "running":
        return arm_for(experiment, user_id)
    return experiment.winner_in_force


def ruling_experiment() -> Experiment | None:
    """The stopped experiment whose winner every student gets now instead of the default, if
    any. A model winner is the default already (the model where it has rows), so it rules
    nothing."""
    experiment = latest_experiment()
    if experiment is None or experiment.winner_in_force in (None, "model"):
        return None
    return experiment


def end_winner(experiment: Experiment) -> None:
    """Serve the default again (the model where it has rows); the winner stays on record."""
    if experiment.winner_in_force in (None, "model"):
        raise ValueError("no experiment's winner is being served to everyone")
    experiment.winner_until = utcnow()
    db.session.commit()


def start_experiment(name: str, allocation_percent: int, salt: str | None = None) -> Experiment:
    if not 0 <= allocation_percent <= 100:
        raise ValueError("allocation must be between 0 and 100 percent")
    if running_experiment() is not None:
        raise ValueError("an experiment is already running; stop it first")
    previous = latest_experiment()
    if previous is not None and previous.winner_in_force is not None:
        # The new experiment decides serving from now on: the old winner's rule ends, on record.
        previous.winner_until = utcnow()
    experiment = Experiment(
        name=name.strip()[:120] or "Model vs heuristic",
        salt=salt or secrets.token_hex(8),
        allocation_percent=allocation_percent,
    )
    db.session.add(experiment)
    try:
        db.session.commit()
    except IntegrityError:
        # uq_experiments_one_running: another admin's start won the race.
        db.session.rollback()
        raise ValueError("an experiment is already running; stop it first") from None
    return experiment


def stop_experiment(experiment: Experiment, winner: str | None) -> None:
    if winner is not None and winner not in (experiment.control_arm, experiment.treatment_arm):
        raise ValueError(
            f"winner must be {experiment.control_arm!r} or {experiment.treatment_arm!r}"
        )
    experiment.status = "stopped"
    experiment.winner = winner
    experiment.stopped_at = utcnow()
    db.session.commit()


@dataclass(frozen=True)
class Proportion:
    successes: int
    trials: int

    @property
    def rate(self) -> float:
        # At most 1: a count of clicks above its impressions (which should not happen) must not
        # break the interval's square root nor read as a rate above 100%.
        return min(1.0, self.successes / self.trials) if self.trials else 0.0

    def wilson_interval(self, z: float = 1.959964) -> tuple[float, float]:
        """95% Wilson score interval: sensible for small counts and rates near 0, unlike Wald."""
        n = self.trials
        if n == 0:
            return (0.0, 0.0)
        p = self.rate
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_test(a: Proportion, b: Proportion) -> tuple[float, float]:
    """Pooled two-proportion z-test; returns (z, two-sided p-value)."""
    if a.trials == 0 or b.trials == 0:
        return (0.0, 1.0)
    pooled = min(1.0, (a.successes + b.successes) / (a.trials + b.trials))
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.trials + 1 / b.trials))
    if se == 0:
        return (0.0, 1.0)
    z = (a.rate - b.rate) / se
    return (z, math.erfc(abs(z) / math.sqrt(2)))


@dataclass(frozen=True)
class ArmStats:
    arm: str
    impressions: int
    clicks: int
    joins: int

    @property
    def ctr(self) -> Proportion:
        return Proportion(self.clicks, self.impressions)

    @property
    def join_rate(self) -> Proportion:
        return Proportion(self.joins, self.impressions)


def arm_stats(experiment: Experiment) -> dict[str, ArmStats]:
    """Impressions, clicks and attributed joins per arm of the slates shown while the experiment
    ran."""
    counts = {
        kind: func.sum(case((RecommendationEvent.type == kind, 1), else_=0))
        for kind in ("impression", "click", "join")
    }
    end = experiment.stopped_at or utcnow()
    rows = db.session.execute(
        select(RecommendationEvent.arm, *counts.values())
        .join(RecommendationSlate, RecommendationSlate.id == RecommendationEvent.slate_id)
        .where(
            RecommendationEvent.arm.in_((experiment.control_arm, experiment.treatment_arm)),
            # The slates the experiment served, with everything they led to, as online metrics
            # count them: a slate begun before it carries the arm (or winner) of its own time,
            # and a click or a join after the stop on a slate shown before it is the
            # experiment's (left out, the stop would cut its rates short).
            RecommendationSlate.created_at >= experiment.started_at,
            RecommendationSlate.created_at <= end,
        )
        .group_by(RecommendationEvent.arm)
    ).all()
    found = {
        row[0]: ArmStats(row[0], int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))
        for row in rows
    }
    return {
        arm: found.get(arm, ArmStats(arm, 0, 0, 0))
        for arm in (experiment.treatment_arm, experiment.control_arm)
    }
