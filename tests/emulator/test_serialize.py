"""Jobs and tasks in the two JSON shapes, with the date forms the real service wrote."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ams_emulator.entities import EmuJob, EmuTask, JobState
from ams_emulator.serialize import (
    dumps_verbose,
    format_date,
    iso_trimmed,
    ms_date,
    to_minimal,
    to_verbose,
)

UTC = timezone.utc
BASE = "https://127.0.0.1:8443/api/"
JOB_ID = "nb:jid:UUID:1c9e8a4f-0b5e-4a57-9d2a-7d8c1a2b3c4d"
JOB_URI = f"{BASE}Jobs('nb%3Ajid%3AUUID%3A1c9e8a4f-0b5e-4a57-9d2a-7d8c1a2b3c4d')"
TASK_ID = "nb:tid:UUID:5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f"
TASK_URI = f"{BASE}Tasks('nb%3Atid%3AUUID%3A5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f')"
MODELS = "Microsoft.Cloud.Media.Vod.Rest.Data.Models"


def finished_job() -> EmuJob:
    """The captured job: 16:28:49.46 -> 16:34:08.467, RunningDuration 286974 ms."""
    return EmuJob(
        id=JOB_ID,
        name='O\'Brien "live" 新闻.mp4',
        created=datetime(2015, 2, 11, 16, 28, 30, tzinfo=UTC),
        last_modified=datetime(2015, 2, 11, 16, 34, 8, 467000, tzinfo=UTC),
        start_time=datetime(2015, 2, 11, 16, 28, 49, 460000, tzinfo=UTC),
        end_time=datetime(2015, 2, 11, 16, 34, 8, 467000, tzinfo=UTC),
        priority=0,
        running_duration_ms=286974.0,
        state=JobState.FINISHED,
        template_id=None,
        notification_subscriptions=[
            {"NotificationEndPointId": "nb:nepid:UUID:abc", "TargetJobState": 2}
        ],
    )


def failed_task() -> EmuTask:
    scheduled = datetime(2020, 5, 4, 18, 45, 20, tzinfo=UTC)
    return EmuTask(
        id=TASK_ID,
        job_id=JOB_ID,
        name="Adaptive Streaming",
        configuration="Adaptive Streaming",
        media_processor_id="nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56",
        state=JobState.ERROR,
        progress=37.5,
        running_duration_ms=39605.0,
        start_time=datetime(2020, 5, 4, 18, 45, 24, 540000, tzinfo=UTC),
        end_time=datetime(2020, 5, 4, 18, 46, 11, 477000, tzinfo=UTC),
        priority=0,
        perf_message=None,
        error_details=[{"Code": "ErrorProcessingTask", "Message": "It broke."}],
        historical_events=[{"Code": "Scheduled", "Message": "", "TimeStamp": scheduled}],
        task_body="<taskBody/>",
    )


# --- dates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2015, 2, 11, 1, 46, 8, 897000, tzinfo=UTC), "2015-02-11T01:46:08.897"),
        (datetime(2015, 2, 11, 1, 46, 16, 580000, tzinfo=UTC), "2015-02-11T01:46:16.58"),
        (datetime(2015, 2, 11, 1, 46, 16, 500000, tzinfo=UTC), "2015-02-11T01:46:16.5"),
        (datetime(2015, 2, 11, 1, 46, 16, tzinfo=UTC), "2015-02-11T01:46:16"),
        (datetime(2015, 2, 11, 1, 46, 16, 123456, tzinfo=UTC), "2015-02-11T01:46:16.123456"),
        (datetime(2015, 2, 11, 1, 46, 16, 10, tzinfo=UTC), "2015-02-11T01:46:16.00001"),
        (
            datetime(2015, 2, 11, 2, 46, 16, 100000, tzinfo=timezone(timedelta(hours=1))),
            "2015-02-11T01:46:16.1",
        ),
    ],
)
def test_iso_dates_are_zone_less_utc_with_trailing_zeros_trimmed(
    value: datetime, text: str
) -> None:
    assert iso_trimmed(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2012, 5, 11, 21, 32, 39, 431000, tzinfo=UTC), "/Date(1336771959431)/"),
        (datetime(1970, 1, 1, tzinfo=UTC), "/Date(0)/"),
        (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), "/Date(-1000)/"),
        (datetime(2024, 1, 1, 0, 0, 0, 999999, tzinfo=UTC), "/Date(1704067200999)/"),
    ],
)
def test_ms_dates_count_milliseconds_since_the_epoch(value: datetime, text: str) -> None:
    assert ms_date(value) == text


def test_format_date_keeps_null_in_every_shape() -> None:
    assert format_date(None, "minimal") is None
    assert format_date(None, "iso") is None
    assert format_date(None, "msdate") is None
    moment = datetime(2015, 2, 11, 1, 46, 8, 897000, tzinfo=UTC)
    assert format_date(moment, "iso") == "2015-02-11T01:46:08.897Z"


# --- minimal metadata ------------------------------------------------------------------------------


def test_minimal_job_has_every_property_plain() -> None:
    body = to_minimal(finished_job(), BASE, None)
    assert body == {
        "Id": JOB_ID,
        "Name": 'O\'Brien "live" 新闻.mp4',
        "Created": "2015-02-11T16:28:30",
        "LastModified": "2015-02-11T16:34:08.467",
        "EndTime": "2015-02-11T16:34:08.467",
        "Priority": 0,
        "RunningDuration": 286974,
        "StartTime": "2015-02-11T16:28:49.46",
        "State": 3,
        "TemplateId": None,
        "JobNotificationSubscriptions": [
            {"NotificationEndPointId": "nb:nepid:UUID:abc", "TargetJobState": 2}
        ],
    }
    assert type(body["State"]) is int


def test_minimal_null_dates_stay_null() -> None:
    job = finished_job()
    job.start_time = job.end_time = None
    body = to_minimal(job, BASE, ["StartTime", "EndTime"])
    assert body == {"StartTime": None, "EndTime": None}


def test_minimal_task_with_error_details_and_history() -> None:
    body = to_minimal(failed_task(), BASE, None)
    assert body["ErrorDetails"] == [{"Code": "ErrorProcessingTask", "Message": "It broke."}]
    assert body["HistoricalEvents"] == [
        {"Code": "Scheduled", "Message": "", "TimeStamp": "2020-05-04T18:45:20"}
    ]
    assert body["Progress"] == 37.5
    assert body["RunningDuration"] == 39605
    assert body["StartTime"] == "2020-05-04T18:45:24.54"
    assert body["TaskNotificationSubscriptions"] == []
    assert body["EncryptionScheme"] == "None"
    assert "InputMediaAssets" not in body


def test_finished_progress_is_written_as_the_integer_100() -> None:
    task = failed_task()
    task.progress = 100.0
    text = json.dumps(to_minimal(task, BASE, ["Progress"]))
    assert text == '{"Progress": 100}'


def test_minimal_select_limits_properties_in_schema_order() -> None:
    body = to_minimal(finished_job(), BASE, ("State", "Id", "Tasks"))
    assert list(body) == ["Id", "State"]


# --- verbose --------------------------------------------------------------------------------------


def test_verbose_job_has_metadata_deferred_links_and_wrapped_collections() -> None:
    body = to_verbose(finished_job(), BASE, None)
    assert body["__metadata"] == {"id": JOB_URI, "uri": JOB_URI, "type": f"{MODELS}.Job"}
    for nav in ("Tasks", "InputMediaAssets", "OutputMediaAssets"):
        assert body[nav] == {"__deferred": {"uri": f"{JOB_URI}/{nav}"}}
    assert body["JobNotificationSubscriptions"] == {
        "__metadata": {"type": f"Collection({MODELS}.JobNotificationSubscription)"},
        "results": [{"NotificationEndPointId": "nb:nepid:UUID:abc", "TargetJobState": 2}],
    }
    assert body["Created"] == "2015-02-11T16:28:30Z"
    assert body["StartTime"] == "2015-02-11T16:28:49.46Z"
    assert body["RunningDuration"] == 286974
    assert body["State"] == 3


def test_verbose_ms_dates() -> None:
    body = to_verbose(finished_job(), BASE, None, date_format="msdate")
    assert body["StartTime"] == "/Date(1423672129460)/"
    assert body["EndTime"] == "/Date(1423672448467)/"


def test_verbose_task_collections_and_history_timestamps() -> None:
    body = to_verbose(failed_task(), BASE, None)
    assert body["__metadata"]["type"] == f"{MODELS}.Task"
    assert body["__metadata"]["uri"] == TASK_URI
    assert body["ErrorDetails"] == {
        "__metadata": {"type": f"Collection({MODELS}.ErrorDetail)"},
        "results": [{"Code": "ErrorProcessingTask", "Message": "It broke."}],
    }
    # Captured HistoricalEvents time stamps have no zone even in verbose JSON.
    events = body["HistoricalEvents"]
    assert events["__metadata"] == {"type": f"Collection({MODELS}.TaskHistoricalEvent)"}
    assert events["results"][0]["TimeStamp"] == "2020-05-04T18:45:20"
    assert body["OutputMediaAssets"] == {"__deferred": {"uri": f"{TASK_URI}/OutputMediaAssets"}}
    assert "Tasks" not in body
    msdate = to_verbose(failed_task(), BASE, None, date_format="msdate")
    assert msdate["HistoricalEvents"]["results"][0]["TimeStamp"] == "/Date(1588617920000)/"


def test_verbose_select_keeps_metadata() -> None:
    body = to_verbose(finished_job(), BASE, ["State"])
    assert list(body) == ["__metadata", "State"]


def test_verbose_base_url_without_trailing_slash() -> None:
    body = to_verbose(finished_job(), BASE.rstrip("/"), ["Tasks"])
    assert body["Tasks"] == {"__deferred": {"uri": f"{JOB_URI}/Tasks"}}


def test_dumps_verbose_escapes_slashes_of_ms_dates_only() -> None:
    payload = {"d": {"results": [to_verbose(finished_job(), BASE, None, date_format="msdate")]}}
    text = dumps_verbose(payload)
    assert '"StartTime":"\\/Date(1423672129460)\\/"' in text
    assert '"uri":"https://127.0.0.1:8443/api/Jobs(' in text
    assert "新闻" in text
    assert json.loads(text) == payload


def test_task_notification_subscriptions_in_both_shapes() -> None:
    task = failed_task()
    task.notification_subscriptions.append(
        {
            "IncludeTaskProgress": True,
            "NotificationEndPointId": "nb:nepid:UUID:e",
            "TargetTaskState": 2,
        }
    )
    item = {
        "IncludeTaskProgress": True,
        "NotificationEndPointId": "nb:nepid:UUID:e",
        "TargetTaskState": 2,
    }
    assert to_minimal(task, BASE, ["TaskNotificationSubscriptions"]) == {
        "TaskNotificationSubscriptions": [item]
    }
    assert to_verbose(task, BASE, ["TaskNotificationSubscriptions"])[
        "TaskNotificationSubscriptions"
    ] == {
        "__metadata": {"type": f"Collection({MODELS}.TaskNotificationSubscription)"},
        "results": [item],
    }
