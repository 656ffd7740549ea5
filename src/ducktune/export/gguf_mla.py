"""Multi-head latent attention sizes (MiniCPM3, DeepSeek-V2): read from a config, with the model class's
defaults for the keys a config.json may leave out (they differ per family)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MlaSizes:
    defaults: dict  # the config class's values for the MLA keys

    def size(self, config: dict, key: str) -> int:
        return int(config.get(key) or self.defaults[key])

    def rope_dims(self, config: dict) -> int:
        return self.size(config, "qk_rope_head_dim")

    def key_length(self, config: dict) -> int:
        """A query/key head: qk_nope_head_dim dims without rope, then qk_rope_head_dim rotated ones."""
        return self.size(config, "qk_nope_head_dim") + self.rope_dims(config)
