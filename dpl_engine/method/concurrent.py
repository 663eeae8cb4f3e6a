"""Running independent LLM calls side by side, as many at once as the backend serves.

A target's per-item differences calls do not depend on each other, and a server
with several slots answers them in parallel. ``bounded`` runs them through a
thread pool no wider than the backend's concurrency and yields each result as
it arrives, tagged with its input position so callers keep input order. With a
limit of 1 it runs them one after another in the calling thread, exactly as a
plain loop would. One cancel token reaches every call in flight; a failure in
one call cancels the others and is raised once they have stopped.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from ..types import Cancelled, CancelToken

A = TypeVar("A")
R = TypeVar("R")


class LinkedCancel(CancelToken):
    """Cancelled when its own ``cancel()`` is called or when its parent is."""

    def __init__(self, parent: CancelToken | None) -> None:
        super().__init__()
        self.parent = parent

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self.parent is not None and self.parent.cancelled)


def bounded(
    call: Callable[[A, CancelToken], R],
    items: Sequence[A],
    limit: int,
    cancel: CancelToken | None = None,
) -> Iterator[tuple[int, R]]:
    """Yield ``(index, call(items[index], token))`` in the order the calls finish.

    At most ``limit`` calls run at once. ``token`` is cancelled when ``cancel`` is,
    when a call raises, or when the caller stops iterating; every call is expected to
    return or raise Cancelled soon after. Raises the first error, or Cancelled."""
    token = LinkedCancel(cancel)
    if limit <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            if token.cancelled:
                raise Cancelled()
            yield i, call(item, token)
        return
    pool = cf.ThreadPoolExecutor(max_workers=min(limit, len(items)),
                                 thread_name_prefix="dpl-call")
    arrivals: queue.Queue[cf.Future[R]] = queue.Queue()
    futures: dict[cf.Future[R], int] = {}

    def start(item: A) -> R:
        if token.cancelled:  # queued behind a call that failed or was cancelled: never sent
            raise Cancelled()
        return call(item, token)

    for i, item in enumerate(items):
        future = pool.submit(start, item)
        futures[future] = i
        future.add_done_callback(arrivals.put)
    try:
        for _ in range(len(items)):
            while True:
                try:
                    future = arrivals.get(timeout=0.1)
                    break
                except queue.Empty:
                    if token.cancelled:
                        raise Cancelled() from None
            error = future.exception()
            if error is not None:
                raise error
            yield futures[future], future.result()
    finally:
        token.cancel()
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
