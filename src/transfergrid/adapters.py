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
The LoRA layers and the active adapter's parameters are looked up once per adapter configuration, and
merging calls each layer's `merge` directly (PEFT's `merge_adapter`/`unmerge_adapter` walk every module
of the model and recompute the delta to subtract it, which the snapshot makes unnecessary): a swap then
costs reading the adapter file and one delta per layer (~5 ms on the tiny model instead of ~26 ms).
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
        self._snapshot: dict = {}  # LoRA layer -> (weight, bias) of its base layer, on the CPU
        self._layers: list = []  # the model's LoRA layers
        self._active_config: dict | None = None  # comparable config of the active adapter
        self._active_parameters: dict = {}  # "<module>.<leaf>" -> the active adapter's tensor

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
            self._adopt(name)
            self._snapshot = self._base_weights() if self.merge else {}
        elif self._copy_into_active(adapter_dir):
            name = self.active
        else:
            self._restore_base()
            self.model.load_adapter(str(adapter_dir), adapter_name=name)
            self.model.set_adapter(name)
            self.model.delete_adapter(self.active)
            self._adopt(name)
            if self.merge:  # load_adapter may wrap layers the snapshot does not cover yet
                self._snapshot = {**self._base_weights(), **self._snapshot}
        if self.merge:
            self._merge(name)
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
                self._merge(self.active)

    def close(self):
        """Remove every adapter and return the plain base model (the same object, its weights restored)."""
        if self.model is not None:
            self._restore_base()
            self.base_model = self.model.unload()
            self.model, self.active, self._snapshot = None, None, {}
            self._layers, self._active_config, self._active_parameters = [], None, {}
        return self.base_model

    def _adopt(self, name: str) -> None:
        """Look up (once per adapter configuration) the LoRA layers and adapter `name`'s parameters."""
        from peft.tuners.lora import LoraLayer

        self.model.eval()
        self._layers = [module for module in self.model.modules() if isinstance(module, LoraLayer)]
        self._active_config = _comparable(self.model.peft_config[name])
        marker = f".{name}"  # in parameter names, as PEFT saves them without it
        self._active_parameters = {
            key.replace(marker + ".", ".") if marker + "." in key else key.removesuffix(marker): parameter
            for key, parameter in self.model.named_parameters()
            if marker + "." in key or key.endswith(marker)
        }

    def _merge(self, name: str) -> None:
        """Merge adapter `name` into the base weights, layer by layer, as `merge_and_unload` computes it.

        A model dispatched over several devices (possibly offloaded) goes through PEFT's `merge_adapter`,
        which moves offloaded weights in and out.
        """
        if len(set(getattr(self.model.get_base_model(), "hf_device_map", {}).values())) > 1:
            self.model.base_model.merge_adapter([name])
            return
        for layer in self._layers:
            layer.merge(adapter_names=[name])

    def _copy_into_active(self, adapter_dir: Path | str) -> bool:
        """Copy the adapter's weights into the active adapter's tensors when both configurations agree.

        Returns:
            False (nothing changed) when the configurations differ or a saved tensor has no counterpart.
        """
        import torch
        from peft import PeftConfig
        from peft.utils import load_peft_weights

        if _comparable(PeftConfig.from_pretrained(str(adapter_dir))) != self._active_config:
            return False
        weights = load_peft_weights(str(adapter_dir), device="cpu")
        targets = {}
        for key, value in weights.items():
            target = self._active_parameters.get(key)
            if target is None or target.shape != value.shape:
                return False
            targets[key] = target
        self._restore_base()
        with torch.no_grad():
            for key, target in targets.items():
                target.copy_(weights[key])
        return True

    def _base_weights(self) -> dict:
        """A CPU copy of the weight (and bias) of every layer an adapter wraps (what merging changes)."""

        def copy(tensor):
            return None if tensor is None else tensor.detach().to("cpu", copy=True)

        return {
            layer: (copy(layer.get_base_layer().weight), copy(getattr(layer.get_base_layer(), "bias", None)))
            for layer in self._layers
        }

    def _restore_base(self) -> None:
        """Put the original weights back exactly and mark every layer unmerged (PEFT's bookkeeping)."""
        import torch

        if not self._snapshot or self.active is None:
            return
        with torch.no_grad():
            for layer, (weight, bias) in self._snapshot.items():
                base = layer.get_base_layer()
                base.weight.copy_(weight)
                if bias is not None:
                    base.bias.copy_(bias)
                layer.merged_adapters.clear()


def _comparable(config) -> dict:
    """A LoRA configuration without the fields that do not change how its weights are used."""
    ignored = ("base_model_name_or_path", "revision", "inference_mode", "peft_version")
    return {k: v for k, v in config.to_dict().items() if k not in ignored}
