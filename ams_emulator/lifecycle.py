"""State transitions of a job and its tasks, keeping every field consistent with the new state.

Shared by the scenario (which decides *when*) and the store's test controls (which say *what*).
Times are Unix seconds; fields get millisecond precision, as the service's database stored them.
RunningDuration (milliseconds) stays 0 while a job or task runs and is set when it ends, a little
below the wall time (a captured job: 319 s wall, ``RunningDuration`` 286974).
"""

from __future__ import annotations

from datetime import datetime, timezone

from ams_emulator.entities import (
    ERROR_CODES,
    ERROR_MESSAGES,
    EVENT_BILLING,
    EVENT_FINISHED,
    EVENT_PROCESSING,
    EVENT_SCHEDULED,
    EVENT_WAITING,
    EmuJob,
    EmuTask,
    ErrorDetail,
    HistoricalEvent,
    JobState,
)

FINAL_STATES = frozenset({JobState.FINISHED, JobState.ERROR, JobState.CANCELED})
CANCELABLE = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.PROCESSING})
DEFAULT_FACTOR = 0.9
DEFAULT_ERROR = "ErrorProcessingTask"


def at_ms(seconds: float) -> datetime:
    """Unix seconds as an aware UTC datetime, rounded to the millisecond."""
    return datetime.fromtimestamp(round(seconds, 3), timezone.utc)


def running_ms(wall_seconds: float, factor: float) -> float:
    """RunningDuration in milliseconds for ``wall_seconds`` of wall time."""
    return float(int(max(wall_seconds, 0.0) * factor * 1000))


def event(code: str, when: datetime, message: str = "") -> HistoricalEvent:
    """One HistoricalEvents item."""
    return {"Code": code, "Message": message, "TimeStamp": when}


def _event(task: EmuTask, code: str, when: datetime, message: str = "") -> None:
    task.historical_events.append(event(code, when, message))


def perf_message(media_seconds: float, running_duration_ms: float) -> str:
    """The free-form, multi-line PerfMessage of a finished task."""
    return (
        f"Encoded {int(media_seconds)} s of media.\n"
        f"Processing time: {int(running_duration_ms)} ms.\nPeak memory: 1.2 GB"
    )


def billing_message(media_seconds: float) -> str:
    """The Message of a TaskBillingInformationAdded event: billing JSON."""
    return f'{{"OutputMediaDurationInMilliseconds":{int(media_seconds * 1000)}}}'


def error_detail(code: str) -> ErrorDetail:
    """An ErrorDetails item with the code's message."""
    return {"Code": code, "Message": ERROR_MESSAGES[code]}


def wait(job: EmuJob, at: float) -> None:
    """A queued job found no free encoding slot: its tasks record WaitingForFreeResources."""
    when = at_ms(at)
    for task in job.tasks:
        if task.state == JobState.QUEUED:
            _event(task, EVENT_WAITING, when)


def schedule(job: EmuJob, at: float) -> None:
    """Queued -> Scheduled: a slot was assigned."""
    when = at_ms(at)
    job.state = JobState.SCHEDULED
    job.last_modified = when
    for task in job.tasks:
        if task.state == JobState.QUEUED:
            task.state = JobState.SCHEDULED
            _event(task, EVENT_SCHEDULED, when)


def start_job(job: EmuJob, at: float) -> None:
    """Scheduled -> Processing."""
    when = at_ms(at)
    job.state = JobState.PROCESSING
    job.start_time = when
    job.last_modified = when


def start_task(task: EmuTask, at: float) -> None:
    """A task begins processing."""
    when = at_ms(at)
    task.state = JobState.PROCESSING
    task.start_time = when
    task.progress = 0.0
    _event(task, EVENT_PROCESSING, when)


def finish_task(task: EmuTask, at: float, media_seconds: float, factor: float) -> None:
    """A task ends well: Progress exactly 100, RunningDuration, PerfMessage, billing event."""
    when = at_ms(at)
    started = task.start_time.timestamp() if task.start_time is not None else at
    task.state = JobState.FINISHED
    task.progress = 100.0
    task.end_time = when
    task.running_duration_ms = running_ms(at - started, factor)
    task.perf_message = perf_message(media_seconds, task.running_duration_ms)
    _event(task, EVENT_FINISHED, when)
    _event(task, EVENT_BILLING, when, billing_message(media_seconds))


