"""What the scenario draws at random: job names, fates (``Plan``), entities, and history.

Everything is drawn from one seeded generator in a fixed order, so a seed gives the same jobs.
Which media processor runs a task is drawn from a second generator of the same seed, so that the
choice leaves every other draw as it was.
Jobs that ended before the scenario starts are built directly in their final state
(``complete_history``): the starting population of 100,000 jobs is almost all history.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar

from ams_emulator import lifecycle
from ams_emulator.entities import (
    ERROR_CODES,
    EVENT_BILLING,
    EVENT_FINISHED,
    EVENT_PROCESSING,
    EVENT_SCHEDULED,
    EVENT_WAITING,
    JOB_ID_PREFIX,
    MAX_JOB_NAME_LENGTH,
    MAX_TASKS_PER_JOB,
    MEDIA_PROCESSORS,
    MES_PROCESSOR_ID,
    TASK_ID_PREFIX,
    EmuJob,
    EmuTask,
    JobState,
    new_guid,
    queued_job,
    queued_task,
)
from ams_emulator.lifecycle import at_ms

if TYPE_CHECKING:
    from ams_emulator.scenario import ScenarioConfig

T = TypeVar("T")
HOUR = 3600.0
DAY = 86_400.0


# ---------------------------------------------------------------------------------------------
# Names

_WORDS = (
    "keynote", "trailer", "interview", "match-highlights", "newscast", "webinar", "concert",
    "lecture", "product-demo", "documentary", "town-hall", "episode", "teaser", "recap",
)  # fmt: skip
_RESOLUTIONS = ("2160p", "1080p", "720p", "480p")
_EXTENSIONS = ("mp4", "mov", "mxf", "ts", "mkv")
HARD_NAMES: tuple[str, ...] = (
    "新闻联播-2024-精选片段.mp4",
    "宣传片_最终版_高清版本.mov",
    'director\'s cut - "final" v2.mp4',
    'O\'Brien "live" at the O2.mov',
    "C:\\media\\uploads\\2024\\clip.mp4",
    "subtitled\nsecond line.mp4",
    ("very-long-name-" + "abcdefghij" * 30)[:MAX_JOB_NAME_LENGTH],
)


def pick(rng: random.Random, items: Sequence[T]) -> T:
    """``rng.choice`` without its overhead (generation of 100,000 jobs draws millions)."""
    return items[int(rng.random() * len(items))]


def below(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)``."""
    return int(rng.random() * n)


@functools.lru_cache(maxsize=4096)
def _day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY, timezone.utc).strftime("%Y-%m-%d")


