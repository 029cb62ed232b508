"""Training infrastructure: TrainState, data parallelism, checkpoints, the loop.

Method-specific train steps (`train_step(state, batch, rng) -> (state, metrics)`,
pure, per device, `lax.pmean(..., "data")`) are wrapped by `parallel_step` at the call
site and driven by `run`.
"""

from jaxface.train.checkpoints import CheckpointManager, export_params, load_exported
from jaxface.train.loop import run
from jaxface.train.parallel import (
    DATA_AXIS,
    device_rng,
    logical_state,
    make_mesh,
    parallel_step,
    place_state,
    replicate,
    replicate_state,
    shard_batch,
    unreplicate,
)
from jaxface.train.state import (
    TrainState,
    apply_gradients,
    global_norm,
    grad_norms,
    param_norms,
)

__all__ = [
    "DATA_AXIS", "CheckpointManager", "TrainState", "apply_gradients", "device_rng",
    "export_params", "global_norm", "grad_norms", "load_exported", "logical_state",
    "make_mesh", "parallel_step", "param_norms", "place_state", "replicate",
    "replicate_state", "run", "shard_batch", "unreplicate",
]
