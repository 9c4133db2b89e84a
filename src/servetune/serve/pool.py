"""A thread pool for inference that refuses work instead of queueing without limit.

ONNX Runtime and Pillow release the GIL, so a few threads use a few cores. Past `threads + backlog`
images waiting or running, a caller gets Overloaded (the server answers 503 with Retry-After): latency
stays bounded and a load balancer or client can go elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Result = TypeVar("Result")


class Overloaded(Exception):
    pass


class InferencePool:
    def __init__(self, threads: int, backlog: int) -> None:
        self.threads = threads
        self.limit = threads + backlog
        self.pending = 0  # only touched on the event loop thread: no lock needed
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")

    async def run(self, function: Callable[..., Result], *args: object) -> Result:
        if self.pending >= self.limit:
            raise Overloaded(f"{self.pending} images already waiting or running (limit {self.limit})")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        finally:
            self.pending -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
