"""The version in service follows the one published: another process (``rag index``, a curation, another worker
or replica) may publish a new version at any time; it is loaded and swapped in without a failed request."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rag.indexing.versions import MANIFEST, current_version, version_dir
from rag.jobs import Job
from rag.query.service import QueryService

log = logging.getLogger("rag.query.follower")


class IndexFollower(Job):
    """Looks at the index folder every ``interval`` seconds; ``loaded`` is called after each swap."""

    name = "index-follower"

    def __init__(self, query: QueryService, interval: float, loaded: Callable[[], None]) -> None:
        super().__init__(interval)
        self.query, self.loaded = query, loaded

    def tick(self) -> None:
        if not self.query.ready:
            return
        directory = self.query.settings.index.index_dir
        published = current_version(directory)
        if published is None or published == self.query.index.version:
            return
        if not (version_dir(directory) / MANIFEST).exists():
            return
        try:
            self.query.load()
        except Exception as exc:  # keep serving the version in hand
            log.error("the published index %s could not be loaded: %s", published, exc)
            return
        self.loaded()
        log.info("now serving index version %s", self.query.index.version)
