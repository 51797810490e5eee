"""Making `import torchvision` (and so `import open_clip`) work next to the CPU-only build of torch.

PyPI carries torchvision wheels built against CUDA torch only. Their compiled extension does not load on
a CPU build of torch, so its operators are never registered; but `torchvision/_meta_registrations.py`
still registers fake kernels for `torchvision::nms` at import time, which fails with
"RuntimeError: operator torchvision::nms does not exist", and the whole import with it.

Prism only needs torchvision's image transforms (open_clip's preprocessing), which are pure Python. So
when torch is a CPU build and the operators are missing, we declare their schemas ourselves: the meta
registrations then find them and the import goes through. Calling these ops (detection models' NMS)
would still fail, with "no kernel", which is the truth: they are not there.
"""

from __future__ import annotations

import threading

import torch

# The schemas as torchvision declares them (torchvision/csrc/ops/nms.cpp, quantized/cpu/qnms_kernel.cpp).
MISSING_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# A Library object unregisters its definitions when it is garbage-collected: it must live as long as
# the process does, hence a module-level reference.
_library: torch.library.Library | None = None
_lock = threading.Lock()


def _op_exists(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Declare torchvision's missing operator schemas on CPU-only torch; a no-op otherwise, and when done.

    Must run before torchvision is first imported. On CUDA builds of torch torchvision's own extension
    registers the real operators, so nothing is touched there.
    """
    global _library
    if torch.version.cuda is not None:
        return
    with _lock:
        missing = {name: schema for name, schema in MISSING_OP_SCHEMAS.items() if not _op_exists(name)}
        if not missing:
            return
        if _library is None:
            # "FRAGMENT" rather than "DEF": "DEF" may exist only once per namespace, and a later
            # torchvision whose extension does load would then fail to define its own.
            _library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in missing.values():
            _library.define(schema)
