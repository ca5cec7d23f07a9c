"""Whose turn it is to generate: one generation at a time, waiting requests taken fairly.

One llama.cpp context cannot serve two generations at once, and a process holds
one model. Every pipeline of a process (one per collection) shares one
``GenerationTurns``. Waiting requests are served round-robin by requester
(a user, an API key, a browser session) and first come, first served within one
requester: somebody who sends eight questions at once waits behind them, and a
colleague's single question goes next, right after the one generating.

Worked example: A sends a1, a2, a3, then B sends b1 while a0 is generating.
The order is b1, a1, a2, a3: each ticket gets a round when it joins, one after
its requester's previous ticket and never earlier than the round being served
(a0's 1: a1 2, a2 3, a3 4, b1 2); tickets are served by round, then the requester
served longest ago (B never, A with a0), then arrival. b1's position is 1: a0.
A's waiting questions each move back one place when b1 joins: that is the
colleague's turn, not a lost one.

A requester may have at most ``max_waiting`` questions waiting (``KB_MAX_WAITING_PER_USER``);
one more gets ``QueueFullError`` (the API's 429) before anything is retrieved.

``position`` counts the questions that will be generated before this one,
including the one generating now: what the UI shows as "2 questions ahead of
yours" and the API sends while a request waits.

Deliberately not here: priorities or weights per user, time-outs of a
generation (the generator's own).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.errors import KbError


class QueueFullError(KbError):
    """This requester already has as many questions waiting as one may."""


@dataclass(eq=False)
class Ticket:
    """One request's place in the queue; opaque to callers."""

    requester: str
    number: int  # arrival order
    round: int
    served: bool = field(default=False, init=False)


class GenerationTurns:
    """A fair queue in front of the one generator (see the module docstring)."""

    def __init__(self, max_waiting: int | None = None) -> None:
        self.max_waiting = max_waiting
        self._changed = threading.Condition()
        self._waiting: list[Ticket] = []
        self._generating: Ticket | None = None
        self._numbers = itertools.count()
        self._round_served = 0  # the round of the ticket served last
        self._last_round: dict[str, int] = {}  # each requester's latest ticket's round
        self._served_count = itertools.count()
        self._last_served: dict[str, int] = {}  # when each requester was last served (a serving count)

    def check_room(self, requester: str) -> None:
        """``QueueFullError`` when ``requester`` has as many questions waiting as one may."""
        with self._changed:
            self._check_room(requester)

    def _check_room(self, requester: str) -> None:
        waiting = sum(ticket.requester == requester for ticket in self._waiting)
        if self.max_waiting is not None and waiting >= self.max_waiting:
            raise QueueFullError(f"you have {waiting} questions waiting already, as many as one may "
                                 f"(KB_MAX_WAITING_PER_USER={self.max_waiting}); ask again when one is answered")

    def join(self, requester: str) -> Ticket:
        with self._changed:
            self._check_room(requester)
            round_number = max(self._round_served, self._last_round.get(requester, 0)) + 1
            self._last_round[requester] = round_number
            ticket = Ticket(requester, next(self._numbers), round_number)
            self._waiting.append(ticket)
            self._promote()
            return ticket

    def _order(self) -> list[Ticket]:
        """Waiting tickets in serving order: by round, then the requester served longest ago, then arrival."""
        return sorted(self._waiting, key=lambda ticket: (ticket.round, self._last_served.get(ticket.requester, -1),
                                                         ticket.number))

    def _promote(self) -> None:
        if self._generating is None and self._waiting:
            chosen = self._order()[0]
            self._waiting.remove(chosen)
            chosen.served = True
            self._round_served = chosen.round
            self._last_served[chosen.requester] = next(self._served_count)
            # A round at or below the one served counts as that one anyway: forget it (the map stays small).
            self._last_round = {r: n for r, n in self._last_round.items() if n > self._round_served}
            if len(self._last_served) > 10_000:  # requesters served long ago all count alike: keep the map small
                self._last_served = dict(sorted(self._last_served.items(), key=lambda item: item[1])[-1_000:])
            self._generating = chosen
            self._changed.notify_all()

    def position(self, ticket: Ticket) -> int:
        """Questions that will be generated before this one (0: it is this one's turn)."""
        with self._changed:
            if ticket.served:
                return 0
            ahead = self._order().index(ticket)
            return ahead + (1 if self._generating is not None else 0)

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        """Block until it is this ticket's turn or ``timeout`` seconds pass; True when it is its turn."""
        with self._changed:
            return self._changed.wait_for(lambda: ticket.served, timeout)

    def positions_until_turn(self, ticket: Ticket) -> Iterator[int]:
        """Yields the ticket's position each time it changes; returns once it is the ticket's turn."""
        last = None
        while (ahead := self.position(ticket)) > 0:
            if ahead != last:
                yield ahead
                last = ahead
            self.wait(ticket, timeout=0.5)

    def leave(self, ticket: Ticket) -> None:
        """Give the turn up (done generating) or the place in the queue (gave up waiting)."""
        with self._changed:
            if self._generating is ticket:
                self._generating = None
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            self._promote()
            self._changed.notify_all()

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    def wait_until_idle(self, timeout: float) -> bool:
        """Block (without spinning) until no question is generating or waiting, or ``timeout`` seconds pass."""
        with self._changed:
            return self._changed.wait_for(lambda: self._generating is None and not self._waiting, timeout)

    @property
    def busy(self) -> bool:
        """A question is being generated now."""
        with self._changed:
            return self._generating is not None
