"""One base model, many LoRA adapters: load, merge and drop PEFT adapters without reloading the base.

The paper merged each adapter into the base, saved and reloaded the model for every evaluation
(SPEC 1.6). Here the base is loaded once; each adapter is loaded into the same `PeftModel`
(`load_adapter`/`set_adapter`, the previous one `delete_adapter`-ed) and merged into the weights in
place (`merge_adapter`), so the evaluation runs at the speed of a plain model (an unmerged LoRA adds
two small matmuls and Python overhead to every projection: 2x slower on the tiny model). The merged
weights are computed exactly as `merge_and_unload` computes them on a fresh copy; before the next
adapter the base weights are restored bit for bit from a snapshot of the original projection weights
(kept on the CPU), instead of subtracting the adapter again, which would leave rounding residue that
accumulates over hundreds of adapters. With `merge=False` the adapter stays unmerged.

When the next adapter has the same LoRA configuration as the active one (rank, alpha, target modules,
...: the usual case in a sweep), its weights are copied into the active adapter's tensors instead of
creating a new adapter (`load_adapter` re-injects every LoRA module: ~30 ms on the tiny model, as long
as evaluating it on a few hundred items); otherwise `load_adapter`/`set_adapter`/`delete_adapter` run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


class AdapterHost:
    """Wraps a base model once in a `PeftModel` and swaps adapters in and out of it.

    Use as a context manager; on exit every adapter is removed and the base weights are restored, so
    the base model can be used (and wrapped) again. Inside, `model` is the PEFT model with the active
    adapter; `base_scores()` gives a context in which it computes the base model's outputs.

    Attributes:
        model: the `PeftModel` (None before the first adapter).
        merge: whether adapters are merged into the weights while active.
        swap_seconds: total time spent loading, merging, restoring and deleting adapters.
    """

    def __init__(self, base_model, merge: bool = True):
        self.base_model = base_model
        self.merge = merge
        self.model = None
        self.active: str | None = None
        self.swap_seconds = 0.0
        self._count = 0
        self._snapshot: dict = {}

    def __enter__(self) -> "AdapterHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def activate(self, adapter_dir: Path | str):
        """Load the adapter saved in `adapter_dir`, make it the active one and drop the previous one.

        Returns:
            The PEFT model with the new adapter active (merged into the weights when `merge`).
        """
        from peft import PeftModel

        started = time.perf_counter()
        name = f"adapter_{self._count}"
        self._count += 1
        if self.model is None:
            self.model = PeftModel.from_pretrained(self.base_model, str(adapter_dir), adapter_name=name)
            self._snapshot = self._base_weights() if self.merge else {}
        elif self._copy_into_active(adapter_dir):
            name = self.active
        else:
            self._restore_base()
            self.model.load_adapter(str(adapter_dir), adapter_name=name)
            self.model.set_adapter(name)
            self.model.delete_adapter(self.active)
        if self.merge:
            self.model.base_model.merge_adapter([name])
        self.model.eval()
        self.active = name
        self.swap_seconds += time.perf_counter() - started
        logger.debug("adapter %s from %s active (%.3f s of swaps so far)", name, adapter_dir, self.swap_seconds)
        return self.model

    @contextlib.contextmanager
    def base_scores(self):
        """A context in which the wrapped model computes the base model's outputs (adapter disabled)."""
        if self.model is None:
            yield
            return
        self._restore_base()
        try:
            with self.model.disable_adapter():
                yield
        finally:
            if self.merge:
                self.model.base_model.merge_adapter([self.active])

    def close(self):
        """Remove every adapter and return the plain base model (the same object, its weights restored)."""
        if self.model is not None:
            self._restore_base()
            self.base_model = self.model.unload()
            self.model, self.active, self._snapshot = None, None, {}
        return self.base_model

    def _copy_into_active(self, adapter_dir: Path | str) -> bool:
        """Copy the adapter's weights into the active adapter's tensors when both configurations agree.

        Returns:
            False (nothing changed) when the configurations differ or a saved tensor has no counterpart.
        """
        import torch
        from peft import PeftConfig
        from peft.utils import load_peft_weights

        def comparable(config) -> dict:
            ignored = ("base_model_name_or_path", "revision", "inference_mode", "peft_version")
            return {k: v for k, v in config.to_dict().items() if k not in ignored}

        if comparable(PeftConfig.from_pretrained(str(adapter_dir))) != comparable(self.model.peft_config[self.active]):
            return False
        parameters = dict(self.model.named_parameters())
        weights = load_peft_weights(str(adapter_dir), device="cpu")
        targets = {}
        for key, value in weights.items():
            stem, _, leaf = key.rpartition(".")
            target = parameters.get(f"{stem}.{self.active}.{leaf}")
            if target is None or target.shape != value.shape:
                return False
            targets[key] = target
        self._restore_base()
        with torch.no_grad():
            for key, target in targets.items():
                target.copy_(weights[key])
        return True

    def _base_weights(self) -> dict:
        """A CPU copy of the weight of every layer an adapter wraps (what merging changes)."""
        from peft.tuners.lora import LoraLayer

        return {
            module: module.get_base_layer().weight.detach().to("cpu", copy=True)
            for module in self.model.modules()
            if isinstance(module, LoraLayer)
        }

    def _restore_base(self) -> None:
        """Unmerge the active adapter (PEFT's bookkeeping) and put the original weights back exactly."""
        import torch

        if not self._snapshot or self.active is None:
            return
        self.model.base_model.unmerge_adapter()
        with torch.no_grad():
            for module, weight in self._snapshot.items():
                module.get_base_layer().weight.copy_(weight)
