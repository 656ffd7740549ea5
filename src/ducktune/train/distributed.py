"""This process's place in a torchrun / accelerate launch (one process: rank 0 of 1)."""

from __future__ import annotations

from dataclasses import dataclass


def do_nothing(*args, **kwargs) -> None:
    """Stands in for `log` and `write_json` on processes other than the main one."""


@dataclass
class DistributedRun:
    """This process's place in a torchrun / accelerate launch (one process: rank 0 of 1).

    The process group is accelerate's (the engine the Trainer runs on), set up here early so the
    run directory can be prepared by the main process before the others read it.
    """

    rank: int = 0
    world_size: int = 1

    @staticmethod
    def rank_from_environment() -> int:
        import os

        return int(os.environ.get("RANK", "0"))

    @classmethod
    def from_environment(cls, cpu: bool) -> "DistributedRun":
        import os

        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        # cpu=True as the Trainer will ask (use_cpu): without it accelerate sees no GPU and no
        # process group, and every process would think it is the only one.
        state = PartialState(cpu=cpu)
        return cls(state.process_index, state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.world_size > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()  # the state set up in from_environment

    def on_main_then_shared(self, work):
        """Run `work` on the main process only; every process gets its result (or its error)."""
        if self.world_size == 1:
            return work()
        import torch.distributed as torch_dist

        box = [None]
        if self.is_main:
            try:
                box[0] = ("ok", work())
            except Exception as exc:  # the other processes stop with the same message
                box[0] = ("error", exc)
        torch_dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise value
        return value
