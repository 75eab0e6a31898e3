"""PolicyConfig: how stage II trains pi (the algorithm, its budget and hyper-parameters, pi's network)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyConfig:
    """Stage II: the RL algorithm and its hyper-parameters. The defaults are the paper's: Adam 3e-4, gamma 0.7,
    Monte-Carlo returns, clip 0.2, one update epoch per batch of 64 videos, value 0.5, entropy 0.01, 50 epochs.
    Presets change them; every field is a ``--policy.<field>`` option."""

    algo: str = "ppo"
    """a name of :data:`~adafocus.agents.ALGORITHMS`, or ``package.module:Class`` for any SB3 algorithm"""
    epochs: float = 50.0
    """passes over the training videos; total_timesteps = epochs * videos * T unless set"""
    total_timesteps: int | None = None
    """env steps of stage II (None: from ``epochs``)"""
    n_envs: int = 64
    """env slots stepped together (the batched VecEnv's N)"""
    videos_per_update: int = 64
    """whole videos collected per update of the PPO family: n_steps = videos_per_update * T / n_envs (A2C's
    n_steps is in ``agents/hyperparams/a2c.yml``; ``--policy.hyperparams "{n_steps: 8}"`` changes it)"""
    learning_rate: float = 3e-4
    """Adam's learning rate"""
    gamma: float = 0.7
    """discount factor"""
    gae_lambda: float = 1.0
    """GAE's lambda (1: Monte-Carlo returns, as the paper)"""
    clip_range: float = 0.2
    """PPO's ratio clip"""
    n_epochs: int = 1
    """PPO epochs per update"""
    minibatches: int = 1
    """PPO minibatches per update (the paper: the whole batch at once)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    ent_coef: float = 0.01
    """weight of the entropy bonus"""
    features_dim: int = 1024
    """width of pi's hidden layer, and of its GRU in gru_ppo / paper_ppo (the paper: 1024)"""
    conv_channels: int = 32
    """output channels of pi's 1x1 conv on f_G's map"""
    glance_norm: bool = True
    """normalise f_G's map before pi's conv: an untrained f_G's map has no fixed scale (the authors' pi has none)"""
    action_std: float | None = None
    """continuous gru_ppo / paper_ppo: the authors' sigmoid mean with this fixed std, as a fraction of the corner's
    range S - P (their Something-Something scripts: 0.25); None: SB3's learned log-std"""
    checkpoint_every: int = 10
    """updates between stage II checkpoints (a crashed run resumes from the last one)"""
    seed: int | None = None
    """stage II's own seed (the algorithm, the env slots, the video order); None: the run's. ``--policy.seed S
    --from RUN`` trains another seed of pi on RUN's warm-up and stage I"""
    hyperparams: str | None = None
    """more SB3 arguments over ``agents/hyperparams/<algo>.yml``, as a YAML mapping such as
    ``"{learning_starts: 500, buffer_size: 20000}"`` (the fields above are set by their own options)"""
