"""Blackout episodes and the pattern they make, pure: no socket, no clock, no database.

`detect.Tracker` turns the stream of verdicts into episodes (opened, updated, closed) as
measurements arrive; `detect.detect` runs the same code over stored rows (``curfew analyze
--rebuild``). `pattern` places measurements and episodes on the vantage's local clock: the
hour-of-day reachability and the recurring schedule ("blocked daily 20:00-22:10 Asia/Almaty").
`monitor.Monitor` keeps both up to date in the daemon and hands the metrics a snapshot.
"""

from probe.episodes.detect import Tracker, detect
from probe.episodes.model import BLOCKED_VERDICTS, Episode, EpisodeEvent, Observation

__all__ = ["BLOCKED_VERDICTS", "Episode", "EpisodeEvent", "Observation", "Tracker", "detect"]
