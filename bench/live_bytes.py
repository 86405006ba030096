"""The most tensor memory an operation has alive at once, counted op by op on any device.

`LiveBytes` is a torch dispatch mode: every tensor an ATen op returns is counted once per
storage until the last tensor on that storage is gone. On the meta device nothing is
computed, so the peak of a loss over a real 7B vocabulary costs no time and no memory; the
count is the program's own allocations, without a kernel's private workspace. Tensors that
exist before the mode starts are passed to `already_there` so their views count nothing.
"""

from __future__ import annotations

import weakref

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _key(tensor) -> int:
    return tensor.untyped_storage()._cdata   # one StorageImpl, however many views


class LiveBytes(TorchDispatchMode):
    def __init__(self, already_there=()):
        super().__init__()
        self.live = self.peak = 0
        # storage -> [bytes, tensors alive on it]; inputs are marked -1 and never counted
        self._storages: dict[int, list[int]] = {_key(t): [0, -1] for t in already_there}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not hasattr(t, "untyped_storage"):
                continue
            key = _key(t)
            entry = self._storages.get(key)
            if entry is None:
                entry = self._storages[key] = [t.untyped_storage().nbytes(), 0]
                self.live += entry[0]
                self.peak = max(self.peak, self.live)
            if entry[1] >= 0:
                entry[1] += 1
                weakref.finalize(t, self._release, key)
        return out

    def _release(self, key: int) -> None:
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]
