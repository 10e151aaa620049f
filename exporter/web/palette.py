"""The colours of job states and of collection health, one place for every view of them.

The status page (:mod:`exporter.web.status_page`) and the Grafana dashboard
(``grafana/build_dashboard.py``) both read them, so a state looks the same in both.
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.ams.model import JobState

STATE_COLOURS: Mapping[JobState, str] = {
    JobState.QUEUED: "#E0B400",
    JobState.SCHEDULED: "#FF9830",
    JobState.PROCESSING: "#3274D9",
    JobState.FINISHED: "#37872D",
    JobState.ERROR: "#C4162A",
    JobState.CANCELED: "#8F8F8F",
    JobState.CANCELING: "#A352CC",
}

# An account whose last collection succeeded looks like a finished job; a failed one like an error.
UP_COLOUR = STATE_COLOURS[JobState.FINISHED]
DOWN_COLOUR = STATE_COLOURS[JobState.ERROR]

DARK_TEXT = "#1f1f24"
LIGHT_TEXT = "#fff"
# Text on a state's colour: dark on the light backgrounds (amber, orange), white on the others.
STATE_TEXT_COLOURS: Mapping[JobState, str] = {
    state: DARK_TEXT if state in {JobState.QUEUED, JobState.SCHEDULED} else LIGHT_TEXT
    for state in JobState
}
