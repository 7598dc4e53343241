"""Configuration of the Argos world model: a Dreamer-4-style block-causal space-time transformer over DINO latents."""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig

from .models.attention_kernels import ATTENTION_BACKENDS


@strict
class ArgosWorldModelConfig(PreTrainedConfig):
    r"""
    Configuration of [`ArgosWorldModel`]. Each frame is a block of tokens
    `[signal+step token | action token | state token | registers | latent tokens]`; spatial layers attend within a
    frame, every `temporal_attention_interval`-th layer attends causally over time at each token position.

    Args:
        latent_channels (`int`, defaults to 768): channels C of the DINO latents (DINOv2-B: 768).
        latent_tokens (`int`, defaults to 256): latent tokens N per frame (224 px / patch 14 -> 16 x 16).
        hidden_size (`int`, defaults to 1536): transformer width.
        num_hidden_layers (`int`, defaults to 28): number of blocks (spatial and temporal together).
        num_attention_heads (`int`, defaults to 24): query heads.
        num_key_value_heads (`int`, defaults to 8): key/value heads (grouped-query attention); divides the query heads.
        intermediate_size (`int`, defaults to 4096): hidden size of the SwiGLU MLP.
        latent_bottleneck_dim (`int`, *optional*, defaults to 64): rank of the low-rank input projection C -> r -> width;
            `None` projects C -> width directly.
        num_register_tokens (`int`, defaults to 4): learned register tokens per frame.
        latent_position_embedding (`bool`, defaults to `False`): add a learned embedding of each latent token's
            position to its input. Spatial RoPE only tells a token where others lie relative to it; an absolute
            position lets a token compare where it is with where an action puts an object.
        action_modulation (`bool`, defaults to `False`): also condition every layer on its frame's action (adaLN, as
            DiT conditions on the diffusion time): an MLP of the action's Fourier features gives each frame a vector,
            from which each layer's zero-initialised projection scales and shifts the normalised inputs of its
            attention and MLP. The action then reaches every token directly instead of through the action token.
        action_dim (`int`, defaults to 8): action size A; 0 means the model takes no actions (only the "no action" token).
        state_dim (`int`, defaults to 8): proprioception size S; 0 means no state token and no state head.
        max_shortcut_steps (`int`, defaults to 64): K_max, a power of two; step sizes d lie in {1, 1/2, ..., 1/K_max}.
        temporal_attention_interval (`int`, defaults to 4): every this-many-th layer is a temporal layer (>= 2, so
            that spatial layers remain).
        temporal_context_length (`int`, defaults to 32): frames a frame attends to in time, itself included.
        attention_logit_softcap (`float`, *optional*, defaults to 50.0): soft-cap c of the attention logits
            (`c * tanh(s / c)`); `None` disables it.
        rope_theta (`float`, defaults to 10000.0): RoPE base period, spatial (token index) and temporal (frame index).
        rms_norm_eps (`float`, defaults to 1e-6): epsilon of the RMSNorms.
        signal_embedding_dim (`int`, defaults to 256): sinusoidal features of the signal level before its MLP.
        prediction_type (`str`, defaults to `"sample"`): what the network outputs, `"sample"` (clean latents,
            x-prediction), `"velocity"` (x - noise), `"residual"` (the change from the previous frame: clean latents
            are the previous frame's input, linearly denoised, plus the network's output, so copying a still scene
            costs nothing) or `"gated"` (each token is the previous frame's, linearly denoised, replaced by the
            network's output in the share a learned per-token gate in (0, 1) gives it: objects that stay are copied,
            objects that move are drawn anew); the model always returns clean latents.
        head_type (`str`, defaults to `"linear"`): output head, `"linear"` or `"dh"` (a wide shallow transformer head
            over the latent tokens, RAE's DiT-DH).
        head_hidden_size (`int`, defaults to 2048): width of the DH head.
        head_num_layers (`int`, defaults to 2): depth of the DH head.
        head_num_attention_heads (`int`, defaults to 16): heads of the DH head.
        attention_backend (`str`, defaults to `"auto"`): `"auto"` (fused SDPA without soft-capping; with it, flex
            attention on CUDA for score matrices of at least 128 x 128, explicit scores otherwise and on CPU),
            `"eager"`, `"sdpa"` or `"flex"`.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation.
        num_agent_tokens (`int`, defaults to 0): agent tokens per frame (Dreamer 4's agent); 0 means no agent tokens
            and no policy / reward / value heads. Agent tokens attend to every token of their frame and to their own
            past; no other token attends to them, so the dynamics predictions do not depend on them.
        agent_horizon (`int`, defaults to 8): L, the steps the policy and reward heads predict from each frame
            (multi-token prediction): actions t+1 ... t+L and rewards t ... t+L-1.
        policy_distribution (`str`, defaults to `"tanh_normal"`): `"tanh_normal"` (continuous actions in
            `(-policy_action_scale, policy_action_scale)`) or `"categorical"` (one of `action_dim` discrete actions, fed
            to the model one-hot).
        policy_action_scale (`float`, defaults to 1.0): bound of the tanh-squashed actions, in normalised units.
        two_hot_bins (`int`, defaults to 255): bins of the symlog two-hot reward and value heads, on [-20, 20].
        agent_head_hidden_size (`int`, *optional*): hidden size of the policy / reward / value MLPs; None = hidden_size.
        goal_conditioned (`bool`, defaults to False): agent tokens also take a goal (its latents and state), e.g. a
            goal image for goal-conditioned PushT.

    Example:
    ```python
    >>> from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
    >>> config = ArgosWorldModelConfig.from_pretrained("hub_configs/argos-wm-tiny")
    >>> model = ArgosWorldModel(config)
    ```
    """

    model_type = "argos_world_model"

    latent_channels: int = 768
    latent_tokens: int = 256
    hidden_size: int = 1536
    num_hidden_layers: int = 28
    num_attention_heads: int = 24
    num_key_value_heads: int = 8
    intermediate_size: int = 4096
    latent_bottleneck_dim: int | None = 64
    num_register_tokens: int = 4
    latent_position_embedding: bool = False
    action_modulation: bool = False
    action_dim: int = 8
    state_dim: int = 8
    max_shortcut_steps: int = 64
    temporal_attention_interval: int = 4
    temporal_context_length: int = 32
    attention_logit_softcap: float | None = 50.0
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    signal_embedding_dim: int = 256
    prediction_type: str = "sample"
    head_type: str = "linear"
    head_hidden_size: int = 2048
    head_num_layers: int = 2
    head_num_attention_heads: int = 16
    attention_backend: str = "auto"
    initializer_range: float = 0.02
    num_agent_tokens: int = 0
    agent_horizon: int = 8
    policy_distribution: str = "tanh_normal"
    policy_action_scale: float = 1.0
    two_hot_bins: int = 255
    agent_head_hidden_size: int | None = None
    goal_conditioned: bool = False

    def __post_init__(self, **kwargs):
        self._check_values()
        super().__post_init__(**kwargs)

    def _check_values(self):
        sizes = ("latent_channels", "latent_tokens", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "intermediate_size")  # fmt: skip
        small = {name: getattr(self, name) for name in sizes if getattr(self, name) < 1}
        if small:
            raise ValueError(f"{', '.join(small)} must be >= 1; got {small}.")
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(
                f"hidden_size must split into num_attention_heads heads of even size; got hidden_size="
                f"{self.hidden_size}, num_attention_heads={self.num_attention_heads}."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads must divide num_attention_heads={self.num_attention_heads}; "
                f"got {self.num_key_value_heads}."
            )
        if self.max_shortcut_steps < 1 or self.max_shortcut_steps & (self.max_shortcut_steps - 1):
            raise ValueError(f"max_shortcut_steps must be a power of two; got {self.max_shortcut_steps}.")
        if not 2 <= self.temporal_attention_interval <= self.num_hidden_layers:
            raise ValueError(
                f"temporal_attention_interval must be in [2, num_hidden_layers={self.num_hidden_layers}] so that at "
                f"least one layer is temporal and one is spatial (a frame's action and signal tokens reach its latents "
                f"only through spatial layers); got {self.temporal_attention_interval}."
            )
        if self.temporal_context_length < 1:
            raise ValueError(f"temporal_context_length must be >= 1; got {self.temporal_context_length}.")
        if self.action_dim < 0 or self.state_dim < 0:
            raise ValueError(f"action_dim and state_dim must be >= 0; got {self.action_dim} and {self.state_dim}.")
        if self.action_modulation and self.action_dim == 0:
            raise ValueError("action_modulation needs actions to modulate by (config.action_dim > 0); got action_dim=0.")
        if self.prediction_type not in ("sample", "velocity", "residual", "gated"):
            raise ValueError(
                f"prediction_type must be 'sample', 'velocity', 'residual' or 'gated'; got {self.prediction_type!r}."
            )
        if self.head_type not in ("linear", "dh"):
            raise ValueError(f"head_type must be 'linear' or 'dh'; got {self.head_type!r}.")
        if self.head_type == "dh" and (
            self.head_hidden_size % self.head_num_attention_heads
            or (self.head_hidden_size // self.head_num_attention_heads) % 2
        ):
            raise ValueError(
                f"head_hidden_size must split into head_num_attention_heads heads of even size; got "
                f"{self.head_hidden_size} and {self.head_num_attention_heads}."
            )
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}; got {self.attention_backend!r}.")
        if self.attention_logit_softcap is not None and self.attention_logit_softcap <= 0:
            raise ValueError(f"attention_logit_softcap must be positive or None; got {self.attention_logit_softcap}.")

        if self.num_agent_tokens < 0 or self.agent_horizon < 1 or self.two_hot_bins < 2:
            raise ValueError(
                f"num_agent_tokens must be >= 0, agent_horizon >= 1 and two_hot_bins >= 2; got {self.num_agent_tokens}, "
                f"{self.agent_horizon} and {self.two_hot_bins}."
            )
        if self.policy_distribution not in ("tanh_normal", "categorical"):
            raise ValueError(
                f"policy_distribution must be 'tanh_normal' or 'categorical'; got {self.policy_distribution!r}."
            )
        if self.num_agent_tokens > 0 and self.action_dim == 0:
            raise ValueError("num_agent_tokens > 0 needs actions for the policy to output (config.action_dim > 0).")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def tokens_per_frame(self) -> int:
        """Signal/step, action, state (when `state_dim > 0`), registers and latent tokens."""
        return 2 + int(self.state_dim > 0) + self.num_register_tokens + self.latent_tokens

    def is_temporal_layer(self, layer_idx: int) -> bool:
        return (layer_idx + 1) % self.temporal_attention_interval == 0

AutoConfig.register(ArgosWorldModelConfig.model_type, ArgosWorldModelConfig, exist_ok=True)

__all__ = ["ArgosWorldModelConfig"]