def _plain_name(rng: random.Random, created: float) -> str:
    day = _day(int(created // DAY))
    pattern = below(rng, 4)
    word = pick(rng, _WORDS)
    if pattern == 0:
        return f"ingest-{day}-{word}-{pick(rng, _RESOLUTIONS)}.{pick(rng, _EXTENSIONS)}"
    if pattern == 1:
        return f"Encode {word} {1 + below(rng, 499):03d} to Adaptive Streaming"
    if pattern == 2:
        return f"{word}_{day.replace('-', '')}_v{1 + below(rng, 8)}.{pick(rng, _EXTENSIONS)}"
    return f"{word}-{below(rng, 10_000):04d}-{pick(rng, _RESOLUTIONS)}"


def _job_name(rng: random.Random, created: float) -> str:
    if rng.random() < 0.03:
        return pick(rng, HARD_NAMES)
    return _plain_name(rng, created)


# ---------------------------------------------------------------------------------------------
# Plans: everything random about a job, drawn when it is created

OUTCOME_FINISH = "finish"
OUTCOME_FAIL = "fail"
OUTCOME_CANCEL = "cancel"
STUCK_PROCESSING = "stuck-processing"
STUCK_QUEUED = "stuck-queued"
STUCK_SCHEDULED = "stuck-scheduled"
_STOPS_IN_TASK = frozenset({OUTCOME_FAIL, STUCK_PROCESSING})


@dataclass(slots=True)
class Plan:
    """A scenario job's fate and where it is in the simulation."""

    durations: list[float]  # seconds per task; tasks run one after the other
    outcome: str
    fail_task: int = 0  # for fail and stuck-processing: the task that stops
    stop_fraction: float = 1.0  # where that task's progress stops (0-1)
    error_code: str = "Unknown"
    hold_seconds: float = 0.0  # queued but not eligible for a slot this long
    schedule_delay: float = 5.0  # Scheduled -> Processing
    cancel_after: float = 0.0  # cancel: after creation; stuck-processing: after progress stops
    cancel_delay: float = 20.0  # Canceling -> Canceled
    duration_factor: float = 0.9  # RunningDuration / wall time
    current_task: int = 0
    task_started: float = 0.0

    def progress_cap(self, index: int) -> float:
        """Where task ``index``'s progress stops (100 unless it fails or gets stuck)."""
        if self.outcome in _STOPS_IN_TASK and index == self.fail_task:
            return 100.0 * self.stop_fraction
        return 100.0

    def run_seconds(self) -> float:
        """Wall time from processing start to the job's end (or to where it stops)."""
        if self.outcome in _STOPS_IN_TASK:
            stop = self.durations[self.fail_task] * self.stop_fraction
            return sum(self.durations[: self.fail_task]) + stop
        return sum(self.durations)


@dataclass(frozen=True, slots=True)
class JobDraw:
    """The job-level values of a new job, before its tasks exist."""

    job_id: str
    name: str
    priority: int
    template_id: str | None
    subscription: tuple[str, int] | None


_TASK_PRESETS = (
    ("Adaptive Streaming", "Adaptive Streaming"),
    ("Thumbnails", '{"Version":1.0,"Codecs":[{"Type":"PngImage","Start":"00:00:05"}]}'),
    ("Audio only", "AAC Good Quality Audio"),
    ("H264 Multiple Bitrate 1080p", "H264 Multiple Bitrate 1080p"),
)


def _task_body(index: int) -> str:
    return (
        '<?xml version="1.0" encoding="utf-16"?><taskBody>'
        f"<inputAsset>JobInputAsset({index})</inputAsset>"
        f'<outputAsset assetName="output-{index}">JobOutputAsset({index})</outputAsset></taskBody>'
    )


def _task_template(index: int) -> tuple[str, str, str]:
    """Name, Configuration and TaskBody of a job's ``index``-th task."""
    name, configuration = _TASK_PRESETS[index % len(_TASK_PRESETS)]
    if index >= len(_TASK_PRESETS):
        name = f"{name} {index}"
    return name, configuration, _task_body(index)


_TASK_TEMPLATES = tuple(_task_template(i) for i in range(MAX_TASKS_PER_JOB))

# The work a task gives a processor other than Media Encoder Standard (whose tasks use the presets
# above): the task's Name and Configuration, by the processor's Name.
_OTHER_WORK = {
    "Media Encoder Premium Workflow": (
        "Premium Workflow encode",
        '<?xml version="1.0" encoding="utf-16"?><transcodeRequest><setRuntimeProperties>'
        '<property propertyPath="Media File Input/filename" value="input.mp4" />'
        "</setRuntimeProperties></transcodeRequest>",
    ),
    "Azure Media Indexer": (
        "Indexing",
        '<?xml version="1.0" encoding="utf-8"?><configuration version="2.0"><input>'
        '<metadata key="title" value="" /></input><settings></settings></configuration>',
    ),
    "Azure Media Indexer 2 Preview": (
        "Indexing (v2)",
        '{"version":"1.0","Features":[{"Options":{"Formats":["WebVtt","TTML"],'
        '"Language":"EnUs","Type":"RecoOptions"},"Type":"SpReco"}]}',
    ),
    "Azure Media Hyperlapse": (
        "Hyperlapse",
        '<?xml version="1.0" encoding="utf-16"?><Preset><Sources>'
        '<Source StartFrame="0" NumFrames="2147483647" /></Sources>'
        "<Options><Speed>12</Speed></Options></Preset>",
    ),
    "Storage Decryption": ("Storage decryption", ""),
}
OTHER_TASKS: tuple[tuple[str, str, str], ...] = tuple(
    (processor.id, *_OTHER_WORK[processor.name])
    for processor in MEDIA_PROCESSORS
    if processor.id != MES_PROCESSOR_ID
)
"""MediaProcessorId, Name and Configuration of the tasks not run by Media Encoder Standard."""


class Generator:
    """Draws jobs and plans from the scenario's random generator, in a fixed order."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self._processor_rng = random.Random(f"{config.seed}/processors")

    def job(self, created: float, name: str | None = None) -> JobDraw:
        """Job-level values: Id, priority, template, subscription and (unless given) a name."""
        rng = self.rng
        priority = 0 if rng.random() < 0.8 else 1 + below(rng, 10)
        template = f"nb:jtid:UUID:{new_guid(rng)}" if rng.random() < 0.1 else None
        subscription = None
        if rng.random() < 0.05:
            subscription = (f"nb:nepid:UUID:{new_guid(rng)}", 1 + below(rng, 2))
        job_id = JOB_ID_PREFIX + new_guid(rng)
        if name is None:
            name = _job_name(rng, created)
        return JobDraw(job_id, name, priority, template, subscription)

    def outcome(self) -> str:
        """A fate by the configured ratios: finish, fail, cancel or one of the stuck kinds."""
        cfg = self.config
        roll = self.rng.random()
        for ratio, outcome in (
            (cfg.failure_ratio, OUTCOME_FAIL),
            (cfg.cancel_ratio, OUTCOME_CANCEL),
        ):
            if roll < ratio:
                return outcome
            roll -= ratio
        if roll < cfg.stuck_ratio:
            return pick(
                self.rng, (STUCK_PROCESSING, STUCK_PROCESSING, STUCK_QUEUED, STUCK_SCHEDULED)
            )
        return OUTCOME_FINISH

    def plan(self, outcome: str) -> Plan:
        """Task count and durations (lognormal around the configured mean) and the details of
        ``outcome``: where it stops, the error code, delays."""
        rng = self.rng
        cfg = self.config
        n_tasks = cfg.tasks_min + below(rng, cfg.tasks_max - cfg.tasks_min + 1)
        mu = math.log(cfg.mean_task_seconds) - 0.18  # lognormal with the configured mean
        durations = [min(max(rng.lognormvariate(mu, 0.6), 20.0), 6 * HOUR) for _ in range(n_tasks)]
        plan = Plan(
            durations=durations,
            outcome=outcome,
            fail_task=below(rng, n_tasks),
            stop_fraction=rng.uniform(0.05, 0.95),
            error_code=pick(rng, ERROR_CODES),
            schedule_delay=rng.uniform(2.0, 30.0),
            cancel_after=rng.uniform(60.0, 2 * HOUR),
            cancel_delay=rng.uniform(5.0, 90.0),
            duration_factor=rng.uniform(0.85, 0.95),
        )
        if outcome == STUCK_PROCESSING:
            plan.cancel_after = rng.uniform(3 * HOUR, 12 * HOUR)
        elif outcome == STUCK_QUEUED:
            plan.hold_seconds = rng.uniform(2 * HOUR, 8 * HOUR)
        elif outcome == STUCK_SCHEDULED:
            plan.schedule_delay = rng.uniform(2 * HOUR, 6 * HOUR)
        return plan

    def entity(self, draw: JobDraw, plan: Plan, created: float) -> EmuJob:
        """A new Queued job with one Queued task per planned task."""
        when = at_ms(created)
        job = queued_job(draw.job_id, draw.name, when, draw.priority, draw.template_id)
        job.tasks = [self._task(job, index) for index in range(len(plan.durations))]
        if draw.subscription is not None:
            # A subscribed job is watched at both levels, the tasks with their progress.
            endpoint, target = draw.subscription
            job.notification_subscriptions.append(
                {"NotificationEndPointId": endpoint, "TargetJobState": target}
            )
            for task in job.tasks:
                task.notification_subscriptions.append(
                    {
                        "IncludeTaskProgress": True,
                        "NotificationEndPointId": endpoint,
                        "TargetTaskState": target,
                    }
                )
        return job

    def _task(self, job: EmuJob, index: int) -> EmuTask:
        task_id = TASK_ID_PREFIX + new_guid(self.rng)
        name, configuration, body = _TASK_TEMPLATES[index]
        rng = self._processor_rng
        if rng.random() >= self.config.other_processor_ratio:
            return queued_task(job, task_id, name, configuration, task_body=body)
        processor_id, name, configuration = pick(rng, OTHER_TASKS)
        return queued_task(
            job, task_id, name, configuration, task_body=body, media_processor_id=processor_id
        )


def complete_history(job: EmuJob, plan: Plan, started: float, *, canceled: bool) -> None:
    """Bring a new (Queued) job to the final state its plan gives, as if it ran from ``started``.

    The same outcome as stepping it through ``lifecycle`` but written in one pass, because the
    starting population of 100,000 jobs is almost all history. The scenario tests check these
    jobs with the same invariants as the ones the clock moves.
    """
    factor = plan.duration_factor
    queued_until = started - plan.schedule_delay
    scheduled = at_ms(queued_until)
    waited = queued_until - job.created.timestamp() > 60.0
    stop = plan.fail_task if plan.outcome == OUTCOME_FAIL else len(plan.durations)
    at, when = started, at_ms(started)
    job.start_time = when
    for index, task in enumerate(job.tasks):
        events = task.historical_events
        if waited:
            events.append(lifecycle.event(EVENT_WAITING, job.created))
        events.append(lifecycle.event(EVENT_SCHEDULED, scheduled))
        if index > stop:
            task.state = JobState.CANCELED
            continue
        task.start_time = when
        events.append(lifecycle.event(EVENT_PROCESSING, when))
        task_started = at
        duration = plan.durations[index]
        if index < stop:
            at += duration
            when = at_ms(at)
            task.state, task.progress, task.end_time = JobState.FINISHED, 100.0, when
            task.running_duration_ms = lifecycle.running_ms(duration, factor)
            task.perf_message = lifecycle.perf_message(duration, task.running_duration_ms)
            events.append(lifecycle.event(EVENT_FINISHED, when))
            events.append(lifecycle.event(EVENT_BILLING, when, lifecycle.billing_message(duration)))
            continue
        at += duration * plan.stop_fraction
        task.progress = round(plan.progress_cap(index), 2)
        if canceled:
            at += plan.cancel_delay
            task.state = JobState.CANCELED
        else:
            task.state = JobState.ERROR
            task.error_details.append(lifecycle.error_detail(plan.error_code))
        when = at_ms(at)
        task.end_time = when
        task.running_duration_ms = lifecycle.running_ms(at - task_started, factor)
    final = JobState.FINISHED if stop == len(plan.durations) else JobState.ERROR
    job.state = JobState.CANCELED if canceled else final
    job.end_time = job.last_modified = when
    job.running_duration_ms = lifecycle.running_ms(at - started, factor)