def fail_task(job: EmuJob, index: int, at: float, code: str, factor: float) -> None:
    """Task ``index`` fails with ``code``; the tasks after it are canceled (the job will be Error)."""
    task = job.tasks[index]
    started = task.start_time.timestamp() if task.start_time is not None else at
    task.state = JobState.ERROR
    task.end_time = at_ms(at)
    task.running_duration_ms = running_ms(at - started, factor)
    task.error_details.append(error_detail(code))
    for later in job.tasks[index + 1 :]:
        if later.state not in FINAL_STATES:
            later.state = JobState.CANCELED


def cancel(job: EmuJob, at: float) -> None:
    """A cancel request: the job and its unfinished tasks go Canceling; progress stops."""
    job.state = JobState.CANCELING
    job.last_modified = at_ms(at)
    for task in job.tasks:
        if task.state not in FINAL_STATES:
            task.state = JobState.CANCELING


def canceled(job: EmuJob, at: float, factor: float) -> None:
    """Canceling -> Canceled for the tasks (the caller ends the job)."""
    when = at_ms(at)
    for task in job.tasks:
        if task.state == JobState.CANCELING:
            task.state = JobState.CANCELED
            if task.start_time is not None:
                task.end_time = when
                task.running_duration_ms = running_ms(at - task.start_time.timestamp(), factor)


def end_job(job: EmuJob, state: JobState, at: float, factor: float) -> None:
    """The job reaches a final state; RunningDuration is set now, not while it ran."""
    when = at_ms(at)
    job.state = state
    job.end_time = when
    job.last_modified = when
    if job.start_time is not None:
        job.running_duration_ms = running_ms(at - job.start_time.timestamp(), factor)


# ---------------------------------------------------------------------------------------------
# Test controls: force a state


def check_error_code(state: JobState, error_code: str | None) -> None:
    """``error_code`` must be a documented code, and only given for the Error state."""
    if error_code is None:
        return
    if state != JobState.ERROR:
        raise ValueError(f"an error code only goes with state ERROR, not {state.name}")
    if error_code not in ERROR_CODES:
        raise ValueError(f"unknown error code {error_code!r}; documented codes: {ERROR_CODES}")


def _reset(job: EmuJob, state: JobState) -> None:
    job.state = state
    job.start_time = job.end_time = None
    job.running_duration_ms = 0.0
    for task in job.tasks:
        task.state = state
        task.progress = 0.0
        task.start_time = task.end_time = None
        task.running_duration_ms = 0.0
        task.error_details.clear()
        task.perf_message = None


def _current(job: EmuJob) -> int:
    """The first task that has not ended (or the last task)."""
    for index, task in enumerate(job.tasks):
        if task.state not in FINAL_STATES:
            return index
    return len(job.tasks) - 1


def _force_processing(job: EmuJob, at: float) -> None:
    job.end_time = None
    job.running_duration_ms = 0.0
    if job.start_time is None:
        start_job(job, at)
    job.state = JobState.PROCESSING
    if job.tasks and not any(t.state == JobState.PROCESSING for t in job.tasks):
        start_task(job.tasks[_current(job)], at)


def _force_final(job: EmuJob, state: JobState, at: float, error_code: str | None) -> None:
    if state == JobState.FINISHED:
        for task in job.tasks:
            if task.state != JobState.FINISHED:
                if task.start_time is None:
                    start_task(task, at)
                finish_task(task, at, 0.0, DEFAULT_FACTOR)
    elif state == JobState.ERROR:
        index = _current(job)
        if job.tasks[index].start_time is None:
            start_task(job.tasks[index], at)
        fail_task(job, index, at, error_code or DEFAULT_ERROR, DEFAULT_FACTOR)
    else:
        cancel(job, at)
        canceled(job, at, DEFAULT_FACTOR)
    if state != JobState.CANCELED and job.start_time is None:
        job.start_time = at_ms(at)
    end_job(job, state, at, DEFAULT_FACTOR)


def force_state(job: EmuJob, state: JobState, at: float, error_code: str | None = None) -> None:
    """Put ``job`` (and its tasks, consistently) in ``state`` at time ``at``, for tests.

    Unlike the scenario this may move a job backwards (Queued and Scheduled reset it).
    Error fails the first unfinished task with ``error_code`` (default ErrorProcessingTask).
    """
    check_error_code(state, error_code)
    if state in (JobState.QUEUED, JobState.SCHEDULED):
        _reset(job, state)
    elif state == JobState.PROCESSING:
        _force_processing(job, at)
    elif state == JobState.CANCELING:
        if job.state in FINAL_STATES:
            _force_processing(job, at)
        cancel(job, at)
    else:
        _force_final(job, state, at, error_code)
    job.last_modified = at_ms(at)
