"""What the delegate accepts from the wire at most, and what an id looks like.

Kept beside `wire.py` (which re-exports these names) so that the limits a hostile peer meets are
in one short place; `docs/protocol.md` ("Limits and ids") says the same for people.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic_core
from pydantic import StringConstraints

#: The largest HTTP answer the delegate reads (a task package is at most MAX_TASK_DATA_BYTES of
#: data plus its envelope); a longer one is refused unread, as one bad answer.
MAX_ANSWER_BYTES = 4 * 1_048_576
#: The largest websocket frame the delegate takes; stream events are small.
MAX_FRAME_BYTES = 262_144

#: What a task, delegate, account or profile id may look like (docs/protocol.md, "Ids"): URL- and
#: file-name-safe ASCII, 1 to 128 characters, not starting with a dot. An id that does not fit
#: makes the answer that carries it a bad answer; it is never put into a URL or a path.
ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
#: The ECS slot's random token and sequence number, as stored in `delegate_sequence_config`.
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
SequenceNum = Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,18}$")]
#: a released version as reported by a process about itself (e.g. the watcher's, "1.0.0")
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
#: goes back to the manager in a header: no byte a header cannot carry
ConnectionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.~+/=-]{1,256}$")]


def parse_json(raw: str | bytes) -> Any:
    """Decode one JSON answer or frame. Nesting deeper than 200 levels, invalid UTF-8 and invalid
    JSON all raise ValueError (never RecursionError), so a hostile answer is one bad answer."""
    return pydantic_core.from_json(raw)
