"""The `promote` step moves LATEST with model_store.set_latest: a concurrent reader never sees it half-written."""

import os
import threading
import time

import pytest
from conftest import CANDIDATE, SERVED

from mnist_ddp import model_store

SWITCHES = 400
READ_SECONDS_MAX = 30


def test_a_concurrent_reader_sees_the_old_name_or_the_new_one_never_a_partial_one(model_root):
    seen: dict[str, int] = {}
    errors: list[BaseException] = []
    done = threading.Event()

    def read_until_done():
        deadline = time.monotonic() + READ_SECONDS_MAX
        while not done.is_set() and time.monotonic() < deadline:
            try:
                raw = (model_root / model_store.LATEST).read_bytes()
                seen[raw.decode()] = seen.get(raw.decode(), 0) + 1
                model_store.read_latest(model_root)
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=read_until_done) for _ in range(2)]
    for reader in readers:
        reader.start()
    for i in range(SWITCHES):
        model_store.set_latest(model_root, CANDIDATE if i % 2 == 0 else SERVED)
    done.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert set(seen) <= {f"{SERVED}\n", f"{CANDIDATE}\n"}, f"a reader saw {set(seen)}"
    assert sum(seen.values()) > SWITCHES / 10, "the readers hardly ran: the test proved nothing"
    assert model_store.read_latest(model_root) == SERVED
    assert sorted(p.name for p in model_root.iterdir() if p.name.startswith(".")) == [], "no temporary file is left"


def test_concurrent_promotions_leave_one_complete_name(model_root):
    names = [CANDIDATE, SERVED]
    threads = [
        threading.Thread(target=lambda n=names[i % 2]: [model_store.set_latest(model_root, n) for _ in range(100)])
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert model_store.read_latest(model_root) in names
    assert not [p for p in model_root.iterdir() if p.name.startswith(".")]


def test_promotion_names_only_published_versions(model_root):
    with pytest.raises(model_store.ModelCorruptError, match="not a published version"):
        model_store.set_latest(model_root, "v20261201T130000Z-dddddd")
    assert model_store.read_latest(model_root) == SERVED


def test_latest_stays_readable_by_the_serving_user(model_root):
    model_store.set_latest(model_root, CANDIDATE)
    assert oct(os.stat(model_root / model_store.LATEST).st_mode & 0o777) == "0o644"
