"""AdaFocus-RL: adaptive spatial focus for efficient video recognition, trained with reinforcement learning.

Importing the package registers its gymnasium ids. Registration stores entry-point strings only, so it
imports nothing; the factories behind them (:mod:`adafocus.presets`, :mod:`adafocus.frame_training`)
build an env on the embedded synthetic benchmark when ``gymnasium.make`` is called::

    gymnasium.make("adafocus:AdaFocus-v0")         # one AdaFocus episode per video (the paper's Section 4.1)
    gymnasium.make("adafocus:AdaFocusTSM-v0")      # one patch per clip on the motion variant (Section 4.2)
    gymnasium.make("adafocus:AdaFocusPlus-v0")     # pi' (AdaFocus+), AdaFrame-v0, MultiAgent-v0: which frames to read
"""
import gymnasium


def _register() -> None:
    ids = {
        "AdaFocus-v0": ("adafocus.presets:make_default_env", {}),
        "AdaFocusTSM-v0": ("adafocus.presets:make_default_env", {"preset_name": "synthetic_tsm"}),
        "AdaFocusPlus-v0": ("adafocus.frame_training:make_frame_env", {"kind": "pi_prime"}),
        "AdaFrame-v0": ("adafocus.frame_training:make_frame_env", {"kind": "adaframe"}),
        "MultiAgent-v0": ("adafocus.frame_training:make_frame_env", {"kind": "multiagent"}),
    }
    for env_id, (entry_point, kwargs) in ids.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=entry_point, kwargs=kwargs)


_register()
