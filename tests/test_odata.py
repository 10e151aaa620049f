"""OData literals, both JSON shapes, every documented date form, error bodies, entity reading."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.ams.model import JobState
from exporter.ams.odata import (
    ODataFormatError,
    datetime_literal,
    job_from_entity,
    parse_datetime,
    quote,
    read_entities,
    read_error,
    task_from_entity,
)

T0 = datetime(2015, 2, 11, 1, 46, 8, tzinfo=timezone.utc).timestamp()

MINIMAL_JOB = {
    "Id": "nb:jid:UUID:1f7b2d3e-0000-4000-8000-000000000001",
    "Name": "encode 'trailer' \\ 中文",
    "State": 2,
    "Created": "2015-02-11T01:46:08.897",
    "LastModified": "2015-02-11T01:46:16.58",
    "StartTime": "2015-02-11T01:46:10",
    "EndTime": None,
    "Priority": 3,
    "RunningDuration": 286974,
}

VERBOSE_JOB = {
    "__metadata": {
        "id": "https://x/api/Jobs('nb%3Ajid%3AUUID%3A1')",
        "uri": "https://x/api/Jobs('nb%3Ajid%3AUUID%3A1')",
        "type": "Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job",
    },
    "Tasks": {"__deferred": {"uri": "https://x/api/Jobs('nb%3Ajid%3AUUID%3A1')/Tasks"}},
    "Id": "nb:jid:UUID:1",
    "Name": None,
    "State": "4",
    "Created": "/Date(1336771959431)/",
    "LastModified": "2015-02-11T01:46:08.8970000Z",
    "StartTime": "/Date(1336771960000+0100)/",
    "EndTime": "/Date(1336771999000)/",
    "Priority": "0",
    "RunningDuration": "39605.0",
}


class TestLiterals:
    def test_quote_doubles_single_quotes(self) -> None:
        assert quote("it's") == "'it''s'"

    def test_quote_of_empty_string(self) -> None:
        assert quote("") == "''"

    def test_datetime_literal_is_utc_whole_seconds(self) -> None:
        assert datetime_literal(T0 + 0.9) == "datetime'2015-02-11T01:46:08'"

    def test_datetime_literal_round_trips_through_parse(self) -> None:
        literal = datetime_literal(1_700_000_000)
        assert parse_datetime(literal[len("datetime'") : -1]) == 1_700_000_000


class TestDates:
    @pytest.mark.parametrize(
        ("text", "offset"),
        [
            ("2015-02-11T01:46:08", 0.0),
            ("2015-02-11T01:46:08.8", 0.8),
            ("2015-02-11T01:46:08.89", 0.89),
            ("2015-02-11T01:46:08.897", 0.897),
            ("2015-02-11T01:46:08.8970", 0.897),
            ("2015-02-11T01:46:08.89700", 0.897),
            ("2015-02-11T01:46:08.897000", 0.897),
            ("2015-02-11T01:46:08.3287057", 0.3287057),
            ("2015-02-11T01:46:08.3287057Z", 0.3287057),
            ("2015-02-11T01:46:08Z", 0.0),
            ("2015-02-11T01:46Z", -8.0),
            ("2015-02-11T02:46:08+01:00", 0.0),
            ("2015-02-11T00:46:08-0100", 0.0),
        ],
    )
    def test_iso_forms_are_utc(self, text: str, offset: float) -> None:
        assert parse_datetime(text) == pytest.approx(T0 + offset, abs=1e-6)

    @pytest.mark.parametrize(
        "text",
        [
            "/Date(1336771959431)/",
            "/Date(1336771959431+0000)/",
            "/Date(1336771959431+0530)/",
            "/Date(1336771959431-0800)/",
        ],
    )
    def test_wcf_dates_are_the_milliseconds_whatever_the_offset(self, text: str) -> None:
        assert parse_datetime(text) == 1336771959.431

    def test_wcf_date_escaped_in_json_is_read_after_decoding(self) -> None:
        decoded = json.loads('"\\/Date(1336771959431)\\/"')
        assert parse_datetime(decoded) == 1336771959.431

    def test_negative_wcf_date_is_before_the_epoch(self) -> None:
        assert parse_datetime("/Date(-1000)/") == -1.0

    def test_a_json_number_is_milliseconds(self) -> None:
        assert parse_datetime(1336771959431) == 1336771959.431

    def test_null_is_none(self) -> None:
        assert parse_datetime(None) is None

    def test_dotnet_min_value_means_not_set(self) -> None:
        assert parse_datetime("0001-01-01T00:00:00") is None

    @pytest.mark.parametrize(
        "value",
        ["", "yesterday", "2015-02-30T00:00:00", "2015-02-11 01:46:08", "/Date(abc)/", True, [1]],
    )
    def test_anything_else_is_a_clear_error(self, value: object) -> None:
        with pytest.raises(ODataFormatError, match="date"):
            parse_datetime(value)


class TestReadEntities:
    def test_minimal_shape(self) -> None:
        body = json.dumps(
            {"odata.metadata": "https://x/api/$metadata#Jobs", "value": [{"Id": "a"}]}
        )
        assert read_entities(body.encode()) == [{"Id": "a"}]

    def test_verbose_shape(self) -> None:
        body = json.dumps({"d": {"results": [{"Id": "a"}, {"Id": "b"}]}})
        assert [e["Id"] for e in read_entities(body)] == ["a", "b"]

    def test_verbose_v1_array_shape(self) -> None:
        assert read_entities('{"d": [{"Id": "a"}]}') == [{"Id": "a"}]

    def test_empty_collection(self) -> None:
        assert read_entities('{"value": []}') == []

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ("[]", "expected a JSON object, got a list"),
            ('{"results": []}', "expected 'value' or 'd' in the body, found keys: results"),
            ('{"value": {"Id": "a"}}', "'value' is an object, expected a list"),
            ('{"value": [1]}', r"'value\[0\]' is a number, expected an object"),
            ('{"d": {"Id": "a"}}', "'d' holds neither 'results' nor a list"),
            ('{"d": {"results": null}}', "'d.results' is null, expected a list"),
            ('{"value": [', "not valid JSON"),
            ('{"value": [NaN]}', "'value\\[0\\]' is a number, expected an object"),
            (b'{"value": [7, "\xff"]}', "'value\\[0\\]' is a number, expected an object"),
            ("", "not valid JSON"),
        ],
    )
    def test_wrong_shapes_say_what_is_wrong(self, body: str | bytes, message: str) -> None:
        with pytest.raises(ODataFormatError, match=message):
            read_entities(body)

    def test_deep_nesting_is_an_error_not_a_crash(self) -> None:
        with pytest.raises(ODataFormatError, match="not valid JSON"):
            read_entities("[" * 100_000)


class TestReadError:
    def test_minimal_odata_error(self) -> None:
        body = {
            "odata.error": {
                "code": "",
                "message": {"lang": "en-US", "value": "Resource Asset not found"},
            }
        }
        assert read_error(json.dumps(body)) == ("", "Resource Asset not found")

    def test_verbose_error(self) -> None:
        body = {
            "error": {"code": "BadRequest", "message": {"lang": "en-US", "value": "Parsing failed"}}
        }
        assert read_error(json.dumps(body).encode()) == ("BadRequest", "Parsing failed")

    def test_error_with_plain_message(self) -> None:
        assert read_error('{"error": {"code": "X", "message": "plain"}}') == ("X", "plain")

    def test_azure_ad_error_keeps_the_first_line(self) -> None:
        body = {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1",
            "error_codes": [7000215],
        }
        assert read_error(json.dumps(body)) == (
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        )

    def test_atom_error(self) -> None:
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<error xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">'
            '<code>NotFound</code><message xml:lang="en-US">Resource Job not found</message></error>'
        )
        assert read_error(body) == ("NotFound", "Resource Job not found")

    def test_html_body_gives_a_short_clean_excerpt(self) -> None:
        code, message = read_error("<html>\n<body>Object moved\x00 here</body></html>" + "x" * 5000)
        assert code == ""
        assert message.startswith("<html> <body>Object moved here</body></html>")
        assert len(message) <= 160

    def test_tokens_in_error_text_are_redacted(self) -> None:
        token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        _, message = read_error(json.dumps({"error": {"code": "", "message": f"bad {token}"}}))
        assert token not in message
        assert "<redacted>" in message

    def test_empty_body(self) -> None:
        assert read_error(b"") == ("", "")


class TestJobFromEntity:
    def test_minimal_job(self) -> None:
        job = job_from_entity(MINIMAL_JOB)
        assert job.id == MINIMAL_JOB["Id"]
        assert job.name == MINIMAL_JOB["Name"]
        assert job.state is JobState.PROCESSING
        assert job.created == pytest.approx(T0 + 0.897)
        assert job.last_modified == pytest.approx(T0 + 8.58)
        assert job.start_time == pytest.approx(T0 + 2)
        assert job.end_time is None
        assert job.priority == 3
        assert job.running_duration_seconds == pytest.approx(286.974)

    def test_verbose_job_with_strings_and_wcf_dates(self) -> None:
        job = job_from_entity(VERBOSE_JOB)
        assert job.name == ""
        assert job.state is JobState.ERROR
        assert job.created == 1336771959.431
        assert job.start_time == 1336771960.0
        assert job.end_time == 1336771999.0
        assert job.priority == 0
        assert job.running_duration_seconds == pytest.approx(39.605)

    def test_missing_optional_numbers_read_as_zero(self) -> None:
        entity = {k: v for k, v in MINIMAL_JOB.items() if k not in ("Priority", "RunningDuration")}
        job = job_from_entity(entity)
        assert (job.priority, job.running_duration_seconds) == (0, 0.0)

    def test_missing_last_modified_falls_back_to_created(self) -> None:
        entity = {k: v for k, v in MINIMAL_JOB.items() if k != "LastModified"}
        assert job_from_entity(entity).last_modified == job_from_entity(entity).created

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"Name": 7}, "name"),
            ({"RunningDuration": "Infinity"}, "running_duration_seconds"),
            ({"RunningDuration": float("nan")}, "running_duration_seconds"),
            ({"RunningDuration": "abc"}, "running_duration_seconds"),
            ({"RunningDuration": 10**400}, "running_duration_seconds"),
            ({"RunningDuration": -5000}, "running_duration_seconds"),
            ({"RunningDuration": 1e308}, "running_duration_seconds"),
            ({"Priority": [1]}, "priority"),
            ({"Priority": 1.5}, "priority"),
            ({"StartTime": "later"}, "start_time"),
            ({"EndTime": {"at": 1}}, "end_time"),
        ],
    )
    def test_a_bad_optional_field_leaves_only_that_field_out(
        self, change: dict[str, Any], field: str
    ) -> None:
        job = job_from_entity({**MINIMAL_JOB, **change})
        expected = job_from_entity(MINIMAL_JOB)
        empty = "" if field == "name" else None
        assert job == dataclasses.replace(expected, **{field: empty})

    def test_a_name_over_512_characters_is_cut_with_an_ellipsis(self) -> None:
        job = job_from_entity({**MINIMAL_JOB, "Name": "n" * 600})
        assert job.name == "n" * 512 + "…"
        assert job_from_entity({**MINIMAL_JOB, "Name": "n" * 512}).name == "n" * 512

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"Id": None}, "'Id' is null, expected a non-empty string"),
            ({"Id": 5}, "'Id' is a number, expected a non-empty string"),
            ({"State": 9}, "'State' 9 is not a documented job state"),
            ({"State": None}, "'State' is missing"),
            ({"State": "two"}, "'State' is not a number"),
            ({"State": 1.5}, "'State' is not an integer"),
            ({"State": True}, "'State' is a boolean, expected a number"),
            ({"Created": None}, "'Created' is missing"),
            ({"Created": "soon"}, "not a date"),
            ({"Created": 7.5e300}, "date out of range"),
        ],
    )
    def test_bad_values_name_the_job_and_the_property(
        self, change: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ODataFormatError, match=message) as info:
            job_from_entity({**MINIMAL_JOB, **change})
        if change.get("Id", "") is not None and not isinstance(change.get("Id"), int):
            assert "nb:jid:UUID:1f7b2d3e" in str(info.value)


TASK = {
    "Id": "nb:tid:UUID:7",
    "Name": "Adaptive Streaming",
    "State": 3,
    "Progress": 100,
    "RunningDuration": 39605,
    "StartTime": "2020-06-01T18:45:24.54Z",
    "EndTime": "2020-06-01T18:46:11.477Z",
    "ErrorDetails": [],
}


class TestTaskFromEntity:
    def test_finished_task(self) -> None:
        task = task_from_entity(TASK)
        assert (task.id, task.name, task.state, task.progress) == (
            "nb:tid:UUID:7",
            "Adaptive Streaming",
            3,
            100.0,
        )
        assert task.running_duration_seconds == pytest.approx(39.605)
        assert task.end_time is not None and task.start_time is not None
        assert task.end_time - task.start_time == pytest.approx(46.937)
        assert task.error_codes == ()

    def test_error_details_as_array_with_unknown_codes_mapped(self) -> None:
        details = [
            {"Code": "ErrorProcessingTask", "Message": "free text"},
            {"Code": "SomethingNew", "Message": "x"},
            {"Message": "no code"},
        ]
        task = task_from_entity({**TASK, "State": 4, "ErrorDetails": details})
        assert task.error_codes == ("ErrorProcessingTask", "Unknown", "Unknown")

    def test_error_details_in_verbose_results_form(self) -> None:
        details = {
            "__metadata": {
                "type": "Collection(Microsoft.Cloud.Media.Vod.Rest.Data.Models.ErrorDetail)"
            },
            "results": [{"Code": "TransientError", "Message": "retry"}],
        }
        task = task_from_entity({**TASK, "ErrorDetails": details, "Progress": "42.5"})
        assert task.error_codes == ("TransientError",)
        assert task.progress == 42.5

    def test_error_details_of_wrong_type_leave_no_codes(self) -> None:
        assert task_from_entity({**TASK, "ErrorDetails": "oops"}).error_codes == ()

    @pytest.mark.parametrize(("sent", "read"), [(250, 100.0), (-40, 0.0), (55.5, 55.5)])
    def test_progress_is_clamped_to_a_percentage(self, sent: float, read: float) -> None:
        assert task_from_entity({**TASK, "Progress": sent}).progress == read

    @pytest.mark.parametrize(
        "change",
        [{"Progress": "much"}, {"Progress": float("nan")}, {"Progress": [1]}, {"Progress": True}],
    )
    def test_unreadable_progress_is_left_out(self, change: dict[str, Any]) -> None:
        assert task_from_entity({**TASK, **change}).progress is None

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"Id": None}, "'Id' is null"),
            ({"State": 7}, "'State' 7 is not a documented task state"),
            ({"State": -1}, "'State' -1 is not a documented task state"),
            ({"State": "x"}, "'State' is not a number"),
        ],
    )
    def test_required_fields_of_a_task(self, change: dict[str, Any], message: str) -> None:
        with pytest.raises(ODataFormatError, match=message):
            task_from_entity({**TASK, **change})


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["value", "d", "results", "Id", "State", "Created", "Code", "error"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_body_gives_entities_or_a_clear_error(value: object) -> None:
    body = json.dumps(value)
    try:
        entities = read_entities(body)
    except ODataFormatError as exc:
        assert str(exc)
        return
    for entity in entities:
        for reader in (job_from_entity, task_from_entity):
            try:
                reader(entity)
            except ODataFormatError as exc:
                assert str(exc)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES | st.binary(max_size=64).map(lambda b: b.decode("latin-1")))
def test_any_body_gives_an_error_tuple(value: object) -> None:
    body = value if isinstance(value, str) else json.dumps(value)
    code, message = read_error(body)
    assert isinstance(code, str) and isinstance(message, str)
    assert len(message) <= 300


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_gives_a_date_or_a_clear_error(value: object) -> None:
    try:
        result = parse_datetime(value)
    except ODataFormatError as exc:
        assert str(exc)
        return
    assert result is None or isinstance(result, float)


def test_lone_surrogates_in_names_become_replacement_characters():
    # Valid JSON, yet not encodable as UTF-8: one such name must not break the exposition.
    body = json.loads(
        '{"value": [{"Id": "nb:jid:UUID:1", "Name": "a\\ud800b \\u4e2d", "State": 2,'
        ' "Created": "2024-01-01T00:00:00", "LastModified": "2024-01-01T00:00:00",'
        ' "Priority": 0, "RunningDuration": 0}]}'
    )
    (entity,) = body["value"]
    job = job_from_entity(entity)
    assert job.name == "a\ufffdb \u4e2d"
    assert job.name.encode("utf-8") == "a\ufffdb \u4e2d".encode()
    task = task_from_entity({**TASK, "Name": "t\udfff"})
    assert task.name == "t\ufffd"
